// Package notify tells configured HTTP endpoints of finished rollouts: a signed JSON document
// for scripts and audit logs, or a one-line Slack-compatible message for people.
//
// A rollout never waits for a notification. Notify puts the result on the endpoint's bounded
// in-memory queue (dropping the oldest when it is full) and one goroutine per endpoint delivers
// it, retrying with exponential backoff. An endpoint's URL may itself be a secret (Slack's is),
// so logs, errors and metrics name the endpoint by its configured name only.
package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/retryafter"
	"github.com/hookd/hookd/internal/verify"
)

// Headers sent with every notification.
const (
	HeaderEvent     = "X-Hookd-Event"         // always "rollout"
	HeaderDelivery  = "X-Hookd-Delivery"      // unique per notification and endpoint; the same on every retry
	HeaderSignature = "X-Hookd-Signature-256" // "sha256=<hex>" HMAC of the body, as GitHub signs; only with a secret
)

// Retry bounds the delivery of one notification to one endpoint.
type Retry struct {
	Attempts int           // tries in all, the first included
	First    time.Duration // wait before the second try; doubled before each next one
	Max      time.Duration // longest wait between two tries
	Elapsed  time.Duration // no try starts later than this after the first
	Timeout  time.Duration // one try's limit
}

// DefaultRetry waits 1, 2, 4, 8 s between five tries.
func DefaultRetry() Retry {
	return Retry{Attempts: 5, First: time.Second, Max: 30 * time.Second, Elapsed: 2 * time.Minute, Timeout: 10 * time.Second}
}

const (
	// DefaultQueueSize is how many notifications wait per endpoint; a receiver down for long
	// loses the oldest, which a newer result for the same runtime supersedes anyway.
	DefaultQueueSize = 100
	// DefaultDrainTimeout is how long Run keeps delivering what is queued once it is told to stop.
	DefaultDrainTimeout = 5 * time.Second
)

// Option adjusts a Notifier.
type Option func(*Notifier)

// WithRetry replaces DefaultRetry.
func WithRetry(r Retry) Option { return func(n *Notifier) { n.retry = r } }

// WithQueueSize replaces DefaultQueueSize.
func WithQueueSize(size int) Option { return func(n *Notifier) { n.queueSize = max(size, 1) } }

// WithDrainTimeout replaces DefaultDrainTimeout.
func WithDrainTimeout(d time.Duration) Option { return func(n *Notifier) { n.drain = d } }

// WithTransport replaces http.DefaultTransport for the requests to endpoints.
func WithTransport(rt http.RoundTripper) Option { return func(n *Notifier) { n.client.Transport = rt } }

// WithVersion names the hookd version in JSON bodies and the User-Agent.
func WithVersion(v string) Option { return func(n *Notifier) { n.version = v } }

// Notifier delivers rollout results to the configured endpoints.
type Notifier struct {
	endpoints []*endpoint
	metrics   *Metrics
	log       *slog.Logger
	client    *http.Client
	retry     Retry
	queueSize int
	drain     time.Duration
	version   string

	mu   sync.Mutex
	last map[string]told // by runtime and engine: the last result told
}

// told is what a result is deduplicated by.
type told struct {
	outcome hookd.Outcome
	digest  string
}

type endpoint struct {
	name    string
	url     string
	format  string
	secret  []byte
	results []hookd.Outcome

	mu    sync.Mutex
	queue []message // oldest first
	wake  chan struct{}
}

// message is one notification to one endpoint.
type message struct {
	id  string
	res hookd.Result
}

