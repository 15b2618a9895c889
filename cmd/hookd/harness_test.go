package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

const (
	testSecret = "e2e-webhook-secret"
	testToken  = "e2e-admin-token-0123456789"
)

// daemonRun is one `hookd serve` run in-process through run(), as main runs it.
type daemonRun struct {
	t      *testing.T
	url    string
	cancel context.CancelFunc
	done   chan error
	logs   *logBuffer
}

// startHookd writes cfg to a file and serves it with the given state dir until stop or the
// test's end. env adds to the secrets and listen address every run gets.
func startHookd(t *testing.T, cfg, stateDir string, env map[string]string) *daemonRun {
	t.Helper()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "hookd.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"HOOKD_LISTEN":         "127.0.0.1:0",
		"HOOKD_STATE_DIR":      stateDir,
		"HOOKD_WEBHOOK_SECRET": testSecret,
		"HOOKD_ADMIN_TOKEN":    testToken,
		"HOOKD_LOG_LEVEL":      "debug",
	}
	for k, v := range env {
		vars[k] = v
	}
	getenv := func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return os.Getenv(k) // DOCKER_HOST and friends
	}
	logs := newLogBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	h := &daemonRun{t: t, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { h.done <- run(ctx, []string{"serve", "--config", cfgFile}, getenv, io.Discard, logs) }()
	select {
	case addr := <-logs.listening:
		h.url = "http://" + addr
	case err := <-h.done:
		t.Fatalf("hookd serve ended at start: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("hookd did not start listening:\n%s", logs)
	}
	t.Cleanup(func() { h.stop() })
	return h
}

// stop ends the run as SIGTERM would and waits for run to return.
func (h *daemonRun) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("hookd serve returned %v\n%s", err, h.logs)
		}
	case <-time.After(2 * time.Minute):
		h.t.Errorf("hookd serve did not stop\n%s", h.logs)
	}
}

func (h *daemonRun) deliver(push webhooktest.Push, id string) (int, map[string]any) {
	h.t.Helper()
	d := webhooktest.Delivery{Event: "package", ID: id, Body: webhooktest.Payload(push), Secret: []byte(testSecret)}
	code, answer, err := webhooktest.Send(context.Background(), http.DefaultClient, h.url+"/hooks/ghcr", d)
	if err != nil {
		h.t.Fatal(err)
	}
	return code, answer
}

// admin calls an admin route with the token and decodes the JSON answer into out.
func (h *daemonRun) admin(method, path string, out any) int {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			h.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

type runtimeStatus struct {
	Name          string `json:"name"`
	Engine        string `json:"engine"`
	DigestSeen    string `json:"digest_seen"`
	DigestRunning string `json:"digest_running"`
	Record        struct {
		FailedDigest string `json:"failed_digest"`
	} `json:"record"`
	Pending *struct {
		ID       uint64 `json:"id"`
		Requests int    `json:"requests"`
	} `json:"pending"`
	Containers []struct {
		Name       string   `json:"name"`
		State      string   `json:"state"`
		Digest     string   `json:"digest"`
		Dependents []string `json:"dependents"`
	} `json:"containers"`
	LastRollout *struct {
		JobID     uint64   `json:"job_id"`
		Engine    string   `json:"engine"`
		Result    string   `json:"result"`
		Digest    string   `json:"digest"`
		Reason    string   `json:"reason"`
		Requests  int      `json:"requests"`
		Pulled    []string `json:"pulled"`
		Recreated []string `json:"recreated"`
		Notes     []string `json:"notes"`
		Trigger   string   `json:"trigger"`
	} `json:"last_rollout"`
}

func (h *daemonRun) status(runtime string) runtimeStatus { return h.statusOn(runtime, "") }

// statusOn is the runtime's status on the named engine ("": the first listed, as with one).
func (h *daemonRun) statusOn(runtime, engine string) runtimeStatus {
	h.t.Helper()
	var out struct {
		Runtimes []runtimeStatus `json:"runtimes"`
	}
	if code := h.admin(http.MethodGet, "/admin/status", &out); code != http.StatusOK {
		h.t.Fatalf("/admin/status: %d", code)
	}
	for _, r := range out.Runtimes {
		if r.Name == runtime && (engine == "" || r.Engine == engine) {
			return r
		}
	}
	h.t.Fatalf("runtime %s (engine %q) not in /admin/status: %+v", runtime, engine, out.Runtimes)
	return runtimeStatus{}
}

// waitJob polls /admin/status until the runtime's last result is from a job after afterJob.
func (h *daemonRun) waitJob(runtime string, afterJob uint64) runtimeStatus {
	return h.waitJobOn(runtime, "", afterJob)
}

// waitJobOn is waitJob for the runtime on the named engine.
func (h *daemonRun) waitJobOn(runtime, engine string, afterJob uint64) runtimeStatus {
	h.t.Helper()
	var st runtimeStatus
	testkit.Eventually(h.t, 2*time.Minute, func() (bool, string) {
		st = h.statusOn(runtime, engine)
		return st.LastRollout != nil && st.LastRollout.JobID > afterJob, fmt.Sprintf("last rollout of %s on %q: %+v", runtime, engine, st.LastRollout)
	})
	return st
}

var metricLine = regexp.MustCompile(`^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$`)

// metric sums the samples of name whose labels include every one of want ("k=v").
func (h *daemonRun) metric(name string, want ...string) float64 {
	h.t.Helper()
	resp, err := http.Get(h.url + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != name {
			continue
		}
		ok := true
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			ok = ok && strings.Contains(m[2], k+`="`+v+`"`)
		}
		if ok {
			f, _ := strconv.ParseFloat(m[3], 64)
			sum += f
		}
	}
	return sum
}

// logBuffer keeps hookd's log lines and reports the address it listens on.
type logBuffer struct {
	mu        sync.Mutex
	lines     []string
	partial   string
	listening chan string
}

func newLogBuffer() *logBuffer { return &logBuffer{listening: make(chan string, 1)} }

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	text := b.partial + string(p)
	parts := strings.Split(text, "\n")
	b.partial = parts[len(parts)-1]
	for _, line := range parts[:len(parts)-1] {
		b.lines = append(b.lines, line)
		var entry struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "hookd listening" {
			select {
			case b.listening <- entry.Addr:
			default:
			}
		}
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// contains reports whether any log line contains every one of parts.
func (b *logBuffer) contains(parts ...string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}
