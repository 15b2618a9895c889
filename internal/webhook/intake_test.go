package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/refresh"
	"github.com/hookd/hookd/internal/store"
	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/verify"
	"github.com/hookd/hookd/internal/webhook"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// guarded is the real intake over real HTTP with a given in-flight bound, its recent list and
// its log.
type guarded struct {
	url    string
	reg    *prometheus.Registry
	recent *webhook.Recent
	logs   *testkit.SyncBuffer
}

func startGuarded(t *testing.T, maxBody int64, opts ...webhook.Option) *guarded {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g := &guarded{reg: prometheus.NewRegistry(), recent: webhook.NewRecent(50), logs: &testkit.SyncBuffer{}}
	log := slog.New(slog.NewJSONHandler(g.logs, nil))
	cat := catalog.New([]hookd.Runtime{{Name: "claude-code", Image: "ghcr.io/molecule-ai/workspace-template-claude-code:latest"}}, nil, 0)
	svc := refresh.New(st, cat, nil, nil, 0, refresh.NewMetrics(g.reg), log)
	v, err := verify.NewGitHub([][]byte{secret})
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	h := webhook.New(v, cat, refresh.NewFleet(st, svc), host, maxBody, webhook.NewMetrics(g.reg), g.recent, log, opts...)
	e.POST("/hooks/ghcr", h.Handle)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	g.url = srv.URL + "/hooks/ghcr"
	return g
}

// holdSlow opens n connections that each announce a body of claim bytes, send sent bytes of it
// and then nothing, and waits until the intake has charged what they sent (twice) to its budget.
func (g *guarded) holdSlow(t *testing.T, n int, claim, sent int64) []net.Conn {
	t.Helper()
	var conns []net.Conn
	addr := strings.TrimPrefix(g.url, "http://")
	addr = addr[:strings.Index(addr, "/")]
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /hooks/ghcr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: package\r\nContent-Length: %d\r\n\r\n%s",
			claim, bytes.Repeat([]byte{' '}, int(sent)))
	}
	want := fmt.Sprintf("# HELP hookd_webhook_in_flight Webhook requests being read and verified now.\n# TYPE hookd_webhook_in_flight gauge\nhookd_webhook_in_flight %d\n"+
		"# HELP hookd_webhook_body_bytes Memory charged to webhook bodies not yet verified (bounded; past it hookd answers 503).\n# TYPE hookd_webhook_body_bytes gauge\nhookd_webhook_body_bytes %d\n", n, 2*sent*int64(n))
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		err := testutil.GatherAndCompare(g.reg, strings.NewReader(want), "hookd_webhook_in_flight", "hookd_webhook_body_bytes")
		return err == nil, fmt.Sprint(err)
	})
	return conns
}

func ping(t *testing.T, url string) (int, map[string]any, http.Header) {
	t.Helper()
	d := webhooktest.Delivery{Event: "ping", ID: "p-" + fmt.Sprint(time.Now().UnixNano()), Body: []byte(`{"zen":"z","hook_id":1}`), Secret: secret}
	req, err := webhooktest.Request(context.Background(), url, d)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &answer)
	return resp.StatusCode, answer, resp.Header
}

// Requests that claim a large body and send nothing hold memory for what arrived only, not
// for what they claimed (the attack pass: 1,000 such connections took 1 GB), and a delivery
// is answered meanwhile.
func TestClaimedBodiesHoldNoMemory(t *testing.T) {
	const n = 100
	g := startGuarded(t, 1<<20)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g.holdSlow(t, n, 1<<20, 0)
	var during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&during)
	grown := int64(during.HeapAlloc) - int64(before.HeapAlloc)
	// 100 × 1 MiB claimed; what is kept must be a small part of it.
	if grown > n<<20/4 {
		t.Fatalf("the heap grew by %d MiB for %d connections that sent no body byte", grown>>20, n)
	}
	if code, answer, _ := ping(t, g.url); code != http.StatusOK {
		t.Fatalf("a signed ping while %d bodies stall: %d %v", n, code, answer)
	}
}

// Past the budget for unverified bodies a request is answered 503 at once, with a reason and
// Retry-After; intake takes deliveries again once the slow senders are gone.
func TestIntakeBudgetSpentAnswersBusy(t *testing.T) {
	const maxBody = 64 << 10 // the budget is then its least, 4 × maxBody = 256 KiB
	g := startGuarded(t, maxBody, webhook.WithBodyBudget(0))
	slow := g.holdSlow(t, 4, maxBody, maxBody/2) // 4 × 32 KiB sent, charged twice: all of it
	code, answer, h := ping(t, g.url)
	if code != http.StatusServiceUnavailable || answer["error"] == nil || h.Get("Retry-After") == "" {
		t.Fatalf("with the budget spent: %d %v Retry-After=%q, want 503 with an error and Retry-After", code, answer, h.Get("Retry-After"))
	}
	if rejected, _ := g.recent.Rejected(); len(rejected) == 0 || rejected[0].Outcome != webhook.OutcomeBusy {
		t.Fatalf("rejected list %+v, want the busy answer first", rejected)
	}
	for _, c := range slow {
		c.Close()
	}
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		code, answer, _ := ping(t, g.url)
		return code == http.StatusOK, fmt.Sprintf("ping after the slow senders left: %d %v", code, answer)
	})
}

// Unsigned requests are listed apart from deliveries: 60 of them do not hide a real one.
func TestRejectedRequestsKeptApart(t *testing.T) {
	g := startGuarded(t, 1<<20)
	if code, _, _ := ping(t, g.url); code != http.StatusOK {
		t.Fatalf("signed ping: %d", code)
	}
	for i := range 60 {
		d := webhooktest.Delivery{Event: "package", ID: fmt.Sprint("u", i), Body: []byte(`{}`), Secret: []byte("guess")}
		if code, _, err := webhooktest.Send(context.Background(), http.DefaultClient, g.url, d); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("unsigned request: %d %v", code, err)
		}
	}
	list := g.recent.List()
	if len(list) != 1 || list[0].Outcome != webhook.OutcomePong {
		t.Fatalf("deliveries listed: %+v, want only the ping", list)
	}
	rejected, total := g.recent.Rejected()
	if total != 60 || len(rejected) == 0 || rejected[0].Code != http.StatusUnauthorized {
		t.Fatalf("rejected: %d listed, %d counted, want 60 counted", len(rejected), total)
	}
	// A signed delivery hookd does not act on is logged too, with its reason.
	ignored := webhooktest.Delivery{Event: "issues", ID: "i1", Body: []byte(`{"action":"opened"}`), Secret: secret}
	if code, _, err := webhooktest.Send(context.Background(), http.DefaultClient, g.url, ignored); err != nil || code != http.StatusAccepted {
		t.Fatalf("ignored event: %d %v", code, err)
	}
	if !strings.Contains(g.logs.String(), `"msg":"webhook delivery not acted on"`) || !strings.Contains(g.logs.String(), `is not handled`) {
		t.Fatalf("the ignored delivery is not in the log:\n%s", g.logs)
	}
	// Logged, so a wrong secret shows in the log, but not once per request.
	lines := strings.Count(g.logs.String(), `"msg":"webhook request rejected"`)
	if lines == 0 || lines > 6 {
		t.Fatalf("%d log lines for 60 rejected requests, want at least one and a few at most:\n%s", lines, g.logs)
	}
}
