package fallbackpoll_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/admin"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/fallbackpoll"
	"github.com/hookd/hookd/internal/refresh"
	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/store"
	"github.com/hookd/hookd/internal/testkit"
)

// world is the real pieces a poller runs against: engine, state, registry client and the
// refresh service whose queue it submits to (not run, so queued jobs stay visible as pending).
type world struct {
	tb      testing.TB
	cli     *client.Client
	eng     *engine.Engine
	store   *store.Store
	client  *registry.Client
	metrics *prometheus.Registry
	log     *slog.Logger
}

func newWorld(tb testing.TB, pace time.Duration) *world {
	tb.Helper()
	cli := testkit.Docker(tb)
	eng, err := engine.New()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close() })
	st, err := store.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	metrics := prometheus.NewRegistry()
	c, err := registry.New(authn.NewMultiKeychain(), registry.NewPacer(nil, pace, metrics))
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return &world{tb: tb, cli: cli, eng: eng, store: st, client: c, metrics: metrics, log: log}
}

func (w *world) poller(runtimes []hookd.Runtime, interval time.Duration) *fallbackpoll.Poller {
	cat := catalog.New(runtimes, w.eng, time.Minute)
	w.metrics.MustRegister(admin.NewBehindCollector(cat, w.store))
	svc := refresh.New(w.store, cat, w.client, w.eng, 0, refresh.NewMetrics(w.metrics), w.log)
	return fallbackpoll.New(cat, w.client, w.eng, w.store, svc, interval, fallbackpoll.NewMetrics(w.metrics), w.log)
}

// checks returns hookd_poll_checks_total{result}.
func (w *world) checks(result string) float64 {
	return w.sample("hookd_poll_checks_total", "result", result)
}

func (w *world) sample(name, label, value string) float64 {
	w.tb.Helper()
	return testkit.Sample(w.tb, w.metrics, name, label+"="+value)
}

// pull has the engine pull ref, as a rollout would have.
func (w *world) pull(ref string) {
	w.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := w.cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		w.tb.Fatalf("pull %s: %v", ref, err)
	}
	defer rc.Close()
	out, err := io.ReadAll(rc)
	if err != nil || bytes.Contains(out, []byte(`"error"`)) {
		w.tb.Fatalf("pull %s: %v %s", ref, err, out)
	}
}

// unique is the test app at version, with the test's id in the image, so no image of another
// test running at the same time has the same id (the engine shares it, and cleanups remove
// images by id).
func unique(tb testing.TB, version string) testkit.App {
	return testkit.App{Version: version, Env: []string{"HOOKD_TEST_ID=" + testkit.TestID(tb)}}
}

func pullOnly(tb testing.TB, name, img string) hookd.Runtime {
	tb.Helper()
	norm, err := config.NormalizeImage(img)
	if err != nil {
		tb.Fatal(err)
	}
	rt := hookd.NewRuntime(name, norm)
	rt.Recreate = false
	return rt
}

// tokenRegistry wraps the testkit registry in GHCR-style token auth and counts what it sees:
// /v2/ requests without a valid token get 401 and a challenge naming /token on the same host.
type tokenRegistry struct {
	mu       sync.Mutex
	seq      int
	tokens   map[string][]string
	issued   map[string]int
	requests int
}

func (a *tokenRegistry) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			a.mu.Lock()
			a.requests++
			a.seq++
			tok := fmt.Sprintf("token-%d", a.seq)
			a.tokens[tok] = r.URL.Query()["scope"]
			for _, s := range a.tokens[tok] {
				a.issued[s]++
			}
			a.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_in": 300})
			return
		}
		scope := ""
		rest := strings.TrimPrefix(r.URL.Path, "/v2/")
		for _, kind := range []string{"/manifests/", "/blobs/", "/tags/"} {
			if i := strings.LastIndex(rest, kind); i > 0 {
				scope = "repository:" + rest[:i] + ":pull"
				break
			}
		}
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.mu.Lock()
		a.requests++
		scopes, ok := a.tokens[tok]
		a.mu.Unlock()
		if ok && scope != "" {
			ok = false
			for _, s := range scopes {
				ok = ok || strings.Contains(" "+s+" ", " "+scope+" ")
			}
		}
		if !ok {
			challenge := fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host)
			if scope != "" {
				challenge += fmt.Sprintf(`,scope=%q`, scope)
			}
			w.Header().Set("WWW-Authenticate", challenge)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *tokenRegistry) counts() (int, map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	issued := map[string]int{}
	for k, v := range a.issued {
		issued[k] = v
	}
	return a.requests, issued
}

