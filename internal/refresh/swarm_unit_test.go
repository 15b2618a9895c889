package refresh

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/fakeengine"
	"github.com/hookd/hookd/internal/store"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// On a swarm worker the services cannot even be listed: a runtime of containers still rolls
// out, and one without containers says plainly that services need a manager.
func TestSwarmWorkerSaysServicesNeedAManager(t *testing.T) {
	app, web := hookd.NewRuntime("app", image), hookd.NewRuntime("web", "reg.test/acme/web:latest")
	for _, rt := range []*hookd.Runtime{&app, &web} {
		rt.MinUptime, rt.HealthTimeout = 0, time.Second
	}
	s := newSite(t, 1, app, web)
	s.eng.OnServices = func(label, value string) ([]engine.Service, error) { return nil, engine.ErrNotManager }
	// Made before any rollout: the first one moves the tag this container was created from.
	s.eng.Run("web-1", "reg.test/acme/web:latest", map[string]string{catalog.LabelRuntime: "web"}, true)
	s.run()

	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeFailed || !strings.Contains(res.Reason, "services need a swarm manager") {
		t.Fatalf("runtime without containers on a worker: %s %q, want failed naming the manager", res.Outcome, res.Reason)
	}
	if rec, _ := s.store.Record("app"); rec.RunningDigest == newDig {
		t.Errorf("running digest recorded as %s though nothing runs it", newDig)
	}

	res = s.refresh("web")
	if res.Outcome != hookd.OutcomeRolledOut || len(res.Recreated) != 1 {
		t.Fatalf("runtime with a container on a worker: %s %q %v, want its container rolled out", res.Outcome, res.Reason, res.Recreated)
	}
}

// swarmSite is a site whose engine is a swarm manager with one 2-replica service of runtime
// app on the old digest, and no containers.
func swarmSite(t *testing.T) (*site, *fakeengine.Swarm) {
	rt := hookd.NewRuntime("app", image)
	rt.MinUptime, rt.HealthTimeout = 0, time.Second
	s := newSite(t, 1, rt)
	w := fakeengine.NewSwarm()
	w.Add("svc1", "app-svc", image+"@"+oldDig, 2, map[string]string{catalog.LabelRuntime: "app"})
	s.eng.Swarm = w
	return s, w
}

// An update whose answer is lost on its way back went out all the same: hookd reads the
// service again, waits for Swarm's end, and never submits the digest a second time.
func TestSwarmLostAnswerIsNotSubmittedAgain(t *testing.T) {
	s, w := swarmSite(t)
	w.OnUpdate = func(string) error {
		return errors.New("read unix @->/var/run/docker.sock: read: connection reset by peer")
	}
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledOut || !slices.Equal(res.Services, []string{"app-svc"}) || w.Updates() != 1 {
		t.Fatalf("lost answer: %s %q services %v, %d updates; want rolled_out with one update", res.Outcome, res.Reason, res.Services, w.Updates())
	}
	if res := s.refresh("app"); res.Outcome != hookd.OutcomeUpToDate || w.Updates() != 1 {
		t.Fatalf("next refresh: %s %q, %d updates; want up_to_date, still one", res.Outcome, res.Reason, w.Updates())
	}
	if open, _ := s.store.ServiceUpdates(""); len(open) != 0 {
		t.Fatalf("journal left open: %+v", open)
	}

	// The same when Swarm rolled that update back: the digest is remembered failed, and a
	// delivery for it submits nothing.
	s2, w2 := swarmSite(t)
	w2.RollBack = true
	w2.OnUpdate = w.OnUpdate
	s2.run()
	if res := s2.refresh("app"); res.Outcome != hookd.OutcomeRolledBack || w2.Updates() != 1 {
		t.Fatalf("lost answer of a roll back: %s %q, %d updates; want rolled_back with one update", res.Outcome, res.Reason, w2.Updates())
	}
	if rec := s2.record("app"); rec.FailedDigest != newDig || rec.RunningDigest == newDig {
		t.Fatalf("record after Swarm's roll back: %+v", rec)
	}
	s2.push("app", "d1")
	s2.waitResult("app", func(r hookd.Result) bool { return r.Outcome == hookd.OutcomeSkipped })
	if w2.Updates() != 1 {
		t.Fatalf("%d updates after a delivery of the failed digest, want 1", w2.Updates())
	}
}

// A journaled update Swarm still rolls does not hold the runtime up: the settle reads it once
// and leaves it journaled; once Swarm has ended it, the settle records the end and submits
// nothing. A forced job interrupted by the crash does not submit the digest Swarm rolled back.
func TestSwarmSettleReadsOnceAndNeverSubmits(t *testing.T) {
	s, w := swarmSite(t)
	queued := time.Now()
	u := store.ServiceUpdate{Runtime: "app", ServiceID: "svc1", Service: "app-svc", Version: 10, Ref: image + "@" + newDig,
		Digest: newDig, PreviousImage: image + "@" + oldDig, At: queued}
	if err := s.store.WriteServiceUpdate(u); err != nil {
		t.Fatal(err)
	}
	svc := w.Get("svc1")
	svc.Version, svc.Image, svc.UpdateState = 11, image+"@"+newDig, "rollback_started"
	w.Set(svc)
	if err := s.svc.settleServices(context.Background(), "app"); err != nil {
		t.Fatalf("settle while Swarm rolls back: %v", err)
	}
	if open, _ := s.store.ServiceUpdates("app"); len(open) != 1 {
		t.Fatalf("journal of an update still rolling: %+v, want it kept", open)
	}

	svc.Version, svc.Image, svc.UpdateState, svc.UpdateMessage = 13, image+"@"+oldDig, "rollback_completed", "rollback completed"
	w.Set(svc)
	if _, err := s.store.UpdateRecord("app", func(r *store.Record) { r.RunningDigest = newDig }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.Enqueue(hookd.Job{Runtime: "app", Trigger: hookd.TriggerAdmin, Force: true, Requests: 1, QueuedAt: queued}); err != nil {
		t.Fatal(err)
	}
	s.run()
	res := s.waitResult("app", func(hookd.Result) bool { return true })
	if res.Outcome != hookd.OutcomeSkipped || w.Updates() != 0 {
		t.Fatalf("forced job after the settle read Swarm's roll back: %s %q, %d updates; want skipped, none", res.Outcome, res.Reason, w.Updates())
	}
	if rec := s.record("app"); rec.FailedDigest != newDig || rec.RunningDigest != oldDig {
		t.Fatalf("record after the settle: %+v, want %s failed and %s running", rec, newDig, oldDig)
	}
	if open, _ := s.store.ServiceUpdates("app"); len(open) != 0 {
		t.Fatalf("journal left open after Swarm ended: %+v", open)
	}
	if got := testutil.ToFloat64(s.svc.metrics.rollbacks.WithLabelValues("app")); got != 1 {
		t.Fatalf("hookd_rollbacks_total{runtime=app} = %v, want 1", got)
	}
}
