// Package refresh runs hookd's one rollout path: a queued job for a runtime resolves the tag at
// the registry, pulls that digest and, unless the runtime is pull-only, recreates the runtime's
// containers on it. Webhook, poll and admin requests all arrive here through the same queue.
package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/store"
)

var (
	// ErrUnknownRuntime is returned for a refresh of a runtime hookd does not know.
	ErrUnknownRuntime = errors.New("unknown runtime")
	// ErrStopping is returned to a refresh still waiting when hookd stops.
	ErrStopping = errors.New("hookd is stopping")
)

// Job limits: a shutdown waits for the current job, so every job must end on its own.
const (
	resolveTimeout = 30 * time.Second
	pullTimeout    = 10 * time.Minute
)

// Notifier hears of every finished job; it must not block.
type Notifier interface {
	Notify(hookd.Result)
}

// Service owns the queue's workers: one per runtime at a time, runtimes in parallel.
type Service struct {
	store     *store.Store
	catalog   *catalog.Catalog
	registry  *registry.Client
	engine    *engine.Engine
	metrics   *Metrics
	log       *slog.Logger
	notifiers []Notifier

	mu    sync.Mutex
	dirty map[string]bool
	wake  chan struct{}

	waitMu   sync.Mutex
	waiters  map[uint64][]chan hookd.Result
	stopping chan struct{} // closed when Run's context ends: no job is taken after it
	stopped  chan struct{} // closed when Run returns
}

// New returns a service; Run starts its workers. Every finished job is passed to notify.
func New(st *store.Store, cat *catalog.Catalog, reg *registry.Client, eng *engine.Engine, m *Metrics, log *slog.Logger, notify ...Notifier) *Service {
	return &Service{
		store: st, catalog: cat, registry: reg, engine: eng, metrics: m, log: log, notifiers: notify,
		dirty:    map[string]bool{},
		wake:     make(chan struct{}, 1),
		waiters:  map[uint64][]chan hookd.Result{},
		stopping: make(chan struct{}),
		stopped:  make(chan struct{}),
	}
}

// Accept durably records a verified delivery and queues one job per runtime. It is the
// webhook's queue: a delivery id seen before queues nothing and reports dup.
func (s *Service) Accept(ctx context.Context, deliveryID string, runtimes []string, hint string) (bool, error) {
	now := time.Now()
	jobs := make([]hookd.Job, len(runtimes))
	for i, r := range runtimes {
		jobs[i] = hookd.Job{Runtime: r, Trigger: hookd.TriggerWebhook, Deliveries: []string{deliveryID}, Hint: hint, Requests: 1, QueuedAt: now}
	}
	dup, err := s.store.Accept(deliveryID, now, jobs)
	if err != nil || dup {
		return dup, err
	}
	s.notify(runtimes...)
	return false, nil
}

// Submit queues a job (poll or admin) and returns the id of the pending job that carries it.
func (s *Service) Submit(ctx context.Context, j hookd.Job) (uint64, error) {
	if j.QueuedAt.IsZero() {
		j.QueuedAt = time.Now()
	}
	id, err := s.store.Enqueue(j)
	if err != nil {
		return 0, err
	}
	s.notify(j.Runtime)
	return id, nil
}

