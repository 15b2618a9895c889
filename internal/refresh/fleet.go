package refresh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/store"
)

// Fleet is every engine's Service behind one intake: a delivery or a manual refresh reaches
// each engine its runtime lives on, and each engine then resolves, pulls, rolls out, gates and
// rolls back on its own. A failure on one engine leaves the others as they end: engines are
// separate hosts whose faults (a daemon away, a port taken, a disk full) are their own, and
// rolling healthy hosts back would spread one host's trouble to all of them.
type Fleet struct {
	store    *store.Store // delivery ids, shared by every engine
	services []*Service
}

// NewFleet returns the fleet of services, each named with OnEngine and keeping its work in
// its engine's view of st.
func NewFleet(st *store.Store, services ...*Service) *Fleet {
	return &Fleet{store: st, services: services}
}

// lookupTimeout bounds what one delivery asks each engine's catalog (in zero-config mode a
// listing of the engine), all engines at once: an engine that hangs costs the delivery this
// much, well inside GitHub's 10 s, and never the others' jobs.
const lookupTimeout = 3 * time.Second

// eachEngine runs ask on every engine's service at once, each under lookupTimeout.
func (f *Fleet) eachEngine(ctx context.Context, ask func(ctx context.Context, i int, s *Service)) {
	var wg sync.WaitGroup
	for i, s := range f.services {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			ask(ctx, i, s)
		})
	}
	wg.Wait()
}

// Match names the runtimes a push of image concerns on any engine, each once.
func (f *Fleet) Match(ctx context.Context, image string) ([]string, error) {
	names := make([][]string, len(f.services))
	errs := make([]error, len(f.services))
	f.eachEngine(ctx, func(ctx context.Context, i int, s *Service) {
		if names[i], errs[i] = s.catalog.Match(ctx, image); errs[i] != nil {
			errs[i] = fmt.Errorf("engine %s: %w", s.engName, errs[i])
		}
	})
	var out []string
	for _, ns := range names {
		for _, n := range ns {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	// An engine that cannot be listed (zero-config, engine away) must not lose the delivery
	// for the others; with none listed there is nothing to queue on. The one away catches up
	// through its poll once it answers.
	if len(out) == 0 {
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Accept durably records a verified delivery once and queues, in the same transaction, a job
// for each runtime on each engine it lives on. A delivery id taken before queues nothing.
func (f *Fleet) Accept(ctx context.Context, deliveryID string, runtimes []string, image, hint string) (bool, error) {
	now := time.Now()
	perEngine := make([][]hookd.Job, len(f.services))
	f.eachEngine(ctx, func(ctx context.Context, i int, s *Service) {
		for _, r := range runtimes {
			rt, ok, err := s.catalog.Get(ctx, r)
			if err != nil || !ok {
				continue
			}
			j := hookd.Job{Runtime: r, Engine: s.engName, Trigger: hookd.TriggerWebhook, Deliveries: []string{deliveryID}, Requests: 1, QueuedAt: now}
			if rt.Image == image {
				j.Hint = hint
			}
			perEngine[i] = append(perEngine[i], j)
		}
	})
	dup, err := f.store.Accept(deliveryID, now, slices.Concat(perEngine...))
	if err != nil || dup {
		return dup, err
	}
	for i, s := range f.services {
		for _, j := range perEngine[i] {
			s.notify(j.Runtime)
		}
	}
	return false, nil
}

// Refresh runs a manual rollout of runtime on every engine it lives on, at once, and waits for
// them all. With one engine the result is that engine's; with several it sums them up: the
// lists of all, the worst outcome, and each engine's own result under Engines.
func (f *Fleet) Refresh(ctx context.Context, runtime string, pullOnly bool) (hookd.Result, error) {
	if len(f.services) == 1 {
		return f.services[0].Refresh(ctx, runtime, pullOnly)
	}
	known := make([]bool, len(f.services))
	errs := make([]error, len(f.services))
	f.eachEngine(ctx, func(ctx context.Context, i int, s *Service) {
		if _, known[i], errs[i] = s.catalog.Get(ctx, runtime); errs[i] != nil {
			errs[i] = fmt.Errorf("engine %s: %w", s.engName, errs[i])
		}
	})
	var on []*Service
	for i, s := range f.services {
		if known[i] {
			on = append(on, s)
		}
	}
	if len(on) == 0 {
		if err := errors.Join(errs...); err != nil { // not known to be unknown: the engines could not say
			return hookd.Result{}, fmt.Errorf("refresh %s: %w", runtime, err)
		}
		return hookd.Result{}, fmt.Errorf("%w %q", ErrUnknownRuntime, runtime)
	}
	results := make([]hookd.Result, len(on))
	errs = make([]error, len(on))
	var wg sync.WaitGroup
	for i, s := range on {
		wg.Go(func() {
			if results[i], errs[i] = s.Refresh(ctx, runtime, pullOnly); errs[i] != nil {
				errs[i] = fmt.Errorf("engine %s: %w", s.engName, errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return hookd.Result{}, err
	}
	if len(results) == 1 {
		return results[0], nil
	}
	return Combine(results), nil
}

// Combine sums up one runtime's results on several engines.
func Combine(results []hookd.Result) hookd.Result {
	out := hookd.Result{Runtime: results[0].Runtime, Trigger: results[0].Trigger, Image: results[0].Image,
		Pulled: []string{}, Failed: []hookd.Failure{}, Recreated: []string{}, Engines: results}
	var reasons []string
	for i, r := range results {
		if i == 0 || worse(r.Outcome, out.Outcome) {
			out.Outcome = r.Outcome
		}
		if i == 0 || r.Started.Before(out.Started) {
			out.Started = r.Started
		}
		if r.Finished.After(out.Finished) {
			out.Finished = r.Finished
		}
		if out.Digest == "" {
			out.Digest = r.Digest
		}
		out.Requests = max(out.Requests, r.Requests)
		out.Pulled = append(out.Pulled, r.Pulled...)
		out.Recreated = append(out.Recreated, r.Recreated...)
		out.RolledBack = append(out.RolledBack, r.RolledBack...)
		out.Services = append(out.Services, r.Services...)
		for _, n := range r.Notes {
			out.Notes = append(out.Notes, "engine "+r.Engine+": "+n)
		}
		for _, fl := range r.Failed {
			fl.Reason = "engine " + r.Engine + ": " + fl.Reason
			out.Failed = append(out.Failed, fl)
		}
		if r.Reason != "" {
			reasons = append(reasons, "engine "+r.Engine+": "+r.Reason)
		}
	}
	out.Reason = strings.Join(reasons, "; ")
	return out
}

// severity orders outcomes from the one that most needs a person.
var severity = []hookd.Outcome{hookd.OutcomeFailed, hookd.OutcomeRolledBack, hookd.OutcomeRefused, hookd.OutcomeSkipped,
	hookd.OutcomeRolledOut, hookd.OutcomePulled, hookd.OutcomeUpToDate}

func worse(a, b hookd.Outcome) bool {
	return slices.Index(severity, a) < slices.Index(severity, b)
}

// Run runs every engine's service until ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, s := range f.services {
		g.Go(func() error { return s.Run(ctx) })
	}
	return g.Wait()
}
