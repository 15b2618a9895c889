package rollout

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

const (
	benchSecret = "bench-webhook-secret"
	benchToken  = "bench-admin-token"
	// probeEvery is the prober's period on a published port.
	probeEvery = 3 * time.Millisecond
)

func BenchmarkRollout(b *testing.B) {
	cli := testkit.Docker(b)
	reg := testkit.StartRegistry(b, nil)
	testkit.Cleanup(b, cli, reg.Host)
	id := testkit.TestID(b)
	app := func(version string) testkit.App {
		// Unique to this run: images are content-addressed and would otherwise be shared.
		return testkit.App{Version: version, Env: []string{"BENCH=" + id}}
	}
	ctx := context.Background()

	// (a) hookd: one running container with a published port, which hookd replaces.
	hookdPort := freePort(b)
	first := reg.Push(b, "org/bench", "latest", app("bench-0"))
	pullTag(b, cli, reg.Host+"/org/bench@"+first, reg.Host+"/org/bench:latest")
	labels := testkit.Labels(b)
	labels["hookd.runtime"] = "bench"
	runContainer(b, cli, reg.Host+"/org/bench:latest", id+"-hookd", hookdPort, labels)
	h := startHookd(b, reg.Host)

	// (c) naive updater: its own container, replaced the way such updaters do it.
	naivePort := freePort(b)
	naiveFirst := reg.Push(b, "org/naive", "latest", app("naive-0"))
	pullTag(b, cli, reg.Host+"/org/naive@"+naiveFirst, reg.Host+"/org/naive:latest")
	naiveID := runContainer(b, cli, reg.Host+"/org/naive:latest", id+"-naive", naivePort, testkit.Labels(b))

	enginePort := freePort(b)
	var hookdTimes, engineTimes, stopTimes, naiveTimes, hookdGaps, naiveGaps []time.Duration
	lastJob := h.lastJob(b)
	for n := range b.N {
		// (a) delivery to the new container answering.
		version := fmt.Sprintf("bench-%d", n+1)
		digest := reg.Push(b, "org/bench", "latest", app(version))
		p := startProber(b, hookdPort, version, true)
		began := time.Now()
		h.deliver(b, digest, fmt.Sprintf("%s-%d", id, n))
		answered, gap := p.wait(b)
		hookdTimes, hookdGaps = append(hookdTimes, answered.Sub(began)), append(hookdGaps, gap)
		lastJob = h.waitJob(b, lastJob)

		// (b) the engine's own pull, create and start, to answering.
		version = fmt.Sprintf("engine-%d", n+1)
		ref := reg.Host + "/org/engine@" + reg.Push(b, "org/engine", "latest", app(version))
		p = startProber(b, enginePort, version, false)
		began = time.Now()
		pull(b, cli, ref)
		engineID := runContainer(b, cli, ref, fmt.Sprintf("%s-engine-%d", id, n), enginePort, testkit.Labels(b))
		answered, _ = p.wait(b)
		engineTimes = append(engineTimes, answered.Sub(began))
		// The engine's own stop of the same kind of container: a replacement on the same port
		// cannot avoid it, and the engine-only path above never pays it.
		stopBegan := time.Now()
		if err := cli.ContainerStop(ctx, engineID, container.StopOptions{}); err != nil {
			b.Fatalf("stop %s: %v", engineID, err)
		}
		stopTimes = append(stopTimes, time.Since(stopBegan))
		if err := cli.ContainerRemove(ctx, engineID, container.RemoveOptions{Force: true}); err != nil {
			b.Fatalf("remove %s: %v", engineID, err)
		}

		// (c) pull, stop, remove, create, start, to answering.
		version = fmt.Sprintf("naive-%d", n+1)
		ref = reg.Host + "/org/naive@" + reg.Push(b, "org/naive", "latest", app(version))
		p = startProber(b, naivePort, version, true)
		began = time.Now()
		pull(b, cli, ref)
		if err := cli.ContainerStop(ctx, naiveID, container.StopOptions{}); err != nil {
			b.Fatalf("naive stop: %v", err)
		}
		if err := cli.ContainerRemove(ctx, naiveID, container.RemoveOptions{}); err != nil {
			b.Fatalf("naive remove: %v", err)
		}
		naiveID = runContainer(b, cli, ref, id+"-naive", naivePort, testkit.Labels(b))
		answered, gap = p.wait(b)
		naiveTimes, naiveGaps = append(naiveTimes, answered.Sub(began)), append(naiveGaps, gap)
	}
	b.StopTimer()

	report := func(what string, ds []time.Duration) {
		p50, p90 := percentile(ds, 50), percentile(ds, 90)
		b.ReportMetric(ms(p50), what+"-p50-ms")
		b.ReportMetric(ms(p90), what+"-p90-ms")
		b.Logf("%-32s median %7.1f ms   p90 %7.1f ms   (n=%d)", what, ms(p50), ms(p90), len(ds))
	}
	report("hookd", hookdTimes)
	report("engine", engineTimes)
	report("engine-stop", stopTimes)
	report("naive", naiveTimes)
	report("hookd-gap", hookdGaps)
	report("naive-gap", naiveGaps)
	hookd, engine, stop := percentile(hookdTimes, 50), percentile(engineTimes, 50), percentile(stopTimes, 50)
	b.Logf("hookd adds %.1f ms (median) to the engine's own pull+create+start, %.1f ms to its pull+stop+create+start",
		ms(hookd-engine), ms(hookd-engine-stop))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile is the nearest-rank percentile of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100
	return s[max(rank, 1)-1]
}

