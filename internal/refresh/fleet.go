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

// Services returns the engines' services, in configuration order.
func (f *Fleet) Services() []*Service { return f.services }

// Match names the runtimes a push of image concerns on any engine, each once.
func (f *Fleet) Match(ctx context.Context, image string) ([]string, error) {
	var out []string
	var errs []error
	for _, s := range f.services {
		names, err := s.catalog.Match(ctx, image)
		if err != nil {
			errs = append(errs, fmt.Errorf("engine %s: %w", s.engName, err))
			continue
		}
		for _, n := range names {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	// An engine that cannot be listed (zero-config, engine away) must not lose the delivery
	// for the others; with none listed there is nothing to queue on.
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Accept durably records a verified delivery once and queues, in the same transaction, a job
// for each runtime on each engine it lives on. A delivery id taken before queues nothing.
func (f *Fleet) Accept(ctx context.Context, deliveryID string, runtimes []string, image, hint string) (bool, error) {
	now := time.Now()
	var jobs []hookd.Job
	woken := make([][]string, len(f.services))
	for i, s := range f.services {
		for _, r := range runtimes {
			rt, ok, err := s.catalog.Get(ctx, r)
			if err != nil || !ok {
				continue
			}
			j := hookd.Job{Runtime: r, Engine: s.engName, Trigger: hookd.TriggerWebhook, Deliveries: []string{deliveryID}, Requests: 1, QueuedAt: now}
			if rt.Image == image {
				j.Hint = hint
			}
			jobs = append(jobs, j)
			woken[i] = append(woken[i], r)
		}
	}
	dup, err := f.store.Accept(deliveryID, now, jobs)
	if err != nil || dup {
		return dup, err
	}
	for i, s := range f.services {
		s.notify(woken[i]...)
	}
	return false, nil
}

// Refresh runs a manual rollout of runtime on every engine it lives on, at once, and waits for
// them all. With one engine the result is that engine's; with several it sums them up: the
// lists of all, the worst outcome, and each engine's own result under Engines.
func (f *Fleet) Refresh(ctx context.Context, runtime string, pullOnly bool) (hookd.Result, error) {
	var on []*Service
	for _, s := range f.services {
		if _, ok, err := s.catalog.Get(ctx, runtime); err == nil && ok {
			on = append(on, s)
		}
	}
	if len(on) == 0 {
		if len(f.services) == 1 { // its own words: the catalog's error, if it had one
			return f.services[0].Refresh(ctx, runtime, pullOnly)
		}
		return hookd.Result{}, fmt.Errorf("%w %q", ErrUnknownRuntime, runtime)
	}
	results := make([]hookd.Result, len(on))
	errs := make([]error, len(on))
	var wg sync.WaitGroup
	for i, s := range on {
		wg.Go(func() { results[i], errs[i] = s.Refresh(ctx, runtime, pullOnly) })
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
