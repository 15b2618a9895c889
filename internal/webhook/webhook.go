// Package webhook is hookd's intake: a GitHub delivery is limited, verified, decoded, planned,
// durably queued and answered, in that order.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/hookd/hookd/internal/ratelog"
	"github.com/hookd/hookd/internal/verify"
)

// Matcher maps a pushed image to the runtimes that follow it.
type Matcher interface {
	Match(ctx context.Context, image string) ([]string, error)
}

// Queue durably records a delivery of image and queues a job per runtime; dup reports a
// delivery id taken before.
type Queue interface {
	Accept(ctx context.Context, deliveryID string, runtimes []string, image, hint string) (dup bool, err error)
}

// Handler serves POST deliveries.
type Handler struct {
	verifier     *verify.GitHub
	matcher      Matcher
	queue        Queue
	registryHost string
	maxBody      int64
	metrics      *Metrics
	recent       *Recent
	log          *slog.Logger
	// budget bounds the memory of all bodies not yet verified: each request is charged for
	// the bytes that arrived (twice: a buffer grows to at most double what it holds), not for
	// the Content-Length it claims. Past it, intake answers 503.
	budget      *semaphore.Weighted
	rejectedLog *ratelog.Logger
	ignoredLog  *ratelog.Logger
}

// DefaultBodyBudget is the memory all unverified bodies may hold together. Deliveries are a
// few KB and arrive in one piece: only a flood of large bodies sent slowly reaches it.
const DefaultBodyBudget = 64 << 20

// Option adjusts a Handler.
type Option func(*Handler)

// WithBodyBudget replaces DefaultBodyBudget (raised to hold at least two bodies of maxBody).
func WithBodyBudget(bytes int64) Option {
	return func(h *Handler) { h.budget = semaphore.NewWeighted(max(bytes, 4*h.maxBody)) }
}

// New returns the intake handler; recent (may be nil) keeps the last deliveries for display.
func New(verifier *verify.GitHub, matcher Matcher, queue Queue, registryHost string, maxBody int64, m *Metrics, recent *Recent, log *slog.Logger, opts ...Option) *Handler {
	h := &Handler{verifier: verifier, matcher: matcher, queue: queue, registryHost: registryHost, maxBody: maxBody, metrics: m, recent: recent, log: log,
		budget:      semaphore.NewWeighted(max(DefaultBodyBudget, 4*maxBody)),
		rejectedLog: ratelog.New(log, slog.LevelWarn, 10*time.Second),
		ignoredLog:  ratelog.New(log, slog.LevelInfo, 10*time.Second),
	}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Metrics counts deliveries by event and outcome.
type Metrics struct {
	deliveries *prometheus.CounterVec
	inFlight   prometheus.Gauge
	bodyBytes  prometheus.Gauge
}

// NewMetrics registers the intake's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_webhook_deliveries_total",
			Help: "Webhook deliveries by event and outcome.",
		}, []string{"event", "outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookd_webhook_in_flight",
			Help: "Webhook requests being read and verified now.",
		}),
		bodyBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookd_webhook_body_bytes",
			Help: "Memory charged to webhook bodies not yet verified (bounded; past it hookd answers 503).",
		}),
	}
	reg.MustRegister(m.deliveries, m.inFlight, m.bodyBytes)
	// Every series exists from the start, so rates and alerts see the first delivery.
	for _, e := range []string{"package", "registry_package", "ping", "other", "none"} {
		for _, o := range []string{OutcomeQueued, OutcomeIgnored, OutcomeDuplicate, OutcomePong, OutcomeBadSig, OutcomeTooLarge, OutcomeMalformed, OutcomeUnsupported, OutcomeError, OutcomeBusy} {
			m.deliveries.WithLabelValues(e, o)
		}
	}
	return m
}