func newTokenRegistry(tb testing.TB) (*tokenRegistry, *testkit.Registry) {
	a := &tokenRegistry{tokens: map[string][]string{}, issued: map[string]int{}}
	return a, testkit.StartRegistry(tb, a.wrap)
}

func TestPassRequestsPerRuntime(t *testing.T) {
	w := newWorld(t, time.Millisecond)
	auth, reg := newTokenRegistry(t)
	testkit.Cleanup(t, w.cli, reg.Host)
	const runtimes, passes = 20, 100
	var rts []hookd.Runtime
	for i := range runtimes {
		repo := fmt.Sprintf("org/app-%02d", i)
		d := reg.Push(t, repo, "latest", unique(t, repo))
		w.pull(reg.Host + "/" + repo + "@" + d)
		rts = append(rts, pullOnly(t, repo, reg.Host+"/"+repo+":latest"))
	}
	p := w.poller(rts, time.Hour)
	before, issuedBefore := auth.counts()
	ctx := context.Background()
	for range passes {
		p.Pass(ctx)
	}
	after, issuedAfter := auth.counts()
	perRuntimePass := float64(after-before) / float64(runtimes*passes)
	t.Logf("%d passes of %d runtimes: %d registry requests (tokens included), %.4f per runtime per pass", passes, runtimes, after-before, perRuntimePass)
	if perRuntimePass > 1.05 {
		t.Errorf("%.4f registry requests per runtime per pass, want at most 1.05", perRuntimePass)
	}
	for scope, n := range issuedAfter {
		if n-issuedBefore[scope] > 1 {
			t.Errorf("%d tokens fetched for %s, want one reused", n-issuedBefore[scope], scope)
		}
	}
	if got := w.checks(fallbackpoll.ResultUpToDate); got != runtimes*passes {
		t.Errorf("up_to_date checks: %v, want %d (errors %v)", got, runtimes*passes, w.checks(fallbackpoll.ResultError))
	}
	if w.gauge("hookd_poll_last_success_timestamp_seconds") == 0 {
		t.Error("hookd_poll_last_success_timestamp_seconds not set after clean passes")
	}
}

func (w *world) gauge(name string) float64 {
	w.tb.Helper()
	return testkit.Sample(w.tb, w.metrics, name)
}

// limitedHost records when requests reach a registry and in which pass, and answers 429 with
// Retry-After: 2 to the first manifest request once armed.
type limitedHost struct {
	pass  *atomic.Int64
	mu    sync.Mutex
	armed bool
	hits  []hit
	limit *hit
}

type hit struct {
	at   time.Time
	pass int64
}

func (l *limitedHost) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := hit{at: time.Now(), pass: l.pass.Load()}
		l.mu.Lock()
		l.hits = append(l.hits, h)
		fire := l.armed && strings.Contains(r.URL.Path, "/manifests/")
		if fire {
			l.armed = false
			l.limit = &h
		}
		l.mu.Unlock()
		if fire {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (l *limitedHost) snapshot() ([]hit, *hit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]hit(nil), l.hits...), l.limit
}

