package registry

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd/internal/retryafter"
)

// defaultBackoff is how long a host that answered 429 without saying how long to wait is left alone.
const defaultBackoff = 30 * time.Second

// RateLimitedError is returned for a request the host answered with 429, and, without sending
// anything, for every request to that host until the wait it asked for is over.
type RateLimitedError struct {
	Host  string
	Until time.Time
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("registry %s asked to wait until %s", e.Host, e.Until.UTC().Format(time.RFC3339))
}

// Pacer is an http.RoundTripper that spaces requests to each registry host at least interval
// apart, and sends nothing to a host that answered 429 until the wait it asked for is over. Each
// host is paced on its own: one slow or limiting registry never holds up another.
type Pacer struct {
	next     http.RoundTripper
	interval time.Duration
	requests *prometheus.CounterVec

	mu    sync.Mutex
	hosts map[string]*hostPace
}

type hostPace struct {
	next         time.Time // earliest start of the next request
	blockedUntil time.Time
}

// NewPacer wraps next (nil for http.DefaultTransport) and counts requests by status class on reg.
func NewPacer(next http.RoundTripper, interval time.Duration, reg prometheus.Registerer) *Pacer {
	if next == nil {
		next = http.DefaultTransport
	}
	p := &Pacer{
		next: next, interval: interval, hosts: map[string]*hostPace{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_registry_requests_total",
			Help: "Requests to registries (tag lookups and token fetches) by status class (2xx, 4xx, 429, 5xx, error, rate_limited).",
		}, []string{"class"}),
	}
	reg.MustRegister(p.requests)
	for _, class := range []string{"2xx", "3xx", "4xx", "429", "5xx", "error", "rate_limited"} {
		p.requests.WithLabelValues(class) // every series from the start, so the first 429 is a rate
	}
	return p
}

// RoundTrip implements http.RoundTripper.
func (p *Pacer) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	now := time.Now()
	p.mu.Lock()
	h := p.hosts[host]
	if h == nil {
		h = &hostPace{}
		p.hosts[host] = h
	}
	if now.Before(h.blockedUntil) {
		until := h.blockedUntil
		p.mu.Unlock()
		p.requests.WithLabelValues("rate_limited").Inc()
		return nil, &RateLimitedError{Host: host, Until: until}
	}
	start := now
	if h.next.After(now) {
		start = h.next
	}
	h.next = start.Add(p.interval)
	p.mu.Unlock()

	if wait := start.Sub(now); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		case <-t.C:
		}
		// A request that answered 429 while this one waited for its turn shuts the door on it too.
		p.mu.Lock()
		until := h.blockedUntil
		p.mu.Unlock()
		if time.Now().Before(until) {
			p.requests.WithLabelValues("rate_limited").Inc()
			return nil, &RateLimitedError{Host: host, Until: until}
		}
	}
	resp, err := p.next.RoundTrip(req)
	if err != nil {
		p.requests.WithLabelValues("error").Inc()
		return nil, err
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		p.requests.WithLabelValues(strconv.Itoa(resp.StatusCode/100) + "xx").Inc()
		return resp, nil
	}
	p.requests.WithLabelValues("429").Inc()
	wait := retryAfter(resp)
	p.mu.Lock()
	if until := time.Now().Add(wait); until.After(h.blockedUntil) {
		h.blockedUntil = until
	}
	until := h.blockedUntil
	p.mu.Unlock()
	// An error rather than the response: the caller learns it was asked to wait, and until when,
	// from the very request that was refused, not as an opaque registry error.
	return nil, &RateLimitedError{Host: host, Until: until}
}

// retryHint finds a wait in an error body, e.g. "retry after 30s" or "Retry-After: 30".
var retryHint = regexp.MustCompile(`(?i)retry[- ]after[": ]+(\d+)\s*(s|sec|seconds)?\b`)

// retryAfter reads how long a 429 asks to wait: Retry-After (seconds or an HTTP date), else a
// hint in the body, else defaultBackoff. It consumes and closes the body.
func retryAfter(resp *http.Response) time.Duration {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	resp.Body.Close()
	if d, ok := retryafter.Parse(resp.Header.Get("Retry-After"), time.Now()); ok {
		return d
	}
	if m := retryHint.FindSubmatch(body); m != nil {
		if secs, err := strconv.Atoi(string(m[1])); err == nil {
			return time.Duration(secs) * time.Second
		}
	}
	return defaultBackoff
}