// Refresh queues a manual rollout of runtime and waits for the job that carries it. A manual
// refresh retries a digest that failed before.
func (s *Service) Refresh(ctx context.Context, runtime string, pullOnly bool) (hookd.Result, error) {
	if _, ok, err := s.catalog.Get(ctx, runtime); err != nil {
		return hookd.Result{}, err
	} else if !ok {
		return hookd.Result{}, fmt.Errorf("%w %q", ErrUnknownRuntime, runtime)
	}
	ch := make(chan hookd.Result, 1)
	// The waiter is registered under waitMu before a worker can finish the job: finish takes
	// waitMu too, and the job does not exist before Enqueue commits.
	s.waitMu.Lock()
	id, err := s.store.Enqueue(hookd.Job{Runtime: runtime, Trigger: hookd.TriggerAdmin, Requests: 1, Force: true, PullOnly: pullOnly, QueuedAt: time.Now()})
	if err == nil {
		s.waiters[id] = append(s.waiters[id], ch)
	}
	s.waitMu.Unlock()
	if err != nil {
		return hookd.Result{}, err
	}
	s.notify(runtime)
	stopping := s.stopping
	for {
		select {
		case res := <-ch:
			return res, nil
		case <-stopping:
			// A job not taken yet stays queued for the next start: say so now. One being run
			// is finished, so its result is worth the wait.
			if j, ok, err := s.store.Pending(runtime); err != nil || (ok && j.ID == id) {
				return hookd.Result{}, fmt.Errorf("refresh %s: %w (job %d stays queued for the next start)", runtime, ErrStopping, id)
			}
			stopping = nil
		case <-s.stopped:
			return hookd.Result{}, fmt.Errorf("refresh %s: %w (job %d stays queued for the next start)", runtime, ErrStopping, id)
		case <-ctx.Done():
			return hookd.Result{}, fmt.Errorf("refresh %s: %w (job %d stays queued)", runtime, ctx.Err(), id)
		}
	}
}

func (s *Service) notify(runtimes ...string) {
	s.mu.Lock()
	for _, r := range runtimes {
		s.dirty[r] = true
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) takeDirty() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.dirty))
	for r := range s.dirty {
		out = append(out, r)
	}
	clear(s.dirty)
	return out
}

// Run resumes the work that was queued or running when hookd last stopped, then runs a worker
// for each runtime with work, until ctx ends. On the way out it lets every worker finish its
// current job and leaves the rest queued for the next start.
func (s *Service) Run(ctx context.Context) error {
	defer close(s.stopped)
	if runtimes, err := s.catalog.All(ctx); err == nil {
		for _, rt := range runtimes {
			s.metrics.known(rt.Name)
		}
	}
	// Settling is bounded on its own; a SIGTERM during it must not leave a container stopped.
	s.recover(context.WithoutCancel(ctx))
	waiting, err := s.store.Resume()
	if err != nil {
		return err
	}
	if len(waiting) > 0 {
		s.log.Info("resuming queued work", "runtimes", waiting)
		s.notify(waiting...)
	}
	active := map[string]bool{}
	again := map[string]bool{}
	done := make(chan string)
	start := func(r string) {
		active[r] = true
		go func() {
			s.work(ctx, r)
			done <- r
		}()
	}
	for {
		select {
		case <-ctx.Done():
			close(s.stopping)
			for len(active) > 0 {
				delete(active, <-done)
			}
			return nil
		case <-s.wake:
			for _, r := range s.takeDirty() {
				if active[r] {
					again[r] = true // its worker may already have looked; look once more after it
					continue
				}
				start(r)
			}
		case r := <-done:
			delete(active, r)
			if again[r] {
				delete(again, r)
				start(r)
			}
		}
	}
}

func (s *Service) work(ctx context.Context, runtime string) {
	for ctx.Err() == nil {
		job, ok, err := s.store.Take(runtime)
		if err != nil {
			s.log.Error("take job", "runtime", runtime, "err", err)
			return
		}
		if !ok {
			return
		}
		// A job that has started is finished even when hookd is stopping: abandoning a rollout
		// half-way is what the journal exists for, not the plan.
		res := s.execute(context.WithoutCancel(ctx), job)
		if err := s.store.Finish(res); err != nil {
			s.log.Error("record result", "runtime", runtime, "err", err)
		}
		s.metrics.observe(res)
		for _, n := range s.notifiers {
			n.Notify(res)
		}
		s.log.Info("job done", "runtime", runtime, "job", job.ID, "trigger", job.Trigger, "requests", job.Requests,
			"result", res.Outcome, "digest", res.Digest, "reason", res.Reason, "seconds", res.Finished.Sub(res.Started).Seconds())
		s.waitMu.Lock()
		for _, ch := range s.waiters[job.ID] {
			ch <- res
		}
		delete(s.waiters, job.ID)
		s.waitMu.Unlock()
	}
}