// New returns a notifier for endpoints (already validated by config); Run delivers.
func New(endpoints []config.Notify, m *Metrics, log *slog.Logger, opts ...Option) *Notifier {
	n := &Notifier{
		metrics:   m,
		log:       log,
		retry:     DefaultRetry(),
		queueSize: DefaultQueueSize,
		drain:     DefaultDrainTimeout,
		last:      map[string]told{},
		// A receiver that redirects would have the signed body re-sent (or turned into a GET)
		// somewhere not configured: its 3xx is an answer, and a failure.
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	for _, o := range opts {
		o(n)
	}
	for _, c := range endpoints {
		results := c.Results
		if len(results) == 0 {
			results = config.DefaultNotifyResults()
		}
		format := c.Format
		if format == "" {
			format = config.NotifyJSON
		}
		n.endpoints = append(n.endpoints, &endpoint{
			name: c.Name, url: c.URL, format: format, secret: c.Secret, results: results,
			wake: make(chan struct{}, 1),
		})
		m.known(c.Name)
	}
	return n
}

// Notify queues res for every endpoint that asked for its result. It never blocks: a full
// queue loses its oldest notification. A result that repeats the runtime's last one (same
// outcome, same digest) is not told again unless a person asked for the rollout: a signed body
// replayed with fresh delivery ids then costs a job each, never a notification each.
func (n *Notifier) Notify(res hookd.Result) {
	n.mu.Lock()
	key := told{outcome: res.Outcome, digest: res.Digest}
	at := res.Runtime + "\x00" + res.Engine
	repeat := n.last[at] == key && res.Trigger != hookd.TriggerAdmin
	n.last[at] = key
	n.mu.Unlock()
	if repeat {
		for _, e := range n.endpoints {
			if slices.Contains(e.results, res.Outcome) {
				n.metrics.count(e.name, resultRepeated)
			}
		}
		return
	}
	for _, e := range n.endpoints {
		if !slices.Contains(e.results, res.Outcome) {
			continue
		}
		e.mu.Lock()
		dropped := len(e.queue) >= n.queueSize
		if dropped {
			e.queue = slices.Delete(e.queue, 0, 1)
		}
		e.queue = append(e.queue, message{id: rand.Text(), res: res})
		e.mu.Unlock()
		if dropped {
			n.metrics.count(e.name, resultDropped)
			n.log.Warn("notification queue full: dropped the oldest", "endpoint", e.name, "queue_size", n.queueSize)
		}
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

func (e *endpoint) take() (message, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.queue) == 0 {
		return message{}, false
	}
	m := e.queue[0]
	e.queue = slices.Delete(e.queue, 0, 1)
	return m, true
}

// abandon empties the queue and says how many it held.
func (e *endpoint) abandon() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := len(e.queue)
	e.queue = nil
	return k
}

// Run delivers notifications until ctx ends, then for at most the drain timeout delivers what
// is still queued; what is left after that is dropped and counted.
func (n *Notifier) Run(ctx context.Context) error {
	defer n.client.CloseIdleConnections()
	// Deliveries outlive ctx by the drain timeout at most.
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	for _, e := range n.endpoints {
		wg.Go(func() { n.serve(ctx, dctx, e) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done: // no endpoints
		return nil
	case <-ctx.Done():
	}
	t := time.NewTimer(n.drain)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cancel()
		<-done
	}
	return nil
}

// serve is an endpoint's one delivering goroutine: notifications reach an endpoint in order.
func (n *Notifier) serve(ctx, dctx context.Context, e *endpoint) {
	for {
		if dctx.Err() != nil {
			if k := e.abandon(); k > 0 {
				n.metrics.add(e.name, resultDropped, k)
				n.log.Warn("stopping: dropped undelivered notifications", "endpoint", e.name, "count", k)
			}
			return
		}
		m, ok := e.take()
		if ok {
			n.deliver(dctx, e, m)
			continue
		}
		if ctx.Err() != nil {
			return // drained
		}
		select {
		case <-e.wake:
		case <-ctx.Done():
		}
	}
}

// deliver tries m until the endpoint takes it, refuses it for good, or the retry budget or
// ctx runs out.
func (n *Notifier) deliver(ctx context.Context, e *endpoint, m message) {
	body, err := n.encode(e.format, m.res)
	if err != nil {
		n.metrics.count(e.name, resultFailed)
		n.log.Error("notification not sent", "endpoint", e.name, "delivery", m.id, "runtime", m.res.Runtime, "err", err)
		return
	}
	start := time.Now()
	wait := n.retry.First
	for attempt := 1; ; attempt++ {
		retry, after, err := n.post(ctx, e, m.id, body)
		if err == nil {
			n.metrics.count(e.name, resultSent)
			return
		}
		pause := max(wait, after)
		giveUp := !retry || attempt >= n.retry.Attempts || time.Since(start)+pause > n.retry.Elapsed || ctx.Err() != nil
		if !giveUp {
			n.metrics.count(e.name, resultRetried)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
				wait = min(2*wait, n.retry.Max)
				continue
			case <-ctx.Done():
				t.Stop()
			}
		}
		n.metrics.count(e.name, resultFailed)
		n.log.Warn("notification not sent", "endpoint", e.name, "delivery", m.id, "runtime", m.res.Runtime,
			"result", m.res.Outcome, "attempts", attempt, "err", err)
		return
	}
}

// post makes one try. retry says whether another could succeed; after is the receiver's
// Retry-After. Its errors never contain the URL.
func (n *Notifier) post(ctx context.Context, e *endpoint, id string, body []byte) (retry bool, after time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.retry.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return false, 0, errors.New("build request: invalid URL") // its text quotes the URL
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hookd/"+n.versionOrDev())
	req.Header.Set(HeaderEvent, "rollout")
	req.Header.Set(HeaderDelivery, id)
	if len(e.secret) > 0 {
		req.Header.Set(HeaderSignature, verify.Sign(e.secret, body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return true, 0, fmt.Errorf("post: %w", redact(err, e.url))
	}
	// Reading what is left lets the connection be reused; the body itself is never shown.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return false, 0, nil
	case code == http.StatusTooManyRequests || code >= 500:
		return true, retryAfter(resp), fmt.Errorf("receiver answered %d", code)
	default:
		return false, 0, fmt.Errorf("receiver answered %d", code)
	}
}

// redact drops net/http's quoting of the URL from err; whatever still names it is replaced whole.
func redact(err error, rawURL string) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timed out")
	}
	if errors.Is(err, context.Canceled) {
		return errors.New("canceled: hookd is stopping")
	}
	// The host alone may be the secret (a token in a subdomain): a failed lookup keeps only
	// its cause, and any other error naming the host is withheld whole.
	if dnsErr, ok := errors.AsType[*net.DNSError](err); ok {
		return errors.New("DNS lookup of the endpoint's host failed: " + dnsErr.Err)
	}
	host := ""
	if u, perr := url.Parse(rawURL); perr == nil && net.ParseIP(u.Hostname()) == nil {
		host = u.Hostname() // a name; an address can carry no token
	}
	if strings.Contains(err.Error(), rawURL) || (host != "" && strings.Contains(err.Error(), host)) {
		return errors.New("request failed (details withheld: they name the endpoint)")
	}
	return err
}

// retryAfter is the receiver's Retry-After, 0 when it sent none.
func retryAfter(resp *http.Response) time.Duration {
	d, _ := retryafter.Parse(resp.Header.Get("Retry-After"), time.Now())
	return d
}

func (n *Notifier) versionOrDev() string {
	if n.version == "" {
		return "dev"
	}
	return n.version
}