func TestPassLimitedHostLeavesOtherHostAlone(t *testing.T) {
	w := newWorld(t, time.Millisecond)
	var pass atomic.Int64
	a := &limitedHost{pass: &pass}
	b := &limitedHost{pass: &pass}
	regA := testkit.StartRegistry(t, a.wrap)
	regB := testkit.StartRegistry(t, b.wrap) // another port: another host to the Pacer
	testkit.Cleanup(t, w.cli, regA.Host)
	testkit.Cleanup(t, w.cli, regB.Host)
	var rts []hookd.Runtime
	for _, reg := range []*testkit.Registry{regA, regB} {
		for i := range 3 {
			repo := fmt.Sprintf("org/app-%d", i)
			reg.Push(t, repo, "latest", unique(t, repo))
			rts = append(rts, pullOnly(t, reg.Host+"-"+repo, reg.Host+"/"+repo+":latest"))
		}
	}
	p := w.poller(rts, time.Hour)
	ctx := context.Background()
	p.Pass(ctx) // tokens and pings out of the way
	a.mu.Lock()
	a.armed = true
	a.mu.Unlock()

	// Pass after pass until host A is asked again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		pass.Add(1)
		p.Pass(ctx)
		hits, limit := a.snapshot()
		if limit != nil && hits[len(hits)-1].pass > limit.pass {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host A never asked again after its 429 (limit %+v)", limit)
		}
	}
	hitsA, limit := a.snapshot()
	// Requests already on their way in the pass that met the 429 are not the Pacer's to stop;
	// every later pass must leave A alone until the 2 s are over.
	for _, h := range hitsA {
		if h.pass > limit.pass && h.at.Sub(limit.at) < 2*time.Second {
			t.Fatalf("host A asked %s after its 429 with Retry-After: 2", h.at.Sub(limit.at))
		}
	}
	hitsB, _ := b.snapshot()
	during := 0
	for _, h := range hitsB {
		if h.at.After(limit.at) && h.at.Sub(limit.at) < 2*time.Second {
			during++
		}
	}
	t.Logf("while A waited 2s: %d requests to B, %v checks rate_limited, %v requests refused by the Pacer",
		during, w.checks(fallbackpoll.ResultLimited), w.sample("hookd_registry_requests_total", "class", "rate_limited"))
	if during == 0 {
		t.Fatal("host B's runtimes were not checked while host A asked to wait")
	}
	if w.checks(fallbackpoll.ResultLimited) == 0 || w.sample("hookd_registry_requests_total", "class", "429") != 1 {
		t.Fatalf("rate_limited checks %v, 429 answers %v", w.checks(fallbackpoll.ResultLimited), w.sample("hookd_registry_requests_total", "class", "429"))
	}
}

func TestPassSkipsFailedDigestButNotANewerOne(t *testing.T) {
	w := newWorld(t, time.Millisecond)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, w.cli, reg.Host)
	repo := reg.Host + "/org/app"
	d1 := reg.Push(t, "org/app", "latest", unique(t, "v1"))
	w.pull(repo + "@" + d1)
	p := w.poller([]hookd.Runtime{pullOnly(t, "app", repo+":latest")}, time.Hour)
	ctx := context.Background()
	p.Pass(ctx)
	if got := w.checks(fallbackpoll.ResultUpToDate); got != 1 {
		t.Fatalf("first pass: up_to_date %v, want 1", got)
	}

	// A push whose rollout was rolled back, recorded as the rollback records it.
	bad := reg.Push(t, "org/app", "latest", testkit.App{Version: "bad-" + testkit.TestID(t), Mode: "exit"})
	if _, err := w.store.UpdateRecord("app", func(r *store.Record) {
		r.FailedDigest, r.FailedAt, r.FailedReason = bad, time.Now(), "exited with code 1"
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p.Pass(ctx)
	}
	if got := w.checks(fallbackpoll.ResultFailed); got != 3 {
		t.Fatalf("failed_digest checks %v, want 3", got)
	}
	if j, ok, err := w.store.Pending("app"); err != nil || ok {
		t.Fatalf("failed digest queued again: %+v %v", j, err)
	}
	if got := w.sample("hookd_runtime_behind", "runtime", "app"); got != 1 {
		t.Fatalf("hookd_runtime_behind = %v, want 1", got)
	}

	newer := reg.Push(t, "org/app", "latest", unique(t, "v3"))
	p.Pass(ctx)
	j, ok, err := w.store.Pending("app")
	if err != nil || !ok || j.Hint != newer || j.Trigger != hookd.TriggerPoll {
		t.Fatalf("newer digest: pending %+v %v %v, want a poll job for %s", j, ok, err, newer)
	}
	rec, err := w.store.Record("app")
	if err != nil || rec.SeenDigest != newer || rec.SeenVia != hookd.TriggerPoll || rec.RunningDigest != d1 {
		t.Fatalf("record %+v %v: want seen %s via poll, running %s", rec, err, newer, d1)
	}
}

