package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// gate holds the engine's blob downloads from the test registry while closed, so a test can
// keep a pull in flight for as long as it needs.
type gate struct {
	closed  atomic.Bool
	open    chan struct{}
	waiting chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{open: make(chan struct{}), waiting: make(chan struct{}, 64)} }

// await waits until a blob download is held at the gate.
func (g *gate) await(t *testing.T) {
	t.Helper()
	select {
	case <-g.waiting:
	case <-time.After(2 * time.Minute):
		t.Fatal("no pull reached the registry")
	}
}

// uniqueApp is the test app at version with the test's id in its config, so its blobs are the
// test's own: an image another test pulled would need no download, and pass no gate.
func uniqueApp(t *testing.T, version string) testkit.App {
	return testkit.App{Version: version, Env: []string{"HOOKD_TEST_ID=" + testkit.TestID(t)}}
}

// release opens the gate for good; calling it again is harmless.
func (g *gate) release() {
	g.closed.Store(false)
	g.once.Do(func() { close(g.open) })
}

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.closed.Load() && strings.Contains(r.URL.Path, "/blobs/") {
			select {
			case g.waiting <- struct{}{}:
			default:
			}
			<-g.open
		}
		next.ServeHTTP(w, r)
	})
}

func pullOnlyConfig(registryHost string) string {
	return fmt.Sprintf(`
registry_host: %q
poll:
  interval: 0
runtimes:
  - name: app
    image: %s/org/app:latest
    recreate: false
`, registryHost, registryHost)
}

func hasImage(t *testing.T, cli *client.Client, ref string) bool {
	t.Helper()
	img, err := cli.ImageInspect(context.Background(), ref)
	if err != nil {
		return false
	}
	for _, d := range img.RepoDigests {
		if d == ref {
			return true
		}
	}
	return false
}

