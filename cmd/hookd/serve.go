package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/hookd/hookd/internal/admin"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/fallbackpoll"
	"github.com/hookd/hookd/internal/notify"
	"github.com/hookd/hookd/internal/refresh"
	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/signature"
	"github.com/hookd/hookd/internal/statuspage"
	"github.com/hookd/hookd/internal/store"
	"github.com/hookd/hookd/internal/verify"
	"github.com/hookd/hookd/internal/webhook"
)

const (
	// deliveryRetention bounds how long a delivery id is remembered for duplicate detection;
	// GitHub offers manual redelivery of recent deliveries only.
	deliveryRetention = 30 * 24 * time.Hour
	// discoveryMaxAge is how stale the zero-config view of labelled containers may get.
	discoveryMaxAge = 30 * time.Second
)

func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	cfgFile := fs.String("config", "", "config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return errReported
	}
	cfg, err := config.Load(configPath(*cfgFile, getenv), getenv)
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	log := newLogger(cfg, stderr)
	// Intake allocates per delivery but keeps little alive: collecting at 4x the live heap
	// instead of 2x costs a few MB and saves a fifth of the CPU under a burst. GOGC decides
	// when set.
	if getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	d, err := open(cfg, getenv, log)
	if err != nil {
		return err
	}
	defer d.close()

	verifier, err := verify.NewGitHub(cfg.Secrets)
	if err != nil {
		return err
	}
	recent := webhook.NewRecent(50)
	h := handlers{
		webhookPath: cfg.Webhook.Path, daemon: d,
		hook: webhook.New(verifier, d.service, d.service, cfg.RegistryHost, cfg.Webhook.MaxBodyBytes, webhook.NewMetrics(d.metrics), recent, log),
	}
	throttle := admin.NewThrottle(d.metrics, log)
	if cfg.AdminToken != "" {
		h.admin = admin.New(cfg.AdminToken, d.service, d.adminHosts(), log, admin.WithThrottle(throttle))
	}
	h.page = statuspage.New(cfg.AdminToken, d.adminHosts(), recent, log, statuspage.WithThrottle(throttle), statuspage.WithHTTPS(cfg.Admin.HTTPS))
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	routes(e, h)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	limit := maxConns()
	srv, ln := newHTTPServer(e, ln, limit, newConnMetrics(d.metrics), log)
	log.Info("hookd listening", "addr", ln.Addr().String(), "webhook", cfg.Webhook.Path, "state_dir", cfg.StateDir,
		"runtimes", len(cfg.Runtimes), "engines", cfg.EngineNames(), "zero_config", len(cfg.Runtimes) == 0, "poll_interval", cfg.Poll.Interval.String(),
		"admin", cfg.AdminToken != "", "max_connections", limit, "version", version)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			// A manual refresh waiting on a long rollout; it stays queued for the next start.
			log.Warn("closing HTTP connections still open after 10 s", "err", err)
			return srv.Close()
		}
		return nil
	})
	// Notifications outlive the service: a job that finishes during shutdown is still told
	// (the notifier then drains for a bounded time).
	notifyCtx, stopNotify := context.WithCancel(context.WithoutCancel(ctx))
	g.Go(func() error { return d.notifier.Run(notifyCtx) })
	g.Go(func() error {
		defer stopNotify()
		return d.service.Run(ctx)
	})
	for _, e := range d.engines {
		g.Go(func() error {
			poller := fallbackpoll.New(e.catalog, d.registry, e.docker, e.store, e.service, cfg.Poll.Interval.D(),
				fallbackpoll.NewMetrics(e.metrics), log.With("engine", e.name))
			return poller.Run(ctx)
		})
	}
	g.Go(func() error { return pruneDeliveries(ctx, d.store, log) })
	err = g.Wait()
	log.Info("hookd stopped")
	return err
}

// daemon holds what serve and refresh share.
type daemon struct {
	store    *store.Store // the root: delivery ids; each engine has its own view
	engines  []*engineParts
	registry *registry.Client
	service  *refresh.Fleet
	metrics  *prometheus.Registry
	notifier *notify.Notifier // delivers only where something runs it (serve)
}

// engineParts are one engine's: its client, its view of the state, its runtimes and their
// rollouts, and its metrics, labelled engine=<name>.
type engineParts struct {
	name    string
	docker  *engine.Engine
	store   *store.Store
	catalog *catalog.Catalog
	service *refresh.Service
	metrics prometheus.Registerer
}

