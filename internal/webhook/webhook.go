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
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

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
}

// New returns the intake handler; recent (may be nil) keeps the last deliveries for display.
func New(verifier *verify.GitHub, matcher Matcher, queue Queue, registryHost string, maxBody int64, m *Metrics, recent *Recent, log *slog.Logger) *Handler {
	return &Handler{verifier: verifier, matcher: matcher, queue: queue, registryHost: registryHost, maxBody: maxBody, metrics: m, recent: recent, log: log}
}

// Metrics counts deliveries by event and outcome.
type Metrics struct {
	deliveries *prometheus.CounterVec
}

// NewMetrics registers the intake's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookd_webhook_deliveries_total",
		Help: "Webhook deliveries by event and outcome.",
	}, []string{"event", "outcome"})}
	reg.MustRegister(m.deliveries)
	// Every series exists from the start, so rates and alerts see the first delivery.
	for _, e := range []string{"package", "registry_package", "ping", "other", "none"} {
		for _, o := range []string{OutcomeQueued, OutcomeIgnored, OutcomeDuplicate, OutcomePong, OutcomeBadSig, OutcomeTooLarge, OutcomeMalformed, OutcomeUnsupported, OutcomeError} {
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
	reply := func(code int, outcome string, a answer) error {
		h.metrics.deliveries.WithLabelValues(eventLabel(event), outcome).Inc()
		h.recent.add(Seen{At: time.Now(), ID: truncate(req.Header.Get("X-GitHub-Delivery"), 64), Event: truncate(event, 40),
			Code: code, Outcome: outcome, Detail: a.Reason + a.Error, Runtimes: a.Runtimes})
		return c.JSON(code, a)
	}

	if req.ContentLength > h.maxBody {
		return reply(http.StatusRequestEntityTooLarge, OutcomeTooLarge, answer{Error: "body over the limit"})
	}
	body, err := readBody(http.MaxBytesReader(c.Response(), req.Body, h.maxBody), req.ContentLength)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return reply(http.StatusRequestEntityTooLarge, OutcomeTooLarge, answer{Error: "body over the limit"})
		}
		return reply(http.StatusBadRequest, OutcomeMalformed, answer{Error: "could not read body"})
	}

	if err := h.verifier.Verify(body, req.Header.Get("X-Hub-Signature-256")); err != nil {
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

// readBody reads the body into one buffer sized by the announced length (bounded by the
// caller's limit), instead of io.ReadAll's doubling from 512 bytes.
func readBody(r io.Reader, contentLength int64) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(int(max(contentLength, 0)) + bytes.MinRead)
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
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
