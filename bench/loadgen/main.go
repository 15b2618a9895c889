// Command loadgen measures hookd's intake: signed ~6 KB package deliveries from concurrent
// keep-alive clients over loopback, then the same with invalid signatures.
//
//	go run ./bench/loadgen -hookd bin/hookd        # starts and stops its own hookd
//	go run ./bench/loadgen -url http://127.0.0.1:8080/hooks/ghcr -secret S
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hookd/hookd/internal/verify"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type options struct {
	hookd       string
	target      string
	secret      string
	duration    time.Duration
	clients     int
	maxRequests int64
	namespace   string
	name        string
	tag         string
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.hookd, "hookd", "", "hookd binary to start on 127.0.0.1 with a throw-away state dir")
	fs.StringVar(&o.target, "url", "", "webhook URL of a running hookd (loopback only) instead of -hookd")
	fs.StringVar(&o.secret, "secret", "", "webhook secret of the hookd at -url")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each phase")
	fs.IntVar(&o.clients, "clients", 32, "concurrent keep-alive clients")
	fs.Int64Var(&o.maxRequests, "max-requests", 1_000_000, "hard cap on the requests of each phase")
	fs.StringVar(&o.namespace, "namespace", "loadgen", "package namespace of the deliveries")
	fs.StringVar(&o.name, "name", "app", "package name of the deliveries")
	fs.StringVar(&o.tag, "tag", "latest", "tag of the deliveries")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (o.hookd == "") == (o.target == "") {
		return errors.New("give exactly one of -hookd and -url")
	}
	if o.clients < 1 || o.duration <= 0 || o.maxRequests < 1 {
		return errors.New("-clients, -duration and -max-requests must be positive")
	}

	var h *hookd
	if o.hookd != "" {
		o.secret = "loadgen-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		var err error
		h, err = startHookd(ctx, o.hookd, o.secret, o.namespace, o.name, o.tag, out)
		if err != nil {
			return err
		}
		defer h.stop(out)
		o.target = "http://" + h.addr + "/hooks/ghcr"
	} else if o.secret == "" {
		return errors.New("-url needs -secret")
	}
	if err := requireLoopback(o.target); err != nil {
		return err
	}

	body := webhooktest.Payload(webhooktest.Push{Namespace: o.namespace, Name: o.name, Tag: o.tag,
		Digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222"})
	fmt.Fprintf(out, "target %s, %d clients, %s per phase (cap %d requests), body %d bytes\n", o.target, o.clients, o.duration, o.maxRequests, len(body))
	hookdPID := 0
	if o.hookd != "" {
		hookdPID = h.cmd.Process.Pid
	}
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)
	phases := []struct{ name, signature string }{
		{"valid", verify.Sign([]byte(o.secret), body)},
		{"invalid-signature", verify.Sign([]byte("not the secret"), body)},
	}
	for _, p := range phases {
		if ctx.Err() != nil {
			break
		}
		before := cpuTimes(hookdPID)
		r := load(ctx, o, body, p.signature, runID+"-"+p.name)
		r.cpu = cpuTimes(hookdPID).sub(before)
		r.print(out, p.name)
	}
	return nil
}

func requireLoopback(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return fmt.Errorf("parse -url: %w", err)
	}
	ip := net.ParseIP(u.Hostname())
	if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("target %s is not on loopback", target)
	}
	return nil
}

// hookd is a hookd process started for the run.
type hookd struct {
	cmd  *exec.Cmd
	dir  string
	addr string
	done chan error
}

// tmpfsMagic is Linux's statfs f_type of tmpfs.
const tmpfsMagic = 0x01021994

// stateParent returns where the state dir goes: it must be on a real disk, or the fsync behind
// every 202 costs nothing and the figures mean nothing.
func stateParent() (dir, why string, err error) {
	tmp := os.TempDir()
	var st syscall.Statfs_t
	if err := syscall.Statfs(tmp, &st); err == nil && st.Type != tmpfsMagic {
		return tmp, tmp + " is not tmpfs", nil
	}
	if err := os.MkdirAll("bin", 0o755); err != nil {
		return "", "", fmt.Errorf("state dir parent: %w", err)
	}
	abs, err := filepath.Abs("bin")
	if err != nil {
		return "", "", fmt.Errorf("state dir parent: %w", err)
	}
	return abs, tmp + " is tmpfs", nil
}

