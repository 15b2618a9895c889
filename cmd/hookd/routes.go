package main

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookd/hookd/internal/admin"
	"github.com/hookd/hookd/internal/statuspage"
	"github.com/hookd/hookd/internal/webhook"
)

// handlers are what the routes serve; admin is nil without an admin token.
type handlers struct {
	webhookPath string
	hook        *webhook.Handler
	daemon      *daemon
	admin       *admin.Handler
	page        *statuspage.Page
}

// routes mounts every HTTP route hookd serves, with its middleware: this is the one place to
// read them. The server itself bounds every request (header size and time, body time, answer
// time, connections); see newHTTPServer.
func routes(e *echo.Echo, h handlers) {
	// Intake: body bounded by webhook.max_body_bytes and the in-flight limit, HMAC checked
	// before anything is decoded.
	e.POST(h.webhookPath, h.hook.Handle)

	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", h.daemon.ready)
	// An engine whose runtimes cannot be read costs its own series, not every engine's.
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(h.daemon.metrics, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})))

	// Admin API: bearer token, throttled with the login (429 + Retry-After past the limits).
	if h.admin != nil {
		g := e.Group("/admin", h.admin.Authorize)
		g.POST("/refresh", h.admin.Refresh, noWriteTimeout) // waits for the rollout it asked for
		g.GET("/status", h.admin.ShowStatus)
	}

	// Status page: open without a token; with one, behind a session from /login (throttled);
	// /login and /logout refuse forms posted from another site.
	e.GET("/", h.page.Show)
	if h.page.Locked() {
		e.POST("/login", h.page.Login)
		e.POST("/logout", h.page.Logout)
	}
}

// noWriteTimeout lifts the server's write timeout for a route whose answer waits on work that
// can take minutes (a rollout gated on health).
func noWriteTimeout(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Time{})
		return next(c)
	}
}
