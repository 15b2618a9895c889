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

// rejectedKept is how many requests refused before their signature was checked are listed.
const rejectedKept = 10

// Recent keeps the last deliveries in memory, newest first, and apart from them the last
// requests refused before their signature was checked (too large, busy, bad signature): anyone
// can send those, and they must not push real deliveries off the list. It is not state: after
// a restart the durable record of what was queued is the store's.
type Recent struct {
	mu       sync.Mutex
	signed   ring
	rejected ring
	total    int // rejected since start
}

type ring struct {
	seen []Seen
	next int
	full bool
}

// NewRecent keeps the last n deliveries.
func NewRecent(n int) *Recent {
	return &Recent{signed: ring{seen: make([]Seen, n)}, rejected: ring{seen: make([]Seen, rejectedKept)}}
}

func (r *Recent) add(s Seen) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.signed.put(s)
	r.mu.Unlock()
}

func (r *Recent) reject(s Seen) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.rejected.put(s)
	r.total++
	r.mu.Unlock()
}

// List returns the kept deliveries with a valid signature, newest first.
func (r *Recent) List() []Seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.signed.list()
}

// Rejected returns the last requests refused before their signature was checked, newest
// first, and how many there were since start.
func (r *Recent) Rejected() ([]Seen, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rejected.list(), r.total
}

func (g *ring) put(s Seen) {
	if len(g.seen) == 0 {
		return
	}
	g.seen[g.next] = s
	g.next = (g.next + 1) % len(g.seen)
	g.full = g.full || g.next == 0
}

func (g *ring) list() []Seen {
	n := g.next
	if g.full {
		n = len(g.seen)
	}
	out := make([]Seen, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, g.seen[(g.next-i+len(g.seen))%len(g.seen)])
	}
	return out
}
