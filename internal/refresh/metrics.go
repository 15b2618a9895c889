package refresh

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
)

// Metrics are the rollout path's counters; runtime label values come from the bounded set of
// configured (or label-discovered) runtimes.
type Metrics struct {
	pulls     *prometheus.CounterVec
	refreshes *prometheus.CounterVec
	duration  prometheus.Histogram
	rollbacks *prometheus.CounterVec
}

// NewMetrics registers the rollout path's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_pulls_total",
			Help: "Image pulls by runtime and result (pulled, present, failed).",
		}, []string{"runtime", "result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_refresh_total",
			Help: "Finished jobs by runtime and result (pulled, up_to_date, rolled_out, rolled_back, skipped, failed).",
		}, []string{"runtime", "result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookd_refresh_duration_seconds",
			Help:    "Time from a job's start to its end (resolve, pull, recreate, gate).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300},
		}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookd_rollbacks_total",
			Help: "Rollouts undone because the new digest failed.",
		}, []string{"runtime"}),
	}
	reg.MustRegister(m.pulls, m.refreshes, m.duration, m.rollbacks)
	return m
}

// known makes the runtime's series exist at zero, so rates and alerts work from the first scrape.
func (m *Metrics) known(runtime string) {
	for _, o := range hookd.Outcomes() {
		m.refreshes.WithLabelValues(runtime, string(o))
	}
	for _, r := range []string{"pulled", "present", "failed"} {
		m.pulls.WithLabelValues(runtime, r)
	}
	m.rollbacks.WithLabelValues(runtime)
}

func (m *Metrics) observe(res hookd.Result) {
	m.refreshes.WithLabelValues(res.Runtime, string(res.Outcome)).Inc()
	m.duration.Observe(res.Finished.Sub(res.Started).Seconds())
	if res.Outcome == hookd.OutcomeRolledBack {
		m.rollbacks.WithLabelValues(res.Runtime).Inc()
	}
}
