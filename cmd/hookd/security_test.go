package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookd/hookd/internal/testkit"
)

const quietConfig = "registry_host: 127.0.0.1:1\npoll:\n  interval: 0\nruntimes:\n  - name: app\n    image: 127.0.0.1:1/org/app:latest\n"

// Wrong bearer tokens are throttled per client: past the burst the admin API answers 429 with
// Retry-After without looking at the token, and the log has a few lines, not one per guess.
func TestAdminBearerThrottled(t *testing.T) {
	h := startHookd(t, quietConfig, t.TempDir(), nil)
	codes := map[int]int{}
	retry := ""
	for range 40 {
		req, _ := http.NewRequest(http.MethodGet, h.url+"/admin/status", nil)
		req.Header.Set("Authorization", "Bearer guess-guess-guess-guess")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retry = resp.Header.Get("Retry-After")
		}
	}
	if codes[http.StatusUnauthorized] == 0 || codes[http.StatusTooManyRequests] == 0 || retry == "" {
		t.Fatalf("40 wrong bearer tokens answered %v (Retry-After %q), want 401s then 429s with Retry-After", codes, retry)
	}
	if code := h.admin(http.MethodGet, "/admin/status", nil); code != http.StatusTooManyRequests {
		t.Fatalf("the right token from the throttled client: %d, want 429", code)
	}
	if got := h.metric("hookd_admin_auth_failures_total", "reason=throttled"); got < 1 {
		t.Fatalf("hookd_admin_auth_failures_total{reason=throttled} = %v", got)
	}
	if n := strings.Count(h.logs.String(), `"msg":"admin token`); n == 0 || n > 4 {
		t.Fatalf("%d log lines for 41 refused tokens:\n%s", n, h.logs)
	}
}

// Headers are bounded far below Go's 1 MiB default: 64 KiB of them is refused with 431.
func TestOversizeHeadersRefused(t *testing.T) {
	h := startHookd(t, quietConfig, t.TempDir(), nil)
	req, _ := http.NewRequest(http.MethodGet, h.url+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %d, want 431", resp.StatusCode)
	}
}

// Idle keep-alive clients beyond the connection bound neither push the server past it nor keep
// a later request from being answered: idle connections are closed as connections run short.
func TestIdleConnectionsBoundedAndServerAnswers(t *testing.T) {
	const limit, clients = 40, 120
	reg := prometheus.NewRegistry()
	e := echo.New()
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newConnMetrics(reg)
	srv, ln := newHTTPServer(e, raw, limit, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	peak := 0.0
	open := func() float64 { return testutil.ToFloat64(m.open) }
	for i := range clients {
		c, err := net.DialTimeout("tcp", raw.Addr().String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// One request, then the connection stays open and idle, as a keep-alive client leaves it.
		if _, err := fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("idle client %d got no answer: %v", i, err)
		}
		resp.Body.Close()
		peak = max(peak, open())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+raw.Addr().String()+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("a request after %d idle clients: %v", clients, err)
	}
	resp.Body.Close()
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		return open() <= limit, fmt.Sprintf("%v connections open", open())
	})
	if peak > limit {
		t.Fatalf("%v connections were open at once, over the bound of %d", peak, limit)
	}
	if testutil.ToFloat64(m.idleClosed) == 0 {
		t.Fatal("no idle connection was closed early")
	}
}

// check-config given a secret file says what is wrong without quoting the file.
func TestCheckConfigNeverQuotesTheFile(t *testing.T) {
	for _, content := range []string{"ghp_SECRETabcdef0123456789\n", "- SECRETabcdef0123456789\n", "webhook: SECRETabcdef0123456789\n"} {
		path := writeFile(t, "secret.txt", content)
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"check-config", "--config", path}, env(nil), &stdout, &stderr)
		if err == nil || stderr.Len() == 0 {
			t.Fatalf("check-config accepted %q", content)
		}
		if strings.Contains(stderr.String(), "SECRET") {
			t.Fatalf("check-config quoted the file:\n%s", stderr.String())
		}
	}
}

// An admin token of a few characters is refused: throttled or not, it would be guessed.
func TestCheckConfigRefusesShortAdminToken(t *testing.T) {
	path := writeFile(t, "hookd.yaml", quietConfig)
	var stdout, stderr bytes.Buffer
	vars := map[string]string{"HOOKD_WEBHOOK_SECRET": testSecret, "HOOKD_ADMIN_TOKEN": "x"}
	if err := run(context.Background(), []string{"check-config", "--config", path}, env(vars), &stdout, &stderr); err == nil {
		t.Fatalf("a one-character admin token was accepted:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "admin token is too short") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
}
