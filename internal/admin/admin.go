// Package admin serves /admin/*: a manual refresh through the same queue and rollout as
// webhooks, and each runtime's status. Both need the bearer token.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/refresh"
	"github.com/hookd/hookd/internal/store"
)

// Refresher runs a manual rollout through the one queue, on every engine the runtime lives on.
type Refresher interface {
	Refresh(ctx context.Context, runtime string, pullOnly bool) (hookd.Result, error)
}

// Host is one engine as the admin routes and the status page read it: its runtimes, their
// state and their containers.
type Host struct {
	Engine  string
	Catalog *catalog.Catalog
	Store   *store.Store
	Docker  Engine // nil: statuses list no containers
}

// Handler serves the admin routes.
type Handler struct {
	tokenSum [sha256.Size]byte
	service  Refresher
	hosts    []Host
	log      *slog.Logger
	throttle *Throttle // nil: not throttled
}

// Option adjusts a Handler.
type Option func(*Handler)

// WithThrottle bounds wrong tokens with t (shared with the status page's login).
func WithThrottle(t *Throttle) Option { return func(h *Handler) { h.throttle = t } }

// New returns the admin handler for token (which must not be empty). cmd/hookd's routes file
// mounts its handlers under /admin behind Authorize.
func New(token string, svc Refresher, hosts []Host, log *slog.Logger, opts ...Option) *Handler {
	h := &Handler{tokenSum: sha256.Sum256([]byte(token)), service: svc, hosts: hosts, log: log}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Authorize compares digests of the presented and the configured token, so neither the token's
// contents nor its length leak through timing. Past the throttle's limits it answers 429
// without comparing.
func (h *Handler) Authorize(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		attempt, wait := h.throttle.Begin(c.Request(), "admin")
		if attempt == nil {
			return tooMany(c, wait)
		}
		scheme, presented, ok := strings.Cut(c.Request().Header.Get("Authorization"), " ")
		ok = ok && strings.EqualFold(scheme, "Bearer")
		sum := sha256.Sum256([]byte(presented))
		if !ok || subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) != 1 {
			attempt.Failed()
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="hookd"`)
			return c.JSON(http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
		}
		attempt.Succeeded()
		return next(c)
	}
}

// Refresh serves POST /admin/refresh.
func (h *Handler) Refresh(c echo.Context) error { return h.refresh(c) }

// ShowStatus serves GET /admin/status.
func (h *Handler) ShowStatus(c echo.Context) error { return h.status(c) }

func (h *Handler) refresh(c echo.Context) error {
	ctx := c.Request().Context()
	runtime := c.QueryParam("runtime")
	pullOnly := false
	if v := c.QueryParam("recreate"); v != "" {
		recreate, err := strconv.ParseBool(v)
		if err != nil {
			return c.JSON(http.StatusBadRequest, map[string]string{"error": "recreate must be true or false"})
		}
		pullOnly = !recreate
	}
	if runtime == "" {
		return h.refreshAll(c, pullOnly)
	}
	res, err := h.service.Refresh(ctx, runtime, pullOnly)
	if errors.Is(err, refresh.ErrUnknownRuntime) {
		var names []string
		if runtimes, err := runtimesOf(ctx, h.hosts); err == nil {
			for _, rt := range runtimes {
				names = append(names, rt.Name)
			}
		}
		return c.JSON(http.StatusBadRequest, map[string]any{"error": "unknown runtime " + strconv.Quote(runtime), "known_runtimes": names})
	}
	if err != nil {
		if ctx.Err() == nil { // a client that went away is not hookd's error
			h.log.Error("admin refresh", "runtime", runtime, "err", err)
		}
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	}
	return c.JSON(http.StatusOK, res)
}

// refreshed is the answer to a refresh of every runtime: the old refresh endpoint's lists over
// all of them, and each runtime's result.
type refreshed struct {
	Pulled    []string        `json:"pulled"`
	Failed    []hookd.Failure `json:"failed"`
	Recreated []string        `json:"recreated"`
	Results   []hookd.Result  `json:"results"`
}

// refreshAll refreshes every runtime at once, each through the same queue and rollout as a
// single refresh. A runtime that fails is listed in failed and does not fail the call.
func (h *Handler) refreshAll(c echo.Context, pullOnly bool) error {
	ctx := c.Request().Context()
	runtimes, err := runtimesOf(ctx, h.hosts)
	if err != nil {
		h.log.Error("admin refresh: list runtimes", "err", err)
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	}
	results := make([]hookd.Result, len(runtimes))
	errs := make([]error, len(runtimes))
	var wg sync.WaitGroup
	for i, rt := range runtimes {
		wg.Go(func() { results[i], errs[i] = h.service.Refresh(ctx, rt.Name, pullOnly) })
	}
	wg.Wait()
	out := refreshed{Pulled: []string{}, Failed: []hookd.Failure{}, Recreated: []string{}, Results: []hookd.Result{}}
	stopping := false
	for i, res := range results {
		if err := errs[i]; err != nil {
			stopping = stopping || errors.Is(err, refresh.ErrStopping)
			if ctx.Err() == nil {
				h.log.Error("admin refresh", "runtime", runtimes[i].Name, "err", err)
			}
			out.Failed = append(out.Failed, hookd.Failure{Ref: runtimes[i].Image, Reason: err.Error()})
			continue
		}
		out.Results = append(out.Results, res)
		out.Pulled = append(out.Pulled, res.Pulled...)
		out.Recreated = append(out.Recreated, res.Recreated...)
		out.Failed = append(out.Failed, res.Failed...)
		if !res.Outcome.Good() && len(res.Failed) == 0 {
			out.Failed = append(out.Failed, hookd.Failure{Ref: res.Image, Reason: res.Reason})
		}
	}
	if stopping {
		return c.JSON(http.StatusServiceUnavailable, out)
	}
	return c.JSON(http.StatusOK, out)
}

// runtimesOf lists the runtimes of every engine, each once, in name order. An engine that
// cannot be listed does not hide the others' runtimes.
func runtimesOf(ctx context.Context, hosts []Host) ([]hookd.Runtime, error) {
	var out []hookd.Runtime
	var errs []error
	for _, h := range hosts {
		rts, err := h.Catalog.All(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("engine %s: %w", h.Engine, err))
			continue
		}
		for _, rt := range rts {
			if !slices.ContainsFunc(out, func(o hookd.Runtime) bool { return o.Name == rt.Name }) {
				out = append(out, rt)
			}
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(out, func(a, b hookd.Runtime) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Status is one runtime on one engine as /admin/status shows it.
type Status struct {
	Name          string        `json:"name"`
	Engine        string        `json:"engine,omitempty"`
	Image         string        `json:"image"`
	Recreate      bool          `json:"recreate"`
	DigestSeen    string        `json:"digest_seen"`
	DigestRunning string        `json:"digest_running"`
	Behind        bool          `json:"behind"`
	Record        store.Record  `json:"record"`
	Pending       *hookd.Job    `json:"pending,omitempty"`
	LastRollout   *hookd.Result `json:"last_rollout,omitempty"`
	// Containers are the runtime's containers as the engine shows them now; ContainersError
	// says why they are missing.
	Containers      []Container `json:"containers,omitempty"`
	ContainersError string      `json:"containers_error,omitempty"`
	// Services are the runtime's Swarm services on this engine, as Swarm shows them now.
	Services      []Service `json:"services,omitempty"`
	ServicesError string    `json:"services_error,omitempty"`
}

func (h *Handler) status(c echo.Context) error {
	out, err := StatusesWithContainers(c.Request().Context(), h.hosts)
	if err != nil {
		h.log.Error("admin status", "err", err)
		if len(out) == 0 {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		}
		return c.JSON(http.StatusOK, map[string]any{"runtimes": out, "error": err.Error()})
	}
	return c.JSON(http.StatusOK, map[string]any{"runtimes": out})
}

// StatusesWithContainers is every engine's Statuses with each runtime's containers, sorted by
// runtime, then engine in configuration order. An engine that cannot be read is named in the
// error and leaves the others' statuses.
func StatusesWithContainers(ctx context.Context, hosts []Host) ([]Status, error) {
	// Engines are read at once: a slow one costs the answer its own time, not the sum.
	per := make([][]Status, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			st, err := Statuses(ctx, h.Catalog, h.Store)
			if err != nil {
				errs[i] = fmt.Errorf("engine %s: %w", h.Engine, err)
				return
			}
			for j := range st {
				st[j].Engine = h.Engine
			}
			// Each fills its own fields, and each is bounded: a hung engine costs one bound.
			var both sync.WaitGroup
			both.Go(func() { fillContainers(ctx, h.Catalog, h.Docker, st) })
			both.Go(func() { fillServices(ctx, h.Catalog, h.Docker, st) })
			both.Wait()
			per[i] = st
		})
	}
	wg.Wait()
	out := slices.Concat(per...)
	slices.SortStableFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out, errors.Join(errs...)
}

// Statuses reads every runtime's status.
func Statuses(ctx context.Context, cat *catalog.Catalog, st *store.Store) ([]Status, error) {
	runtimes, err := cat.All(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(runtimes))
	for _, rt := range runtimes {
		s, err := status(rt, st)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func status(rt hookd.Runtime, st *store.Store) (Status, error) {
	s := Status{Name: rt.Name, Image: rt.Image, Recreate: rt.Recreate}
	rec, err := st.Record(rt.Name)
	if err != nil {
		return Status{}, err
	}
	s.Record = rec
	s.DigestSeen, s.DigestRunning = rec.SeenDigest, rec.RunningDigest
	s.Behind = rec.SeenDigest != "" && rec.SeenDigest != rec.RunningDigest
	j, ok, err := st.Pending(rt.Name)
	if err != nil {
		return Status{}, fmt.Errorf("pending job of %s: %w", rt.Name, err)
	}
	if ok {
		s.Pending = &j
	}
	r, ok, err := st.LastResult(rt.Name)
	if err != nil {
		return Status{}, fmt.Errorf("last result of %s: %w", rt.Name, err)
	}
	if ok {
		s.LastRollout = &r
	}
	return s, nil
}
