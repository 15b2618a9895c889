package refresh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/fakeengine"
	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/store"
)

// These tests run the real service, store and catalog against a fake engine and registry (the
// outside parties), so every rollback and classification branch runs in milliseconds without
// Docker. The real engine covers the same paths end to end in cmd/hookd.

const (
	sideImg = "sha256:5ide"
	image   = "reg.test/acme/app:latest"
	repo    = "reg.test/acme/app"
	oldDig  = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	newDig  = "sha256:0000000000000000000000000000000000000000000000000000000000000002"
	oldImg  = "sha256:aaaa"
	newImg  = "sha256:bbbb"
)

type fakeRegistry struct {
	mu     sync.Mutex
	digest map[string]string
	err    error
}

func (r *fakeRegistry) Resolve(ctx context.Context, image string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return "", r.err
	}
	d, ok := r.digest[image]
	if !ok {
		return "", fmt.Errorf("resolve %s: MANIFEST_UNKNOWN", image)
	}
	return d, nil
}

func (r *fakeRegistry) Credentials(ctx context.Context, image string) (registry.Credentials, error) {
	return registry.Credentials{}, nil
}

func (r *fakeRegistry) set(image, digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.digest[image] = digest
}

type site struct {
	t        *testing.T
	eng      *fakeengine.Engine
	reg      *fakeRegistry
	store    *store.Store
	svc      *Service
	metrics  *prometheus.Registry
	runtimes []hookd.Runtime
	cancel   context.CancelFunc
	done     chan error
}

// newSite returns a runtime "app" following image, an engine holding the old image (and the
// new one to pull), and a service ready to Run.
func newSite(t *testing.T, parallel int, runtimes ...hookd.Runtime) *site {
	t.Helper()
	if len(runtimes) == 0 {
		rt := hookd.NewRuntime("app", image)
		rt.MinUptime, rt.HealthTimeout = 0, time.Second
		runtimes = []hookd.Runtime{rt}
	}
	eng := fakeengine.New()
	reg := &fakeRegistry{digest: map[string]string{}}
	for _, rt := range runtimes {
		eng.AddImage(oldImg, rt.Image, rt.Repository()+"@"+oldDig)
		eng.AddImage(newImg, "pull:"+rt.Repository()+"@"+newDig)
		reg.set(rt.Image, newDig)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := prometheus.NewRegistry()
	cat := catalog.New(runtimes, eng, time.Minute)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := &site{t: t, eng: eng, reg: reg, store: st, metrics: m, runtimes: runtimes,
		svc: New(st, cat, reg, eng, parallel, NewMetrics(m), log)}
	return s
}

func (s *site) run() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.svc.Run(ctx) }()
	s.t.Cleanup(s.stop)
}

func (s *site) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.t.Error("service did not stop within 30 s")
	}
	s.cancel = nil
}

// newImageExits makes every container of the new image exit with code during its gate.
func (s *site) newImageExits(code int) {
	s.eng.OnState = func(c *fakeengine.Container) error {
		if c.ImageID == newImg {
			c.Running, c.ExitCode = false, code
		}
		return nil
	}
}

func (s *site) container(name, runtime string) fakeengine.Container {
	return s.eng.Run(name, image, map[string]string{catalog.LabelRuntime: runtime}, true)
}

func (s *site) refresh(runtime string) hookd.Result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.svc.Refresh(ctx, runtime, false)
	if err != nil {
		s.t.Fatalf("refresh %s: %v", runtime, err)
	}
	return res
}

// push queues what a verified delivery would.
func (s *site) push(runtime, id string) {
	s.t.Helper()
	image := ""
	for _, rt := range s.runtimes {
		if rt.Name == runtime {
			image = rt.Image
		}
	}
	if _, err := NewFleet(s.store, s.svc).Accept(context.Background(), id, []string{runtime}, image, newDig); err != nil {
		s.t.Fatal(err)
	}
}

