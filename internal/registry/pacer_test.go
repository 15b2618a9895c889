package registry_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/testkit"
)

// handoffs records when the Pacer hands each request on, per host.
type handoffs struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func (h *handoffs) RoundTrip(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	if h.times == nil {
		h.times = map[string][]time.Time{}
	}
	h.times[req.URL.Host] = append(h.times[req.URL.Host], time.Now())
	h.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (h *handoffs) of(host string) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.times[host])
}

// arrivals records, server side, when each request reached a registry.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
}

func (a *arrivals) add() {
	a.mu.Lock()
	a.times = append(a.times, time.Now())
	a.mu.Unlock()
}

func (a *arrivals) list() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.times)
}

func get(ctx context.Context, c *http.Client, host string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func TestPacerSpacesRequestsToOneHost(t *testing.T) {
	reg := testkit.StartRegistry(t, nil)
	rec := &handoffs{}
	const pace = 40 * time.Millisecond
	c := &http.Client{Transport: registry.NewPacer(rec, pace, prometheus.NewRegistry())}
	const n = 6
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = get(context.Background(), c, reg.Host) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	times := rec.of(reg.Host)
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for k, at := range times {
		if earliest := start.Add(time.Duration(k) * pace); at.Before(earliest) {
			t.Fatalf("request %d of %d sent %s after the first was asked for, want at least %s", k+1, n, at.Sub(start), time.Duration(k)*pace)
		}
	}
}

func TestPacerPacesEachHostOnItsOwn(t *testing.T) {
	a := testkit.StartRegistry(t, nil)
	b := testkit.StartRegistry(t, nil) // another port on 127.0.0.1 is another host
	rec := &handoffs{}
	c := &http.Client{Transport: registry.NewPacer(rec, time.Hour, prometheus.NewRegistry())}
	if err := get(context.Background(), c, a.Host); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { waiting <- get(ctx, c, a.Host) }() // its turn is an hour away
	if err := get(context.Background(), c, b.Host); err != nil {
		t.Fatalf("other host: %v", err)
	}
	select {
	case err := <-waiting:
		t.Fatalf("second request to %s did not wait its turn: %v", a.Host, err)
	default:
	}
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiting request: %v, want context.Canceled", err)
	}
	if n := len(rec.of(a.Host)); n != 1 {
		t.Fatalf("%d requests sent to %s, want 1", n, a.Host)
	}
}

// limiting answers 429 with the given header and body to the first request after it is armed.
func limiting(seen *arrivals, armed *bool, mu *sync.Mutex, header, body string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.add()
			mu.Lock()
			fire := *armed
			*armed = false
			mu.Unlock()
			if fire {
				if header != "" {
					w.Header().Set("Retry-After", header)
				}
				w.WriteHeader(http.StatusTooManyRequests)
				w.Write([]byte(body))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestPacerHonoursRetryAfter(t *testing.T) {
	var mu sync.Mutex
	armed := true
	seenA := &arrivals{}
	a := testkit.StartRegistry(t, limiting(seenA, &armed, &mu, "2", ""))
	b := testkit.StartRegistry(t, nil)
	metrics := prometheus.NewRegistry()
	pacer := registry.NewPacer(nil, time.Millisecond, metrics)
	c := &http.Client{Transport: pacer}
	ctx := context.Background()

	before := time.Now()
	err := get(ctx, c, a.Host)
	after := time.Now()
	var limited *registry.RateLimitedError
	if !errors.As(err, &limited) {
		t.Fatalf("answered 429: %v, want a RateLimitedError", err)
	}
	if limited.Until.Before(before.Add(2*time.Second)) || limited.Until.After(after.Add(2*time.Second)) {
		t.Fatalf("asked to wait until %s after the request, want 2s", limited.Until.Sub(before))
	}
	if err := get(ctx, c, a.Host); !errors.As(err, &limited) {
		t.Fatalf("request during the wait: %v, want a RateLimitedError", err)
	}
	if err := get(ctx, c, b.Host); err != nil {
		t.Fatalf("other registry during the wait: %v", err)
	}
	if n := len(seenA.list()); n != 1 {
		t.Fatalf("limiting registry saw %d requests during its wait, want 1", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for get(ctx, c, a.Host) != nil {
		if time.Now().After(deadline) {
			t.Fatal("registry still refused 30s after a 2s Retry-After")
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	seen := seenA.list()
	if len(seen) != 2 || seen[1].Sub(seen[0]) < 2*time.Second {
		t.Fatalf("requests reached the limiting registry at %v, want the second at least 2s after the 429", seen)
	}
	for class, want := range map[string]float64{"429": 1, "2xx": 2} {
		if got := requestsOf(t, metrics, class); got != want {
			t.Errorf("hookd_registry_requests_total{class=%q} = %v, want %v", class, got, want)
		}
	}
	if got := requestsOf(t, metrics, "rate_limited"); got < 1 {
		t.Errorf("hookd_registry_requests_total{class=rate_limited} = %v, want at least 1", got)
	}
}

func TestPacerReadsRetryHintInBody(t *testing.T) {
	for _, tc := range []struct {
		name, header, body string
		want               time.Duration
	}{
		{"body hint", "", `{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limited, retry after 7 seconds"}]}`, 7 * time.Second},
		{"header wins", "3", `retry-after: 9`, 3 * time.Second},
		{"no hint", "", `{"errors":[{"code":"TOOMANYREQUESTS"}]}`, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			armed := true
			a := testkit.StartRegistry(t, limiting(&arrivals{}, &armed, &mu, tc.header, tc.body))
			c := &http.Client{Transport: registry.NewPacer(nil, 0, prometheus.NewRegistry())}
			before := time.Now()
			err := get(context.Background(), c, a.Host)
			after := time.Now()
			var limited *registry.RateLimitedError
			if !errors.As(err, &limited) {
				t.Fatalf("answered 429: %v, want a RateLimitedError", err)
			}
			if limited.Until.Before(before.Add(tc.want)) || limited.Until.After(after.Add(tc.want)) {
				t.Fatalf("asked to wait %s, want %s", limited.Until.Sub(before), tc.want)
			}
		})
	}
}

// requestsOf returns hookd_registry_requests_total{class}.
func requestsOf(t *testing.T, reg *prometheus.Registry, class string) float64 {
	t.Helper()
	return testkit.Sample(t, reg, "hookd_registry_requests_total", "class="+class)
}
