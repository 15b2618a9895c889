package refresh

import (
	"strings"
	"testing"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/engine"
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