func (s *site) waitResult(runtime string, cond func(hookd.Result) bool) hookd.Result {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, ok, err := s.store.LastResult(runtime)
		if err != nil {
			s.t.Fatal(err)
		}
		if ok && cond(res) {
			return res
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no matching result for %s; last: %+v", runtime, res)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *site) record(runtime string) store.Record {
	s.t.Helper()
	r, err := s.store.Record(runtime)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// running asserts every named container exists, runs and is on the wanted image.
func (s *site) running(imageID string, names ...string) {
	s.t.Helper()
	for _, n := range names {
		c, ok := s.eng.ByName(n)
		if !ok || !c.Running || c.ImageID != imageID {
			s.t.Errorf("%s: found %v running %v image %s, want running on %s (containers: %+v)", n, ok, c.Running, c.ImageID, imageID, s.eng.Containers())
		}
	}
	for _, c := range s.eng.Containers() {
		if strings.HasSuffix(c.Name, catalog.TempSuffix) || strings.HasSuffix(c.Name, catalog.AsideSuffix) {
			s.t.Errorf("hookd's temporary container %s is left", c.Name)
		}
	}
}

func TestRolloutSwitchesEveryContainer(t *testing.T) {
	s := newSite(t, 0)
	s.container("app-1", "app")
	s.container("app-2", "app")
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledOut || !slices.Equal(res.Recreated, []string{"app-1", "app-2"}) {
		t.Fatalf("result %+v", res)
	}
	s.running(newImg, "app-1", "app-2")
	if n := len(s.eng.Containers()); n != 2 {
		t.Errorf("%d containers, want 2", n)
	}
	if r := s.record("app"); r.RunningDigest != newDig {
		t.Errorf("running digest %q", r.RunningDigest)
	}
}

func TestGateExitIsTheImagesFault(t *testing.T) {
	s := newSite(t, 0)
	s.container("app-1", "app")
	s.newImageExits(3)
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledBack || !strings.Contains(res.Reason, "exited with code 3") {
		t.Fatalf("result %+v", res)
	}
	s.running(oldImg, "app-1")
	if r := s.record("app"); r.FailedDigest != newDig {
		t.Errorf("failed digest %q, want the new one remembered", r.FailedDigest)
	}
	if got := testutil.ToFloat64(s.svc.metrics.rollbacks.WithLabelValues("app")); got != 1 {
		t.Errorf("rollbacks %v", got)
	}
	// A push of the same digest is not tried again automatically.
	s.push("app", "d-1")
	res = s.waitResult("app", func(r hookd.Result) bool { return r.Trigger == hookd.TriggerWebhook })
	if res.Outcome != hookd.OutcomeSkipped {
		t.Errorf("push of the failed digest: %+v", res)
	}
}

// With a restart policy the engine has already run the crashed container again when the gate
// looks (inspect: running, code 0); the reason gives the code the app exited with.
func TestRestartedByPolicyGivesTheRealExitCode(t *testing.T) {
	s := newSite(t, 0)
	s.container("app-1", "app")
	s.eng.OnState = func(c *fakeengine.Container) error {
		if c.ImageID == newImg {
			code := 1
			c.RestartCount, c.ExitCode, c.LastExit = 1, 0, &code
		}
		return nil
	}
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledBack || !strings.Contains(res.Reason, "restarted") || !strings.Contains(res.Reason, "exit code 1") {
		t.Fatalf("result %+v, want rolled back: restarted (exit code 1)", res)
	}
	s.running(oldImg, "app-1")
	if r := s.record("app"); r.FailedDigest != newDig {
		t.Errorf("failed digest %q, want the new one remembered", r.FailedDigest)
	}
}

func TestStopOrPauseFromOutsideDuringGateIsNotTheImagesFault(t *testing.T) {
	for _, c := range []struct {
		name, reason string
		do           func(c *fakeengine.Container)
	}{
		// `docker stop`, or the daemon shutting down
		{"stopped", "stop from outside hookd", func(c *fakeengine.Container) { c.Running, c.StopRequested = false, true }},
		// a paused container proves nothing either way
		{"paused", "paused from outside hookd", func(c *fakeengine.Container) { c.Paused = true }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t, 0)
			s.runtimes[0].MinUptime = time.Hour // only the stop or pause ends the gate
			s = newSite(t, 0, s.runtimes[0])
			s.container("app-1", "app")
			s.eng.OnState = func(ct *fakeengine.Container) error {
				if ct.ImageID == newImg {
					c.do(ct)
				}
				return nil
			}
			s.run()
			res := s.refresh("app")
			if res.Outcome != hookd.OutcomeRolledBack || !strings.Contains(res.Reason, c.reason) {
				t.Fatalf("result %+v", res)
			}
			s.running(oldImg, "app-1")
			if r := s.record("app"); r.FailedDigest != "" {
				t.Errorf("failed digest %q: blamed on the image", r.FailedDigest)
			}
		})
	}
}

