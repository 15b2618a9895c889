package store

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hookd/hookd"
)

// seedDeliveries writes n delivery records, one in every ten older than cutoff.
func seedDeliveries(tb testing.TB, s *Store, n int, cutoff time.Time) {
	tb.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeliveries)
		b.FillPercent = 1 // sequential keys
		for i := range n {
			at := cutoff.Add(time.Duration(i%10) * time.Hour)
			if i%10 == 0 {
				at = cutoff.Add(-time.Hour)
			}
			raw, _ := json.Marshal(delivery{At: at, Runtimes: []string{"app"}})
			if err := b.Put(fmt.Appendf(nil, "%08x-0000-4000-8000-%012x", i, i), raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// acceptLoop accepts deliveries until stop closes and returns the longest one took.
func acceptLoop(b *testing.B, s *Store, prefix string, stop <-chan struct{}) time.Duration {
	var worst time.Duration
	for n := 0; ; n++ {
		select {
		case <-stop:
			return worst
		default:
		}
		start := time.Now()
		if _, err := s.Accept(fmt.Sprintf("%s-%d", prefix, n), time.Now(), []hookd.Job{{Runtime: "app", Trigger: hookd.TriggerWebhook}}); err != nil {
			b.Error(err)
			return worst
		}
		worst = max(worst, time.Since(start))
	}
}

// BenchmarkPruneDeliveries600k prunes a busy org's 30 days of delivery ids (600,000, a tenth of
// them expired) while deliveries keep being accepted, and reports the longest any one Accept
// waited meanwhile (max-accept-ms): a prune holding the writer lock throughout shows here as its
// length. max-accept-idle-ms is the same without a prune, over 2 s: the disk's own fsync spread.
func BenchmarkPruneDeliveries600k(b *testing.B) {
	cutoff := time.Now().Add(-30 * 24 * time.Hour)
	var worst, idle, total time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		seedDeliveries(b, s, 600_000, cutoff)
		idleStop := make(chan struct{})
		time.AfterFunc(2*time.Second, func() { close(idleStop) })
		idle = max(idle, acceptLoop(b, s, fmt.Sprint("idle-", i), idleStop))
		stop := make(chan struct{})
		var maxWait atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() { maxWait.Store(int64(acceptLoop(b, s, fmt.Sprint("live-", i), stop))) })
		b.StartTimer()
		start := time.Now()
		pruned, err := s.PruneDeliveries(cutoff)
		total += time.Since(start)
		b.StopTimer()
		close(stop)
		wg.Wait()
		if err != nil || pruned != 60_000 {
			b.Fatalf("pruned %d (%v), want 60000", pruned, err)
		}
		worst = max(worst, time.Duration(maxWait.Load()))
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(worst)/float64(time.Millisecond), "max-accept-ms")
	b.ReportMetric(float64(idle)/float64(time.Millisecond), "max-accept-idle-ms")
	b.ReportMetric(float64(total)/float64(b.N)/float64(time.Millisecond), "prune-ms")
}
