package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/hookd/hookd/internal/testkit"
)

// uniqueRuntime names a runtime no other test process on the engine uses: membership is by
// label, engine-wide.
func uniqueRuntime(name string) string { return fmt.Sprintf("%s-%d", name, os.Getpid()) }

// service creates and starts a member of the runtime that publishes no host port and is
// reached on the fleet's first network by alias, as a service behind a proxy is. hostPort, when
// set, publishes 8080 on that loopback port instead.
func (f *fleet) service(suffix, alias, hostPort string) string {
	f.t.Helper()
	ctx := context.Background()
	l := testkit.Labels(f.t)
	l["hookd.runtime"] = f.runtime
	hc := &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "unless-stopped"}}
	cfg := &container.Config{Image: f.repo + ":latest", Labels: l}
	if hostPort != "" {
		cfg.ExposedPorts = nat.PortSet{"8080/tcp": {}}
		hc.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: hostPort}}}
	}
	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{f.nets[0]: {Aliases: []string{alias}}}}
	created, err := f.cli.ContainerCreate(ctx, cfg, hc, nc, nil, f.id+"-"+suffix)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		f.t.Fatal(err)
	}
	return created.ID
}

// aliasProbe is a container on the fleet's first network (not in any runtime) requesting
// http://ALIAS:8080/ every 20 ms, a new connection each time, counting what fails.
type aliasProbe struct {
	f    *fleet
	name string
}

func (f *fleet) probeAlias(alias, digest string) *aliasProbe {
	f.t.Helper()
	ctx := context.Background()
	p := &aliasProbe{f: f, name: f.id + "-probe"}
	created, err := f.cli.ContainerCreate(ctx,
		&container.Config{Image: f.repo + "@" + digest, Cmd: []string{"probe", "http://" + alias + ":8080/"}, Labels: testkit.Labels(f.t)},
		nil, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{f.nets[0]: {}}}, nil, p.name)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		f.t.Fatal(err)
	}
	// Serving steadily before anything is measured.
	testkit.Eventually(f.t, 30*time.Second, func() (bool, string) {
		out, err := p.exec()
		if err != nil {
			return false, err.Error()
		}
		c := parseCounts(out)
		return c.requests >= 10 && c.failures == 0, "probe: " + c.String()
	})
	return p
}

