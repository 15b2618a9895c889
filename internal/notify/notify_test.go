package notify_test

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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/notify"
	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/verify"
)

// waitLimit is how long a test waits for something that should happen at once; it only
// bounds a failing test.
const waitLimit = 20 * time.Second

var fastRetry = notify.Retry{Attempts: 5, First: time.Millisecond, Max: 10 * time.Millisecond, Elapsed: time.Minute, Timeout: 10 * time.Second}

type request struct {
	path   string
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a real HTTP endpoint on loopback that records what it is sent and answers
// with respond (200 when nil); n counts the requests before this one.
type receiver struct {
	srv *httptest.Server
	got chan request
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan request, 2048)}
	var count atomic.Int64
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.got <- request{path: r.URL.Path, header: r.Header.Clone(), body: body, at: time.Now()}
		n := int(count.Add(1) - 1)
		if respond != nil {
			respond(n, w, r)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-rc.got:
		return r
	case <-time.After(waitLimit):
		t.Fatal("no request reached the receiver")
		return request{}
	}
}

// hang makes a handler wait until the test ends or the client gives up.
func hang(t *testing.T) func(int, http.ResponseWriter, *http.Request) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the server's Close, registered earlier
	return func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
}

type harness struct {
	n    *notify.Notifier
	reg  *prometheus.Registry
	logs *testkit.SyncBuffer
}

func newHarness(t *testing.T, endpoints []config.Notify, opts ...notify.Option) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), logs: &testkit.SyncBuffer{}}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.n = notify.New(endpoints, notify.NewMetrics(h.reg), log, append([]notify.Option{notify.WithRetry(fastRetry), notify.WithVersion("1.2.3")}, opts...)...)
	return h
}

// run starts Run; the returned stop cancels it and fails the test unless Run returns.
func (h *harness) run(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.n.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitLimit):
			t.Error("Run did not return after its context ended")
		}
	})
	t.Cleanup(stop)
	return stop
}

func (h *harness) count(t *testing.T, endpoint, result string) float64 {
	t.Helper()
	return testkit.Sample(t, h.reg, "hookd_notifications_total", "endpoint="+endpoint, "result="+result)
}

// waitCount polls the counter until it reaches want.
func (h *harness) waitCount(t *testing.T, endpoint, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for h.count(t, endpoint, result) < want {
		if time.Now().After(deadline) {
			t.Fatalf("hookd_notifications_total{endpoint=%q,result=%q} = %v, want %v", endpoint, result, h.count(t, endpoint, result), want)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
	if got := h.count(t, endpoint, result); got != want {
		t.Fatalf("hookd_notifications_total{endpoint=%q,result=%q} = %v, want %v", endpoint, result, got, want)
	}
}

func result(job uint64, outcome hookd.Outcome) hookd.Result {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return hookd.Result{
		JobID: job, Runtime: "claude-code", Trigger: hookd.TriggerWebhook, Outcome: outcome,
		Image:     "ghcr.io/acme/claude-code:latest",
		Digest:    "sha256:" + strings.Repeat("ab", 30) + fmt.Sprintf("%04x", job), // a job per digest
		Recreated: []string{"cc-1", "cc-2"},
		Started:   start, Finished: start.Add(42 * time.Second),
	}
}

func TestJSONBodyIsSignedLikeGitHub(t *testing.T) {
	rc := newReceiver(t, nil)
	secret := []byte("notify-secret-7f3a")
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL + "/hookd", Format: "json", Secret: secret}})
	h.run(t)

	res := result(7, "rolled_back")
	res.RolledBack = []string{"cc-1"}
	res.Reason = "cc-1 exited with code 3 during the health gate"
	res.Failed = []hookd.Failure{{Ref: "cc-1", Reason: "exited 3"}}
	h.n.Notify(res)

	got := rc.next(t)
	v, err := verify.NewGitHub([][]byte{secret})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(got.body, got.header.Get(notify.HeaderSignature)); err != nil {
		t.Fatalf("signature %q does not verify: %v", got.header.Get(notify.HeaderSignature), err)
	}
	if err := v.Verify(append(got.body, ' '), got.header.Get(notify.HeaderSignature)); err == nil {
		t.Fatal("signature verifies a different body")
	}
	if e := got.header.Get(notify.HeaderEvent); e != "rollout" {
		t.Errorf("%s = %q, want rollout", notify.HeaderEvent, e)
	}
	if got.header.Get(notify.HeaderDelivery) == "" {
		t.Errorf("no %s", notify.HeaderDelivery)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}

	var body map[string]any
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, got.body)
	}
	for _, k := range []string{"runtime", "result", "digest", "image", "reason", "recreated", "rolled_back", "failed", "notes", "started", "finished", "job_id", "trigger", "hookd"} {
		if _, ok := body[k]; !ok {
			t.Errorf("body has no %q: %s", k, got.body)
		}
	}
	var r notify.Rollout
	if err := json.Unmarshal(got.body, &r); err != nil {
		t.Fatal(err)
	}
	if r.Runtime != "claude-code" || r.Result != "rolled_back" || r.Digest != res.Digest || r.Image != res.Image ||
		r.Reason != res.Reason || r.JobID != 7 || r.Trigger != "webhook" || r.Hookd.Version != "1.2.3" ||
		len(r.RolledBack) != 1 || len(r.Recreated) != 2 || len(r.Failed) != 1 || !r.Finished.Equal(res.Finished) {
		t.Errorf("body = %+v", r)
	}
	h.waitCount(t, "audit", "sent", 1)
}

