package admin

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/store"
)

// BehindCollector serves hookd_runtime_behind, derived at each scrape from the runtime records
// that rollouts and polls keep, so it is right the moment either path records a digest.
type BehindCollector struct {
	catalog *catalog.Catalog
	store   *store.Store
	desc    *prometheus.Desc
}

// NewBehindCollector returns the collector; register it on the metrics registry.
func NewBehindCollector(cat *catalog.Catalog, st *store.Store) *BehindCollector {
	return &BehindCollector{catalog: cat, store: st, desc: prometheus.NewDesc(
		"hookd_runtime_behind",
		"1 while the digest last seen at the registry for the runtime's tag is not the one it runs.",
		[]string{"runtime"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *BehindCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *BehindCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	statuses, err := Statuses(ctx, c.catalog, c.store)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, s := range statuses {
		v := 0.0
		if s.Behind {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, s.Name)
	}
}
