package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// pollSite is one poll test's world: a registry, the runtime "app" following org/app:latest,
// and one labelled container of it named after the test.
type pollSite struct {
	t         *testing.T
	cli       *client.Client
	reg       *testkit.Registry
	repo      string
	tag       string
	container string
}

func newPollSite(t *testing.T, wrap func(http.Handler) http.Handler) *pollSite {
	t.Helper()
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, wrap)
	testkit.Cleanup(t, cli, reg.Host)
	return &pollSite{t: t, cli: cli, reg: reg, repo: reg.Host + "/org/app", tag: "latest", container: "hookd-poll-" + testkit.TestID(t)}
}

// config is a hookd config for the runtime, polling every interval.
func (s *pollSite) config(interval string) string {
	return fmt.Sprintf(`
registry_host: %q
poll:
  interval: %s
  pace: 1ms
runtimes:
  - name: app
    image: %s:%s
    min_uptime: 500ms
    health_timeout: 10s
`, s.reg.Host, interval, s.repo, s.tag)
}

// push pushes app as the runtime's tag. The test's id goes into the image, so no image of
// another test running at the same time has the same id (the engine shares it, and cleanups
// remove images by id).
func (s *pollSite) push(app testkit.App) string {
	app.Env = append(app.Env, "HOOKD_TEST_ID="+testkit.TestID(s.t))
	return s.reg.Push(s.t, "org/app", s.tag, app)
}

// run pulls digest, tags it with the runtime's tag as `docker pull` would and starts the runtime's container.
func (s *pollSite) run(digest string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := s.repo + "@" + digest
	rc, err := s.cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	out, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || bytes.Contains(out, []byte(`"error"`)) {
		s.t.Fatalf("pull %s: %v %s", ref, err, out)
	}
	if err := s.cli.ImageTag(ctx, ref, s.repo+":"+s.tag); err != nil {
		s.t.Fatal(err)
	}
	labels := testkit.Labels(s.t)
	labels["hookd.runtime"] = "app"
	created, err := s.cli.ContainerCreate(ctx, &container.Config{Image: s.repo + ":" + s.tag, Labels: labels}, nil, nil, nil, s.container)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// running returns the id of the container under the runtime's name and whether it runs digest.
func (s *pollSite) running(digest string) (string, bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s.cli.ContainerInspect(ctx, s.container)
	if cerrdefs.IsNotFound(err) {
		return "", false // between the renames of a switch
	}
	if err != nil {
		s.t.Fatal(err)
	}
	img, err := s.cli.ImageInspect(ctx, s.repo+"@"+digest)
	if err != nil {
		return c.ID, false
	}
	return c.ID, c.Image == img.ID && c.State.Running
}

// pollUpToDate waits until the poll has found the runtime up to date more than n times.
func pollUpToDate(t *testing.T, h *daemonRun, n float64) {
	t.Helper()
	testkit.Eventually(t, 2*time.Minute, func() (bool, string) {
		got := h.metric("hookd_poll_checks_total", "result=up_to_date")
		return got > n, fmt.Sprintf("up_to_date poll checks %v, want more than %v\n%s", got, n, h.logs)
	})
}

// pollSettled waits until the runtime runs digest, nothing is pending and a poll after that
// found it up to date.
func pollSettled(t *testing.T, h *daemonRun, s *pollSite, digest string) runtimeStatus {
	t.Helper()
	var st runtimeStatus
	testkit.Eventually(t, 3*time.Minute, func() (bool, string) {
		st = h.status("app")
		_, runs := s.running(digest)
		done := st.LastRollout != nil && st.LastRollout.Digest == digest // the job's result is stored
		return runs && done && st.DigestRunning == digest, fmt.Sprintf("status %+v, container runs %s: %v", st.LastRollout, digest, runs)
	})
	pollUpToDate(t, h, h.metric("hookd_poll_checks_total", "result=up_to_date"))
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		st = h.status("app")
		return st.Pending == nil, fmt.Sprintf("pending %+v", st.Pending)
	})
	return st
}