// execute runs one job to its end and returns its result; it never returns half-way through a
// change to the runtime's containers.
func (s *Service) execute(ctx context.Context, job hookd.Job) hookd.Result {
	res := hookd.Result{
		JobID: job.ID, Runtime: job.Runtime, Trigger: job.Trigger, Requests: job.Requests,
		Started: time.Now(), Pulled: []string{}, Failed: []hookd.Failure{}, Recreated: []string{},
	}
	rt, ok, err := s.catalog.Get(ctx, job.Runtime)
	if err != nil {
		return finished(&res, hookd.OutcomeFailed, err.Error())
	}
	if !ok {
		return finished(&res, hookd.OutcomeFailed, "runtime is no longer configured")
	}
	res.Image = rt.Image
	s.metrics.known(rt.Name) // a runtime discovered after the start gets its zero series too

	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	digest, err := s.registry.Resolve(rctx, rt.Image)
	cancel()
	if err != nil {
		res.Failed = append(res.Failed, hookd.Failure{Ref: rt.Image, Reason: err.Error()})
		return finished(&res, hookd.OutcomeFailed, "resolve tag: "+err.Error())
	}
	res.Digest = digest
	rec, err := s.store.UpdateRecord(rt.Name, func(r *store.Record) {
		r.SeenDigest, r.SeenAt, r.SeenVia = digest, time.Now(), job.Trigger
	})
	if err != nil {
		return finished(&res, hookd.OutcomeFailed, err.Error())
	}
	if rec.FailedDigest == digest && !job.Force {
		return finished(&res, hookd.OutcomeSkipped, "digest failed before ("+rec.FailedReason+"); a newer push or a manual refresh tries again")
	}

	repo := rt.Repository()
	ref := repo + "@" + digest
	img, err := s.pull(ctx, rt.Name, rt.Image, repo, digest)
	if err != nil {
		res.Failed = append(res.Failed, hookd.Failure{Ref: ref, Reason: err.Error()})
		return finished(&res, hookd.OutcomeFailed, "pull: "+err.Error())
	}
	if img.pulled {
		res.Pulled = append(res.Pulled, ref)
	}
	if !rt.Recreate || job.PullOnly {
		// As after `docker pull`, the tag names the new image, for the next `docker run` or
		// `compose up`.
		if err := s.engine.Tag(ctx, ref, rt.Image); err != nil {
			return finished(&res, hookd.OutcomeFailed, "tag: "+err.Error())
		}
		if !rt.Recreate {
			s.markRunning(rt.Name, digest)
		}
		if img.pulled {
			return finished(&res, hookd.OutcomePulled, "")
		}
		return finished(&res, hookd.OutcomeUpToDate, "the engine already holds "+digest)
	}
	return s.rollout(ctx, rt, ref, img.id, &res)
}

type pulledImage struct {
	id     string
	pulled bool
}

// pull makes sure the engine holds repo@digest, pulling it with the keychain's credentials when
// it does not, and proves the engine now has that digest.
func (s *Service) pull(ctx context.Context, runtime, image, repo, digest string) (pulledImage, error) {
	ctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	if id, ok, err := s.engine.HasImage(ctx, repo, digest); err != nil {
		return pulledImage{}, err
	} else if ok {
		s.metrics.pulls.WithLabelValues(runtime, "present").Inc()
		return pulledImage{id: id}, nil
	}
	creds, err := s.registry.Credentials(ctx, image)
	if err != nil {
		s.metrics.pulls.WithLabelValues(runtime, "failed").Inc()
		return pulledImage{}, err
	}
	auth := engine.Auth{Username: creds.Username, Password: creds.Password, IdentityToken: creds.IdentityToken, RegistryToken: creds.RegistryToken}
	if err := s.engine.Pull(ctx, repo+"@"+digest, auth); err != nil {
		s.metrics.pulls.WithLabelValues(runtime, "failed").Inc()
		return pulledImage{}, err
	}
	id, ok, err := s.engine.HasImage(ctx, repo, digest)
	if err == nil && !ok {
		err = fmt.Errorf("engine does not list %s@%s after the pull", repo, digest)
	}
	if err != nil {
		s.metrics.pulls.WithLabelValues(runtime, "failed").Inc()
		return pulledImage{}, err
	}
	s.metrics.pulls.WithLabelValues(runtime, "pulled").Inc()
	return pulledImage{id: id, pulled: true}, nil
}