func TestStartErrorsClassifiedByCause(t *testing.T) {
	for _, c := range []struct {
		name      string
		err       error
		imageFail bool
	}{
		{"port taken", errors.New("driver failed programming external connectivity: Bind for 0.0.0.0:8080 failed: port is already allocated"), false},
		{"daemon shutting down", errors.New("Error response from daemon: daemon is shutting down"), false},
		{"missing executable", errors.New(`OCI runtime create failed: exec: "/app": stat /app: no such file or directory: unknown`), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t, 0)
			s.container("app-1", "app")
			s.eng.OnStart = func(ct fakeengine.Container) error {
				if ct.ImageID == newImg {
					return c.err
				}
				return nil
			}
			s.run()
			res := s.refresh("app")
			if res.Outcome != hookd.OutcomeRolledBack {
				t.Fatalf("result %+v", res)
			}
			s.running(oldImg, "app-1")
			if failed := s.record("app").FailedDigest == newDig; failed != c.imageFail {
				t.Errorf("digest remembered as failed: %v, want %v", failed, c.imageFail)
			}
		})
	}
}

func TestRevertRunsInReverseSwitchOrder(t *testing.T) {
	s := newSite(t, 0)
	for _, n := range []string{"app-1", "app-2", "app-3"} {
		s.container(n, "app")
	}
	s.eng.OnState = func(c *fakeengine.Container) error {
		if c.ImageID == newImg && c.Name == "app-3" {
			c.Running, c.ExitCode = false, 1
		}
		return nil
	}
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledBack {
		t.Fatalf("result %+v", res)
	}
	s.running(oldImg, "app-1", "app-2", "app-3")
	var restarts []string
	for _, op := range s.eng.Ops() {
		if strings.HasPrefix(op, "start app-") && !strings.Contains(op, "hookd") {
			restarts = append(restarts, op)
		}
	}
	// Each new container started under its name; then the old ones, last switched first.
	want := []string{"start app-1", "start app-2", "start app-3", "start app-3", "start app-2", "start app-1"}
	if !slices.Equal(restarts, want) {
		t.Errorf("starts %q, want %q", restarts, want)
	}
}