func TestPollRollsOutWithWebhookSilent(t *testing.T) {
	s := newPollSite(t, nil)
	d1 := s.push(testkit.App{Version: "v1"})
	s.run(d1)
	oldID, _ := s.running(d1)
	h := startHookd(t, s.config("300ms"), t.TempDir(), nil)
	pollUpToDate(t, h, 0)
	if st := h.status("app"); st.LastRollout != nil || st.DigestRunning != d1 {
		t.Fatalf("before the push: %+v running %s, want no job and %s running", st.LastRollout, st.DigestRunning, d1)
	}

	d2 := s.push(testkit.App{Version: "v2"})
	st := pollSettled(t, h, s, d2)
	pollRolledOutOnce(t, h, st, d2)
	if newID, _ := s.running(d2); newID == oldID {
		t.Fatalf("container %s was not replaced", newID)
	}
	if h.metric("hookd_runtime_behind", "runtime=app") != 0 || h.metric("hookd_poll_last_success_timestamp_seconds") == 0 {
		t.Fatalf("behind %v, last success %v", h.metric("hookd_runtime_behind", "runtime=app"), h.metric("hookd_poll_last_success_timestamp_seconds"))
	}
}

func TestPollAtStartRollsOutPushMadeWhileStopped(t *testing.T) {
	s := newPollSite(t, nil)
	d1 := s.push(testkit.App{Version: "v1"})
	s.run(d1)
	state := t.TempDir()
	h := startHookd(t, s.config("300ms"), state, nil)
	pollUpToDate(t, h, 0)
	h.stop()

	d2 := s.push(testkit.App{Version: "v2"})
	// An interval of an hour: only the pass made at start can roll it out within the test.
	h2 := startHookd(t, s.config("1h"), state, nil)
	var st runtimeStatus
	testkit.Eventually(t, 3*time.Minute, func() (bool, string) {
		st = h2.status("app")
		_, runs := s.running(d2)
		return runs && st.DigestRunning == d2 && st.Pending == nil && st.LastRollout != nil, fmt.Sprintf("status %+v, container runs %s: %v", st.LastRollout, d2, runs)
	})
	pollRolledOutOnce(t, h2, st, d2)
}

// pollGate holds the engine's blob downloads while shut, any number of times.
type pollGate struct {
	mu      sync.Mutex
	shut    chan struct{}
	waiting chan struct{}
}

func newPollGate() *pollGate { return &pollGate{waiting: make(chan struct{}, 64)} }

func (g *pollGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.waiting) > 0 {
		<-g.waiting
	}
	g.shut = make(chan struct{})
}

func (g *pollGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut != nil {
		close(g.shut)
		g.shut = nil
	}
}

func (g *pollGate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		shut := g.shut
		g.mu.Unlock()
		if shut != nil && strings.Contains(r.URL.Path, "/blobs/") {
			select {
			case g.waiting <- struct{}{}:
			default:
			}
			<-shut
		}
		next.ServeHTTP(w, r)
	})
}

// awaitPull waits until a pull is held at the gate.
func (g *pollGate) awaitPull(t *testing.T) {
	t.Helper()
	select {
	case <-g.waiting:
	case <-time.After(2 * time.Minute):
		t.Fatal("no pull reached the registry")
	}
}

func TestPollAndDeliveryForOnePushMakeOneRollout(t *testing.T) {
	g := newPollGate()
	s := newPollSite(t, g.wrap)
	d1 := s.push(testkit.App{Version: "v1"})
	s.run(d1)
	h := startHookd(t, s.config("300ms"), t.TempDir(), nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hookd log:\n%s", h.logs)
		}
	})
	// Cleanups run last-first: a test that fails with the gate shut must open it before hookd
	// stops (it finishes its pull) and the registry closes (it waits for its handlers).
	t.Cleanup(g.open)
	pollUpToDate(t, h, 0)

	pulls := func() float64 { return h.metric("hookd_pulls_total", "result=pulled") }
	rollouts := func() float64 { return h.metric("hookd_refresh_total", "result=rolled_out") }
	queuedByPoll := func() float64 { return h.metric("hookd_poll_checks_total", "result=queued") }
	deliver := func(digest, id string) {
		t.Helper()
		if code, answer := h.deliver(webhooktest.Push{Namespace: "org", Name: "app", Tag: "latest", Digest: digest}, id); code != 202 {
			t.Fatalf("delivery %s: %d %v", id, code, answer)
		}
	}
	rounds := []struct {
		name string
		make func(version string) string
	}{
		{"delivery first, poll while it pulls", func(version string) string {
			g.close()
			d := s.push(testkit.App{Version: version})
			deliver(d, "first-"+version)
			g.awaitPull(t)
			q := queuedByPoll()
			testkit.Eventually(t, time.Minute, func() (bool, string) {
				return queuedByPoll() > q, "the poll did not queue the push while its delivery's pull was in flight"
			})
			g.open()
			return d
		}},
		{"poll first, delivery while it pulls", func(version string) string {
			g.close()
			d := s.push(testkit.App{Version: version})
			g.awaitPull(t)
			deliver(d, "second-"+version)
			g.open()
			return d
		}},
		{"together", func(version string) string {
			d := s.push(testkit.App{Version: version})
			deliver(d, "together-"+version)
			return d
		}},
	}
	for i, round := range rounds {
		p0, r0 := pulls(), rollouts()
		d := round.make(fmt.Sprintf("v%d", i+2))
		pollSettled(t, h, s, d)
		pollAtLeast(t, h, "hookd_pulls_total", "result=pulled", p0+1)
		pollAtLeast(t, h, "hookd_refresh_total", "result=rolled_out", r0+1)
		if p, r := pulls()-p0, rollouts()-r0; p != 1 || r != 1 {
			t.Fatalf("%s: %v pulls and %v rollouts of %s, want one of each", round.name, p, r, d)
		}
	}
	if got := h.metric("hookd_webhook_deliveries_total", "outcome=queued"); got != 3 {
		t.Fatalf("queued deliveries %v, want 3", got)
	}
}

