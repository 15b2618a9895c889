package refresh

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/store"
)

// listing is an engine's answer to the zero-config listing; hang makes it an engine that
// never answers (it waits for the caller to give up).
type listing struct {
	containers []engine.Container
	hang       bool
}

func (l listing) List(ctx context.Context, _, _ string) ([]engine.Container, error) {
	if l.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return l.containers, nil
}

// In zero-config mode an engine that hangs does not keep a delivery from the others: the
// runtime is matched and queued on the engine that answers, and nothing on the one that hangs.
func TestFleetDeliveryPastAHungEngine(t *testing.T) {
	root, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	const img = "ghcr.io/acme/web:latest"
	listers := map[string]listing{
		"up":   {containers: []engine.Container{{ID: "1", Name: "web", Image: img, Labels: map[string]string{catalog.LabelEnable: "true"}}}},
		"hung": {hang: true},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var services []*Service
	views := map[string]*store.Store{}
	for _, name := range []string{"hung", "up"} {
		view, err := root.Engine(name)
		if err != nil {
			t.Fatal(err)
		}
		views[name] = view
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"engine": name}, prometheus.NewRegistry())
		services = append(services, New(view, catalog.New(nil, listers[name], time.Minute), nil, nil, 0, NewMetrics(reg), log).OnEngine(name))
	}
	f := NewFleet(root, services...)
	ctx := context.Background()
	names, err := f.Match(ctx, img)
	if err != nil || !slices.Equal(names, []string{img}) {
		t.Fatalf("match past a hung engine: %v %v, want [%s]", names, err, img)
	}
	if dup, err := f.Accept(ctx, "d1", names, img, "sha256:aa"); err != nil || dup {
		t.Fatalf("accept: dup=%v err=%v", dup, err)
	}
	if j, ok, _ := views["up"].Pending(img); !ok || j.Engine != "up" || j.Hint != "sha256:aa" {
		t.Fatalf("job on the engine that answers: %+v %v", j, ok)
	}
	if j, ok, _ := views["hung"].Pending(img); ok {
		t.Fatalf("a job was queued on the hung engine, whose runtimes are unknown: %+v", j)
	}
	if dup, _ := f.Accept(ctx, "d1", names, img, ""); !dup {
		t.Fatal("the same delivery id was accepted twice")
	}
}

func TestCombineResultsOfEngines(t *testing.T) {
	t0 := time.Now()
	got := Combine([]hookd.Result{
		{Runtime: "web", Engine: "a", Outcome: hookd.OutcomeRolledOut, Recreated: []string{"web-1"}, Started: t0, Finished: t0.Add(time.Second)},
		{Runtime: "web", Engine: "b", Outcome: hookd.OutcomeRolledBack, RolledBack: []string{"web-1"}, Reason: "exited 1",
			Failed: []hookd.Failure{{Ref: "r@d", Reason: "exited 1"}}, Started: t0.Add(-time.Second), Finished: t0.Add(3 * time.Second)},
		{Runtime: "web", Engine: "c", Outcome: hookd.OutcomeUpToDate, Started: t0, Finished: t0, Notes: []string{"web: switched stop-first: uses the host's network"}},
	})
	if got.Outcome != hookd.OutcomeRolledBack || len(got.Engines) != 3 || got.Reason != "engine b: exited 1" ||
		!slices.Equal(got.Recreated, []string{"web-1"}) || len(got.Failed) != 1 || got.Failed[0].Reason != "engine b: exited 1" ||
		!slices.Equal(got.Notes, []string{"engine c: web: switched stop-first: uses the host's network"}) ||
		!got.Started.Equal(t0.Add(-time.Second)) || !got.Finished.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("combined %+v", got)
	}
	if got := Combine([]hookd.Result{{Outcome: hookd.OutcomeUpToDate}, {Outcome: hookd.OutcomeFailed}}); got.Outcome != hookd.OutcomeFailed {
		t.Fatalf("up to date and failed: %s, want failed", got.Outcome)
	}
}
