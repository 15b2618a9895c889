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
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/signature"
	"github.com/hookd/hookd/internal/store"
)

var (
	// ErrUnknownRuntime is returned for a refresh of a runtime hookd does not know.
	ErrUnknownRuntime = errors.New("unknown runtime")
	// ErrStopping is returned to a refresh still waiting when hookd stops.
	ErrStopping = errors.New("hookd is stopping")
)

// Job limits. Resolve and pull change nothing and are cut short at shutdown; a job whose
// container changes have begun is finished whatever happens, so those steps are bounded instead.
const (
	resolveTimeout = 30 * time.Second
	// verifyTimeout covers the longest wait for a signature a policy may ask, and the reads after.
	verifyTimeout = 6 * time.Minute
	pullTimeout   = 10 * time.Minute
	// settleBackoff is the first wait before another try to settle a rollout that could not be
	// finished or undone (the engine away, a port taken); it doubles up to settleBackoffMax.
	settleBackoff    = time.Second
	settleBackoffMax = 30 * time.Second
)

// Notifier hears of every finished job; it must not block.
type Notifier interface {
	Notify(hookd.Result)
}

// Service owns the queue's workers: one per runtime at a time, at most parallel runtimes at once.
type Service struct {
	store     *store.Store
	catalog   Catalog
	registry  Registry
	engine    Engine
	sigGate   Gate   // nil: no digest is checked
	engName   string // the engine's name in jobs and results; empty: the only engine
	metrics   *Metrics
	log       *slog.Logger
	notifiers []Notifier
	slots     chan struct{} // one per rollout allowed at once
	take      func(runtime string) (hookd.Job, bool, error)

	mu    sync.Mutex
	dirty map[string]bool
	wake  chan struct{}

	waitMu   sync.Mutex
	waiters  map[uint64][]chan hookd.Result
	stopping chan struct{} // closed when Run's context ends: no job is taken after it
	stopped  chan struct{} // closed when Run returns
}

// New returns a service; Run starts its workers. At most parallel runtimes are worked on at
// once (0: hookd.DefaultRolloutsParallel). Every finished job is passed to notify.
func New(st *store.Store, cat Catalog, reg Registry, eng Engine, parallel int, m *Metrics, log *slog.Logger, notify ...Notifier) *Service {
	if parallel <= 0 {
		parallel = hookd.DefaultRolloutsParallel
	}
	return &Service{
		store: st, catalog: cat, registry: reg, engine: eng, metrics: m, log: log, notifiers: notify,
		slots:    make(chan struct{}, parallel),
		take:     st.Take,
		dirty:    map[string]bool{},
		wake:     make(chan struct{}, 1),
		waiters:  map[uint64][]chan hookd.Result{},
		stopping: make(chan struct{}),
		stopped:  make(chan struct{}),
	}
}

// WithGate makes every rollout, whatever queued it, pass g before anything is pulled. Call it
// before Run.
func (s *Service) WithGate(g Gate) *Service {
	s.sigGate = g
	return s
}

// OnEngine names the engine the service drives, in its jobs, results and logs. Call it before
// Run.
func (s *Service) OnEngine(name string) *Service {
	s.engName = name
	s.log = s.log.With("engine", name)
	return s
}

// Submit queues a job (poll or admin) and returns the id of the pending job that carries it.
func (s *Service) Submit(ctx context.Context, j hookd.Job) (uint64, error) {
	if j.QueuedAt.IsZero() {
		j.QueuedAt = time.Now()
	}
	j.Engine = s.engName
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
		return hookd.Result{}, fmt.Errorf("refresh %s: %w", runtime, err)
	} else if !ok {
		return hookd.Result{}, fmt.Errorf("%w %q", ErrUnknownRuntime, runtime)
	}
	ch := make(chan hookd.Result, 1)
	// The waiter is registered under waitMu before a worker can finish the job: finish takes
	// waitMu too, and the job does not exist before Enqueue commits.
	s.waitMu.Lock()
	id, err := s.store.Enqueue(hookd.Job{Runtime: runtime, Engine: s.engName, Trigger: hookd.TriggerAdmin, Requests: 1, Force: true, PullOnly: pullOnly, QueuedAt: time.Now()})
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
	// A rollout that cannot be settled now is left to its runtime's worker, which keeps trying
	// before it takes any other job.
	unsettled := append(s.recover(ctx), s.serviceJournalRuntimes()...)
	waiting, err := s.store.Resume()
	if err != nil {
		return err
	}
	if len(waiting) > 0 {
		s.log.Info("resuming queued work", "runtimes", waiting)
	}
	s.notify(append(waiting, unsettled...)...)
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