func open(cfg *config.Config, getenv func(string) string, log *slog.Logger) (_ *daemon, err error) {
	st, err := store.Open(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	d := &daemon{store: st}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.metrics = metrics
	// The old poller's credentials serve registry_host when the Docker config has none for it.
	user, token := getenv("GHCR_USER"), getenv("GHCR_TOKEN")
	if (user == "") != (token == "") {
		log.Warn("GHCR_USER and GHCR_TOKEN are used together only; the one set is ignored")
	}
	keychain := registry.Keychain(authn.DefaultKeychain, cfg.RegistryHost, user, token)
	reg, err := registry.New(keychain, registry.NewPacer(nil, cfg.Poll.Pace.D(), metrics))
	if err != nil {
		return nil, err
	}
	d.registry = reg
	d.notifier = notify.New(cfg.Notify, notify.NewMetrics(metrics), log, notify.WithVersion(version))
	gate, err := signature.NewGate(signature.NewVerifier(reg), cfg.Runtimes, cfg.DefaultVerify(), signature.NewMetrics(metrics))
	if err != nil { // config.Load checked the same policies: a key or root file changed since
		return nil, err
	}
	var services []*refresh.Service
	for _, ec := range cfg.Engines {
		e := &engineParts{name: ec.Name, metrics: prometheus.WrapRegistererWith(prometheus.Labels{"engine": ec.Name}, metrics)}
		var tls *engine.TLS
		if t := ec.TLS; t != nil {
			tls = &engine.TLS{CA: t.CA, Cert: t.Cert, Key: t.Key}
		}
		if e.docker, err = engine.Open(ec.Host, tls); err != nil {
			return nil, fmt.Errorf("engine %s: %w", ec.Name, err)
		}
		d.engines = append(d.engines, e)
		if e.store, err = st.Engine(ec.Name); err != nil {
			return nil, err
		}
		if len(cfg.Runtimes) == 0 {
			e.catalog = catalog.New(nil, e.docker, discoveryMaxAge) // zero-config: each engine's labelled containers
		} else {
			e.catalog = catalog.Configured(cfg.RuntimesOn(ec.Name), e.docker, discoveryMaxAge)
		}
		e.metrics.MustRegister(admin.NewBehindCollector(e.catalog, e.store))
		e.service = refresh.New(e.store, e.catalog, reg, e.docker, cfg.Rollouts.Parallel, refresh.NewMetrics(e.metrics), log, d.notifier).
			WithGate(gate).OnEngine(ec.Name)
		services = append(services, e.service)
	}
	d.service = refresh.NewFleet(st, services...)
	// Nothing can settle a rollout on an engine hookd no longer drives: say so, once, loudly.
	left, err := st.Unsettled(cfg.EngineNames())
	if err != nil {
		return nil, err
	}
	for engine, what := range left {
		log.Warn("state of an engine that is not configured holds unfinished work; add it back to engines: to settle it "+
			"(its containers may be set aside as NAME-hookd-old), or remove those containers by hand", "engine", engine, "work", what)
	}
	return d, nil
}

func (d *daemon) adminHosts() []admin.Host {
	out := make([]admin.Host, len(d.engines))
	for i, e := range d.engines {
		out[i] = admin.Host{Engine: e.name, Catalog: e.catalog, Store: e.store, Docker: e.docker}
	}
	return out
}

func (d *daemon) close() {
	for _, e := range d.engines {
		e.docker.Close()
	}
	d.store.Close()
}

// ready answers 200 while the state store is open and every engine answers; otherwise 503
// naming what does not. The intake takes deliveries either way: an engine away only delays
// its own part.
func (d *daemon) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := d.store.Ping(); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reason": "state store: " + err.Error()})
	}
	engines := make(map[string]string, len(d.engines))
	reasons := make([]string, len(d.engines))
	var wg sync.WaitGroup
	for i, e := range d.engines {
		wg.Go(func() {
			if err := e.docker.Ping(ctx); err != nil {
				reasons[i] = err.Error()
			}
		})
	}
	wg.Wait()
	var down []string
	for i, e := range d.engines {
		engines[e.name] = "ready"
		if reasons[i] != "" {
			engines[e.name] = reasons[i]
			down = append(down, "docker engine "+e.name+": "+reasons[i])
		}
	}
	if len(down) > 0 {
		reason := strings.Join(down, "; ")
		if len(d.engines) == 1 { // the single engine's words, as before engines had names
			reason = "docker engine: " + reasons[0]
		}
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reason": reason, "engines": engines})
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ready", "engines": engines})
}

func pruneDeliveries(ctx context.Context, st *store.Store, log *slog.Logger) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := st.PruneDeliveries(time.Now().Add(-deliveryRetention)); err != nil {
			log.Error("prune delivery ids", "err", err)
		} else if n > 0 {
			log.Info("pruned delivery ids", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated by config.Load
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
