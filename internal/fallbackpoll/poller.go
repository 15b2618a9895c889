// Package fallbackpoll catches pushes whose delivery never arrived: it asks the registry what
// each runtime's tag points to and queues the same job a delivery would when that is not what
// runs. It compares against the engine, not against memory, so a push made while hookd was
// down is rolled out by the pass hookd makes when it starts.
package fallbackpoll

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/store"
)

// Results of one runtime's check, the values of hookd_poll_checks_total's result label.
const (
	ResultUpToDate  = "up_to_date"
	ResultQueued    = "queued"
	ResultConfirmed = "confirmed"     // a verified delivery spoke for it within the interval
	ResultFailed    = "failed_digest" // the tag still points to a digest that was rolled back
	ResultLimited   = "rate_limited"
	ResultError     = "error"
	ResultBusy      = "rollout_in_progress" // its containers are half switched: nothing to judge yet
)

const (
	// checksPerHost is how many of one registry host's runtimes are checked at once: enough that
	// one slow or failing runtime never holds up the others, while the Pacer still spaces the
	// requests to that host.
	checksPerHost = 4
	// checkTimeout bounds one runtime's check, so a registry that never answers costs a worker
	// one timeout, not the rest of the pass.
	checkTimeout = 30 * time.Second
)

// Submitter queues a job on the one rollout path.
type Submitter interface {
	Submit(ctx context.Context, j hookd.Job) (uint64, error)
}

// Catalog knows the runtimes and, in one listing per pass, their containers.
type Catalog interface {
	All(ctx context.Context) ([]hookd.Runtime, error)
	MembersByRuntime(ctx context.Context) (map[string][]engine.Container, error)
	// ServiceMembersByRuntime returns every runtime's Swarm services on the engine sl.
	ServiceMembersByRuntime(ctx context.Context, sl catalog.ServiceLister) (map[string][]engine.Service, error)
}

// Resolver asks the registry what a tag points to now.
type Resolver interface {
	Resolve(ctx context.Context, image string) (string, error)
}

// Engine is what the poll reads of the Docker engine.
type Engine interface {
	HasImage(ctx context.Context, repo, digest string) (id string, ok bool, err error)
	SelfID(ctx context.Context) string
	Services(ctx context.Context, label, value string) ([]engine.Service, error)
}

// Poller runs the fallback poll.
type Poller struct {
	catalog  Catalog
	registry Resolver
	engine   Engine
	store    *store.Store
	submit   Submitter
	interval time.Duration
	metrics  *Metrics
	log      *slog.Logger
}

// New returns a poller that checks every runtime each interval (0 turns it off).
func New(cat Catalog, reg Resolver, eng Engine, st *store.Store, submit Submitter, interval time.Duration, m *Metrics, log *slog.Logger) *Poller {
	return &Poller{catalog: cat, registry: reg, engine: eng, store: st, submit: submit, interval: interval, metrics: m, log: log}
}

// Metrics are the poll's.
type Metrics struct {
	checks   *prometheus.CounterVec
	lastPass prometheus.Gauge
}

// NewMetrics registers the poll's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_poll_checks_total",
			Help: "Fallback poll checks of one runtime by result.",
		}, []string{"result"}),
		lastPass: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookd_poll_last_success_timestamp_seconds",
			Help: "When the last fallback poll pass in which every check succeeded ended.",
		}),
	}
	reg.MustRegister(m.checks, m.lastPass)
	for _, r := range []string{ResultUpToDate, ResultQueued, ResultConfirmed, ResultFailed, ResultLimited, ResultError, ResultBusy} {
		m.checks.WithLabelValues(r) // every series from the start, so the first failure is a rate
	}
	return m
}