func TestPullByDigestEndToEnd(t *testing.T) {
	cli := testkit.Docker(t)
	g := newGate()
	reg := testkit.StartRegistry(t, g.wrap)
	testkit.Cleanup(t, cli, reg.Host)
	repo := reg.Host + "/org/app"
	state := t.TempDir()
	h := startHookd(t, pullOnlyConfig(reg.Host), state, nil)

	// Owner as GitHub spells it, with capitals: still this runtime.
	d1 := reg.Push(t, "org/app", "latest", uniqueApp(t, "v1"))
	if code, answer := h.deliver(webhooktest.Push{Namespace: "Org", Name: "app", Tag: "latest", Digest: d1}, "p1"); code != 202 {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	st := h.waitJob("app", 0)
	if st.LastRollout.Result != "pulled" || st.LastRollout.Digest != d1 || !hasImage(t, cli, repo+"@"+d1) {
		t.Fatalf("after first push: %+v; engine holds %s: %v", st.LastRollout, d1, hasImage(t, cli, repo+"@"+d1))
	}
	firstJob := st.LastRollout.JobID

	// A second push while the first pull is still in flight, delivered twice: one more pull.
	d2 := reg.Push(t, "org/app", "latest", uniqueApp(t, "v2"))
	g.closed.Store(true)
	if code, _ := h.deliver(webhooktest.Push{Namespace: "org", Name: "app", Tag: "latest", Digest: d2}, "p2"); code != 202 {
		t.Fatalf("delivery p2: %d", code)
	}
	g.await(t) // the job for d2 is pulling now
	d3 := reg.Push(t, "org/app", "latest", uniqueApp(t, "v3"))
	for _, id := range []string{"p3", "p3-redelivered-as-new"} {
		if code, answer := h.deliver(webhooktest.Push{Namespace: "org", Name: "app", Tag: "latest", Digest: d3}, id); code != 202 {
			t.Fatalf("delivery %s: %d %v", id, code, answer)
		}
	}
	if p := h.status("app").Pending; p == nil || p.Requests != 2 {
		t.Fatalf("pending while pulling: %+v, want one job of 2 requests", p)
	}
	g.closed.Store(false)
	close(g.open)
	testkit.Eventually(t, 2*time.Minute, func() (bool, string) {
		st = h.status("app")
		return st.LastRollout.JobID > firstJob+1, fmt.Sprintf("%+v", st.LastRollout)
	})
	if st.LastRollout.Digest != d3 || st.LastRollout.Requests != 2 || st.Pending != nil {
		t.Fatalf("merged job: %+v pending %+v, want d3 from 2 requests", st.LastRollout, st.Pending)
	}
	// d1, the d2 that was in flight, and one pull for the two deliveries of d3.
	if got := h.metric("hookd_pulls_total", "result=pulled"); got != 3 {
		t.Fatalf("pulls: %v, want 3", got)
	}
	if !hasImage(t, cli, repo+"@"+d2) || !hasImage(t, cli, repo+"@"+d3) {
		t.Fatal("engine lacks d2 or d3")
	}

	// A late delivery naming an older digest pulls what the tag points to now.
	d4 := reg.Push(t, "org/app", "latest", uniqueApp(t, "v4"))
	lastJob := st.LastRollout.JobID
	if code, _ := h.deliver(webhooktest.Push{Namespace: "org", Name: "app", Tag: "latest", Digest: d1}, "p-late"); code != 202 {
		t.Fatalf("late delivery: %d", code)
	}
	st = h.waitJob("app", lastJob)
	if st.LastRollout.Digest != d4 || !hasImage(t, cli, repo+"@"+d4) {
		t.Fatalf("late delivery of %s: %+v, want current %s", d1, st.LastRollout, d4)
	}
	if got := h.metric("hookd_webhook_deliveries_total", "event=package", "outcome=queued"); got != 5 {
		t.Fatalf("queued deliveries metric = %v, want 5", got)
	}
}

// A pull changes nothing on the host, so a stop cancels it instead of waiting for the registry
// (systemd would kill hookd first); the job stays in the journal and runs after the restart.
func TestShutdownCancelsPullAndResumesQueue(t *testing.T) {
	cli := testkit.Docker(t)
	g := newGate()
	reg := testkit.StartRegistry(t, g.wrap)
	t.Cleanup(func() { g.release() })
	testkit.Cleanup(t, cli, reg.Host)
	repo := reg.Host + "/org/app"
	state := t.TempDir()
	cfg := pullOnlyConfig(reg.Host)

	h := startHookd(t, cfg, state, nil)
	d1 := reg.Push(t, "org/app", "latest", uniqueApp(t, "v1"))
	g.closed.Store(true)
	if code, _ := h.deliver(webhooktest.Push{Namespace: "org", Name: "app", Tag: "latest", Digest: d1}, "s1"); code != 202 {
		t.Fatal("delivery s1 not queued")
	}
	g.await(t) // pulling d1, held by the registry until the gate opens
	d2 := reg.Push(t, "org/app", "latest", uniqueApp(t, "v2"))
	if code, _ := h.deliver(webhooktest.Push{Namespace: "org", Name: "app", Tag: "latest", Digest: d2}, "s2"); code != 202 {
		t.Fatal("delivery s2 not queued")
	}
	h.stop() // fails the test if serve has not returned within its deadline
	g.release()
	if hasImage(t, cli, repo+"@"+d2) {
		t.Fatal("queued work ran after the stop")
	}

	// Started again: the interrupted job and the queued one end on what the tag names now, and
	// the replayed delivery is still a duplicate.
	h2 := startHookd(t, cfg, state, nil)
	var st runtimeStatus
	testkit.Eventually(t, 2*time.Minute, func() (bool, string) {
		st = h2.status("app")
		return st.Pending == nil && st.LastRollout != nil && st.LastRollout.Digest == d2, fmt.Sprintf("%+v pending %+v", st.LastRollout, st.Pending)
	})
	if st.LastRollout.Result != "pulled" || !hasImage(t, cli, repo+"@"+d2) {
		t.Fatalf("resumed job: %+v", st.LastRollout)
	}
	if code, answer := h2.deliver(webhooktest.Push{Namespace: "org", Name: "app", Tag: "latest", Digest: d2}, "s2"); code != 200 || answer["status"] != "duplicate" {
		t.Fatalf("replay after restart: %d %v", code, answer)
	}
}

// One push of a multi-arch image: GitHub sends the tagged index and one untagged delivery per
// manifest (platforms and attestation), and cosign adds a signature tag. One pull, of the index.
func TestMultiArchBurstPullsOnce(t *testing.T) {
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	h := startHookd(t, pullOnlyConfig(reg.Host), t.TempDir(), nil)
	index, image := reg.PushIndex(t, "org/app", "latest", testkit.App{Version: "multi-" + testkit.TestID(t)})
	burst := []struct {
		id, tag, digest string
	}{
		{"m-amd64", "", image},
		{"m-index", "latest", index},
		{"m-attestation", "", "sha256:" + strings.Repeat("a", 64)},
		{"m-sig", "sha256-" + strings.TrimPrefix(index, "sha256:") + ".sig", "sha256:" + strings.Repeat("b", 64)},
		{"m-index-again", "latest", index},
	}
	for _, d := range burst {
		if code, answer := h.deliver(webhooktest.Push{Namespace: "Org", Name: "app", Tag: d.tag, Digest: d.digest}, d.id); code != 202 {
			t.Fatalf("%s: %d %v", d.id, code, answer)
		}
	}
	st := h.waitJob("app", 0)
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		st = h.status("app")
		return st.Pending == nil, "a job is still pending"
	})
	if st.LastRollout.Digest != index || !hasImage(t, cli, reg.Host+"/org/app@"+index) {
		t.Fatalf("last result %+v, want the index %s held", st.LastRollout, index)
	}
	if n := h.metric("hookd_pulls_total", "result=pulled"); n != 1 {
		t.Fatalf("pulls: %v, want 1", n)
	}
	if n := h.metric("hookd_webhook_deliveries_total", "outcome=ignored"); n != 3 {
		t.Fatalf("ignored deliveries: %v, want 3 (two untagged, one signature)", n)
	}
}