func TestJSONListsAreNeverNullAndUnsignedWithoutSecret(t *testing.T) {
	rc := newReceiver(t, nil)
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL}})
	h.run(t)
	res := result(1, "failed")
	res.Recreated, res.Digest, res.Reason = nil, "", "resolve ghcr.io/acme/claude-code:latest: 404"
	h.n.Notify(res)

	got := rc.next(t)
	if s := got.header.Get(notify.HeaderSignature); s != "" {
		t.Errorf("signed without a secret: %q", s)
	}
	for _, k := range []string{`"recreated":[]`, `"rolled_back":[]`, `"failed":[]`, `"notes":[]`} {
		if !bytes.Contains(got.body, []byte(k)) {
			t.Errorf("body lacks %s: %s", k, got.body)
		}
	}
}

func TestSlackBody(t *testing.T) {
	rc := newReceiver(t, nil)
	h := newHarness(t, []config.Notify{{Name: "ops-slack", URL: rc.srv.URL + "/services/T0/B0/x", Format: "slack"}})
	h.run(t)

	cases := []struct {
		outcome hookd.Outcome
		want    []string
	}{
		{"rolled_out", []string{"✅", "claude-code rolled out", "ghcr.io/acme/claude-code:latest", "sha256:abababababab", "2 containers recreated", "42s"}},
		{"rolled_back", []string{"↩️", "claude-code rolled back", "health gate &lt;30s&gt;"}},
		{"failed", []string{"❌", "claude-code failed"}},
	}
	for i, c := range cases {
		res := result(uint64(i+1), c.outcome)
		if c.outcome == "rolled_back" {
			res.Reason = "health gate <30s>"
		}
		h.n.Notify(res)
		got := rc.next(t)
		var body map[string]any
		if err := json.Unmarshal(got.body, &body); err != nil {
			t.Fatalf("body is not JSON: %v\n%s", err, got.body)
		}
		text, ok := body["text"].(string)
		if !ok || len(body) != 1 {
			t.Fatalf("body = %s, want only a text string", got.body)
		}
		if strings.Contains(text, "\n") {
			t.Errorf("summary is not one line: %q", text)
		}
		for _, w := range c.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: text %q lacks %q", c.outcome, text, w)
			}
		}
	}
}

func TestOnlyTheResultsAnEndpointAskedFor(t *testing.T) {
	rc := newReceiver(t, nil)
	h := newHarness(t, []config.Notify{
		{Name: "failures", URL: rc.srv.URL + "/failures", Results: []hookd.Outcome{"failed"}},
		{Name: "default", URL: rc.srv.URL + "/default"},
	})
	h.run(t)
	// An endpoint's notifications arrive in order, so one that was filtered out would arrive
	// before the one sent after it.
	h.n.Notify(result(1, "up_to_date"))
	h.n.Notify(result(2, "rolled_out"))
	h.n.Notify(result(3, "failed"))

	jobs := map[string][]uint64{}
	for range 3 {
		got := rc.next(t)
		var r notify.Rollout
		if err := json.Unmarshal(got.body, &r); err != nil {
			t.Fatal(err)
		}
		jobs[got.path] = append(jobs[got.path], r.JobID)
	}
	if f, d := jobs["/failures"], jobs["/default"]; len(f) != 1 || f[0] != 3 || len(d) != 2 || d[0] != 2 || d[1] != 3 {
		t.Errorf("jobs per endpoint = %v, want /failures [3] and /default [2 3]", jobs)
	}
	h.waitCount(t, "failures", "sent", 1)
	h.waitCount(t, "default", "sent", 2)
}

