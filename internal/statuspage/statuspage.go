// Package statuspage serves GET /: a server-rendered page of each runtime's digests, its last
// rollout and pending job, and the last webhook deliveries. It needs no build step and loads
// nothing from elsewhere, so it works where hookd runs, on a phone as on a desktop.
//
// With an admin token configured the page sits behind a login form (wrong tokens throttled
// with the admin API's, sessions kept in memory and ended by logout). Without one it is open:
// it shows image names, digests, rollout results and delivery ids, none of which is secret
// (the same facts are in the registry and in GitHub's delivery log); it changes nothing.
package statuspage

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/hookd/hookd/internal/admin"
	"github.com/hookd/hookd/internal/webhook"
)

const (
	cookieName = "hookd_session"
	// sessionTTL bounds how long a copied cookie is of use.
	sessionTTL = 12 * time.Hour
	// maxSessions bounds the sessions kept; a login beyond it ends the oldest.
	maxSessions = 100
	// maxLoginBody is far more than a token needs; a login never reads more.
	maxLoginBody = 4 << 10
	// refreshSeconds is how often the page reloads itself (a meta refresh: no script).
	refreshSeconds = 10
)

// Page serves the status page and, with a token, its login.
type Page struct {
	tokenSum [sha256.Size]byte
	locked   bool // a token is configured: the page needs a session
	https    bool // served over https whatever the request says: cookies are always Secure
	throttle *admin.Throttle
	sessions *sessions
	// crossOrigin refuses forms posted from another site (a forced logout or login).
	crossOrigin *http.CrossOriginProtection
	hosts       []admin.Host
	recent      *webhook.Recent
	log         *slog.Logger
}

// Option adjusts a Page.
type Option func(*Page)

// WithThrottle bounds wrong tokens at the login with t (shared with the admin API).
func WithThrottle(t *admin.Throttle) Option { return func(p *Page) { p.throttle = t } }

// WithHTTPS marks session cookies Secure on every answer, not only when the request came over
// TLS or says so in X-Forwarded-Proto.
func WithHTTPS(on bool) Option { return func(p *Page) { p.https = on } }

// New returns the page. An empty token leaves it open; recent may be nil. Sessions are kept in
// memory: a restart, or a logout, ends them.
func New(token string, hosts []admin.Host, recent *webhook.Recent, log *slog.Logger, opts ...Option) *Page {
	p := &Page{tokenSum: sha256.Sum256([]byte(token)), locked: token != "", sessions: &sessions{byID: map[[sha256.Size]byte]time.Time{}},
		crossOrigin: http.NewCrossOriginProtection(), hosts: hosts, recent: recent, log: log}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Locked reports whether the page needs a login (and so has /login and /logout).
func (p *Page) Locked() bool { return p.locked }

// Show serves GET /.
func (p *Page) Show(c echo.Context) error {
	if p.locked && !p.validSession(c) {
		return p.render(c, http.StatusUnauthorized, loginTemplate, loginView{})
	}
	now := time.Now()
	v := statusView{Now: now, Refresh: refreshSeconds, LoggedIn: p.locked}
	code := http.StatusOK
	runtimes, err := admin.StatusesWithContainers(c.Request().Context(), p.hosts)
	if err != nil {
		p.log.Error("status page: read runtimes", "err", err)
		v.Error = "Runtimes could not be read: " + err.Error()
		if len(runtimes) == 0 {
			code = http.StatusServiceUnavailable
		}
	}
	v.Engines = len(p.hosts) > 1
	v.Runtimes = runtimes
	if p.recent != nil {
		v.Deliveries = p.recent.List()
		v.Rejected, v.RejectedTotal = p.recent.Rejected()
	}
	return p.render(c, code, statusTemplate, v)
}

// Login serves POST /login.
func (p *Page) Login(c echo.Context) error {
	req := c.Request()
	if err := p.crossOrigin.Check(req); err != nil {
		return p.render(c, http.StatusForbidden, loginTemplate, loginView{Message: "A login must come from this page."})
	}
	attempt, wait := p.throttle.Begin(req, "status page login")
	if attempt == nil {
		c.Response().Header().Set("Retry-After", admin.RetryAfter(wait))
		return p.render(c, http.StatusTooManyRequests, loginTemplate, loginView{Message: "Too many wrong tokens: try again in " + admin.RetryAfter(wait) + " s."})
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxLoginBody)
	if err := req.ParseForm(); err != nil {
		attempt.Succeeded() // not a guess
		return p.render(c, http.StatusBadRequest, loginTemplate, loginView{Message: "The form could not be read."})
	}
	// Only the body counts: a token in the URL would end up in logs and browser history.
	presented := req.PostForm.Get("token")
	sum := sha256.Sum256([]byte(presented))
	if subtle.ConstantTimeCompare(sum[:], p.tokenSum[:]) != 1 {
		attempt.Failed()
		return p.render(c, http.StatusUnauthorized, loginTemplate, loginView{Message: "That token is not the admin token."})
	}
	attempt.Succeeded()
	c.SetCookie(p.cookie(c, p.sessions.create(time.Now()), int(sessionTTL/time.Second)))
	return c.Redirect(http.StatusSeeOther, "/")
}

// Logout serves POST /logout: the session ends on the server, so a copy of the cookie is
// worthless from then on.
func (p *Page) Logout(c echo.Context) error {
	if err := p.crossOrigin.Check(c.Request()); err != nil {
		return c.JSON(http.StatusForbidden, map[string]string{"error": "a logout must come from the status page"})
	}
	if ck, err := c.Cookie(cookieName); err == nil {
		p.sessions.revoke(ck.Value)
	}
	c.SetCookie(p.cookie(c, "", -1))
	return c.Redirect(http.StatusSeeOther, "/")
}

func (p *Page) cookie(c echo.Context, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: cookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		// Scheme() also reads X-Forwarded-Proto, so a TLS-terminating proxy that sets it gets
		// Secure cookies; admin.https makes it so whatever the proxy sends.
		Secure: p.https || c.Scheme() == "https",
	}
}

func (p *Page) validSession(c echo.Context) bool {
	ck, err := c.Cookie(cookieName)
	return err == nil && p.sessions.valid(ck.Value, time.Now())
}

// sessions are random ids known to this process only; the cookie carries nothing else.
type sessions struct {
	mu   sync.Mutex
	byID map[[sha256.Size]byte]time.Time // digest of the id → expiry
}

func (s *sessions) create(now time.Time) string {
	id := rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest [sha256.Size]byte
	first := time.Time{}
	for k, exp := range s.byID {
		if !now.Before(exp) {
			delete(s.byID, k)
		} else if first.IsZero() || exp.Before(first) {
			oldest, first = k, exp
		}
	}
	if len(s.byID) >= maxSessions {
		delete(s.byID, oldest)
	}
	s.byID[sha256.Sum256([]byte(id))] = now.Add(sessionTTL)
	return id
}

func (s *sessions) valid(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.byID[sha256.Sum256([]byte(id))]
	return ok && now.Before(exp)
}

func (s *sessions) revoke(id string) {
	s.mu.Lock()
	delete(s.byID, sha256.Sum256([]byte(id)))
	s.mu.Unlock()
}

func (p *Page) render(c echo.Context, code int, name string, data any) error {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	// No scripts at all, styles only inline: an escaping slip could not run anything.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		p.log.Error("status page: render", "template", name, "err", err)
		return c.String(http.StatusInternalServerError, "status page could not be rendered")
	}
	return c.HTML(code, b.String())
}