func (p *aliasProbe) exec() (string, error) {
	ctx := context.Background()
	ex, err := p.f.cli.ContainerExecCreate(ctx, p.name, container.ExecOptions{Cmd: []string{"/app", "get", "http://127.0.0.1:8090/counts"}, AttachStdout: true})
	if err != nil {
		return "", err
	}
	att, err := p.f.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", err
	}
	defer att.Close()
	var out, errOut strings.Builder
	if _, err := stdcopy.StdCopy(&out, &errOut, att.Reader); err != nil {
		return "", err
	}
	if errOut.Len() > 0 {
		return "", errors.New(strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// log is what the probe logged: each slow or failed request with its trace.
func (p *aliasProbe) log() string {
	p.f.t.Helper()
	rc, err := p.f.cli.ContainerLogs(context.Background(), p.name, container.LogsOptions{ShowStdout: true})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		return err.Error()
	}
	return out.String()
}

// probeCounts is what the probe saw: requests made, failed, and slow (answered after more than
// a second), and the last failure's error.
type probeCounts struct {
	requests, failures, slow int
	last                     string
}

func (c probeCounts) String() string {
	return fmt.Sprintf("%d requests, %d failed, %d slow (last error: %q)", c.requests, c.failures, c.slow, c.last)
}

// counts returns what the probe saw so far.
func (p *aliasProbe) counts() probeCounts {
	p.f.t.Helper()
	out, err := p.exec()
	if err != nil {
		p.f.t.Fatalf("read the probe's counts: %v", err)
	}
	return parseCounts(out)
}

func parseCounts(s string) probeCounts {
	fields := strings.SplitN(strings.TrimSpace(s), " ", 4)
	if len(fields) < 3 {
		return probeCounts{last: "no counts in " + strconv.Quote(s)}
	}
	var c probeCounts
	c.requests, _ = strconv.Atoi(fields[0])
	c.failures, _ = strconv.Atoi(fields[1])
	c.slow, _ = strconv.Atoi(fields[2])
	if len(fields) == 4 {
		c.last = fields[3]
	}
	return c
}

// during counts what the probe saw while roll ran, with the last error when one of those failed.
func (p *aliasProbe) during(roll func()) probeCounts {
	before := p.counts()
	roll()
	// A request in flight when roll returns (one may wait up to the client's timeout) is
	// counted once it ends: wait for two more, the second begun after roll.
	ended := p.counts()
	var after probeCounts
	testkit.Eventually(p.f.t, time.Minute, func() (bool, string) {
		after = p.counts()
		return after.requests >= ended.requests+2, "probe after the rollout: " + after.String()
	})
	d := probeCounts{requests: after.requests - before.requests, failures: after.failures - before.failures, slow: after.slow - before.slow}
	if d.failures > 0 {
		d.last = after.last
	}
	return d
}

// A client hitting a network alias through a rollout: stop-first drops requests, start-first
// drops none, and a broken image under start-first never interrupts the old container.
func TestStartFirstKeepsTheAliasServing(t *testing.T) {
	f := newFleet(t, uniqueRuntime("alias"))
	v1 := f.push(testkit.App{Version: "v1", Healthcheck: true})
	f.install(v1)
	f.service("svc", "svc", "")
	probe := f.probeAlias("svc", v1)
	svc := f.id + "-svc"

	roll := func(order string, app testkit.App, id string) (runtimeStatus, probeCounts) {
		t.Helper()
		h := startHookd(t, f.config("    order: "+order+"\n"), t.TempDir(), nil)
		defer h.stop()
		d := f.push(app)
		var st runtimeStatus
		c := probe.during(func() {
			if code, answer := h.deliver(f.delivery(d), id); code != 202 {
				t.Fatalf("delivery: %d %v", code, answer)
			}
			st = h.waitJob(f.runtime, 0)
		})
		t.Logf("%s, %s: the probe's requests to the alias during the rollout: %s", order, st.LastRollout.Result, c)
		return st, c
	}

	// Twice: the second replaces a container that was itself renamed while it ran.
	var st runtimeStatus
	for i, version := range []string{"v2", "v2b"} {
		var c probeCounts
		st, c = roll("start-first", testkit.App{Version: version, Healthcheck: true}, fmt.Sprintf("sf-1-%d", i))
		if st.LastRollout.Result != "rolled_out" || len(st.LastRollout.Notes) != 0 || c.requests == 0 {
			t.Fatalf("start-first: %+v, %s", st.LastRollout, c)
		}
		if c.failures != 0 {
			t.Errorf("start-first: requests to the alias failed: %s\nprobe log:\n%s", c, probe.log())
		}
		// The alias and the container's name resolve to the replacement alone.
		now, err := f.cli.ContainerInspect(context.Background(), svc)
		if err != nil {
			t.Fatal(err)
		}
		ip := now.NetworkSettings.Networks[f.nets[0]].IPAddress
		for _, host := range []string{"svc", svc} {
			if got := f.exec(probe.name, "/app", "lookup", host); got != ip {
				t.Errorf("%s resolves to %q after the rollout, want the replacement's %s", host, got, ip)
			}
			if v := f.exec(probe.name, "/app", "get", "http://"+host+":8080/"); v != version {
				t.Errorf("%s answers %q after the rollout, want %s", host, v, version)
			}
		}
	}

	// A new image that exits during its gate: the old container is never stopped or renamed.
	before, err := f.cli.ContainerInspect(context.Background(), svc)
	if err != nil {
		t.Fatal(err)
	}
	// It serves a share of the alias's requests until it exits: those it holds then may fail.
	st, c := roll("start-first", testkit.App{Version: "bad", Mode: "exit-after", Env: []string{"APP_EXIT_AFTER=300ms"}}, "sf-2")
	if st.LastRollout.Result != "rolled_back" || c.requests == 0 {
		t.Fatalf("broken image: %+v, %s", st.LastRollout, c)
	}
	after, err := f.cli.ContainerInspect(context.Background(), svc)
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != before.ID || !after.State.Running || after.State.StartedAt != before.State.StartedAt || after.RestartCount != before.RestartCount {
		t.Errorf("the old container was interrupted: %s running %v started %s (was %s %s)", after.ID, after.State.Running, after.State.StartedAt, before.ID, before.State.StartedAt)
	}
	if _, err := f.cli.ContainerInspect(context.Background(), svc+"-hookd-new"); !cerrdefs.IsNotFound(err) {
		t.Errorf("the replacement is left: %v", err)
	}
	if m := f.members(); len(m) != 1 {
		t.Errorf("members %v, want only %s", keys(m), svc)
	}

	// The same setup stop-first: the probe sees the gap.
	st, c = roll("stop-first", testkit.App{Version: "v3", Healthcheck: true}, "sf-3")
	if st.LastRollout.Result != "rolled_out" || c.requests == 0 {
		t.Fatalf("stop-first: %+v, %s", st.LastRollout, c)
	}
	if c.failures == 0 {
		t.Errorf("stop-first: no request failed (%s): the probe cannot tell the orders apart", c)
	}

}

// A start-first runtime's container that publishes a host port switches stop-first (two
// copies cannot bind one port), and the result says so.
func TestStartFirstWithAHostPortFallsBack(t *testing.T) {
	f := newFleet(t, uniqueRuntime("hostport"))
	v1 := f.push(testkit.App{Version: "v1"})
	f.install(v1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	f.service("web", "web", port)
	f.waitServing(f.id + "-web")
	h := startHookd(t, f.config("    order: start-first\n"), t.TempDir(), nil)

	v2 := f.push(testkit.App{Version: "v2"})
	if code, answer := h.deliver(f.delivery(v2), "hp-1"); code != 202 {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	st := h.waitJob(f.runtime, 0)
	want := f.id + "-web: switched stop-first: publishes host port " + port + " (8080/tcp)"
	if st.LastRollout.Result != "rolled_out" || len(st.LastRollout.Notes) != 1 || st.LastRollout.Notes[0] != want {
		t.Fatalf("result %+v, want rolled_out noting %q", st.LastRollout, want)
	}
	c := f.members()[f.id+"-web"]
	if c.Image != f.imageID(v2) || !c.State.Running || c.HostConfig.PortBindings["8080/tcp"][0].HostPort != port {
		t.Fatalf("web: image %s running %v ports %v", c.Image, c.State.Running, c.HostConfig.PortBindings)
	}
	if v, err := f.get(f.id+"-web", "/"); err != nil || v != "v2" {
		t.Errorf("host port %s answers %q %v, want v2", port, v, err)
	}
}

// hookd SIGKILLed at each step of a start-first switch converges at its next start: the old
// container running under its name until the rollout committed, nothing duplicated, and the
// resumed job rolls the runtime out.
func TestCrashRecoveryStartFirst(t *testing.T) {
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	bin := crashBuild(t)
	id := testkit.TestID(t)
	tag := reg.Host + "/org/crash:latest"
	runtime := uniqueRuntime("crashsf")

	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "hookd.yaml")
	cfg := fmt.Sprintf(`
registry_host: %q
poll:
  interval: 0
runtimes:
  - name: %s
    image: %s
    min_uptime: 1s
    health_timeout: 10s
    order: start-first
`, reg.Host, runtime, tag)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	d1 := reg.Push(t, "org/crash", "latest", crashApp(id, "v1", ""))
	crashPull(t, cli, reg.Host+"/org/crash@"+d1, tag)
	members := []crashMember{{name: id + "-1", volume: id + "-vol1", running: true, runtime: runtime}}
	crashCreate(t, cli, tag, members[0])

	points := []crashPoint{
		{name: "gate beside the old one", action: "start", nth: 1, after: 300 * time.Millisecond},
		{name: "stop_old", action: "kill", member: members[0].name, nth: 1},
		{name: "rename_new (old renamed)", action: "rename", nth: 1},
		{name: "switched (both renamed)", action: "rename", nth: 2},
		{name: "commit", action: "destroy", nth: 1},
	}
	for n, point := range points {
		digest := reg.Push(t, "org/crash", "latest", crashApp(id, fmt.Sprintf("v%d", n+2), ""))
		before, err := cli.ContainerInspect(context.Background(), members[0].name)
		if err != nil {
			t.Fatal(err)
		}
		p := crashStart(t, bin, cfgFile, stateDir)
		crashKillAt(t, cli, p, point, id, fmt.Sprintf("crashsf-%d", n), digest, 0)
		if n == 0 {
			// Killed during the gate: the old container was never interrupted.
			if now, err := cli.ContainerInspect(context.Background(), members[0].name); err != nil || now.ID != before.ID || !now.State.Running ||
				now.State.StartedAt != before.State.StartedAt {
				t.Fatalf("%s: the old container was interrupted before the gate passed: %v", point.name, err)
			}
		}

		p = crashStart(t, bin, cfgFile, stateDir)
		crashConverged(t, cli, p, runtime, point, id, members, reg.Host+"/org/crash", digest)
		// (Killed at the commit, hookd may have cleared its journal already: nothing to settle.)
		if point.action != "destroy" && !p.logs.contains("settled interrupted rollout") {
			t.Errorf("%s: the restart settled no journaled rollout:\n%s", point.name, p.logs)
		}
		p.term()
	}
}