func TestPassComparesIndexDigests(t *testing.T) {
	w := newWorld(t, time.Millisecond)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, w.cli, reg.Host)
	repo := reg.Host + "/org/multi"
	index, _ := reg.PushIndex(t, "org/multi", "latest", unique(t, "v1"))
	w.pull(repo + "@" + index)
	p := w.poller([]hookd.Runtime{pullOnly(t, "multi", repo+":latest")}, time.Hour)
	ctx := context.Background()
	p.Pass(ctx)
	p.Pass(ctx)
	// The index holds an attestation manifest beside the image: neither it nor the image digest
	// is taken for a change.
	if got := w.checks(fallbackpoll.ResultUpToDate); got != 2 {
		t.Fatalf("up_to_date %v, want 2 (queued %v)", got, w.checks(fallbackpoll.ResultQueued))
	}
	if j, ok, _ := w.store.Pending("multi"); ok {
		t.Fatalf("queued %+v for an image the engine holds", j)
	}
	next, _ := reg.PushIndex(t, "org/multi", "latest", unique(t, "v2"))
	p.Pass(ctx)
	if j, ok, _ := w.store.Pending("multi"); !ok || j.Hint != next {
		t.Fatalf("new index %s: pending %+v %v", next, j, ok)
	}
}

// BenchmarkPass500 makes passes over 500 pull-only runtimes (50 repositories, 10 tags each, all
// held by the engine) against the local registry behind token auth.
func BenchmarkPass500(b *testing.B) {
	w := newWorld(b, time.Millisecond)
	auth, reg := newTokenRegistry(b)
	testkit.Cleanup(b, w.cli, reg.Host)
	const repos, tags = 50, 10
	var rts []hookd.Runtime
	for r := range repos {
		repo := fmt.Sprintf("org/svc-%02d", r)
		var d string
		for tag := range tags {
			d = reg.Push(b, repo, fmt.Sprintf("t%d", tag), unique(b, "v1"))
			rts = append(rts, pullOnly(b, fmt.Sprintf("%s-t%d", repo, tag), fmt.Sprintf("%s/%s:t%d", reg.Host, repo, tag)))
		}
		w.pull(reg.Host + "/" + repo + "@" + d)
	}
	p := w.poller(rts, time.Hour)
	ctx := context.Background()
	p.Pass(ctx) // the first pass pings and fetches a token per repository
	before, _ := auth.counts()
	first := w.checks(fallbackpoll.ResultUpToDate)
	for b.Loop() {
		p.Pass(ctx)
	}
	b.StopTimer()
	after, _ := auth.counts()
	b.ReportMetric(float64(after-before)/float64(b.N), "requests/pass")
	b.ReportMetric(float64(after-before)/float64(b.N*len(rts)), "requests/runtime")
	if got := w.checks(fallbackpoll.ResultUpToDate) - first; got != float64(b.N*len(rts)) {
		b.Fatalf("up_to_date checks %v, want %d (errors %v)", got, b.N*len(rts), w.checks(fallbackpoll.ResultError))
	}
}

// While a rollout is journaled, its containers are half switched: the poll neither judges nor
// records the runtime, so a digest about to be rolled back is never taken for the running one.
func TestPassLeavesRuntimeMidRolloutAlone(t *testing.T) {
	w := newWorld(t, time.Millisecond)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, w.cli, reg.Host)
	repo := reg.Host + "/org/app"
	d1 := reg.Push(t, "org/app", "latest", unique(t, "v1"))
	w.pull(repo + "@" + d1)
	p := w.poller([]hookd.Runtime{pullOnly(t, "app", repo+":latest")}, time.Hour)
	ctx := context.Background()

	d2 := reg.Push(t, "org/app", "latest", unique(t, "v2"))
	w.pull(repo + "@" + d2) // held by the engine: judged now, the runtime would count as running d2
	if err := w.store.WriteJournal(&store.Rollout{Runtime: "app", Ref: repo + "@" + d2, Containers: map[string]*store.Switch{}}); err != nil {
		t.Fatal(err)
	}
	p.Pass(ctx)
	if got := w.checks(fallbackpoll.ResultBusy); got != 1 {
		t.Fatalf("rollout_in_progress checks %v, want 1", got)
	}
	if rec, err := w.store.Record("app"); err != nil || rec.RunningDigest != "" || rec.SeenDigest != "" {
		t.Fatalf("record %+v %v changed mid-rollout", rec, err)
	}
	if err := w.store.ClearJournal("app"); err != nil {
		t.Fatal(err)
	}
	p.Pass(ctx)
	if rec, err := w.store.Record("app"); err != nil || rec.RunningDigest != d2 {
		t.Fatalf("record %+v %v after the rollout ended, want running %s", rec, err, d2)
	}
}
