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
		hook: webhook.New(verifier, d.catalog, d.service, cfg.RegistryHost, cfg.Webhook.MaxBodyBytes, webhook.NewMetrics(d.metrics), recent, log),
	}
	throttle := admin.NewThrottle(d.metrics, log)
	if cfg.AdminToken != "" {
		h.admin = admin.New(cfg.AdminToken, d.service, d.catalog, d.store, log, admin.WithThrottle(throttle), admin.WithEngine(d.engine))
	}
	h.page = statuspage.New(cfg.AdminToken, d.catalog, d.store, recent, log, statuspage.WithThrottle(throttle), statuspage.WithHTTPS(cfg.Admin.HTTPS), statuspage.WithEngine(d.engine))
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
		"runtimes", len(cfg.Runtimes), "zero_config", d.catalog.ZeroConfig(), "poll_interval", cfg.Poll.Interval.String(),
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
	g.Go(func() error {
		poller := fallbackpoll.New(d.catalog, d.registry, d.engine, d.store, d.service, cfg.Poll.Interval.D(), fallbackpoll.NewMetrics(d.metrics), log)
		return poller.Run(ctx)
	})
	g.Go(func() error { return pruneDeliveries(ctx, d.store, log) })
	err = g.Wait()
	log.Info("hookd stopped")
	return err
}

// daemon holds what serve and refresh share.
type daemon struct {
	store    *store.Store
	engine   *engine.Engine
	registry *registry.Client
	catalog  *catalog.Catalog
	service  *refresh.Service
	metrics  *prometheus.Registry
	notifier *notify.Notifier // delivers only where something runs it (serve)
}

func open(cfg *config.Config, getenv func(string) string, log *slog.Logger) (*daemon, error) {
	st, err := store.Open(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	eng, err := engine.New()
	if err != nil {
		st.Close()
		return nil, err
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The old poller's credentials serve registry_host when the Docker config has none for it.
	user, token := getenv("GHCR_USER"), getenv("GHCR_TOKEN")
	if (user == "") != (token == "") {
		log.Warn("GHCR_USER and GHCR_TOKEN are used together only; the one set is ignored")
	}
	keychain := registry.Keychain(authn.DefaultKeychain, cfg.RegistryHost, user, token)
	reg, err := registry.New(keychain, registry.NewPacer(nil, cfg.Poll.Pace.D(), metrics))
	if err != nil {
		eng.Close()
		st.Close()
		return nil, err
	}
	cat := catalog.New(cfg.Runtimes, eng, discoveryMaxAge)
	metrics.MustRegister(admin.NewBehindCollector(cat, st))
	notifier := notify.New(cfg.Notify, notify.NewMetrics(metrics), log, notify.WithVersion(version))
	gate, err := signature.NewGate(signature.NewVerifier(reg), cfg.Runtimes, cfg.DefaultVerify(), signature.NewMetrics(metrics))
	if err != nil { // config.Load checked the same policies: a key or root file changed since
		eng.Close()
		st.Close()
		return nil, err
	}
	svc := refresh.New(st, cat, reg, eng, cfg.Rollouts.Parallel, refresh.NewMetrics(metrics), log, notifier).WithGate(gate)
	return &daemon{store: st, engine: eng, registry: reg, catalog: cat, service: svc, metrics: metrics, notifier: notifier}, nil
}

func (d *daemon) close() {
	d.engine.Close()
	d.store.Close()
}

func (d *daemon) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := d.store.Ping(); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": "state store: " + err.Error()})
	}
	if err := d.engine.Ping(ctx); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": "docker engine: " + err.Error()})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
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