func TestPollLeavesFailedDigestAndTakesNewerOne(t *testing.T) {
	s := newPollSite(t, nil)
	d1 := s.push(testkit.App{Version: "v1"})
	s.run(d1)
	h := startHookd(t, s.config("300ms"), t.TempDir(), nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hookd log:\n%s", h.logs)
		}
	})
	pollUpToDate(t, h, 0)

	bad := s.push(testkit.App{Version: "bad", Mode: "exit"})
	if code, answer := h.deliver(webhooktest.Push{Namespace: "org", Name: "app", Tag: "latest", Digest: bad}, "bad"); code != 202 {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	// A poll during that rollout may add a job that finds the digest failed (skipped), so the
	// rollback is read from the counter rather than the last result.
	testkit.Eventually(t, 3*time.Minute, func() (bool, string) {
		st := h.status("app")
		return h.metric("hookd_refresh_total", "result=rolled_back") == 1, fmt.Sprintf("last rollout %+v", st.LastRollout)
	})
	// Once a poll has seen the failed digest, no poll queues anything for it.
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		return h.metric("hookd_poll_checks_total", "result=failed_digest") > 0, "no poll found the failed digest"
	})
	queued := h.metric("hookd_poll_checks_total", "result=queued")
	failed := h.metric("hookd_poll_checks_total", "result=failed_digest")
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		got := h.metric("hookd_poll_checks_total", "result=failed_digest")
		return got >= failed+3, fmt.Sprintf("failed_digest checks %v", got)
	})
	if got := h.metric("hookd_poll_checks_total", "result=queued"); got != queued {
		t.Fatalf("polls queued %v jobs for the failed digest", got-queued)
	}
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		st := h.status("app")
		return st.Pending == nil, fmt.Sprintf("pending %+v", st.Pending)
	})
	if got := h.metric("hookd_refresh_total", "result=rolled_back"); got != 1 {
		t.Fatalf("%v rollbacks, want the one", got)
	}
	if _, runs := s.running(d1); !runs {
		t.Fatalf("container is not back on %s", d1)
	}
	if h.metric("hookd_runtime_behind", "runtime=app") != 1 {
		t.Fatal("hookd_runtime_behind is not 1 while the tag points to the failed digest")
	}

	good := s.push(testkit.App{Version: "v3"})
	st := pollSettled(t, h, s, good)
	pollAtLeast(t, h, "hookd_refresh_total", "result=rolled_out", 1)
	if got := h.metric("hookd_refresh_total", "result=rolled_out"); got != 1 {
		t.Fatalf("%v rollouts, want the one of %s", got, good)
	}
	// Only the bad push was delivered: the job that rolled out the newer one was the poll's.
	if st.LastRollout.Digest != good || st.LastRollout.Trigger != "poll" || h.metric("hookd_webhook_deliveries_total") != 1 {
		t.Fatalf("newer push: %+v after %v deliveries, want the poll's job", st.LastRollout, h.metric("hookd_webhook_deliveries_total"))
	}
}