// Run makes one pass at once, then one each interval (±10%, so many hookds don't knock together).
func (p *Poller) Run(ctx context.Context) error {
	if p.interval <= 0 {
		p.log.Info("fallback poll is off")
		return nil
	}
	for {
		p.Pass(ctx)
		wait := time.Duration(float64(p.interval) * (0.9 + 0.2*rand.Float64()))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Pass checks every runtime once. Runtimes on different registry hosts are checked side by side,
// so a host that is slow or asks to wait holds up only its own runtimes, and within a host a few
// at a time, so one runtime's failure never delays another's check.
func (p *Poller) Pass(ctx context.Context) {
	runtimes, err := p.catalog.All(ctx)
	if err != nil {
		p.log.Error("fallback poll: list runtimes", "err", err)
		return
	}
	// One listing of the containers for the whole pass, not one per runtime. A runtime whose
	// rollout was under way around the listing, or ended after it, is not judged by it.
	rolling := p.openJournals()
	listedAt := time.Now()
	members, membersErr := p.catalog.MembersByRuntime(ctx)
	services, servicesErr := p.services(ctx)
	if membersErr == nil {
		membersErr = servicesErr
	}
	for rt := range p.openJournals() {
		rolling[rt] = true
	}
	self := p.engine.SelfID(ctx)
	view := func(rt hookd.Runtime, rec store.Record) (runtimeView, error) {
		if rolling[rt.Name] || rolledSince(rec, listedAt) {
			return runtimeView{}, errStale
		}
		return runtimeView{members: members[rt.Name], services: services[rt.Name], self: self}, membersErr
	}
	byHost := map[string][]hookd.Runtime{}
	for _, rt := range runtimes {
		host, _, _ := strings.Cut(rt.Image, "/")
		byHost[host] = append(byHost[host], rt)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := true
	for _, rts := range byHost {
		todo := make(chan hookd.Runtime, len(rts))
		for _, rt := range rts {
			todo <- rt
		}
		close(todo)
		for range min(checksPerHost, len(rts)) {
			wg.Go(func() {
				for rt := range todo {
					if ctx.Err() != nil {
						return
					}
					res := p.check(ctx, rt, view, listedAt)
					p.metrics.checks.WithLabelValues(res).Inc()
					if res == ResultError || res == ResultLimited {
						mu.Lock()
						ok = false
						mu.Unlock()
					}
				}
			})
		}
	}
	wg.Wait()
	if ok && ctx.Err() == nil {
		p.metrics.lastPass.SetToCurrentTime()
	}
}

// view returns the runtime's containers and services and hookd's own container id, as listed
// for the pass, or errStale when a rollout of the runtime changed them around the listing.
type view func(hookd.Runtime, store.Record) (runtimeView, error)

// runtimeView is what a pass listed of one runtime.
type runtimeView struct {
	members  []engine.Container
	services []engine.Service
	self     string
}

// services lists every runtime's Swarm services; an engine in no swarm has none, and one on a
// swarm worker cannot tell, so its containers are judged alone.
func (p *Poller) services(ctx context.Context) (map[string][]engine.Service, error) {
	svcs, err := p.catalog.ServiceMembersByRuntime(ctx, p.engine)
	if errors.Is(err, engine.ErrNotManager) {
		return nil, nil
	}
	return svcs, err
}

var errStale = errors.New("the listing is older than the runtime's last rollout")

// rolledSince reports whether a rollout recorded its end after t.
func rolledSince(rec store.Record, t time.Time) bool {
	return rec.RunningAt.After(t) || rec.FailedAt.After(t)
}

// openJournals returns the runtimes whose rollout is in progress.
func (p *Poller) openJournals() map[string]bool {
	open := map[string]bool{}
	rollouts, err := p.store.Journals()
	if err != nil {
		p.log.Error("fallback poll: read rollout journal", "err", err)
	}
	for _, r := range rollouts {
		open[r.Runtime] = true
	}
	updates, err := p.store.ServiceUpdates("")
	if err != nil {
		p.log.Error("fallback poll: read service journal", "err", err)
	}
	for _, u := range updates {
		open[u.Runtime] = true
	}
	return open
}

func (p *Poller) check(ctx context.Context, rt hookd.Runtime, view view, listedAt time.Time) string {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	rec, err := p.store.Record(rt.Name)
	if err != nil {
		p.log.Error("fallback poll: read record", "runtime", rt.Name, "err", err)
		return ResultError
	}
	// A delivery confirms a runtime only once it runs what the delivery announced: a job that
	// failed after the tag resolved (a pull, an engine away) is checked again on this pass.
	if rec.SeenVia == hookd.TriggerWebhook && time.Since(rec.SeenAt) < p.interval && rec.RunningDigest == rec.SeenDigest {
		return ResultConfirmed
	}
	digest, err := p.registry.Resolve(ctx, rt.Image)
	if err != nil {
		var limited *registry.RateLimitedError
		if errors.As(err, &limited) {
			p.log.Warn("fallback poll: registry asked to wait", "runtime", rt.Name, "until", limited.Until)
			return ResultLimited
		}
		p.log.Error("fallback poll: resolve tag", "runtime", rt.Name, "err", err)
		return ResultError
	}
	// Mid-rollout the containers show neither digest's whole picture (the old ones are set
	// aside): judged then, a digest about to be rolled back could be recorded as running.
	if p.rolling(rt.Name) {
		return ResultBusy
	}
	current, engineErr := p.runs(ctx, rt, digest, func(rt hookd.Runtime) (runtimeView, error) { return view(rt, rec) })
	if p.rolling(rt.Name) || errors.Is(engineErr, errStale) {
		return ResultBusy
	}
	if engineErr == nil && current && rec.SeenDigest == digest && rec.SeenVia == hookd.TriggerPoll && rec.RunningDigest == digest {
		// Nothing new to record: a pass over an idle fleet writes nothing (one fsync per runtime
		// was six times the cost of the rest of the pass), so seen_at is when the poll learned
		// the digest, and hookd_poll_last_success_timestamp_seconds says the poll is alive.
		return ResultUpToDate
	}
	rec, err = p.store.UpdateRecord(rt.Name, func(r *store.Record) {
		now := time.Now()
		r.SeenDigest, r.SeenAt, r.SeenVia = digest, now, hookd.TriggerPoll
		// What the engine shows counts as running however it got there (a pull-only runtime,
		// a rollout made before the state was kept, a container started by hand).
		if engineErr == nil && current && r.RunningDigest != digest && !rolledSince(*r, listedAt) {
			r.RunningDigest, r.RunningAt = digest, now
		}
	})
	if err != nil {
		p.log.Error("fallback poll: record digest", "runtime", rt.Name, "err", err)
		return ResultError
	}
	if engineErr != nil {
		p.log.Error("fallback poll: read engine", "runtime", rt.Name, "err", engineErr)
		return ResultError
	}
	if current {
		return ResultUpToDate
	}
	// The record as just written: a rollback that ended during this check is already in it.
	if digest == rec.FailedDigest {
		return ResultFailed
	}
	if _, err := p.submit.Submit(ctx, hookd.Job{Runtime: rt.Name, Trigger: hookd.TriggerPoll, Hint: digest, Requests: 1}); err != nil {
		p.log.Error("fallback poll: queue", "runtime", rt.Name, "err", err)
		return ResultError
	}
	p.log.Info("fallback poll queued a rollout", "runtime", rt.Name, "digest", digest)
	return ResultQueued
}

// rolling reports whether a rollout of the runtime is in progress (its journal is open).
func (p *Poller) rolling(runtime string) bool {
	_, open, err := p.store.Journal(runtime)
	if err == nil && open {
		return true
	}
	updates, err := p.store.ServiceUpdates(runtime)
	return err == nil && len(updates) > 0
}

// runs reports whether the runtime already has digest: every container of a recreating runtime
// runs it and every service is pinned to it with all its tasks running it, or the engine holds
// it for a pull-only one.
func (p *Poller) runs(ctx context.Context, rt hookd.Runtime, digest string, view func(hookd.Runtime) (runtimeView, error)) (bool, error) {
	imageID, held, err := p.engine.HasImage(ctx, rt.Repository(), digest)
	if err != nil || !held {
		return false, err
	}
	if !rt.Recreate {
		return true, nil
	}
	v, err := view(rt)
	if err != nil {
		return false, err
	}
	for _, c := range v.members {
		if c.ImageID != imageID && c.ID != v.self {
			return false, nil
		}
	}
	for _, s := range v.services {
		if !serviceOn(s, digest) {
			return false, nil
		}
	}
	return true, nil
}

// serviceOn reports whether a service's spec is pinned to digest and every task that should
// run does, on that digest. A service Swarm is still rolling is not there yet.
func serviceOn(s engine.Service, digest string) bool {
	if engine.ImageDigest(s.Image) != digest || s.Updating() {
		return false
	}
	for _, t := range s.Tasks {
		if engine.ImageDigest(t.Image) != digest {
			return false
		}
	}
	return true
}
