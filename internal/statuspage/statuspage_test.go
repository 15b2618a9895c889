package statuspage_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/admin"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/refresh"
	"github.com/hookd/hookd/internal/statuspage"
	"github.com/hookd/hookd/internal/store"
	"github.com/hookd/hookd/internal/verify"
	"github.com/hookd/hookd/internal/webhook"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

const (
	secret = "page-webhook-secret"
	image  = "ghcr.io/org/web:latest"
	digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// site is hookd's intake and the status page over one store, served on loopback. The intake
// queues into a refresh service whose workers never run, so jobs stay pending.
type site struct {
	t     *testing.T
	url   string
	store *store.Store
	srv   *httptest.Server
}

func newSite(t *testing.T, token string, tls bool, opts ...statuspage.Option) *site {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cat := catalog.New([]hookd.Runtime{{Name: "storefront", Image: image}}, nil, time.Minute)
	verifier, err := verify.NewGitHub([][]byte{[]byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc := refresh.New(st, cat, nil, nil, 0, refresh.NewMetrics(reg), log)
	recent := webhook.NewRecent(20)
	e := echo.New()
	e.POST("/hooks/ghcr", webhook.New(verifier, cat, refresh.NewFleet(st, svc), "ghcr.io", 1<<20, webhook.NewMetrics(reg), recent, log).Handle)
	// As cmd/hookd's routes file mounts them.
	page := statuspage.New(token, []admin.Host{{Engine: hookd.DefaultEngine, Catalog: cat, Store: st}}, recent, log, opts...)
	e.GET("/", page.Show)
	if page.Locked() {
		e.POST("/login", page.Login)
		e.POST("/logout", page.Logout)
	}
	s := &site{t: t, store: st}
	if tls {
		s.srv = httptest.NewTLSServer(e)
	} else {
		s.srv = httptest.NewServer(e)
	}
	t.Cleanup(s.srv.Close)
	s.url = s.srv.URL
	return s
}

// do sends one request without following redirects and returns the answer with its body read.
func (s *site) do(method, path string, form url.Values, cookies ...*http.Cookie) (*http.Response, string) {
	s.t.Helper()
	return s.doWith(method, path, form, nil, cookies...)
}

// doWith is do with extra request headers.
func (s *site) doWith(method, path string, form url.Values, header http.Header, cookies ...*http.Cookie) (*http.Response, string) {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := s.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, string(b)
}

func (s *site) deliver(d webhooktest.Delivery) {
	s.t.Helper()
	if d.Secret == nil && d.Signature == "" {
		d.Secret = []byte(secret)
	}
	if _, _, err := webhooktest.Send(context.Background(), s.srv.Client(), s.url+"/hooks/ghcr", d); err != nil {
		s.t.Fatal(err)
	}
}

func (s *site) push(id string) {
	s.deliver(webhooktest.Delivery{Event: "package", ID: id,
		Body: webhooktest.Payload(webhooktest.Push{Namespace: "org", Name: "web", Tag: "latest", Digest: digest})})
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "hookd_session" {
			return c
		}
	}
	return nil
}

func isLoginForm(body string) bool {
	return strings.Contains(body, `action="/login"`) && strings.Contains(body, `name="token"`) && !strings.Contains(body, "storefront")
}

func TestStatusPageOpenWithoutToken(t *testing.T) {
	s := newSite(t, "", false)
	s.push("open-1")
	resp, body := s.do(http.MethodGet, "/", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{"storefront", image, `title="` + digest + `"`, "sha256:0123456789ab…", "open-1", "queued", `http-equiv="refresh"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, `action="/login"`) || strings.Contains(body, "Log out") {
		t.Error("open page shows login or logout")
	}
	if resp, _ := s.do(http.MethodPost, "/login", url.Values{"token": {""}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /login without a token configured: %d, want 404", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func TestStatusPageLoginFlow(t *testing.T) {
	const token = "s3cret-admin-token"
	s := newSite(t, token, false)
	s.push("flow-1")

	resp, body := s.do(http.MethodGet, "/", nil)
	if resp.StatusCode != http.StatusUnauthorized || !isLoginForm(body) {
		t.Fatalf("GET / without a session: %d, want 401 and the form only\n%s", resp.StatusCode, body)
	}
	if resp, body := s.do(http.MethodGet, "/?token="+token, nil); resp.StatusCode != http.StatusUnauthorized || !isLoginForm(body) {
		t.Fatalf("a token in the URL logged in: %d", resp.StatusCode)
	}

	resp, body = s.do(http.MethodPost, "/login", url.Values{"token": {"wrong"}})
	if resp.StatusCode != http.StatusUnauthorized || !isLoginForm(body) || !strings.Contains(body, "not the admin token") {
		t.Fatalf("wrong token: %d\n%s", resp.StatusCode, body)
	}
	if sessionCookie(resp) != nil {
		t.Fatal("wrong token got a session cookie")
	}

	resp, _ = s.do(http.MethodPost, "/login", url.Values{"token": {token}})
	ck := sessionCookie(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" || ck == nil {
		t.Fatalf("right token: %d Location %q cookie %v", resp.StatusCode, resp.Header.Get("Location"), ck)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.MaxAge <= 0 {
		t.Errorf("cookie attributes: %+v (plain HTTP: not Secure)", ck)
	}
	if ck.Value == "" || strings.Contains(ck.Value, token) {
		t.Fatalf("cookie value %q carries the token", ck.Value)
	}

	resp, body = s.do(http.MethodGet, "/", nil, ck)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "storefront") || !strings.Contains(body, "flow-1") || !strings.Contains(body, `action="/logout"`) {
		t.Fatalf("GET / with the session: %d\n%s", resp.StatusCode, body)
	}
	if strings.Contains(body, token) {
		t.Fatal("the page shows the token")
	}

	forged := *ck
	forged.Value = "99999999999." + strings.Repeat("0", 64)
	if resp, body := s.do(http.MethodGet, "/", nil, &forged); resp.StatusCode != http.StatusUnauthorized || !isLoginForm(body) {
		t.Fatalf("forged cookie: %d", resp.StatusCode)
	}
	forged.Value = token
	if resp, _ := s.do(http.MethodGet, "/", nil, &forged); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the raw token as cookie: %d", resp.StatusCode)
	}

	resp, _ = s.do(http.MethodPost, "/logout", nil, ck)
	cleared := sessionCookie(resp)
	if resp.StatusCode != http.StatusSeeOther || cleared == nil || cleared.Value != "" || cleared.MaxAge >= 0 {
		t.Fatalf("logout: %d cookie %+v", resp.StatusCode, cleared)
	}
}

func TestStatusPageSessionEndsWithTokenChange(t *testing.T) {
	a := newSite(t, "token-a", false)
	resp, _ := a.do(http.MethodPost, "/login", url.Values{"token": {"token-a"}})
	ck := sessionCookie(resp)
	if ck == nil {
		t.Fatalf("login: %d, no cookie", resp.StatusCode)
	}
	b := newSite(t, "token-b", false)
	if resp, _ := b.do(http.MethodGet, "/", nil, ck); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a session of the old token opened the page: %d", resp.StatusCode)
	}
}

func TestStatusPageLoginOverTLSSetsSecureCookie(t *testing.T) {
	s := newSite(t, "tls-token", true)
	resp, _ := s.do(http.MethodPost, "/login", url.Values{"token": {"tls-token"}})
	ck := sessionCookie(resp)
	if resp.StatusCode != http.StatusSeeOther || ck == nil || !ck.Secure {
		t.Fatalf("login over TLS: %d cookie %+v", resp.StatusCode, ck)
	}
	if resp, body := s.do(http.MethodGet, "/", nil, ck); resp.StatusCode != http.StatusOK || !strings.Contains(body, "storefront") {
		t.Fatalf("GET / over TLS with the session: %d", resp.StatusCode)
	}
}

func TestStatusPageEscapesHostileInput(t *testing.T) {
	s := newSite(t, "", false)
	const hostileID = `<img/src=x/onerror=alert(1)>`
	s.push(hostileID) // a valid id (visible ASCII): queued, and named in the pending job
	s.deliver(webhooktest.Delivery{Event: `<script>alert("ev")</script>`, ID: "evt-1", Body: []byte(`{}`)})
	s.deliver(webhooktest.Delivery{Event: "package", ID: `"><script>alert(2)</script>`, Body: []byte(`{}`), Signature: "sha256=00"})

	// A finished job whose reason is hostile, through the store as the workers record it.
	job, ok, err := s.store.Take("storefront")
	if err != nil || !ok {
		t.Fatalf("take: %v %v", ok, err)
	}
	s.push("second") // pending again, behind the finished one
	res := hookd.Result{JobID: job.ID, Runtime: "storefront", Trigger: job.Trigger, Outcome: "rolled_back", Image: image,
		Digest: digest, Reason: `health gate: <script>alert(3)</script>`, Failed: []hookd.Failure{{Ref: "c1", Reason: `<b onmouseover=alert(4)>`}},
		Started: time.Now().Add(-3 * time.Second), Finished: time.Now()}
	if err := s.store.Finish(res); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.UpdateRecord("storefront", func(r *store.Record) {
		r.FailedDigest, r.FailedReason = digest, `<iframe src="javascript:alert(5)">`
	}); err != nil {
		t.Fatal(err)
	}

	resp, body := s.do(http.MethodGet, "/", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	for _, raw := range []string{"<script", "<img", "<iframe", "<b onmouseover"} {
		if strings.Contains(body, raw) {
			t.Errorf("page contains unescaped %q", raw)
		}
	}
	for _, escaped := range []string{
		"&lt;img/src=x/onerror=alert(1)&gt;",
		"&lt;script&gt;alert(&#34;ev&#34;)&lt;/script&gt;",
		"&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;",
		"health gate: &lt;script&gt;alert(3)&lt;/script&gt;",
		"&lt;b onmouseover=alert(4)&gt;",
		"&lt;iframe src=&#34;javascript:alert(5)&#34;&gt;",
		"rolled back", "took 3.0 s",
	} {
		if !strings.Contains(body, escaped) {
			t.Errorf("page lacks %q", escaped)
		}
	}
}

func TestStatusPageShowsRefusal(t *testing.T) {
	s := newSite(t, "", false)
	s.push("unsigned")
	job, ok, err := s.store.Take("storefront")
	if err != nil || !ok {
		t.Fatalf("take: %v %v", ok, err)
	}
	reason := "signature: want key /etc/hookd/cosign.pub; found no signature"
	res := hookd.Result{JobID: job.ID, Runtime: "storefront", Trigger: job.Trigger, Outcome: hookd.OutcomeRefused, Image: image,
		Digest: digest, Reason: reason, Started: time.Now(), Finished: time.Now()}
	if err := s.store.Finish(res); err != nil {
		t.Fatal(err)
	}
	_, body := s.do(http.MethodGet, "/", nil)
	for _, want := range []string{`<span class="badge bad">refused: signature</span>`, reason} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// With several engines each runtime has a card per engine it lives on, naming the engine, with
// that engine's own result.
func TestStatusPageShowsEachEngine(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rts := []hookd.Runtime{{Name: "storefront", Image: image}}
	var hosts []admin.Host
	for i, name := range []string{"edge-1", "edge-2"} {
		es, err := st.Engine(name)
		if err != nil {
			t.Fatal(err)
		}
		outcome := []hookd.Outcome{hookd.OutcomeRolledOut, hookd.OutcomeFailed}[i]
		if err := es.Finish(hookd.Result{JobID: 7, Runtime: "storefront", Engine: name, Outcome: outcome, Image: image,
			Reason: "reason-on-" + name, Notes: []string{"note-on-" + name}, Services: []string{"svc-on-" + name},
			Started: time.Now(), Finished: time.Now()}); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, admin.Host{Engine: name, Catalog: catalog.New(rts, nil, time.Minute), Store: es})
	}
	page := statuspage.New("", hosts, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	e := echo.New()
	e.GET("/", page.Show)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	for _, want := range []string{`data-engine="edge-1"`, `data-engine="edge-2"`, "on edge-1", "on edge-2", "reason-on-edge-1", "reason-on-edge-2",
		"note-on-edge-1", "services svc-on-edge-2"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if i, j := strings.Index(string(body), "reason-on-edge-1"), strings.Index(string(body), `data-engine="edge-2"`); i < 0 || j < 0 || i > j {
		t.Error("edge-1's result is not on edge-1's card")
	}
}
