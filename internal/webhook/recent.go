package webhook

import (
	"sync"
	"time"
)

// Seen is one delivery as the status page lists it.
type Seen struct {
	At       time.Time `json:"at"`
	ID       string    `json:"delivery"`
	Event    string    `json:"event"`
	Code     int       `json:"code"`
	Outcome  string    `json:"outcome"`
	Detail   string    `json:"detail,omitempty"` // the reason or error answered
	Runtimes []string  `json:"runtimes,omitempty"`
}

// Recent keeps the last deliveries in memory, newest first. It is not state: after a restart
// the durable record of what was queued is the store's.
type Recent struct {
	mu   sync.Mutex
	ring []Seen
	next int
	full bool
}

// NewRecent keeps the last n deliveries.
func NewRecent(n int) *Recent { return &Recent{ring: make([]Seen, n)} }

func (r *Recent) add(s Seen) {
	if r == nil || len(r.ring) == 0 {
		return
	}
	r.mu.Lock()
	r.ring[r.next] = s
	r.next = (r.next + 1) % len(r.ring)
	r.full = r.full || r.next == 0
	r.mu.Unlock()
}

// List returns the kept deliveries, newest first.
func (r *Recent) List() []Seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.ring)
	}
	out := make([]Seen, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.ring[(r.next-i+len(r.ring))%len(r.ring)])
	}
	return out
}