// prober GETs a published port every probeEvery until it answers want, recording the longest
// time between two answers.
type prober struct {
	up   chan struct{} // closed at the first answer
	done chan probeResult
}

type probeResult struct {
	answered time.Time
	gap      time.Duration
	err      error
}

// startProber starts probing port. With answering, it returns once the port answers; without,
// the port may not answer yet (a container about to start).
func startProber(b *testing.B, port int, want string, answering bool) *prober {
	b.Helper()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	// A fresh connection per probe: a kept-alive one would outlive the container behind it.
	c := &http.Client{Timeout: 100 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	p := &prober{up: make(chan struct{}), done: make(chan probeResult, 1)}
	go func() {
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		deadline := time.Now().Add(2 * time.Minute)
		var last time.Time // last answer
		var gap time.Duration
		for range tick.C {
			body, ok := get(c, url)
			now := time.Now()
			if ok {
				if last.IsZero() {
					close(p.up)
				} else {
					gap = max(gap, now.Sub(last))
				}
				last = now
				if body == want {
					p.done <- probeResult{answered: now, gap: gap}
					return
				}
			}
			if now.After(deadline) {
				p.done <- probeResult{err: fmt.Errorf("%s did not answer %q within 2 minutes", url, want)}
				return
			}
		}
	}()
	if answering {
		select {
		case <-p.up:
		case r := <-p.done:
			b.Fatalf("%s before it answered at all: %v", url, r.err)
		}
	}
	return p
}

func (p *prober) wait(b *testing.B) (time.Time, time.Duration) {
	b.Helper()
	r := <-p.done
	if r.err != nil {
		b.Fatal(r.err)
	}
	return r.answered, r.gap
}

func get(c *http.Client, url string) (string, bool) {
	resp, err := c.Get(url)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err == nil && resp.StatusCode == http.StatusOK
}

// freePort returns a loopback port nothing listens on now; the container that publishes it
// keeps it across its replacements.
func freePort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func pull(b *testing.B, cli *client.Client, ref string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		b.Fatalf("pull %s: %v", ref, err)
	}
	// The pull completes only once its progress stream is drained.
	out, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || bytes.Contains(out, []byte(`"error"`)) {
		b.Fatalf("pull %s: %v %s", ref, err, out)
	}
}

func pullTag(b *testing.B, cli *client.Client, ref, tag string) {
	b.Helper()
	pull(b, cli, ref)
	if err := cli.ImageTag(context.Background(), ref, tag); err != nil {
		b.Fatalf("tag %s as %s: %v", ref, tag, err)
	}
}