func TestRetriesAfter500WithTheSameDeliveryID(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n < 2 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL, Secret: []byte("s")}})
	h.run(t)
	h.n.Notify(result(1, "rolled_out"))

	first := rc.next(t)
	id := first.header.Get(notify.HeaderDelivery)
	for range 2 {
		again := rc.next(t)
		if got := again.header.Get(notify.HeaderDelivery); got != id {
			t.Errorf("retry has delivery id %q, want %q", got, id)
		}
		if !bytes.Equal(again.body, first.body) || again.header.Get(notify.HeaderSignature) != first.header.Get(notify.HeaderSignature) {
			t.Error("a retry sends a different body or signature")
		}
	}
	h.waitCount(t, "audit", "sent", 1)
	if got := h.count(t, "audit", "retried"); got != 2 {
		t.Errorf("retried = %v, want 2", got)
	}
	if got := h.count(t, "audit", "failed"); got != 0 {
		t.Errorf("failed = %v, want 0", got)
	}
}

func TestGivesUpAfterRepeated500s(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	})
	r := fastRetry
	r.Attempts = 3
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL}}, notify.WithRetry(r))
	stop := h.run(t)
	h.n.Notify(result(1, "failed"))

	h.waitCount(t, "audit", "failed", 1)
	if got := len(rc.got); got != 3 {
		t.Errorf("receiver got %d requests, want 3", got)
	}
	if got := h.count(t, "audit", "retried"); got != 2 {
		t.Errorf("retried = %v, want 2", got)
	}
	if !strings.Contains(h.logs.String(), "receiver answered 502") {
		t.Errorf("the give-up is not logged with its cause:\n%s", h.logs)
	}
	stop() // fails the test unless Run returns
}

func TestShutdownInterruptsABackoff(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	r := fastRetry
	r.First, r.Max, r.Elapsed = time.Hour, time.Hour, 24*time.Hour
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL}}, notify.WithRetry(r), notify.WithDrainTimeout(50*time.Millisecond))
	stop := h.run(t)
	h.n.Notify(result(1, "failed"))
	rc.next(t)
	h.waitCount(t, "audit", "retried", 1) // now waiting an hour before the next try

	stop()
	if got := h.count(t, "audit", "failed"); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
}

func TestClientErrorIsNotRetried(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL}})
	h.run(t)
	h.n.Notify(result(1, "rolled_out"))
	h.n.Notify(result(2, "rolled_out"))

	// Notifications to one endpoint go in order: a retry of the first would come before the second.
	a, b := rc.next(t), rc.next(t)
	if a.header.Get(notify.HeaderDelivery) == b.header.Get(notify.HeaderDelivery) {
		t.Fatal("the 400 was retried")
	}
	h.waitCount(t, "audit", "sent", 1)
	if got := h.count(t, "audit", "failed"); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
	if got := h.count(t, "audit", "retried"); got != 0 {
		t.Errorf("retried = %v, want 0", got)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	elsewhere := newReceiver(t, nil)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.srv.URL, http.StatusTemporaryRedirect)
	})
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL, Secret: []byte("s")}})
	h.run(t)
	h.n.Notify(result(1, "rolled_out"))
	rc.next(t)
	h.waitCount(t, "audit", "failed", 1)
	if got := len(elsewhere.got); got != 0 {
		t.Errorf("the signed body was sent on to the redirect target (%d requests)", got)
	}
}

func TestHonoursRetryAfterOn429(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL}})
	h.run(t)
	h.n.Notify(result(1, "rolled_out"))
	a, b := rc.next(t), rc.next(t)
	// A lower bound: the retry cannot come early however slow the machine is.
	if gap := b.at.Sub(a.at); gap < time.Second {
		t.Errorf("retried %v after a 429 with Retry-After: 1", gap)
	}
	h.waitCount(t, "audit", "sent", 1)
}