func startHookd(ctx context.Context, binary, secret, namespace, name, tag string, out io.Writer) (*hookd, error) {
	parent, why, err := stateParent()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, "hookd-loadgen-")
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	fmt.Fprintf(out, "state dir %s (%s: bbolt fsyncs to the real disk)\n", dir, why)
	// Registry 127.0.0.1:1 refuses connections: the jobs the deliveries queue fail at once,
	// with no network, and the workers stay out of the measurement as far as possible.
	image := "127.0.0.1:1/" + strings.ToLower(namespace+"/"+name+":"+tag)
	cfg := fmt.Sprintf("registry_host: 127.0.0.1:1\npoll:\n  interval: 0\nruntimes:\n  - name: loadgen\n    image: %s\n", image)
	cfgPath := filepath.Join(dir, "hookd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("write config: %w", err)
	}
	fmt.Fprintf(out, "hookd %s, runtime loadgen follows %s (registry 127.0.0.1:1: workers fail fast, no network)\n", binary, image)

	cmd := exec.Command(binary, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(),
		"HOOKD_LISTEN=127.0.0.1:0", "HOOKD_STATE_DIR="+filepath.Join(dir, "state"),
		"HOOKD_WEBHOOK_SECRET="+secret, "HOOKD_LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start hookd: %w", err)
	}
	h := &hookd{cmd: cmd, dir: dir, done: make(chan error, 1)}
	addr := make(chan string, 1)
	var tail logTail
	go func() {
		// Lines up to "hookd listening" are kept for errors; the rest (a line per queued
		// delivery) is only drained: the load generator shares the CPU with hookd.
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			tail.add(line)
			if bytes.Contains(line, []byte(`"hookd listening"`)) {
				var l struct {
					Msg  string `json:"msg"`
					Addr string `json:"addr"`
				}
				if json.Unmarshal(line, &l) == nil && l.Msg == "hookd listening" {
					addr <- l.Addr
					break
				}
			}
		}
		io.Copy(io.Discard, stderr)
		h.done <- cmd.Wait()
	}()
	select {
	case h.addr = <-addr:
		return h, nil
	case err := <-h.done:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("hookd exited before listening (%v):\n%s", err, tail.String())
	case <-time.After(15 * time.Second):
	case <-ctx.Done():
	}
	h.stop(io.Discard)
	return nil, fmt.Errorf("hookd did not report its address:\n%s", tail.String())
}

func (h *hookd) stop(out io.Writer) {
	defer os.RemoveAll(h.dir)
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-h.done:
		fmt.Fprintf(out, "hookd stopped (%v); removed %s\n", orOK(err), h.dir)
	case <-time.After(20 * time.Second):
		_ = h.cmd.Process.Kill()
		fmt.Fprintf(out, "hookd did not stop within 20s of SIGTERM; killed; removed %s\n", h.dir)
	}
}

func orOK(err error) any {
	if err == nil {
		return "exit 0"
	}
	return err
}

type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (t *logTail) add(line []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, string(line))
	if len(t.lines) > 20 {
		t.lines = t.lines[1:]
	}
}

func (t *logTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// cpu is CPU time used by hookd (when started here) and by this process.
type cpu struct{ hookd, self time.Duration }

func (c cpu) sub(o cpu) cpu { return cpu{c.hookd - o.hookd, c.self - o.self} }

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times on Linux.
const clockTick = 100

func cpuTimes(pid int) cpu {
	var c cpu
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if pid == 0 {
		return c
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return c
	}
	// Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) > 12 {
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		c.hookd = time.Duration(ut+st) * time.Second / clockTick
	}
	return c
}

// result is one phase's outcome.
type result struct {
	cpu       cpu
	elapsed   time.Duration
	latencies []time.Duration
	codes     map[int]int
	queued    int
	errs      int
	firstErr  error
}

