package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// engineProxy stands between hookd and a real engine's socket, so a test can take that engine
// away and bring it back as a host going down would look to hookd: connections refused, and
// the ones open cut.
type engineProxy struct {
	t      *testing.T
	path   string // the socket hookd dials
	target string // the engine's socket

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

func newEngineProxy(t *testing.T, targetHost string) *engineProxy {
	p := &engineProxy{t: t, path: filepath.Join(shortTempDir(t), "engine.sock"),
		target: strings.TrimPrefix(targetHost, "unix://"), conns: map[net.Conn]bool{}}
	p.up()
	t.Cleanup(p.down)
	return p
}

// shortTempDir is a temporary directory whose socket paths fit the 108 bytes a unix socket
// name may have (t.TempDir's paths, named after long test names, may not).
func shortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "hookd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (p *engineProxy) host() string { return "unix://" + p.path }

func (p *engineProxy) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		p.t.Fatal(err)
	}
	p.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
}

func (p *engineProxy) serve(c net.Conn) {
	e, err := net.Dial("unix", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // taken down meanwhile
		p.mu.Unlock()
		c.Close()
		e.Close()
		return
	}
	p.conns[c], p.conns[e] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(e, c); done <- struct{}{} }()
	go func() { io.Copy(c, e); done <- struct{}{} }()
	<-done
	c.Close()
	e.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, e)
	p.mu.Unlock()
}

// down refuses new connections and cuts the open ones.
func (p *engineProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return
	}
	p.ln.Close()
	p.ln = nil
	os.Remove(p.path)
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// hostEngine is one engine of the test with the runtime's container on it.
type hostEngine struct {
	name string
	cli  *client.Client
	host string // as hookd's config names it
}

func (e hostEngine) install(t *testing.T, repo, digest string) {
	t.Helper()
	ctx := context.Background()
	rc, err := e.cli.ImagePull(ctx, repo+"@"+digest, image.PullOptions{})
	if err != nil {
		t.Fatalf("engine %s: pull: %v", e.name, err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	if err := e.cli.ImageTag(ctx, repo+"@"+digest, repo+":latest"); err != nil {
		t.Fatal(err)
	}
}

func (e hostEngine) start(t *testing.T, repo, name, runtime string) {
	t.Helper()
	ctx := context.Background()
	l := testkit.Labels(t)
	l["hookd.runtime"] = runtime
	created, err := e.cli.ContainerCreate(ctx, &container.Config{Image: repo + ":latest", Labels: l, Env: []string{"ON_ENGINE=" + e.name}},
		&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "unless-stopped"}}, nil, nil, name)
	if err != nil {
		t.Fatalf("engine %s: create: %v", e.name, err)
	}
	if err := e.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e hostEngine) id(t *testing.T, name string) string {
	t.Helper()
	c, err := e.cli.ContainerInspect(context.Background(), name)
	if err != nil {
		t.Fatalf("engine %s: %v", e.name, err)
	}
	return c.ID
}

// runs reports whether the named container runs the image of repo@digest on this engine.
func (e hostEngine) runs(repo, name, digest string) (bool, string) {
	ctx := context.Background()
	img, err := e.cli.ImageInspect(ctx, repo+"@"+digest)
	if err != nil {
		return false, fmt.Sprintf("engine %s: %s not pulled yet: %v", e.name, digest, err)
	}
	c, err := e.cli.ContainerInspect(ctx, name)
	if err != nil {
		return false, fmt.Sprintf("engine %s: %v", e.name, err)
	}
	env := strings.Join(c.Config.Env, " ")
	ok := c.Image == img.ID && c.State.Running && strings.Contains(env, "ON_ENGINE="+e.name)
	return ok, fmt.Sprintf("engine %s: %s runs %s (want %s), running %v, env %s", e.name, name, c.Image, img.ID, c.State.Running, env)
}