func TestRetryAfterBeyondTheBudgetGivesUp(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL}})
	h.run(t)
	h.n.Notify(result(1, "rolled_out"))
	h.waitCount(t, "audit", "failed", 1)
	if got := h.count(t, "audit", "retried"); got != 0 {
		t.Errorf("retried = %v, want 0", got)
	}
}

func TestFullQueueDropsTheOldest(t *testing.T) {
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce)
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL}}, notify.WithQueueSize(2))
	h.run(t)

	h.n.Notify(result(1, "rolled_out"))
	rc.next(t) // job 1 is in flight, held by the receiver
	for job := uint64(2); job <= 4; job++ {
		h.n.Notify(result(job, "rolled_out"))
	}
	if got := h.count(t, "audit", "dropped"); got != 1 {
		t.Errorf("dropped = %v, want 1", got)
	}
	releaseOnce()

	var jobs []uint64
	for range 2 {
		var r notify.Rollout
		if err := json.Unmarshal(rc.next(t).body, &r); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, r.JobID)
	}
	if jobs[0] != 3 || jobs[1] != 4 {
		t.Errorf("delivered jobs %v after job 1, want [3 4] (2 was the oldest queued)", jobs)
	}
	h.waitCount(t, "audit", "sent", 3)
}

func TestNotifyNeverBlocksWhenTheReceiverHangs(t *testing.T) {
	rc := newReceiver(t, hang(t))
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL}, {Name: "audit-2", URL: rc.srv.URL}},
		notify.WithQueueSize(10), notify.WithDrainTimeout(50*time.Millisecond))
	stop := h.run(t)
	h.n.Notify(result(0, "rolled_out"))
	rc.next(t)
	rc.next(t) // both endpoints are now stuck on a receiver that never answers

	done := make(chan struct{})
	go func() {
		defer close(done)
		for job := uint64(1); job <= 1000; job++ {
			h.n.Notify(result(job, "rolled_out"))
		}
	}()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Notify blocked")
	}
	for _, ep := range []string{"audit", "audit-2"} {
		if got := h.count(t, ep, "dropped"); got != 990 {
			t.Errorf("%s: dropped = %v, want 990", ep, got)
		}
	}

	// Stopping gives up the hung request and drops what is still queued.
	stop()
	for _, ep := range []string{"audit", "audit-2"} {
		if f, d := h.count(t, ep, "failed"), h.count(t, ep, "dropped"); f != 1 || d != 1000 {
			t.Errorf("%s after stop: failed = %v, dropped = %v; want 1 and 1000", ep, f, d)
		}
	}
}