// Outcomes, the values of the outcome label.
const (
	OutcomeQueued      = "queued"
	OutcomeIgnored     = "ignored"
	OutcomeDuplicate   = "duplicate"
	OutcomePong        = "pong"
	OutcomeBadSig      = "bad_signature"
	OutcomeTooLarge    = "too_large"
	OutcomeMalformed   = "malformed"
	OutcomeUnsupported = "unsupported_media_type"
	OutcomeError       = "error"
	OutcomeBusy        = "busy"
)

type answer struct {
	Status   string   `json:"status,omitempty"`
	Delivery string   `json:"delivery,omitempty"`
	Runtimes []string `json:"runtimes,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// Handle is the intake: limit body → verify → decode → plan → enqueue → answer.
func (h *Handler) Handle(c echo.Context) error {
	req := c.Request()
	event := req.Header.Get("X-GitHub-Event")
	verified := false
	reply := func(code int, outcome string, a answer) error {
		h.metrics.deliveries.WithLabelValues(eventLabel(event), outcome).Inc()
		seen := Seen{At: time.Now(), ID: truncate(req.Header.Get("X-GitHub-Delivery"), 64), Event: truncate(event, 40),
			Code: code, Outcome: outcome, Detail: a.Reason + a.Error, Runtimes: a.Runtimes}
		// Whoever can reach the port can send unsigned requests: they are kept apart, so they
		// never push real deliveries off the status page, and logged at most every 10 s.
		if !verified {
			h.recent.reject(seen)
			if n, ok := h.rejectedLog.Due(); ok {
				h.log.Warn("webhook request rejected", "outcome", outcome, "code", code, "event", seen.Event,
					"delivery", seen.ID, "remote", req.RemoteAddr, "reason", seen.Detail, "suppressed", n)
			}
		} else {
			h.recent.add(seen)
			if outcome == OutcomeIgnored || outcome == OutcomeMalformed || outcome == OutcomeUnsupported {
				h.ignoredLog.Log("webhook delivery not acted on", "outcome", outcome, "event", seen.Event, "delivery", seen.ID, "reason", seen.Detail)
			}
		}
		return c.JSON(code, a)
	}

	if req.ContentLength > h.maxBody {
		return reply(http.StatusRequestEntityTooLarge, OutcomeTooLarge, answer{Error: "body over the limit"})
	}
	h.metrics.inFlight.Inc()
	in := &charged{r: http.MaxBytesReader(c.Response(), req.Body, h.maxBody), budget: h.budget, gauge: h.metrics.bodyBytes}
	body, err := readBody(in)
	if err == nil {
		err = h.verifier.Verify(body, req.Header.Get("X-Hub-Signature-256"))
		verified = err == nil
	}
	// Past verification the body is a sender's with the secret, no longer charged.
	in.release()
	h.metrics.inFlight.Dec()
	if errors.Is(err, errBusy) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(busyRetrySeconds))
		return reply(http.StatusServiceUnavailable, OutcomeBusy, answer{Error: "too much unverified data being received at once; try again"})
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		var readErr *readError
		switch {
		case errors.As(err, &tooLarge):
			return reply(http.StatusRequestEntityTooLarge, OutcomeTooLarge, answer{Error: "body over the limit"})
		case errors.As(err, &readErr):
			return reply(http.StatusBadRequest, OutcomeMalformed, answer{Error: "could not read body"})
		}
		return reply(http.StatusUnauthorized, OutcomeBadSig, answer{Error: err.Error()})
	}

	delivery := req.Header.Get("X-GitHub-Delivery")
	if !validDeliveryID(delivery) {
		return reply(http.StatusBadRequest, OutcomeMalformed, answer{Error: "missing, oversized or non-printable X-GitHub-Delivery"})
	}
	payload, err := decode(req.Header.Get("Content-Type"), body)
	if errors.Is(err, errMalformed) {
		return reply(http.StatusBadRequest, OutcomeMalformed, answer{Error: err.Error()})
	}
	if err != nil {
		return reply(http.StatusUnsupportedMediaType, OutcomeUnsupported, answer{Error: err.Error()})
	}
	switch event {
	case "ping":
		return reply(http.StatusOK, OutcomePong, answer{Status: "pong"})
	case "package", "registry_package":
	case "":
		return reply(http.StatusBadRequest, OutcomeMalformed, answer{Error: "missing X-GitHub-Event"})
	default:
		return reply(http.StatusAccepted, OutcomeIgnored, answer{Status: "ignored", Reason: "event " + quoteShort(event) + " is not handled"})
	}

	push, ignored, err := Plan(event, payload, h.registryHost)
	if err != nil {
		return reply(http.StatusBadRequest, OutcomeMalformed, answer{Error: err.Error()})
	}
	if ignored != "" {
		return reply(http.StatusAccepted, OutcomeIgnored, answer{Status: "ignored", Reason: ignored})
	}
	runtimes, err := h.matcher.Match(req.Context(), push.Image)
	if err != nil {
		h.log.Error("map delivery to runtimes", "delivery", delivery, "image", push.Image, "err", err)
		return reply(http.StatusServiceUnavailable, OutcomeError, answer{Error: "runtimes unavailable"})
	}
	if len(runtimes) == 0 {
		reason := "no runtime follows " + push.Image
		if push.Note != "" {
			reason += "; " + push.Note
		}
		return reply(http.StatusAccepted, OutcomeIgnored, answer{Status: "ignored", Reason: reason})
	}

	dup, err := h.queue.Accept(req.Context(), delivery, runtimes, push.Image, push.Digest)
	if err != nil {
		h.log.Error("queue delivery", "delivery", delivery, "err", err)
		return reply(http.StatusServiceUnavailable, OutcomeError, answer{Error: "state unavailable"})
	}
	if dup {
		return reply(http.StatusOK, OutcomeDuplicate, answer{Status: "duplicate", Delivery: delivery})
	}
	h.log.Info("delivery queued", "delivery", delivery, "image", push.Image, "runtimes", runtimes)
	return reply(http.StatusAccepted, OutcomeQueued, answer{Status: "queued", Delivery: delivery, Runtimes: runtimes})
}

// busyRetrySeconds is the Retry-After of a 503 for a full intake.
const busyRetrySeconds = 5

type readError struct{ err error }

func (e *readError) Error() string { return "read body: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

var errBusy = errors.New("body budget spent")

// readBody reads the body into a buffer that grows with what arrives, never with what the
// Content-Length claims: a request that claims a megabyte and sends nothing holds 512 bytes.
func readBody(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		if errors.Is(err, errBusy) {
			return nil, err
		}
		return nil, &readError{err}
	}
	return buf.Bytes(), nil
}

// charged reads from r and charges twice every byte read against budget.
type charged struct {
	r      io.Reader
	budget *semaphore.Weighted
	gauge  prometheus.Gauge
	n      int64
}

func (c *charged) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		if !c.budget.TryAcquire(2 * int64(n)) {
			return 0, errBusy
		}
		c.n += 2 * int64(n)
		c.gauge.Add(2 * float64(n))
	}
	return n, err
}

func (c *charged) release() {
	c.budget.Release(c.n)
	c.gauge.Sub(float64(c.n))
	c.n = 0
}

// decode returns the JSON payload of a JSON or form-encoded (payload=…) body.
func decode(contentType string, body []byte) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, errors.New("unsupported content type")
	}
	switch mt {
	case "application/json":
		return body, nil
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("%w: form body", errMalformed)
		}
		return []byte(form.Get("payload")), nil
	}
	return nil, errors.New("unsupported content type " + quoteShort(mt))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// validDeliveryID accepts up to 128 visible ASCII characters (GitHub sends a GUID): the id is
// echoed in answers, logs and job records, which could not carry other bytes as given.
func validDeliveryID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '!' || id[i] > '~' {
			return false
		}
	}
	return true
}

func eventLabel(event string) string {
	switch event {
	case "package", "registry_package", "ping":
		return event
	case "":
		return "none"
	}
	return "other"
}