func load(ctx context.Context, o options, body []byte, signature, idPrefix string) result {
	transport := &http.Transport{
		MaxIdleConns: o.clients, MaxIdleConnsPerHost: o.clients, MaxConnsPerHost: o.clients,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}

	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var sent atomic.Int64
	parts := make([]result, o.clients)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range parts {
		wg.Add(1)
		go func(r *result) {
			defer wg.Done()
			r.codes = map[int]int{}
			buf := make([]byte, 0, 512)
			for ctx.Err() == nil {
				n := sent.Add(1)
				if n > o.maxRequests {
					return
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.target, bytes.NewReader(body))
				if err != nil {
					r.fail(err)
					return
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("User-Agent", "GitHub-Hookshot/loadgen")
				req.Header.Set("X-GitHub-Event", "package")
				req.Header.Set("X-GitHub-Delivery", idPrefix+"-"+strconv.FormatInt(n, 10))
				req.Header.Set("X-Hub-Signature-256", signature)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					buf, err = readAll(resp.Body, buf[:0])
					resp.Body.Close()
				}
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() == nil { // requests cut off by the end of the phase do not count
						r.fail(err)
					}
					continue
				}
				r.latencies = append(r.latencies, d)
				r.codes[resp.StatusCode]++
				if resp.StatusCode == http.StatusAccepted && bytes.Contains(buf, []byte(`"status":"queued"`)) {
					r.queued++
				}
			}
		}(&parts[w])
	}
	wg.Wait()
	total := result{elapsed: time.Since(start), codes: map[int]int{}}
	for _, p := range parts {
		total.latencies = append(total.latencies, p.latencies...)
		for c, n := range p.codes {
			total.codes[c] += n
		}
		total.queued += p.queued
		total.errs += p.errs
		if total.firstErr == nil {
			total.firstErr = p.firstErr
		}
	}
	return total
}

func (r *result) fail(err error) {
	r.errs++
	if r.firstErr == nil {
		r.firstErr = err
	}
}

func readAll(rd io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 512)
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func (r result) print(out io.Writer, phase string) {
	slices.Sort(r.latencies)
	secs := r.elapsed.Seconds()
	var cs []string
	for _, c := range slices.Sorted(maps.Keys(r.codes)) {
		cs = append(cs, fmt.Sprintf("%d×%d", c, r.codes[c]))
	}
	fmt.Fprintf(out, "\n== %s: %d responses in %.2fs = %.0f req/s; status %s; queued (202, durable) %d = %.0f/s; transport errors %d\n",
		phase, len(r.latencies), secs, float64(len(r.latencies))/secs, strings.Join(cs, " "), r.queued, float64(r.queued)/secs, r.errs)
	if r.firstErr != nil {
		fmt.Fprintf(out, "   first error: %v\n", r.firstErr)
	}
	if n := len(r.latencies); n > 0 && r.cpu.hookd > 0 {
		// What the machine could do with nothing else running: both processes' CPU per request.
		per := (r.cpu.hookd + r.cpu.self) / time.Duration(n)
		fmt.Fprintf(out, "   CPU per request: hookd %s, loadgen %s (CPU busy %.0f%% of %d cores); %d cores alone would serve ≈ %.0f/s\n",
			(r.cpu.hookd / time.Duration(n)).Round(time.Microsecond/10), (r.cpu.self / time.Duration(n)).Round(time.Microsecond/10),
			100*(r.cpu.hookd+r.cpu.self).Seconds()/secs/float64(runtime.NumCPU()), runtime.NumCPU(), runtime.NumCPU(), float64(runtime.NumCPU())/per.Seconds())
	}
	if len(r.latencies) > 0 {
		fmt.Fprintf(out, "   latency p50 %s  p90 %s  p99 %s  max %s\n",
			pct(r.latencies, 0.50), pct(r.latencies, 0.90), pct(r.latencies, 0.99), r.latencies[len(r.latencies)-1].Round(time.Microsecond))
	}
}

func pct(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(q*float64(len(sorted)-1))].Round(time.Microsecond)
}
