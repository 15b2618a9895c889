// Package statuspage serves GET /: a server-rendered page of each runtime's digests, its last
// rollout and pending job, and the last webhook deliveries. It needs no build step and loads
// nothing from elsewhere, so it works where hookd runs, on a phone as on a desktop.
//
// With an admin token configured the page sits behind a login form. Without one it is open:
// it shows image names, digests, rollout results and delivery ids, none of which is secret
// (the same facts are in the registry and in GitHub's delivery log); it changes nothing.
package statuspage

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/hookd/hookd/internal/admin"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/store"
	"github.com/hookd/hookd/internal/webhook"
)

const (
	cookieName = "hookd_session"
	// sessionTTL bounds how long a copied cookie is of use.
	sessionTTL = 12 * time.Hour
	// maxLoginBody is far more than a token needs; a login never reads more.
	maxLoginBody = 4 << 10
	// refreshSeconds is how often the page reloads itself (a meta refresh: no script).
	refreshSeconds = 10
)

// Page serves the status page and, with a token, its login.
type Page struct {
	tokenSum   [sha256.Size]byte
	sessionKey []byte // nil: the page is open
	catalog    *catalog.Catalog
	store      *store.Store
	recent     *webhook.Recent
	log        *slog.Logger
}

// New returns the page. An empty token leaves it open; recent may be nil.
func New(token string, cat *catalog.Catalog, st *store.Store, recent *webhook.Recent, log *slog.Logger) *Page {
	p := &Page{tokenSum: sha256.Sum256([]byte(token)), catalog: cat, store: st, recent: recent, log: log}
	if token != "" {
		// Sessions are signed with a key derived from the token: the cookie never carries the
		// token or anything it can be recovered from, and changing the token ends every session.
		mac := hmac.New(sha256.New, []byte(token))
		mac.Write([]byte("hookd status page session key"))
		p.sessionKey = mac.Sum(nil)
	}
	return p
}

// Register mounts GET / and, with a token, POST /login and POST /logout.
func (p *Page) Register(e *echo.Echo) {
	e.GET("/", p.show)
	if p.sessionKey != nil {
		e.POST("/login", p.login)
		e.POST("/logout", p.logout)
	}
}

func (p *Page) show(c echo.Context) error {
	if p.sessionKey != nil && !p.validSession(c) {
		return p.render(c, http.StatusUnauthorized, loginTemplate, loginView{})
	}
	now := time.Now()
	v := statusView{Now: now, Refresh: refreshSeconds, LoggedIn: p.sessionKey != nil}
	code := http.StatusOK
	runtimes, err := admin.Statuses(c.Request().Context(), p.catalog, p.store)
	if err != nil {
		p.log.Error("status page: read runtimes", "err", err)
		v.Error = "Runtimes could not be read: " + err.Error()
		code = http.StatusServiceUnavailable
	}
	v.Runtimes = runtimes
	if p.recent != nil {
		v.Deliveries = p.recent.List()
	}
	return p.render(c, code, statusTemplate, v)
}

func (p *Page) login(c echo.Context) error {
	req := c.Request()
	req.Body = http.MaxBytesReader(c.Response(), req.Body, maxLoginBody)
	if err := req.ParseForm(); err != nil {
		return p.render(c, http.StatusBadRequest, loginTemplate, loginView{Message: "The form could not be read."})
	}
	// Only the body counts: a token in the URL would end up in logs and browser history.
	presented := req.PostForm.Get("token")
	sum := sha256.Sum256([]byte(presented))
	if subtle.ConstantTimeCompare(sum[:], p.tokenSum[:]) != 1 {
		p.log.Warn("status page: login with a wrong token", "remote", req.RemoteAddr)
		return p.render(c, http.StatusUnauthorized, loginTemplate, loginView{Message: "That token is not the admin token."})
	}
	expires := time.Now().Add(sessionTTL)
	c.SetCookie(p.cookie(c, p.session(expires), int(sessionTTL/time.Second)))
	return c.Redirect(http.StatusSeeOther, "/")
}

func (p *Page) logout(c echo.Context) error {
	c.SetCookie(p.cookie(c, "", -1))
	return c.Redirect(http.StatusSeeOther, "/")
}

func (p *Page) cookie(c echo.Context, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: cookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		// Scheme() also reads X-Forwarded-Proto, so a TLS-terminating proxy gets Secure cookies.
		Secure: c.Scheme() == "https",
	}
}

// session is "<unix expiry>.<hex HMAC of it>".
func (p *Page) session(expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return exp + "." + hex.EncodeToString(p.sessionMAC(exp))
}

func (p *Page) sessionMAC(exp string) []byte {
	mac := hmac.New(sha256.New, p.sessionKey)
	mac.Write([]byte("session " + exp))
	return mac.Sum(nil)
}

func (p *Page) validSession(c echo.Context) bool {
	ck, err := c.Cookie(cookieName)
	if err != nil {
		return false
	}
	exp, sig, ok := strings.Cut(ck.Value, ".")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, p.sessionMAC(exp)) {
		return false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	return err == nil && time.Now().Before(time.Unix(unix, 0))
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
