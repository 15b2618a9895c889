package fallbackpoll_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/fakeengine"
	"github.com/hookd/hookd/internal/fallbackpoll"
	"github.com/hookd/hookd/internal/refresh"
	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/store"
	"github.com/hookd/hookd/internal/testkit"
)

// decisions is the poll's world without a Docker engine: a real registry and state store, and
// the in-memory engine standing in for Docker.
type decisions struct {
	t       *testing.T
	reg     *testkit.Registry
	eng     *fakeengine.Engine
	store   *store.Store
	metrics *prometheus.Registry
	poller  *fallbackpoll.Poller
	// digests[runtime] is what its tag points to at the registry.
	digests map[string]string
}

// newDecisions makes one runtime per name, each following its own repository's :latest, with
// one container (recreating runtimes) running what the tag points to.
func newDecisions(t *testing.T, names ...string) *decisions {
	d := &decisions{t: t, reg: testkit.StartRegistry(t, nil), eng: fakeengine.New(), metrics: prometheus.NewRegistry(), digests: map[string]string{}}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d.store = st
	var runtimes []hookd.Runtime
	for _, name := range names {
		rt := hookd.NewRuntime(name, d.reg.Host+"/org/"+name+":latest")
		rt.Recreate = !strings.HasPrefix(name, "pull-only")
		runtimes = append(runtimes, rt)
		dig := d.push(name, "v1")
		d.hold(name, dig)
		if rt.Recreate {
			d.eng.Run(name+"-1", rt.Image, map[string]string{catalog.LabelRuntime: name}, true)
		}
	}
	c, err := registry.New(authn.NewMultiKeychain(), registry.NewPacer(nil, time.Millisecond, d.metrics))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cat := catalog.New(runtimes, d.eng, time.Minute)
	svc := refresh.New(st, cat, c, d.eng, 0, refresh.NewMetrics(d.metrics), log) // not run: queued jobs stay pending
	d.poller = fallbackpoll.New(cat, c, d.eng, st, svc, time.Hour, fallbackpoll.NewMetrics(d.metrics), log)
	return d
}

// push moves the runtime's tag to a new image and returns its digest.
func (d *decisions) push(runtime, version string) string {
	dig := d.reg.Push(d.t, "org/"+runtime, "latest", testkit.App{Version: version + "-" + runtime})
	d.digests[runtime] = dig
	return dig
}

// hold makes the engine hold digest as the runtime's :latest, as a pull and tag would.
func (d *decisions) hold(runtime, dig string) {
	repo := d.reg.Host + "/org/" + runtime
	d.eng.AddImage("img-"+dig[7:19], repo+"@"+dig, repo+":latest")
}

func (d *decisions) record(runtime string, change func(*store.Record)) {
	if _, err := d.store.UpdateRecord(runtime, change); err != nil {
		d.t.Fatal(err)
	}
}

// checks compares hookd_poll_checks_total with want (result → count; absent = 0).
func (d *decisions) checks(want map[string]int) {
	d.t.Helper()
	var b strings.Builder
	b.WriteString("# HELP hookd_poll_checks_total Fallback poll checks of one runtime by result.\n# TYPE hookd_poll_checks_total counter\n")
	for _, r := range []string{"error", "failed_digest", "queued", "confirmed", "rate_limited", "rollout_in_progress", "up_to_date"} {
		fmt.Fprintf(&b, "hookd_poll_checks_total{result=%q} %d\n", r, want[r])
	}
	if err := testutil.GatherAndCompare(d.metrics, strings.NewReader(b.String()), "hookd_poll_checks_total"); err != nil {
		d.t.Fatal(err)
	}
}

func (d *decisions) pending(runtime string) (hookd.Job, bool) {
	d.t.Helper()
	j, ok, err := d.store.Pending(runtime)
	if err != nil {
		d.t.Fatal(err)
	}
	return j, ok
}

