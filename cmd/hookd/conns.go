package main

import (
	"container/list"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
)

const (
	// fdReserve is kept free of HTTP connections for the state file, the engine's socket,
	// registry and notification connections.
	fdReserve = 256
	// maxConnsCeiling bounds connections even where the file limit is very high.
	maxConnsCeiling = 16384
	// idleTimeout is how long a keep-alive connection may wait for its next request.
	idleTimeout = 30 * time.Second
	// writeTimeout bounds writing an answer; routes that wait on a rollout lift it.
	writeTimeout = 30 * time.Second
	// maxHeaderBytes is far above GitHub's headers (< 8 KiB) and far below Go's 1 MiB default.
	maxHeaderBytes = 16 << 10
)

// maxConns is how many connections hookd serves at once: below the process's file limit,
// whatever that is, so accept never fails for want of a descriptor.
func maxConns() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 1024 - fdReserve
	}
	return int(min(max(int64(r.Cur)-fdReserve, 64), maxConnsCeiling))
}

// newHTTPServer returns the server and wraps ln so that at most limit connections are open.
// Past three quarters of the limit, idle keep-alive connections are closed (oldest first, and
// each as it turns idle), so that idle clients can never keep a delivery from being accepted.
func newHTTPServer(h http.Handler, ln net.Listener, limit int, m *connMetrics, log *slog.Logger) (*http.Server, net.Listener) {
	g := &connGuard{high: limit * 3 / 4, idle: list.New(), elems: map[net.Conn]*list.Element{}, metrics: m}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         g.state,
		// net/http's own complaints (accept errors, bad TLS) go through slog too.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return srv, netutil.LimitListener(ln, limit)
}

type connMetrics struct {
	open       prometheus.Gauge
	idleClosed prometheus.Counter
}

func newConnMetrics(reg prometheus.Registerer) *connMetrics {
	m := &connMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookd_http_connections",
			Help: "HTTP connections open now (bounded below the file limit).",
		}),
		idleClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookd_http_idle_closed_total",
			Help: "Idle keep-alive connections closed early because connections ran short.",
		}),
	}
	reg.MustRegister(m.open, m.idleClosed)
	return m
}

// connGuard tracks open connections and, above high, closes idle ones.
type connGuard struct {
	high    int
	metrics *connMetrics

	mu    sync.Mutex
	open  int
	idle  *list.List // of net.Conn, longest idle first
	elems map[net.Conn]*list.Element
}

func (g *connGuard) state(c net.Conn, s http.ConnState) {
	var closing net.Conn
	g.mu.Lock()
	switch s {
	case http.StateNew:
		g.open++
		if g.open > g.high {
			if front := g.idle.Front(); front != nil {
				closing = front.Value.(net.Conn)
				g.unidle(closing)
			}
		}
	case http.StateIdle:
		if g.open > g.high {
			closing = c
		} else {
			g.elems[c] = g.idle.PushBack(c)
		}
	case http.StateActive:
		g.unidle(c)
	case http.StateHijacked, http.StateClosed:
		g.unidle(c)
		g.open--
	}
	g.metrics.open.Set(float64(g.open)) // under the lock: sets never land out of order
	g.mu.Unlock()
	if closing != nil {
		g.metrics.idleClosed.Inc()
		closing.Close() // the server sees it closed and reports StateClosed
	}
}

func (g *connGuard) unidle(c net.Conn) {
	if e, ok := g.elems[c]; ok {
		g.idle.Remove(e)
		delete(g.elems, c)
	}
}
