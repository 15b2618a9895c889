package admin

import (
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/hookd/hookd/internal/ratelog"
)

// Limits on wrong admin tokens (the bearer and the status page's login share them): a client
// address may try 10 at once and then one a second; all clients together 50, then 5 a second.
// Only wrong tokens count, so a client using the right one is never slowed (unless throttled
// already: then nothing is checked).
const (
	clientRate, clientBurst = rate.Limit(1), 10
	globalRate, globalBurst = rate.Limit(5), 50
	// maxClients bounds the per-address table; when full it starts over (the global limit holds).
	maxClients = 10000
)

// Throttle bounds token guessing per client address and in all, and logs wrong tokens at most
// every 10 s.
type Throttle struct {
	global   *rate.Limiter
	failures *prometheus.CounterVec
	log      *ratelog.Logger

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

// NewThrottle registers hookd_admin_auth_failures_total on reg.
func NewThrottle(reg prometheus.Registerer, log *slog.Logger) *Throttle {
	t := &Throttle{
		global:  rate.NewLimiter(globalRate, globalBurst),
		clients: map[string]*rate.Limiter{},
		log:     ratelog.New(log, slog.LevelWarn, 10*time.Second),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_admin_auth_failures_total",
			Help: "Admin token attempts refused: wrong_token, or throttled (answered 429 unchecked).",
		}, []string{"reason"}),
	}
	reg.MustRegister(t.failures)
	t.failures.WithLabelValues("wrong_token")
	t.failures.WithLabelValues("throttled")
	return t
}

// Attempt is one token check under way.
type Attempt struct {
	t      *Throttle
	client *rate.Limiter
	remote string
	where  string
}

// Begin starts an attempt for the client of r. When the client or everyone has used up its
// wrong tokens, it returns the wait instead, and the token must not be checked.
func (t *Throttle) Begin(r *http.Request, where string) (*Attempt, time.Duration) {
	a := &Attempt{t: t, remote: clientAddr(r), where: where}
	if t == nil {
		return a, 0
	}
	t.mu.Lock()
	a.client = t.clients[a.remote]
	if a.client == nil {
		if len(t.clients) >= maxClients {
			clear(t.clients)
		}
		a.client = rate.NewLimiter(clientRate, clientBurst)
		t.clients[a.remote] = a.client
	}
	t.mu.Unlock()
	now := time.Now()
	for _, l := range []*rate.Limiter{a.client, t.global} {
		if tokens := l.TokensAt(now); tokens < 1 {
			t.failures.WithLabelValues("throttled").Inc()
			t.log.Log("admin token attempts throttled", "where", where, "remote", a.remote)
			return nil, time.Duration((1 - tokens) / float64(l.Limit()) * float64(time.Second))
		}
	}
	return a, 0
}

// Succeeded ends an attempt with the right token: it costs nothing.
func (a *Attempt) Succeeded() {}

// Failed spends a wrong token from the client's and everyone's allowance (going into debt
// when guesses raced past the check) and logs it, rate-limited.
func (a *Attempt) Failed() {
	if a.t == nil {
		return
	}
	now := time.Now()
	a.client.ReserveN(now, 1)
	a.t.global.ReserveN(now, 1)
	a.t.failures.WithLabelValues("wrong_token").Inc()
	a.t.log.Log("admin token wrong", "where", a.where, "remote", a.remote)
}

// RetryAfter is wait as a Retry-After value: whole seconds, rounded up.
func RetryAfter(wait time.Duration) string { return strconv.Itoa(int(math.Ceil(wait.Seconds()))) }

func tooMany(c echo.Context, wait time.Duration) error {
	c.Response().Header().Set("Retry-After", RetryAfter(wait))
	return c.JSON(http.StatusTooManyRequests, map[string]string{"error": "too many wrong tokens; try again later"})
}

// clientAddr is the connection's address: X-Forwarded-For is the client's to write, and would
// let it pick a fresh address per guess. Behind a proxy every client shares the proxy's.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