// pollAtLeast waits until the metric reaches n: a job's counters move just after its result is
// stored.
func pollAtLeast(t *testing.T, h *daemonRun, name, label string, n float64) {
	t.Helper()
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		got := h.metric(name, label)
		return got >= n, fmt.Sprintf("%s{%s} = %v, want at least %v", name, label, got, n)
	})
}

// pollRolledOutOnce checks that the one rollout of digest was the poll's, with no delivery:
// a poll made during the rollout may add a job that finds it done, so the last result is
// rolled_out or up_to_date.
func pollRolledOutOnce(t *testing.T, h *daemonRun, st runtimeStatus, digest string) {
	t.Helper()
	pollAtLeast(t, h, "hookd_refresh_total", "result=rolled_out", 1)
	if got := h.metric("hookd_refresh_total", "result=rolled_out"); got != 1 {
		t.Fatalf("%v rollouts, want one", got)
	}
	if got := h.metric("hookd_webhook_deliveries_total"); got != 0 {
		t.Fatalf("%v deliveries, want none", got)
	}
	last := st.LastRollout
	if last == nil || last.Digest != digest || last.Trigger != "poll" || (last.Result != "rolled_out" && last.Result != "up_to_date") {
		t.Fatalf("last job %+v, want the poll's for %s", last, digest)
	}
	if st.DigestSeen != digest || st.DigestRunning != digest {
		t.Fatalf("status seen %s running %s, want %s", st.DigestSeen, st.DigestRunning, digest)
	}
}

// OCI tags are case-sensitive: a runtime following :RC1 resolves RC1, not rc1.
func TestRuntimeFollowingUpperCaseTagRollsOut(t *testing.T) {
	s := newPollSite(t, nil)
	s.tag = "RC1"
	d1 := s.push(testkit.App{Version: "v1"})
	s.run(d1)
	h := startHookd(t, s.config("0"), t.TempDir(), nil)
	d2 := s.push(testkit.App{Version: "v2"})
	if code, answer := h.deliver(webhooktest.Push{Namespace: "Org", Name: "App", Tag: "RC1", Digest: d2}, "rc"); code != 202 || answer["status"] != "queued" {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	st := h.waitJob("app", 0)
	if st.LastRollout.Result != "rolled_out" || st.LastRollout.Digest != d2 {
		t.Fatalf("job %+v, want rolled_out %s", st.LastRollout, d2)
	}
	if _, runs := s.running(d2); !runs {
		t.Fatalf("container does not run %s", d2)
	}
}

// A delivery whose pull fails leaves the runtime behind; the very next poll pass must see that
// (the runtime does not run what was delivered) and try again, not call it confirmed.
func TestPollRetriesWhatAFailedDeliveryLeftBehind(t *testing.T) {
	var broken atomic.Bool
	s := newPollSite(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if broken.Load() && strings.Contains(r.URL.Path, "/blobs/") {
				http.Error(w, "storage away", http.StatusInternalServerError)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	d1 := s.push(testkit.App{Version: "v1"})
	s.run(d1)
	h := startHookd(t, s.config("1s"), t.TempDir(), nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hookd log:\n%s", h.logs)
		}
	})
	pollUpToDate(t, h, 0)

	confirmed := h.metric("hookd_poll_checks_total", "result=confirmed")
	broken.Store(true)
	d2 := s.push(testkit.App{Version: "v2"})
	if code, answer := h.deliver(webhooktest.Push{Namespace: "org", Name: "app", Tag: "latest", Digest: d2}, "d2"); code != 202 {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	st := h.waitJob("app", 0)
	if st.LastRollout.Result != "failed" || st.LastRollout.Trigger != "webhook" {
		t.Fatalf("webhook job %+v, want failed (pull)", st.LastRollout)
	}
	if st.Record.FailedDigest == d2 {
		t.Fatal("a failed pull marked the digest failed")
	}
	broken.Store(false)
	st = pollSettled(t, h, s, d2)
	if st.LastRollout.Trigger != "poll" {
		t.Fatalf("the rollout of %s was not the poll's: %+v", d2, st.LastRollout)
	}
	if got := h.metric("hookd_poll_checks_total", "result=confirmed"); got != confirmed {
		t.Fatalf("the poll confirmed the delivery %v times though %s did not run", got-confirmed, d2)
	}
}