// One pass judges every runtime from one listing of the engine; each case below is one of the
// poll's decisions.
func TestPassDecisions(t *testing.T) {
	d := newDecisions(t, "current", "behind", "failed", "busy", "confirmed", "unconfirmed", "pull-only", "self")
	ctx := context.Background()

	// behind: a push the webhook never announced.
	d.push("behind", "v2")
	// failed: the tag points to a digest that was rolled back.
	bad := d.push("failed", "v2")
	d.record("failed", func(r *store.Record) { r.FailedDigest, r.FailedReason = bad, "exited with code 1" })
	// busy: a rollout's journal is open.
	d.push("busy", "v2")
	if err := d.store.WriteJournal(&store.Rollout{Runtime: "busy", Containers: map[string]*store.Switch{}}); err != nil {
		t.Fatal(err)
	}
	// confirmed: a delivery announced the digest a moment ago and it runs.
	conf := d.digests["confirmed"]
	d.record("confirmed", func(r *store.Record) {
		r.SeenDigest, r.SeenAt, r.SeenVia, r.RunningDigest = conf, time.Now(), hookd.TriggerWebhook, conf
	})
	// unconfirmed: a delivery announced a digest a moment ago, but its job failed before it ran.
	ahead := d.push("unconfirmed", "v2")
	d.record("unconfirmed", func(r *store.Record) {
		r.SeenDigest, r.SeenAt, r.SeenVia = ahead, time.Now(), hookd.TriggerWebhook
	})
	// self: hookd's own container is a member on an older image; it is not judged.
	hookdSelf := d.eng.Run("self-hookd", d.reg.Host+"/org/self:old", map[string]string{catalog.LabelRuntime: "self"}, true)
	d.eng.SetSelf(hookdSelf.ID)

	lists := d.eng.ListCalls
	d.poller.Pass(ctx)
	if n := d.eng.ListCalls - lists; n != 1 {
		t.Errorf("%d listings of the engine in one pass over 8 runtimes, want 1", n)
	}
	d.checks(map[string]int{"up_to_date": 3, "queued": 2, "failed_digest": 1, "rollout_in_progress": 1, "confirmed": 1})
	for _, rt := range []string{"behind", "unconfirmed"} {
		if j, ok := d.pending(rt); !ok || j.Hint != d.digests[rt] || j.Trigger != hookd.TriggerPoll {
			t.Errorf("%s: pending %+v (%v), want a poll job for %s", rt, j, ok, d.digests[rt])
		}
	}
	for _, rt := range []string{"current", "failed", "busy", "confirmed", "pull-only", "self"} {
		if j, ok := d.pending(rt); ok {
			t.Errorf("%s: queued %+v", rt, j)
		}
	}
	if rec, _ := d.store.Record("busy"); rec.SeenDigest != "" || rec.RunningDigest != "" {
		t.Errorf("busy: record %+v changed mid-rollout", rec)
	}
	if rec, _ := d.store.Record("current"); rec.RunningDigest != d.digests["current"] || rec.SeenVia != hookd.TriggerPoll {
		t.Errorf("current: record %+v, want running %s seen by the poll", rec, d.digests["current"])
	}
	if got := gaugeValue(t, d.metrics, "hookd_poll_last_success_timestamp_seconds"); got == 0 {
		t.Error("a pass where every check succeeded did not set the last-success time")
	}
}

// With the engine away, recreating runtimes cannot be judged: errors, nothing queued, and the
// pass is not a success.
func TestPassWithEngineDown(t *testing.T) {
	d := newDecisions(t, "app", "other")
	d.push("app", "v2")
	d.eng.SetDown(true)
	d.poller.Pass(context.Background())
	d.checks(map[string]int{"error": 2})
	if j, ok := d.pending("app"); ok {
		t.Errorf("queued %+v while the engine was down", j)
	}
	if got := gaugeValue(t, d.metrics, "hookd_poll_last_success_timestamp_seconds"); got != 0 {
		t.Error("a pass with errors set the last-success time")
	}
	d.eng.SetDown(false)
	d.poller.Pass(context.Background())
	if j, ok := d.pending("app"); !ok || j.Hint != d.digests["app"] {
		t.Errorf("after the engine came back: pending %+v (%v)", j, ok)
	}
}

// gaugeValue reads a gathered gauge without labels (0 when absent).
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return testkit.Sample(t, reg, name)
}
