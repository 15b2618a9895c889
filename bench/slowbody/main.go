// Command slowbody holds many connections to hookd's webhook that each announce a large body
// and send none of it (the "memory before the signature" attack), and reports hookd's resident
// memory before, at its peak during, and after the attack. A dropped connection is dialled again,
// so the number held stays at -conns for -duration. With -secret it also sends a signed ping
// each second meanwhile and reports how those were answered.
//
//	go run ./bench/slowbody -url http://127.0.0.1:8080/hooks/ghcr -pid $(pidof hookd) -conns 5000
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hookd/hookd/internal/verify"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "slowbody:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("slowbody", flag.ContinueOnError)
	target := fs.String("url", "", "webhook URL of a running hookd (loopback only)")
	pid := fs.Int("pid", 0, "hookd's process id, to read its resident memory from /proc")
	conns := fs.Int("conns", 5000, "connections held at once")
	claim := fs.Int64("claim", 1<<20, "Content-Length each connection announces")
	duration := fs.Duration("duration", 30*time.Second, "how long the connections are held")
	secret := fs.String("secret", "", "webhook secret: send a signed ping each second meanwhile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		return errors.New("-url is required")
	}
	if h, _, _ := net.SplitHostPort(u.Host); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return errors.New("-url must be a loopback address")
	}
	if *pid == 0 {
		return errors.New("-pid is required")
	}
	before, err := rss(*pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "hookd RSS before: %.1f MiB\n", mib(before))

	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	var open, dials, dialErrs atomic.Int64
	answers := &counts{m: map[string]int{}}
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-GitHub-Event: package\r\nX-GitHub-Delivery: slow\r\nContent-Length: %d\r\n\r\n",
		u.RequestURI(), u.Host, *claim)
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				dials.Add(1)
				status, err := hold(ctx, u.Host, head, &open)
				switch {
				case err != nil && ctx.Err() == nil:
					dialErrs.Add(1)
					t := time.NewTimer(100 * time.Millisecond) // the backlog is full: do not spin
					select {
					case <-ctx.Done():
					case <-t.C:
					}
				case status != "":
					answers.add(status)
				}
			}
		})
	}
	pings := &counts{m: map[string]int{}}
	if *secret != "" {
		wg.Go(func() { ping(ctx, *target, []byte(*secret), pings) })
	}
	peak, peakOpen := before, int64(0)
	tick := time.NewTicker(200 * time.Millisecond)
sample:
	for {
		select {
		case <-ctx.Done():
			break sample
		case <-tick.C:
			if r, err := rss(*pid); err == nil && r > peak {
				peak = r
			}
			peakOpen = max(peakOpen, open.Load())
		}
	}
	tick.Stop()
	wg.Wait()
	fmt.Fprintf(out, "held up to %d connections at once (%d dials, %d failed) claiming %d bytes each for %s\n",
		peakOpen, dials.Load(), dialErrs.Load(), *claim, *duration)
	fmt.Fprintf(out, "answers to the slow requests: %s\n", answers)
	if *secret != "" {
		fmt.Fprintf(out, "signed pings meanwhile: %s\n", pings)
	}
	fmt.Fprintf(out, "hookd RSS peak: %.1f MiB\n", mib(peak))
	t := time.NewTimer(5 * time.Second) // let hookd notice the closed connections
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	after, err := rss(*pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "hookd RSS 5 s after: %.1f MiB\n", mib(after))
	return nil
}

// hold sends the headers and waits until hookd answers or drops the connection, or ctx ends.
func hold(ctx context.Context, host, head string, open *atomic.Int64) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return "", err
	}
	open.Add(1)
	defer open.Add(-1)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	if _, err := io.WriteString(c, head); err != nil {
		return "dropped", nil
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return "", nil
		}
		return "dropped", nil
	}
	if f := strings.Fields(line); len(f) >= 2 {
		return f[1], nil
	}
	return "garbled", nil
}

func ping(ctx context.Context, target string, secret []byte, c *counts) {
	body := []byte(`{"zen":"slow","hook_id":1}`)
	client := &http.Client{Timeout: 10 * time.Second}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "ping")
		req.Header.Set("X-GitHub-Delivery", strconv.FormatInt(time.Now().UnixNano(), 10))
		req.Header.Set("X-Hub-Signature-256", verify.Sign(secret, body))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				c.add("error")
			}
			continue
		}
		resp.Body.Close()
		c.add(fmt.Sprintf("%d(<%s)", resp.StatusCode, bucket(time.Since(start))))
	}
}

func bucket(d time.Duration) string {
	for _, b := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second} {
		if d < b {
			return b.String()
		}
	}
	return "10s"
}

type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(k string) {
	c.mu.Lock()
	c.m[k]++
	c.mu.Unlock()
}

func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range c.m {
		parts = append(parts, fmt.Sprintf("%s×%d", k, v))
	}
	return strings.Join(parts, " ")
}

// rss reads VmRSS of pid in bytes.
func rss(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read hookd's memory: %w", err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
