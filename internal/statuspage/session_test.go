package statuspage_test

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookd/hookd/internal/admin"
	"github.com/hookd/hookd/internal/statuspage"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

func login(t *testing.T, s *site, token string) *http.Cookie {
	t.Helper()
	resp, _ := s.do(http.MethodPost, "/login", url.Values{"token": {token}})
	ck := sessionCookie(resp)
	if resp.StatusCode != http.StatusSeeOther || ck == nil {
		t.Fatalf("login: %d cookie %v", resp.StatusCode, ck)
	}
	return ck
}

// A logout ends the session on the server: a copy of the cookie opens nothing afterwards.
func TestLogoutRevokesTheSession(t *testing.T) {
	s := newSite(t, "revoke-admin-token", false)
	ck := login(t, s, "revoke-admin-token")
	copied := *ck
	if resp, _ := s.do(http.MethodPost, "/logout", nil, ck); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, body := s.do(http.MethodGet, "/", nil, &copied); resp.StatusCode != http.StatusUnauthorized || !isLoginForm(body) {
		t.Fatalf("the copied cookie after logout: %d, want 401 and the login form", resp.StatusCode)
	}
}

// A form posted from another site neither logs out nor logs in.
func TestLoginAndLogoutRefusedCrossSite(t *testing.T) {
	s := newSite(t, "cross-admin-token", false)
	ck := login(t, s, "cross-admin-token")
	crossSite := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}
	if resp, _ := s.doWith(http.MethodPost, "/logout", nil, crossSite, ck); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site logout: %d, want 403", resp.StatusCode)
	}
	if resp, _ := s.do(http.MethodGet, "/", nil, ck); resp.StatusCode != http.StatusOK {
		t.Fatalf("the session after a cross-site logout: %d, want it still valid", resp.StatusCode)
	}
	oldBrowser := http.Header{"Origin": {"https://evil.example"}}
	if resp, _ := s.doWith(http.MethodPost, "/login", url.Values{"token": {"cross-admin-token"}}, oldBrowser); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin login: %d, want 403", resp.StatusCode)
	}
	if resp, _ := s.doWith(http.MethodGet, "/logout", nil, nil, ck); resp.StatusCode == http.StatusSeeOther {
		t.Fatal("GET /logout logged out")
	}
}

// After the per-client burst of wrong tokens the login answers 429 with Retry-After without
// looking at the token, the right one included.
func TestLoginThrottled(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs strings.Builder
	throttle := admin.NewThrottle(reg, slog.New(slog.NewTextHandler(&logs, nil)))
	s := newSite(t, "throttle-admin-token", false, statuspage.WithThrottle(throttle))
	codes := map[int]int{}
	var last *http.Response
	for range 30 {
		resp, _ := s.do(http.MethodPost, "/login", url.Values{"token": {"guess"}})
		codes[resp.StatusCode]++
		last = resp
	}
	if codes[http.StatusUnauthorized] == 0 || codes[http.StatusTooManyRequests] == 0 || last.Header.Get("Retry-After") == "" {
		t.Fatalf("30 wrong tokens answered %v (last Retry-After %q), want 401s then 429s with Retry-After", codes, last.Header.Get("Retry-After"))
	}
	if resp, _ := s.do(http.MethodPost, "/login", url.Values{"token": {"throttle-admin-token"}}); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the right token while throttled: %d, want 429", resp.StatusCode)
	}
	if n, err := testutil.GatherAndCount(reg, "hookd_admin_auth_failures_total"); err != nil || n != 2 {
		t.Fatalf("hookd_admin_auth_failures_total: %d series (%v), want wrong_token and throttled", n, err)
	}
	// Each failure is not a line: 31 of them are a few at most.
	if lines := strings.Count(logs.String(), "admin token"); lines == 0 || lines > 4 {
		t.Fatalf("%d log lines for 31 refused logins:\n%s", lines, logs.String())
	}
}

// admin.https: the cookie is Secure though the request came over plain HTTP.
func TestHTTPSOptionForcesSecureCookie(t *testing.T) {
	s := newSite(t, "https-admin-token", false, statuspage.WithHTTPS(true))
	if ck := login(t, s, "https-admin-token"); !ck.Secure {
		t.Fatalf("cookie %+v, want Secure", ck)
	}
}

// Rejected requests are counted and listed apart from the deliveries.
func TestStatusPageListsRejectedApart(t *testing.T) {
	s := newSite(t, "", false)
	s.push("real-1")
	for range 60 {
		s.deliver(webhooktest.Delivery{Event: "package", ID: "forged", Body: []byte(`{}`), Secret: []byte("guess")})
	}
	_, body := s.do(http.MethodGet, "/", nil)
	if !strings.Contains(body, "real-1") || !strings.Contains(body, `id="rejected"`) || !strings.Contains(body, "60 since hookd started") {
		t.Fatalf("page with one delivery and 60 rejected requests:\n%s", body)
	}
}