// work runs the runtime's jobs until none is left or ctx ends. Before each job the runtime's
// journal is settled: a rollout that could not be finished or undone is retried, with backoff,
// until the engine lets it end, and nothing else is decided for the runtime before it has.
func (s *Service) work(ctx context.Context, runtime string) {
	wait := backoff{first: settleBackoff, max: settleBackoffMax}
	for ctx.Err() == nil {
		err := s.settle(ctx, runtime)
		if err == nil {
			err = s.settleServices(ctx, runtime)
		}
		if err != nil {
			s.log.Warn("settle interrupted rollout; trying again", "runtime", runtime, "in", wait.next().String(), "err", err)
			if !wait.sleep(ctx) {
				return
			}
			continue
		}
		job, ok, err := s.take(runtime)
		if err != nil {
			s.log.Error("take job; trying again", "runtime", runtime, "in", wait.next().String(), "err", err)
			if !wait.sleep(ctx) {
				return
			}
			continue
		}
		if !ok {
			return
		}
		wait.reset()
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return // the job stays in the running bucket: Resume queues it at the next start
		}
		res, done := s.execute(ctx, job)
		<-s.slots
		if !done {
			s.log.Info("job left for the next start", "runtime", runtime, "job", job.ID)
			return
		}
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

// backoff doubles a wait from first up to max.
type backoff struct {
	first, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.first
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits the next period and doubles it; false when ctx ended first.
func (b *backoff) sleep(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	b.cur = min(b.cur*2, b.max)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// execute runs one job to its end and returns its result. Resolve and pull follow ctx: when it
// ends before anything on the host changed, done is false and the job is left to be run again at
// the next start. From the first container change on the job ignores ctx and ends on its own
// (every step is bounded), never half-way.
func (s *Service) execute(ctx context.Context, job hookd.Job) (res hookd.Result, done bool) {
	res = hookd.Result{
		JobID: job.ID, Runtime: job.Runtime, Engine: s.engName, Trigger: job.Trigger, Requests: job.Requests,
		Started: time.Now(), Pulled: []string{}, Failed: []hookd.Failure{}, Recreated: []string{},
	}
	rt, ok, err := s.catalog.Get(ctx, job.Runtime)
	if err != nil {
		return finished(&res, hookd.OutcomeFailed, err.Error()), ctx.Err() == nil
	}
	if !ok {
		return finished(&res, hookd.OutcomeFailed, "runtime is no longer configured"), true
	}
	res.Image = rt.Image
	s.metrics.known(rt.Name) // a runtime discovered after the start gets its zero series too

	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	digest, err := s.registry.Resolve(rctx, rt.Image)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return res, false
		}
		res.Failed = append(res.Failed, hookd.Failure{Ref: rt.Image, Reason: err.Error()})
		return finished(&res, hookd.OutcomeFailed, "resolve tag: "+err.Error()), true
	}
	res.Digest = digest
	rec, err := s.store.UpdateRecord(rt.Name, func(r *store.Record) {
		r.SeenDigest, r.SeenAt, r.SeenVia = digest, time.Now(), job.Trigger
	})
	if err != nil {
		return finished(&res, hookd.OutcomeFailed, err.Error()), true
	}
	// A manual refresh retries a digest that failed before it was asked for, not one that
	// failed since: a forced job interrupted by a crash, whose outcome the restart read from
	// the journal, is not submitted a second time.
	if rec.FailedDigest == digest && (!job.Force || rec.FailedAt.After(job.QueuedAt)) {
		return finished(&res, hookd.OutcomeSkipped, "digest failed before ("+rec.FailedReason+"); a newer push or a manual refresh tries again"), true
	}

	repo := rt.Repository()
	if s.sigGate != nil {
		vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
		err := s.sigGate.Check(vctx, rt.Name, repo, digest)
		cancel()
		if refusal := new(signature.Refusal); errors.As(err, &refusal) {
			s.rememberFailed(rt.Name, digest, refusal.Error())
			return finished(&res, hookd.OutcomeRefused, refusal.Error()), true
		} else if err != nil {
			if ctx.Err() != nil {
				return res, false
			}
			res.Failed = append(res.Failed, hookd.Failure{Ref: repo + "@" + digest, Reason: err.Error()})
			return finished(&res, hookd.OutcomeFailed, "verify signature: "+err.Error()), true
		}
	}
	ref := repo + "@" + digest
	img, err := s.pull(ctx, rt.Name, rt.Image, repo, digest)
	if err != nil {
		if ctx.Err() != nil {
			return res, false
		}
		res.Failed = append(res.Failed, hookd.Failure{Ref: ref, Reason: err.Error()})
		return finished(&res, hookd.OutcomeFailed, "pull: "+err.Error()), true
	}
	if img.pulled {
		res.Pulled = append(res.Pulled, ref)
	}
	// From here on the host changes: the job ends on its own, whatever ctx does.
	ctx = context.WithoutCancel(ctx)
	if !rt.Recreate || job.PullOnly {
		// As after `docker pull`, the tag names the new image, for the next `docker run` or
		// `compose up`.
		if err := s.engine.Tag(ctx, ref, rt.Image); err != nil {
			return finished(&res, hookd.OutcomeFailed, "tag: "+err.Error()), true
		}
		if !rt.Recreate {
			s.markRunning(rt.Name, digest)
		}
		if img.pulled {
			return finished(&res, hookd.OutcomePulled, ""), true
		}
		return finished(&res, hookd.OutcomeUpToDate, "the engine already holds "+digest), true
	}
	s.rollout(ctx, rt, ref, img.id, &res)
	return s.rolloutServices(ctx, rt, ref, digest, rec.RunningDigest, &res)
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
