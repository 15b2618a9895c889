package notify

import "github.com/prometheus/client_golang/prometheus"

// Values of hookd_notifications_total's result label.
const (
	resultSent     = "sent"     // the endpoint took it (2xx)
	resultFailed   = "failed"   // given up: refused, out of tries, or hookd stopped
	resultDropped  = "dropped"  // never tried: the queue was full, or hookd stopped first
	resultRetried  = "retried"  // a try failed and another follows
	resultRepeated = "repeated" // not sent: the runtime's last result, same outcome and digest, was
)

// Metrics count notifications; endpoint label values are the configured endpoint names.
type Metrics struct {
	notifications *prometheus.CounterVec
}

// NewMetrics registers the notifications' metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_notifications_total",
			Help: "Rollout notifications by endpoint name and result (sent, failed, dropped, retried, repeated).",
		}, []string{"endpoint", "result"}),
	}
	reg.MustRegister(m.notifications)
	return m
}

// known makes the endpoint's series exist at zero, so alerts on failures work from the first scrape.
func (m *Metrics) known(endpoint string) {
	for _, r := range []string{resultSent, resultFailed, resultDropped, resultRetried, resultRepeated} {
		m.notifications.WithLabelValues(endpoint, r)
	}
}

func (m *Metrics) count(endpoint, result string) { m.add(endpoint, result, 1) }

func (m *Metrics) add(endpoint, result string, k int) {
	m.notifications.WithLabelValues(endpoint, result).Add(float64(k))
}