func TestRollbackThatCannotFinishIsSettledWhenTheEngineIsBack(t *testing.T) {
	s := newSite(t, 0)
	s.runtimes[0].MinUptime = time.Hour
	s = newSite(t, 0, s.runtimes[0])
	s.container("app-1", "app")
	var downOnce sync.Once
	s.eng.OnState = func(c *fakeengine.Container) error {
		downOnce.Do(func() { s.eng.SetDown(true) }) // dockerd goes away during the gate
		return nil
	}
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeFailed || !strings.Contains(res.Reason, "roll back incomplete") {
		t.Fatalf("result %+v", res)
	}
	if r := s.record("app"); r.FailedDigest != "" {
		t.Errorf("an engine outage marked the digest failed")
	}
	// The engine comes back: the worker settles the journal on its own, and the old container
	// that was running ends running.
	s.eng.OnState = nil
	s.eng.SetDown(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, open, err := s.store.Journal("app")
		if err != nil {
			t.Fatal(err)
		}
		if !open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("journal still open 20 s after the engine came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.running(oldImg, "app-1")
	// The same digest is tried again by the next push, not skipped as failed: this time the
	// image itself fails its gate.
	s.newImageExits(1)
	s.push("app", "d-2")
	res = s.waitResult("app", func(r hookd.Result) bool { return r.Trigger == hookd.TriggerWebhook })
	if res.Outcome != hookd.OutcomeRolledBack {
		t.Fatalf("push after recovery: %+v", res)
	}
	s.running(oldImg, "app-1")
}

func TestTemporaryNameOfAStrangerIsNeverTouched(t *testing.T) {
	s := newSite(t, 0)
	s.container("app-1", "app")
	stranger := s.eng.Run("app-1"+catalog.TempSuffix, image, nil, true)
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeFailed || !strings.Contains(res.Reason, "hookd did not make") {
		t.Fatalf("result %+v", res)
	}
	if c, ok := s.eng.ByName(stranger.Name); !ok || c.ID != stranger.ID || !c.Running {
		t.Errorf("the stranger was touched: %+v %v", c, ok)
	}
	if c, _ := s.eng.ByName("app-1"); !c.Running || c.ImageID != oldImg {
		t.Errorf("app-1 changed: %+v", c)
	}
	if ops := s.eng.Ops(); len(ops) != 0 {
		t.Errorf("engine changes: %q", ops)
	}
}

func TestOwnLeftoverIsRemoved(t *testing.T) {
	s := newSite(t, 0)
	old := s.container("app-1", "app")
	s.eng.Run("app-1"+catalog.TempSuffix, image, map[string]string{"hookd.replaces": old.ID}, false)
	s.run()
	if res := s.refresh("app"); res.Outcome != hookd.OutcomeRolledOut {
		t.Fatalf("result %+v", res)
	}
	s.running(newImg, "app-1")
}

func TestPausedContainerIsRefused(t *testing.T) {
	s := newSite(t, 0)
	c := s.container("app-1", "app")
	c.Paused = true
	s.eng.Put(c)
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeFailed || !strings.Contains(res.Reason, "paused") {
		t.Fatalf("result %+v", res)
	}
	if ops := s.eng.Ops(); len(ops) != 0 {
		t.Errorf("engine changes: %q", ops)
	}
}

// sidecar adds a container outside the runtime that shares the network namespace of provider
// (`--network container:<id>`, compose's `network_mode: service:`, a VPN sidecar).
func (s *site) sidecar(name string, provider fakeengine.Container) fakeengine.Container {
	s.eng.AddImage(sideImg, "reg.test/other/"+name+":latest")
	c := s.eng.Run(name, "reg.test/other/"+name+":latest", nil, true)
	c.Joins = map[string]string{"network": provider.ID}
	s.eng.Put(c)
	return c
}

// joinedLive checks that dependent runs on its own image, in the namespace of the container now
// called provider, and is not left in a torn-down one.
func (s *site) joinedLive(dependent, provider string) {
	s.t.Helper()
	d, _ := s.eng.ByName(dependent)
	p, _ := s.eng.ByName(provider)
	if !d.Running || d.Stale || d.Joins["network"] != p.ID || !p.Running {
		s.t.Errorf("%s: running %v stale %v joins %s; %s is %s running %v", dependent, d.Running, d.Stale, d.Joins["network"], provider, p.ID, p.Running)
	}
}

func TestDependentOutsideTheRuntimeFollowsItsProvider(t *testing.T) {
	s := newSite(t, 0)
	vpn := s.container("vpn", "app")
	side := s.sidecar("torrent", vpn)
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledOut || !slices.Equal(res.Recreated, []string{"vpn", "torrent"}) {
		t.Fatalf("result %+v", res)
	}
	s.running(newImg, "vpn")
	s.running(sideImg, "torrent") // its own image, never the runtime's
	s.joinedLive("torrent", "vpn")
	if c, _ := s.eng.ByName("torrent"); c.ID == side.ID {
		t.Error("the sidecar was not recreated")
	}
	if n := len(s.eng.Containers()); n != 2 {
		t.Errorf("%d containers left, want 2: %+v", n, s.eng.Containers())
	}
	ops := s.eng.Ops()
	if slices.Index(ops, "start vpn") > slices.Index(ops, "create torrent-hookd-new") {
		t.Errorf("the dependent was created before its provider ran: %q", ops)
	}
}

// A provider whose new image fails is rolled back, and the sidecar, which kept running in the
// namespace the engine tore down with the old provider, is restarted into the old one's again.
func TestBrokenProviderRollsBackAndRejoinsItsDependent(t *testing.T) {
	s := newSite(t, 0)
	vpn := s.container("vpn", "app")
	s.sidecar("torrent", vpn)
	s.newImageExits(1)
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledBack {
		t.Fatalf("result %+v", res)
	}
	s.running(oldImg, "vpn")
	s.joinedLive("torrent", "vpn")
	if !slices.Contains(s.eng.Ops(), "restart torrent") {
		t.Errorf("the sidecar was not restarted into its provider: %q", s.eng.Ops())
	}
}

// A dependent that fails its gate rolls the whole graph back; its old container can start only
// once its provider's runs again, and does.
func TestFailingDependentRollsBackTheGraph(t *testing.T) {
	s := newSite(t, 0)
	vpn := s.container("vpn", "app")
	side := s.sidecar("torrent", vpn)
	s.eng.OnState = func(c *fakeengine.Container) error {
		if c.ImageID == sideImg && c.ID != side.ID {
			c.Running, c.ExitCode = false, 2
		}
		return nil
	}
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledBack || !strings.Contains(res.Reason, "torrent") {
		t.Fatalf("result %+v", res)
	}
	s.graphBack(vpn, side)
}

// graphBack checks that the old provider and the old sidecar are back, running, the sidecar in
// the provider's live namespace.
func (s *site) graphBack(vpn, side fakeengine.Container) {
	s.t.Helper()
	s.running(oldImg, "vpn")
	s.running(sideImg, "torrent")
	s.joinedLive("torrent", "vpn")
	for _, old := range []fakeengine.Container{vpn, side} {
		if c, _ := s.eng.ByName(old.Name); c.ID != old.ID {
			s.t.Errorf("the old %s is not back", old.Name)
		}
	}
}

// One level of dependents is recreated; a container joined to a dependent is a shape hookd
// refuses, before it changes anything.
func TestChainOfDependentsIsRefused(t *testing.T) {
	s := newSite(t, 0)
	vpn := s.container("vpn", "app")
	side := s.sidecar("torrent", vpn)
	s.sidecar("exporter", side)
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeFailed || !strings.Contains(res.Reason, "exporter shares a namespace") {
		t.Fatalf("result %+v", res)
	}
	if ops := s.eng.Ops(); len(ops) != 0 {
		t.Errorf("engine changes: %q", ops)
	}
	if r := s.record("app"); r.FailedDigest != "" {
		t.Errorf("failed digest %q: the shape is not the image's fault", r.FailedDigest)
	}
}

func TestParallelRuntimesAreBounded(t *testing.T) {
	var runtimes []hookd.Runtime
	for i := range 5 {
		rt := hookd.NewRuntime(fmt.Sprintf("rt%d", i), fmt.Sprintf("reg.test/acme/rt%d:latest", i))
		rt.MinUptime = 0
		runtimes = append(runtimes, rt)
	}
	s := newSite(t, 2, runtimes...)
	for _, rt := range runtimes {
		s.eng.Run(rt.Name+"-1", rt.Image, map[string]string{catalog.LabelRuntime: rt.Name}, true)
	}
	var active, most atomic.Int32
	release := make(chan struct{})
	s.eng.OnPull = func(ctx context.Context, ref string) error {
		n := active.Add(1)
		defer active.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		return nil
	}
	s.run()
	for i, rt := range runtimes {
		s.push(rt.Name, fmt.Sprintf("d-%d", i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for active.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d rollouts started", active.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	for _, rt := range runtimes {
		s.waitResult(rt.Name, func(r hookd.Result) bool { return r.Outcome == hookd.OutcomeRolledOut })
	}
	if m := most.Load(); m != 2 {
		t.Errorf("at most %d runtimes at once, want 2", m)
	}
}

func TestShutdownCutsAPullShortAndKeepsTheJob(t *testing.T) {
	s := newSite(t, 0)
	s.container("app-1", "app")
	pulling := make(chan struct{})
	s.eng.OnPull = func(ctx context.Context, ref string) error {
		close(pulling)
		<-ctx.Done() // a registry that never finishes
		return ctx.Err()
	}
	s.run()
	s.push("app", "d-1")
	select {
	case <-pulling:
	case <-time.After(10 * time.Second):
		t.Fatal("the pull never began")
	}
	s.stop()
	if _, ok, _ := s.store.LastResult("app"); ok {
		t.Error("a job cut short at shutdown was recorded as finished")
	}
	waiting, err := s.store.Resume()
	if err != nil || !slices.Equal(waiting, []string{"app"}) {
		t.Errorf("after the stop, queued for the next start: %v %v", waiting, err)
	}
	if ops := s.eng.Ops(); len(ops) != 0 {
		t.Errorf("engine changes: %q", ops)
	}
}

func TestFailedTakeIsRetried(t *testing.T) {
	s := newSite(t, 0)
	s.container("app-1", "app")
	var fails atomic.Int32
	take := s.svc.take
	s.svc.take = func(runtime string) (hookd.Job, bool, error) {
		if fails.Add(1) == 1 {
			return hookd.Job{}, false, errors.New("disk I/O error")
		}
		return take(runtime)
	}
	s.run()
	s.push("app", "d-1")
	res := s.waitResult("app", func(hookd.Result) bool { return true })
	if res.Outcome != hookd.OutcomeRolledOut {
		t.Errorf("result %+v", res)
	}
	if fails.Load() < 2 {
		t.Errorf("take was called %d times", fails.Load())
	}
}

func TestCrashRecoveryRevertsAnUnfinishedRollout(t *testing.T) {
	s := newSite(t, 0)
	old := s.container("app-1", "app")
	// What a SIGKILL right after the old container was stopped leaves: the replacement under the
	// name, the old one aside and stopped, the journal at stop_old.
	if err := s.eng.Rename(context.Background(), old.ID, "app-1"+catalog.AsideSuffix); err != nil {
		t.Fatal(err)
	}
	newID, err := s.eng.CreateReplacement(context.Background(), old.ID, image, "app-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.eng.Stop(context.Background(), old.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.store.WriteJournal(&store.Rollout{Runtime: "app", Ref: repo + "@" + newDig, Image: image, OldImageID: oldImg,
		Containers: map[string]*store.Switch{"app-1": {Name: "app-1", OldID: old.ID, NewID: newID, OldImageID: oldImg, WasRunning: true,
			TempName: "app-1" + catalog.TempSuffix, AsideName: "app-1" + catalog.AsideSuffix, Step: store.StepStopOld, Seq: 1}}}); err != nil {
		t.Fatal(err)
	}
	s.run()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, open, _ := s.store.Journal("app"); !open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("journal not settled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.running(oldImg, "app-1")
	if c, _ := s.eng.ByName("app-1"); c.ID != old.ID {
		t.Errorf("app-1 is %s, want the old container back", c.ID)
	}
}

// hookd killed at points of a dependent's switch: the next start's recovery converges with the
// provider and the sidecar running, the sidecar in the provider's live namespace.
func TestCrashDuringTheDependentsSwitchConverges(t *testing.T) {
	for _, point := range []string{"create", "start"} {
		t.Run(point, func(t *testing.T) {
			s := newSite(t, 0)
			vpn := s.container("vpn", "app")
			side := s.sidecar("torrent", vpn)
			dead := make(chan struct{}) // the first process "dies" here: it never takes another step
			reached := make(chan struct{}, 1)
			var armed atomic.Bool
			armed.Store(true)
			die := func() error {
				if !armed.Swap(false) {
					return nil
				}
				reached <- struct{}{}
				<-dead
				return errors.New("process gone")
			}
			s.eng.OnCreate = func(oldID, _, _ string) error {
				if point == "create" && oldID == side.ID {
					return die()
				}
				return nil
			}
			s.eng.OnStart = func(c fakeengine.Container) error {
				if point == "start" && c.ImageID == sideImg && c.ID != side.ID {
					return die()
				}
				return nil
			}
			s.run()
			t.Cleanup(func() { close(dead) })                    // before the site's stop, which waits for the worker
			go s.svc.Refresh(context.Background(), "app", false) //nolint:errcheck // the process dies mid-way
			select {
			case <-reached:
			case <-time.After(20 * time.Second):
				t.Fatal("the rollout never reached the dependent")
			}

			// The next start, on the same state and engine.
			next := New(s.store, catalog.New(s.runtimes, s.eng, time.Minute), s.reg, s.eng, 0, NewMetrics(prometheus.NewRegistry()),
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			if unsettled := next.recover(context.Background()); len(unsettled) != 0 {
				t.Fatalf("unsettled after recovery: %v", unsettled)
			}
			s.graphBack(vpn, side)
		})
	}
}

// A pid namespace dies with its first process: a dependent sharing it is killed when its
// provider stops, and a roll back starts it again once the provider runs.
func TestRollBackStartsAPidDependentKilledWithItsProvider(t *testing.T) {
	s := newSite(t, 0)
	vpn := s.container("vpn", "app")
	side := s.sidecar("torrent", vpn)
	side.Joins = map[string]string{"pid": vpn.ID}
	s.eng.Put(side)
	s.newImageExits(1)
	s.run()
	if res := s.refresh("app"); res.Outcome != hookd.OutcomeRolledBack {
		t.Fatalf("result %+v", res)
	}
	s.running(oldImg, "vpn")
	s.running(sideImg, "torrent")
}

// Shapes refused before anything changes, the runtime's tag included, none the image's fault.
func TestPlanRefusals(t *testing.T) {
	for _, c := range []struct {
		name, reason string
		arrange      func(s *site)
	}{
		{"dependent of a stopped provider", "which is stopped", func(s *site) {
			vpn := s.container("vpn", "app")
			vpn.Running = false
			s.eng.Put(vpn)
			s.sidecar("torrent", vpn)
		}},
		{"dependent of another runtime", "belongs to another runtime", func(s *site) {
			side := s.sidecar("torrent", s.container("vpn", "app"))
			side.Labels = map[string]string{catalog.LabelRuntime: "other"}
			s.eng.Put(side)
		}},
		{"dependent mid-rollout", "in the middle of another rollout", func(s *site) {
			s.sidecar("torrent"+catalog.AsideSuffix, s.container("vpn", "app"))
		}},
		{"unknown hookd.keep", `unknown setting "ports"`, func(s *site) {
			c := s.container("app-1", "app")
			c.Labels[engine.LabelKeep] = "command,ports"
			s.eng.Put(c)
		}},
		{"stranger under the temporary name", "hookd did not make", func(s *site) {
			s.container("app-1", "app")
			s.eng.Run("app-1"+catalog.TempSuffix, image, nil, true)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t, 0)
			c.arrange(s)
			before := len(s.eng.Ops())
			s.run()
			res := s.refresh("app")
			if res.Outcome != hookd.OutcomeFailed || !strings.Contains(res.Reason, c.reason) {
				t.Fatalf("result %+v, want failed: …%s…", res, c.reason)
			}
			if ops := s.eng.Ops()[before:]; len(ops) != 0 {
				t.Errorf("engine changes: %q", ops)
			}
			if r := s.record("app"); r.FailedDigest != "" {
				t.Errorf("failed digest %q", r.FailedDigest)
			}
		})
	}
}

func TestComposeDependsOnOrdersTheSwitch(t *testing.T) {
	svc := func(name, dependsOn string) engine.Container {
		return engine.Container{Name: "p-" + name + "-1", Labels: map[string]string{
			"com.docker.compose.project": "p", "com.docker.compose.service": name, "com.docker.compose.depends_on": dependsOn}}
	}
	names := func(cs []engine.Container) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	got := names(composeOrder([]engine.Container{
		svc("worker", "web:service_started:false"),
		svc("web", "db:service_started:false,cache:service_healthy:true"), // cache is not being replaced
		{Name: "plain"},
		svc("db", ""),
	}))
	if want := []string{"plain", "p-db-1", "p-web-1", "p-worker-1"}; !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	cycle := names(composeOrder([]engine.Container{svc("a", "b:service_started:false"), svc("b", "a:service_started:false")}))
	if want := []string{"p-a-1", "p-b-1"}; !slices.Equal(cycle, want) {
		t.Errorf("a cycle: %q, want the order kept %q", cycle, want)
	}
}

// A replacement that cannot be made because of the container's own hookd label (a hookd.copy
// path it lacks) is the user's to fix: rolled back, the digest not blamed.
func TestLabelFailureAtCreateIsNotTheImagesFault(t *testing.T) {
	s := newSite(t, 0)
	s.container("app-1", "app")
	s.eng.OnCreate = func(_, _, _ string) error {
		return fmt.Errorf("%w hookd.copy: copy /run/secrets/db out of the old container: no such file", engine.ErrLabel)
	}
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledBack || !strings.Contains(res.Reason, "hookd.copy") {
		t.Fatalf("result %+v", res)
	}
	s.running(oldImg, "app-1")
	if r := s.record("app"); r.FailedDigest != "" {
		t.Errorf("failed digest %q", r.FailedDigest)
	}
}