// TestSeveralEngines: one delivery moves the runtime's containers on two engines, each with
// its own rollout; with one engine away its part fails with the reason and the other's
// succeeds; once it is back, the poll finishes the job there.
func TestSeveralEngines(t *testing.T) {
	cliA := testkit.Docker(t)
	cliB, hostB := testkit.SecondEngine(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cliA, reg.Host)
	testkit.Cleanup(t, cliB, reg.Host)
	proxy := newEngineProxy(t, hostB)
	hostA := os.Getenv("DOCKER_HOST")
	if hostA == "" {
		hostA = client.DefaultDockerHost
	}
	engines := []hostEngine{{name: "alpha", cli: cliA, host: hostA}, {name: "beta", cli: cliB, host: proxy.host()}}

	id := testkit.TestID(t)
	repo := reg.Host + "/org/web"
	name := id + "-web"
	runtime := id // unique: other tests' containers on the same engines carry their own runtimes
	v1 := reg.Push(t, "org/web", "latest", testkit.App{Version: "v1"})
	for _, e := range engines {
		e.install(t, repo, v1)
		e.start(t, repo, name, runtime)
	}
	cfg := func(poll string) string {
		return fmt.Sprintf(`
registry_host: %q
engines:
  - {name: alpha, host: %q}
  - {name: beta, host: %q}
poll:
  interval: %s
runtimes:
  - name: %s
    image: %s:latest
    min_uptime: 1s
    health_timeout: 20s
`, reg.Host, hostA, proxy.host(), poll, runtime, repo)
	}
	state := t.TempDir()
	h := startHookd(t, cfg("0"), state, nil)

	// One delivery: both engines move.
	v2 := reg.Push(t, "org/web", "latest", testkit.App{Version: "v2"})
	if code, answer := h.deliver(webhooktest.Push{Namespace: "Org", Name: "web", Tag: "latest", Digest: v2}, id+"-1"); code != http.StatusAccepted {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	for _, e := range engines {
		st := h.waitJobOn(runtime, e.name, 0)
		if st.LastRollout.Result != "rolled_out" || st.LastRollout.Trigger != "webhook" || st.LastRollout.Engine != e.name {
			t.Fatalf("engine %s: %+v, want rolled_out by the webhook", e.name, st.LastRollout)
		}
		if ok, state := e.runs(repo, name, v2); !ok {
			t.Fatal(state)
		}
	}
	if got := h.metric("hookd_refresh_total", "runtime="+runtime, "result=rolled_out", "engine=beta"); got != 1 {
		t.Fatalf("hookd_refresh_total{engine=beta,result=rolled_out} = %v, want 1", got)
	}
	lastB := h.statusOn(runtime, "beta").LastRollout.JobID

	// From here the poll runs every second, as it would (hourly) in production, in one run.
	h.stop()
	h = startHookd(t, cfg("1s"), state, nil)

	// Beta goes away: its part fails with the reason, alpha's succeeds, readiness names beta.
	proxy.down()
	v3 := reg.Push(t, "org/web", "latest", testkit.App{Version: "v3"})
	if code, answer := h.deliver(webhooktest.Push{Namespace: "Org", Name: "web", Tag: "latest", Digest: v3}, id+"-2"); code != http.StatusAccepted {
		t.Fatalf("delivery with beta away: %d %v", code, answer)
	}
	testkit.Eventually(t, 2*time.Minute, func() (bool, string) { return engines[0].runs(repo, name, v3) })
	if st := h.statusOn(runtime, "alpha"); st.LastRollout == nil || st.LastRollout.Result != "rolled_out" {
		t.Fatalf("alpha with beta away: %+v, want rolled_out", st.LastRollout)
	}
	alphaID := engines[0].id(t, name)
	st := h.waitJobOn(runtime, "beta", lastB)
	if st.LastRollout.Result != "failed" || !strings.Contains(st.LastRollout.Reason, "Cannot connect to the Docker daemon") {
		t.Fatalf("beta while away: %+v, want failed with the engine's error", st.LastRollout)
	}
	lastB = st.LastRollout.JobID
	resp, err := http.Get(h.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Status  string            `json:"status"`
		Reason  string            `json:"reason"`
		Engines map[string]string `json:"engines"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(ready.Reason, "docker engine beta: ") ||
		ready.Engines["alpha"] != "ready" || ready.Engines["beta"] == "ready" {
		t.Fatalf("/readyz with beta away: %d %+v %v, want 503 naming beta only", resp.StatusCode, ready, err)
	}
	if ok, state := engines[1].runs(repo, name, v2); !ok {
		t.Fatalf("beta's container was touched while away: %s", state)
	}

	// Beta is back: the running hookd's poll finishes its part; alpha has nothing to do.
	proxy.up()
	testkit.Eventually(t, 2*time.Minute, func() (bool, string) {
		st = h.statusOn(runtime, "beta")
		return st.LastRollout != nil && st.LastRollout.JobID > lastB && st.LastRollout.Result == "rolled_out",
			fmt.Sprintf("beta once back: %+v", st.LastRollout)
	})
	if st.LastRollout.Trigger != "poll" {
		t.Fatalf("beta once back: %+v, want rolled_out by the poll", st.LastRollout)
	}
	if ok, state := engines[1].runs(repo, name, v3); !ok {
		t.Fatal(state)
	}
	if got := engines[0].id(t, name); got != alphaID {
		t.Fatalf("alpha's container was recreated again once beta was back: %s, was %s", got, alphaID)
	}
	resp, err = http.Get(h.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz with both engines: %d", resp.StatusCode)
	}

	// A manual refresh runs on both and answers with each engine's result.
	var res struct {
		Outcome string `json:"result"`
		Engines []struct {
			Engine  string `json:"engine"`
			Outcome string `json:"result"`
		} `json:"engines"`
	}
	if code := h.admin(http.MethodPost, "/admin/refresh?runtime="+runtime, &res); code != http.StatusOK {
		t.Fatalf("/admin/refresh: %d", code)
	}
	if res.Outcome != "up_to_date" || len(res.Engines) != 2 || res.Engines[0].Engine != "alpha" || res.Engines[1].Engine != "beta" {
		t.Fatalf("/admin/refresh on two engines: %+v, want up_to_date on alpha and beta", res)
	}
}