// runContainer creates and starts name from ref with 8080 published on 127.0.0.1:port.
func runContainer(b *testing.B, cli *client.Client, ref, name string, port int, labels map[string]string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created, err := cli.ContainerCreate(ctx,
		&container.Config{Image: ref, Labels: labels},
		&container.HostConfig{PortBindings: nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(port)}}}},
		nil, nil, name)
	if err != nil {
		b.Fatalf("create %s: %v", name, err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	return created.ID
}

// benchHookd is a `hookd serve` subprocess following one runtime.
type benchHookd struct {
	url     string
	cmd     *exec.Cmd
	done    chan error
	runtime string
	name    string // the package: the runtime follows registryHost/org/<name>:latest
}

func startHookd(b *testing.B, registryHost string) *benchHookd {
	return startHookdFor(b, registryHost, "bench", "bench")
}

// startHookdFor serves a runtime called runtime that follows registryHost/org/<pkg>:latest.
func startHookdFor(b *testing.B, registryHost, runtime, pkg string) *benchHookd {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "hookd")
	build := exec.Command("go", "build", "-o", bin, "github.com/hookd/hookd/cmd/hookd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build hookd: %v\n%s", err, out)
	}
	// min_uptime 0 means the 10 s default; 1ns leaves the gate one state check.
	cfg := fmt.Sprintf(`
registry_host: %q
poll:
  interval: 0
runtimes:
  - name: %s
    image: %s/org/%s:latest
    min_uptime: 1ns
`, registryHost, runtime, registryHost, pkg)
	cfgFile := filepath.Join(dir, "hookd.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgFile)
	cmd.Env = append(os.Environ(),
		"HOOKD_LISTEN=127.0.0.1:0",
		"HOOKD_STATE_DIR="+filepath.Join(dir, "state"),
		"HOOKD_WEBHOOK_SECRET="+benchSecret,
		"HOOKD_ADMIN_TOKEN="+benchToken,
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start hookd: %v", err)
	}
	h := &benchHookd{cmd: cmd, done: make(chan error, 1), runtime: runtime, name: pkg}
	addr := make(chan string, 1)
	go func() {
		// Read to the end, so hookd never blocks on a full pipe.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "hookd listening" {
				addr <- line.Addr
			}
		}
		h.done <- cmd.Wait()
	}()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			b.Error("hookd did not stop on SIGTERM")
		}
	})
	select {
	case a := <-addr:
		h.url = "http://" + a
	case err := <-h.done:
		b.Fatalf("hookd ended at start: %v", err)
	case <-time.After(30 * time.Second):
		b.Fatal("hookd did not start listening")
	}
	return h
}

func (h *benchHookd) deliver(b *testing.B, digest, id string) {
	b.Helper()
	push := webhooktest.Push{Namespace: "org", Name: h.name, Tag: "latest", Digest: digest}
	d := webhooktest.Delivery{Event: "package", ID: id, Body: webhooktest.Payload(push), Secret: []byte(benchSecret)}
	code, answer, err := webhooktest.Send(context.Background(), http.DefaultClient, h.url+"/hooks/ghcr", d)
	if err != nil || code != http.StatusAccepted {
		b.Fatalf("delivery: %d %v %v", code, answer, err)
	}
}

type benchResult struct {
	JobID  uint64 `json:"job_id"`
	Result string `json:"result"`
	Reason string `json:"reason"`
}

func (h *benchHookd) last(b *testing.B) *benchResult {
	b.Helper()
	req, err := http.NewRequest(http.MethodGet, h.url+"/admin/status", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Runtimes []struct {
			Name        string       `json:"name"`
			LastRollout *benchResult `json:"last_rollout"`
		} `json:"runtimes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		b.Fatalf("/admin/status: %v", err)
	}
	for _, r := range out.Runtimes {
		if r.Name == h.runtime {
			return r.LastRollout
		}
	}
	b.Fatalf("runtime %s not in /admin/status", h.runtime)
	return nil
}

func (h *benchHookd) lastJob(b *testing.B) uint64 {
	if r := h.last(b); r != nil {
		return r.JobID
	}
	return 0
}

// waitJob waits for a job after afterJob to finish, requires it rolled out, and returns its id:
// the next iteration starts with the old container removed.
func (h *benchHookd) waitJob(b *testing.B, afterJob uint64) uint64 {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if r := h.last(b); r != nil && r.JobID > afterJob {
			if r.Result != "rolled_out" {
				b.Fatalf("job %d: %s %s", r.JobID, r.Result, r.Reason)
			}
			return r.JobID
		}
		if time.Now().After(deadline) {
			b.Fatal("the rollout did not finish within 2 minutes")
		}
		<-tick.C
	}
}