func TestShutdownDeliversWhatIsQueued(t *testing.T) {
	rc := newReceiver(t, nil)
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL}})
	for job := uint64(1); job <= 3; job++ {
		h.n.Notify(result(job, "rolled_out"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // hookd is already stopping when Run starts
	if err := h.n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.count(t, "audit", "sent"); got != 3 {
		t.Errorf("sent = %v, want 3", got)
	}
	if got := len(rc.got); got != 3 {
		t.Errorf("receiver got %d, want 3", got)
	}
}

func TestNoEndpoints(t *testing.T) {
	h := newHarness(t, nil)
	h.n.Notify(result(1, "rolled_out")) // must not block or panic
	done := make(chan error, 1)
	go func() { done <- h.n.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run with no endpoints should return at once")
	}
}

func TestURLAndSecretNeverLogged(t *testing.T) {
	const pathSecret = "/services/T0SECRET/B0SECRET/xoxSECRETtoken"
	secret := []byte("hmac-SECRET-value")

	refusing := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	hung := newReceiver(t, hang(t))
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL + pathSecret + "?token=SECRETquery"
	gone.Close() // connection refused from now on

	endpoints := []config.Notify{
		{Name: "refusing", URL: refusing.srv.URL + pathSecret, Secret: secret},
		{Name: "gone", URL: goneURL, Format: "slack", Secret: secret},
		{Name: "hung", URL: hung.srv.URL + pathSecret + "?token=SECRETquery", Secret: secret},
	}
	r := fastRetry
	r.Attempts, r.Timeout = 2, 100*time.Millisecond
	h := newHarness(t, endpoints, notify.WithRetry(r))
	h.run(t)
	h.n.Notify(result(1, "failed"))
	h.n.Notify(result(2, "failed"))
	for _, ep := range []string{"refusing", "gone", "hung"} {
		h.waitCount(t, ep, "failed", 2)
	}

	logs := h.logs.String()
	for _, ep := range endpoints {
		if !strings.Contains(logs, "endpoint="+ep.Name) {
			t.Errorf("no log line names endpoint %s:\n%s", ep.Name, logs)
		}
	}
	for _, leak := range []string{"SECRET", refusing.srv.URL + pathSecret, goneURL} {
		if strings.Contains(logs, leak) {
			t.Errorf("logs contain %q:\n%s", leak, logs)
		}
	}
	for _, cause := range []string{"receiver answered 403", "connection refused", "timed out"} {
		if !strings.Contains(logs, cause) {
			t.Errorf("logs do not give the cause %q:\n%s", cause, logs)
		}
	}
	var metrics bytes.Buffer
	mfs, _ := h.reg.Gather()
	for _, mf := range mfs {
		metrics.WriteString(mf.String())
	}
	if strings.Contains(metrics.String(), "SECRET") || strings.Contains(metrics.String(), "127.0.0.1") {
		t.Errorf("metrics name an endpoint by its URL: %s", metrics.String())
	}
}

// A signed body replayed with fresh delivery ids makes jobs that end alike: the runtime's
// result is told once per outcome and digest, not once per job, unless a person asked.
func TestRepeatedResultToldOnce(t *testing.T) {
	rc := newReceiver(t, nil)
	h := newHarness(t, []config.Notify{{Name: "audit", URL: rc.srv.URL, Results: []hookd.Outcome{"rolled_out", "up_to_date"}}})
	h.run(t)
	first := result(1, "rolled_out")
	h.n.Notify(first)
	for job := uint64(2); job <= 4; job++ {
		again := first
		again.JobID = job
		h.n.Notify(again)
	}
	manual := first
	manual.JobID, manual.Trigger = 5, hookd.TriggerAdmin
	h.n.Notify(manual)
	h.n.Notify(result(6, "rolled_out")) // a new digest
	h.waitCount(t, "audit", "sent", 3)
	if got := h.count(t, "audit", "repeated"); got != 3 {
		t.Fatalf("repeated = %v, want 3", got)
	}
	var jobs []uint64
	for range 3 {
		var r notify.Rollout
		if err := json.Unmarshal(rc.next(t).body, &r); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, r.JobID)
	}
	if jobs[0] != 1 || jobs[1] != 5 || jobs[2] != 6 {
		t.Fatalf("told jobs %v, want [1 5 6]", jobs)
	}
}

// nxdomain answers every DNS query on a loopback UDP port with "no such name".
func nxdomain(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			reply := append([]byte(nil), buf[:n]...)
			reply[2] = 0x81 | (buf[2] & 0x01) // response, recursion desired as asked
			reply[3] = 0x83                   // recursion available, NXDOMAIN
			reply[6], reply[7], reply[8], reply[9], reply[10], reply[11] = 0, 0, 0, 0, 0, 0
			_, _ = pc.WriteTo(reply, addr)
		}
	}()
	return pc.LocalAddr().String()
}

// A host name can carry a secret (a token as a subdomain): a failed lookup logs the cause,
// never the name.
func TestDNSFailureNeverNamesTheHost(t *testing.T) {
	dns := nxdomain(t)
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dns)
	}}
	transport := &http.Transport{DialContext: (&net.Dialer{Resolver: resolver}).DialContext}
	r := fastRetry
	r.Attempts = 1
	h := newHarness(t, []config.Notify{{Name: "chat", URL: "https://tok3nSECRETsub.hooks.example/x"}}, notify.WithRetry(r), notify.WithTransport(transport))
	h.run(t)
	h.n.Notify(result(1, "failed"))
	h.waitCount(t, "chat", "failed", 1)
	logs := h.logs.String()
	if strings.Contains(logs, "SECRET") {
		t.Fatalf("the host name reached the log:\n%s", logs)
	}
	if !strings.Contains(logs, "DNS lookup") {
		t.Fatalf("the log does not say the lookup failed:\n%s", logs)
	}
}
