package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// fleet is a runtime's containers made the way a user makes them, on a loopback registry.
type fleet struct {
	t       *testing.T
	cli     *client.Client
	reg     *testkit.Registry
	repo    string // host/org/web
	runtime string
	id      string // unique per test, for names
	nets    []string
	volume  string
}

func newFleet(t *testing.T, runtime string) *fleet {
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	f := &fleet{t: t, cli: cli, reg: reg, repo: reg.Host + "/org/web", runtime: runtime, id: testkit.TestID(t)}
	ctx := context.Background()
	for _, n := range []string{"front", "back"} {
		netName := f.id + "-" + n
		if _, err := cli.NetworkCreate(ctx, netName, network.CreateOptions{Labels: testkit.Labels(t)}); err != nil {
			t.Fatal(err)
		}
		f.nets = append(f.nets, netName)
	}
	f.volume = f.id + "-data"
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: f.volume, Labels: testkit.Labels(t)}); err != nil {
		t.Fatal(err)
	}
	return f
}

// push pushes a version of the test app as the runtime's tag.
func (f *fleet) push(app testkit.App) string {
	app.Volumes = append(app.Volumes, "/anon")
	return f.reg.Push(f.t, "org/web", "latest", app)
}

// install pulls digest and tags it as the runtime's image, as `docker pull` of the tag would.
func (f *fleet) install(digest string) {
	ctx := context.Background()
	rc, err := f.cli.ImagePull(ctx, f.repo+"@"+digest, image.PullOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	if err := f.cli.ImageTag(ctx, f.repo+"@"+digest, f.repo+":latest"); err != nil {
		f.t.Fatal(err)
	}
}

// start creates a member of the runtime: env override, a named and an anonymous volume, two
// networks with aliases, a published port, a restart policy. running=false leaves it created.
func (f *fleet) start(suffix string, running bool, labels map[string]string) string {
	ctx := context.Background()
	name := f.id + "-" + suffix
	l := testkit.Labels(f.t)
	l["hookd.runtime"] = f.runtime
	for k, v := range labels {
		l[k] = v
	}
	cfg := &container.Config{
		Image:        f.repo + ":latest",
		Env:          []string{"APP_SHAPE=circle"},
		Labels:       l,
		ExposedPorts: nat.PortSet{"8080/tcp": {}},
	}
	hc := &container.HostConfig{
		Binds:         []string{f.volume + ":/data"},
		PortBindings:  nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1"}}},
		RestartPolicy: container.RestartPolicy{Name: "unless-stopped"},
	}
	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		f.nets[0]: {Aliases: []string{suffix + "-front"}},
	}}
	created, err := f.cli.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.cli.NetworkConnect(ctx, f.nets[1], created.ID, &network.EndpointSettings{Aliases: []string{suffix + "-back"}}); err != nil {
		f.t.Fatal(err)
	}
	if running {
		if err := f.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			f.t.Fatal(err)
		}
		f.waitServing(name)
		f.exec(name, "/app", "write", "/anon/"+suffix, "anon-"+suffix)
		f.exec(name, "/app", "write", "/data/"+suffix, "named-"+suffix)
	}
	return created.ID
}

func (f *fleet) imageID(digest string) string {
	f.t.Helper()
	img, err := f.cli.ImageInspect(context.Background(), f.repo+"@"+digest)
	if err != nil {
		f.t.Fatal(err)
	}
	return img.ID
}

// get asks a running member over its published port.
func (f *fleet) get(name, path string) (string, error) {
	c, err := f.cli.ContainerInspect(context.Background(), name)
	if err != nil {
		return "", err // absent for a moment while a rollout swaps names
	}
	b := c.NetworkSettings.Ports["8080/tcp"]
	if len(b) == 0 {
		return "", fmt.Errorf("%s publishes no port", name)
	}
	resp, err := http.Get("http://127.0.0.1:" + b[0].HostPort + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func (f *fleet) waitServing(name string) {
	f.t.Helper()
	testkit.Eventually(f.t, 30*time.Second, func() (bool, string) {
		v, err := f.get(name, "/")
		return err == nil && v != "", fmt.Sprintf("%s not serving: %v", name, err)
	})
}

func (f *fleet) exec(name string, cmd ...string) string {
	f.t.Helper()
	ctx := context.Background()
	ex, err := f.cli.ContainerExecCreate(ctx, name, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		f.t.Fatal(err)
	}
	att, err := f.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	defer att.Close()
	var out, errOut bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errOut, att.Reader); err != nil {
		f.t.Fatal(err)
	}
	insp, err := f.cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil || insp.ExitCode != 0 {
		f.t.Fatalf("exec %v in %s: exit %d %v: %s", cmd, name, insp.ExitCode, err, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

// members lists the runtime's containers by name.
func (f *fleet) members() map[string]container.InspectResponse {
	f.t.Helper()
	out := map[string]container.InspectResponse{}
	list, err := f.cli.ContainerList(context.Background(), container.ListOptions{All: true})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, c := range list {
		if c.Labels["hookd.runtime"] == f.runtime && c.Labels[testkit.LabelTestID] == f.id {
			insp, err := f.cli.ContainerInspect(context.Background(), c.ID)
			if cerrdefs.IsNotFound(err) {
				continue // hookd removed it since the list
			}
			if err != nil {
				f.t.Fatal(err)
			}
			out[strings.TrimPrefix(insp.Name, "/")] = insp
		}
	}
	return out
}

func (f *fleet) config(extra string) string {
	return fmt.Sprintf(`
registry_host: %q
poll:
  interval: 0
  pace: 1ms
runtimes:
  - name: %s
    image: %s:latest
    min_uptime: 1s
    health_timeout: 6s
%s`, strings.Split(f.repo, "/")[0], f.runtime, f.repo, extra)
}

func (f *fleet) delivery(digest string) webhooktest.Push {
	return webhooktest.Push{Namespace: "Org", Name: "web", Tag: "latest", Digest: digest}
}

func TestRolloutKeepsConfigDataAndNetworks(t *testing.T) {
	f := newFleet(t, "web")
	v1d := f.push(testkit.App{Version: "v1", Env: []string{"APP_COLOR=blue", "APP_SHAPE=square"}})
	f.install(v1d)
	f.start("a", true, map[string]string{"team": "core"})
	f.start("b", true, nil)
	f.start("c", false, nil) // stopped: recreated and left stopped
	oldImage := f.imageID(v1d)
	h := startHookd(t, f.config("    parallel: 1\n    cleanup: true\n"), t.TempDir(), nil)

	v2d := f.push(testkit.App{Version: "v2", Env: []string{"APP_COLOR=green", "APP_SHAPE=square"}, Labels: map[string]string{"org.example.release": "2"}})
	if code, answer := h.deliver(f.delivery(v2d), "r1"); code != 202 {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	st := h.waitJob("web", 0)
	if st.LastRollout.Result != "rolled_out" || len(st.LastRollout.Recreated) != 3 || st.DigestRunning != v2d {
		t.Fatalf("rollout: %+v running %s", st.LastRollout, st.DigestRunning)
	}
	newImage := f.imageID(v2d)
	members := f.members()
	if len(members) != 3 {
		t.Fatalf("members after rollout: %v", keys(members))
	}
	for _, s := range []string{"a", "b", "c"} {
		name := f.id + "-" + s
		c, ok := members[name]
		if !ok || c.Image != newImage {
			t.Fatalf("%s: present=%v image %s, want %s", name, ok, c.Image, newImage)
		}
		if c.Config.Image != f.repo+":latest" {
			t.Errorf("%s created from %q, want the tag", name, c.Config.Image)
		}
		if got := c.HostConfig.RestartPolicy.Name; got != "unless-stopped" {
			t.Errorf("%s restart policy %q", name, got)
		}
		if c.Config.Labels["hookd.runtime"] != "web" || c.Config.Labels["org.example.release"] != "2" {
			t.Errorf("%s labels %v", name, c.Config.Labels)
		}
		if len(c.NetworkSettings.Networks) != 2 {
			t.Errorf("%s networks %v", name, keys(c.NetworkSettings.Networks))
		}
		if s == "c" {
			if c.State.Running {
				t.Errorf("%s was stopped and is now running", name)
			}
			continue
		}
		if !c.State.Running {
			t.Fatalf("%s is not running", name)
		}
		if v, err := f.get(name, "/"); err != nil || v != "v2" {
			t.Errorf("%s published port answers %q %v, want v2", name, v, err)
		}
		if v, _ := f.get(name, "/env?k=APP_COLOR"); v != "green" {
			t.Errorf("%s APP_COLOR=%q: the new image's default should apply", name, v)
		}
		if v, _ := f.get(name, "/env?k=APP_SHAPE"); v != "circle" {
			t.Errorf("%s APP_SHAPE=%q: the container's own value should win", name, v)
		}
		if v := f.exec(name, "/app", "read", "/anon/"+s); v != "anon-"+s {
			t.Errorf("%s anonymous volume holds %q", name, v)
		}
		if v := f.exec(name, "/app", "read", "/data/"+s); v != "named-"+s {
			t.Errorf("%s named volume holds %q", name, v)
		}
	}
	if members[f.id+"-a"].Config.Labels["team"] != "core" {
		t.Error("the container's own label was dropped")
	}
	// Reachable by each alias on each network from another container.
	probe := f.start("probe", true, map[string]string{"hookd.runtime": "not-web"})
	_ = probe
	for _, alias := range []string{"a-front", "a-back", "b-front", "b-back"} {
		if v := f.exec(f.id+"-probe", "/app", "get", "http://"+alias+":8080/"); v != "v2" {
			t.Errorf("alias %s answers %q, want v2", alias, v)
		}
	}
	if _, err := f.cli.ImageInspect(context.Background(), oldImage); err == nil {
		t.Error("cleanup: true kept the old image")
	}
	if n := h.metric("hookd_refresh_total", "runtime=web", "result=rolled_out"); n != 1 {
		t.Errorf("hookd_refresh_total{rolled_out} = %v", n)
	}
	if b := h.metric("hookd_runtime_behind", "runtime=web"); b != 0 {
		t.Errorf("hookd_runtime_behind = %v right after the rollout, want 0", b)
	}
}

// pushWithoutCommand pushes a copy of digest's image with no entrypoint and no command: the
// engine refuses to create a container from it.
func (f *fleet) pushWithoutCommand(digest string) string {
	f.t.Helper()
	src, err := name.NewDigest(f.repo + "@" + digest)
	if err != nil {
		f.t.Fatal(err)
	}
	img, err := remote.Image(src)
	if err != nil {
		f.t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := cf.Config.DeepCopy()
	cfg.Entrypoint, cfg.Cmd = nil, nil
	cfg.Env = append(cfg.Env, "APP_BROKEN=1")
	broken, err := mutate.Config(img, *cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := remote.Write(src.Context().Tag("latest"), broken); err != nil {
		f.t.Fatal(err)
	}
	d, err := broken.Digest()
	if err != nil {
		f.t.Fatal(err)
	}
	return d.String()
}

func TestRolloutFailuresRollBack(t *testing.T) {
	f := newFleet(t, "web")
	good := f.push(testkit.App{Version: "v1", Healthcheck: true})
	f.install(good)
	f.start("a", true, nil)
	f.start("b", true, nil)
	goodImage := f.imageID(good)
	// min_uptime 5s, so an image that exits 3 s after its start fails the gate.
	h := startHookd(t, strings.Replace(f.config(""), "min_uptime: 1s", "min_uptime: 5s", 1), t.TempDir(), nil)

	cases := []struct {
		name   string
		reason string
		push   func() string
	}{
		{"exits at start", "exited|restarted", func() string { return f.push(testkit.App{Version: "bad-exit", Mode: "exit"}) }},
		{"exits 3s later", "exited|restarted", func() string {
			return f.push(testkit.App{Version: "bad-late", Mode: "exit-after", Env: []string{"APP_EXIT_AFTER=3s"}})
		}},
		{"never healthy", "unhealthy", func() string { return f.push(testkit.App{Version: "bad-health", Mode: "unhealthy", Healthcheck: true}) }},
		{"cannot be created", "create", func() string { return f.pushWithoutCommand(good) }},
	}
	var lastJob uint64
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := c.push()
			rollbacks := h.metric("hookd_rollbacks_total", "runtime=web")
			if code, _ := h.deliver(f.delivery(bad), fmt.Sprintf("bad-%d", i)); code != 202 {
				t.Fatal("delivery not queued")
			}
			st := h.waitJob("web", lastJob)
			lastJob = st.LastRollout.JobID
			if st.LastRollout.Result != "rolled_back" || st.LastRollout.Digest != bad || !regexp.MustCompile(c.reason).MatchString(st.LastRollout.Reason) {
				t.Fatalf("result %+v, want rolled_back of %s", st.LastRollout, bad)
			}
			f.checkAllOld(goodImage)
			if b := h.metric("hookd_runtime_behind", "runtime=web"); b != 1 {
				t.Errorf("hookd_runtime_behind = %v after a roll back, want 1 (the tag names what does not run)", b)
			}
			if got := h.metric("hookd_rollbacks_total", "runtime=web") - rollbacks; got != 1 {
				t.Errorf("hookd_rollbacks_total grew by %v", got)
			}
			// The same digest delivered again is not retried.
			if code, _ := h.deliver(f.delivery(bad), fmt.Sprintf("bad-%d-again", i)); code != 202 {
				t.Fatal("redelivery not queued")
			}
			st = h.waitJob("web", lastJob)
			lastJob = st.LastRollout.JobID
			if st.LastRollout.Result != "skipped" {
				t.Fatalf("redelivery of a failed digest: %+v, want skipped", st.LastRollout)
			}
			f.checkAllOld(goodImage)
		})
	}
}

// checkAllOld asserts every member is back: on the old image, running, under its name, data intact.
func (f *fleet) checkAllOld(oldImage string) {
	f.t.Helper()
	members := f.members()
	if len(members) != 2 {
		f.t.Fatalf("members: %v, want the 2 originals", keys(members))
	}
	for _, s := range []string{"a", "b"} {
		name := f.id + "-" + s
		c, ok := members[name]
		if !ok || c.Image != oldImage || !c.State.Running {
			f.t.Fatalf("%s: present=%v image %s running=%v, want old image running", name, ok, c.Image, c.State.Running)
		}
		// Started again at the end of the roll back: it may take a moment to listen.
		testkit.Eventually(f.t, 30*time.Second, func() (bool, string) {
			v, err := f.get(name, "/")
			return err == nil && v == "v1", fmt.Sprintf("%s answers %q %v, want v1", name, v, err)
		})
		if v := f.exec(name, "/app", "read", "/anon/"+s); v != "anon-"+s {
			f.t.Fatalf("%s anonymous volume holds %q", name, v)
		}
		if v := f.exec(name, "/app", "read", "/data/"+s); v != "named-"+s {
			f.t.Fatalf("%s named volume holds %q", name, v)
		}
	}
}

func TestRolloutWhileOneRunsWaitsAndRunsOnce(t *testing.T) {
	f := newFleet(t, "web")
	v1d := f.push(testkit.App{Version: "v1"})
	f.install(v1d)
	f.start("a", true, nil)
	h := startHookd(t, strings.Replace(f.config(""), "min_uptime: 1s", "min_uptime: 3s", 1), t.TempDir(), nil)

	v2d := f.push(testkit.App{Version: "v2"})
	if code, _ := h.deliver(f.delivery(v2d), "w1"); code != 202 {
		t.Fatal("delivery not queued")
	}
	// Wait until the first rollout is in its gate: the new container is running under the name.
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		img, err := f.cli.ImageInspect(context.Background(), f.repo+"@"+v2d)
		if err != nil {
			return false, "v2 not pulled yet"
		}
		c, ok := f.members()[f.id+"-a"] // absent for a moment while names are swapped
		return ok && c.State.Running && c.Image == img.ID, "first rollout not yet gating"
	})
	v3d := f.push(testkit.App{Version: "v3"})
	var wg sync.WaitGroup
	var manual struct {
		JobID   uint64    `json:"job_id"`
		Result  string    `json:"result"`
		Digest  string    `json:"digest"`
		Started time.Time `json:"started"`
	}
	wg.Go(func() {
		if code := h.admin(http.MethodPost, "/admin/refresh?runtime=web", &manual); code != 200 {
			t.Errorf("admin refresh: %d", code)
		}
	})
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		p := h.status("web").Pending
		return p != nil, "admin refresh not queued"
	})
	if code, _ := h.deliver(f.delivery(v3d), "w2"); code != 202 {
		t.Fatal("second delivery not queued")
	}
	wg.Wait()
	st := h.status("web")
	if manual.Result != "rolled_out" || manual.Digest != v3d || manual.JobID != 2 {
		t.Fatalf("manual refresh result %+v, want job 2 rolled out to v3", manual)
	}
	if n := h.metric("hookd_refresh_total", "runtime=web"); n != 2 {
		t.Fatalf("jobs run: %v, want 2 (the running one, then one for the refresh and the delivery)", n)
	}
	if st.LastRollout.Requests != 2 {
		t.Fatalf("second job carried %d requests, want 2", st.LastRollout.Requests)
	}
	if v, _ := f.get(f.id+"-a", "/"); v != "v3" {
		t.Fatalf("serving %q, want v3", v)
	}
}

func TestZeroConfigRollsLabelledContainers(t *testing.T) {
	f := newFleet(t, "ignored")
	v1d := f.push(testkit.App{Version: "v1"})
	f.install(v1d)
	f.start("z", true, map[string]string{"hookd.enable": "true", "hookd.runtime": ""})
	cfg := fmt.Sprintf("registry_host: %q\npoll:\n  interval: 0\n", strings.Split(f.repo, "/")[0])
	h := startHookd(t, cfg, t.TempDir(), nil)

	v2d := f.push(testkit.App{Version: "v2"})
	code, answer := h.deliver(f.delivery(v2d), "z1")
	if code != 202 || answer["status"] != "queued" {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		v, err := f.get(f.id+"-z", "/")
		return err == nil && v == "v2", fmt.Sprintf("serving %q %v\n%s", v, err, h.logs)
	})
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// What hookd did not make or the user set aside is never touched: a stranger under the
// temporary name, a paused member. Neither is the image's fault, so once they are out of the
// way the same push rolls out.
func TestRolloutLeavesStrangersAndPausedAlone(t *testing.T) {
	f := newFleet(t, "web")
	v1d := f.push(testkit.App{Version: "v1"})
	f.install(v1d)
	f.start("a", true, nil)
	ctx := context.Background()
	stranger, err := f.cli.ContainerCreate(ctx, &container.Config{Image: f.repo + ":latest", Labels: testkit.Labels(t)},
		&container.HostConfig{Binds: []string{f.volume + ":/data"}}, nil, nil, f.id+"-a-hookd-new")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cli.ContainerStart(ctx, stranger.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	h := startHookd(t, f.config(""), t.TempDir(), nil)
	v2d := f.push(testkit.App{Version: "v2"})
	stillV1 := func(what string) {
		t.Helper()
		c, ok := f.members()[f.id+"-a"]
		if !ok || c.Image != f.imageID(v1d) {
			t.Fatalf("%s: member a %+v, want it on v1", what, c.State)
		}
		if st := h.status("web"); st.Record.FailedDigest == v2d {
			t.Fatalf("%s: the push was blamed on the image", what)
		}
	}

	if code, _ := h.deliver(f.delivery(v2d), "s1"); code != 202 {
		t.Fatal("delivery s1 not queued")
	}
	st := h.waitJob("web", 0)
	if st.LastRollout.Result != "failed" || !strings.Contains(st.LastRollout.Reason, "hookd did not make") {
		t.Fatalf("with a stranger under the temporary name: %+v", st.LastRollout)
	}
	if c, err := f.cli.ContainerInspect(ctx, f.id+"-a-hookd-new"); err != nil || c.ID != stranger.ID || !c.State.Running {
		t.Fatalf("the stranger was touched: %v", err)
	}
	stillV1("stranger")
	if v, err := f.get(f.id+"-a", "/"); err != nil || v != "v1" {
		t.Fatalf("a serves %q %v, want v1 untouched", v, err)
	}
	if err := f.cli.ContainerRemove(ctx, stranger.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
		t.Fatal(err)
	}

	if err := f.cli.ContainerPause(ctx, f.id+"-a"); err != nil {
		t.Fatal(err)
	}
	if code, _ := h.deliver(f.delivery(v2d), "s2"); code != 202 {
		t.Fatal("delivery s2 not queued")
	}
	st = h.waitJob("web", st.LastRollout.JobID)
	if st.LastRollout.Result != "failed" || !strings.Contains(st.LastRollout.Reason, "is paused") {
		t.Fatalf("with a paused member: %+v", st.LastRollout)
	}
	if c := f.members()[f.id+"-a"]; c.State == nil || !c.State.Paused {
		t.Fatal("the paused member is no longer paused")
	}
	stillV1("paused")

	if err := f.cli.ContainerUnpause(ctx, f.id+"-a"); err != nil {
		t.Fatal(err)
	}
	if code, _ := h.deliver(f.delivery(v2d), "s3"); code != 202 {
		t.Fatal("delivery s3 not queued")
	}
	st = h.waitJob("web", st.LastRollout.JobID)
	if st.LastRollout.Result != "rolled_out" {
		t.Fatalf("once out of the way: %+v", st.LastRollout)
	}
	if v, err := f.get(f.id+"-a", "/"); err != nil || v != "v2" {
		t.Fatalf("a serves %q %v, want v2", v, err)
	}
}

// A sidecar on the provider's network namespace (gluetun-style `--network container:<id>`) is
// tied to the old provider's ID: hookd recreates it, on its own image, joined to the new
// provider. When the provider's new image fails, both are back as they were, and the sidecar,
// whose namespace the engine tore down with the old provider, is restarted into it again.
func TestRolloutCarriesANetworkSidecar(t *testing.T) {
	f := newFleet(t, "vpn")
	v1d := f.push(testkit.App{Version: "v1"})
	f.install(v1d)
	providerID := f.start("vpn", true, nil)
	ctx := context.Background()
	side, err := f.cli.ContainerCreate(ctx, &container.Config{Image: f.repo + ":latest", Env: []string{"APP_ADDR=:8081"}, Labels: testkit.Labels(t)},
		&container.HostConfig{NetworkMode: container.NetworkMode("container:" + providerID)}, nil, nil, f.id+"-side")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cli.ContainerStart(ctx, side.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	sideSees := func() string { return f.exec(f.id+"-side", "/app", "get", "http://127.0.0.1:8080/") }
	if got := sideSees(); got != "v1" {
		t.Fatalf("before: sidecar sees %q", got)
	}
	h := startHookd(t, f.config(""), t.TempDir(), nil)

	v2d := f.push(testkit.App{Version: "v2"})
	if code, _ := h.deliver(f.delivery(v2d), "sc1"); code != 202 {
		t.Fatal("delivery not queued")
	}
	st := h.waitJob("vpn", 0)
	if st.LastRollout.Result != "rolled_out" || !slices.Equal(st.LastRollout.Recreated, []string{f.id + "-vpn", f.id + "-side"}) {
		t.Fatalf("result %+v", st.LastRollout)
	}
	now, err := f.cli.ContainerInspect(ctx, f.id+"-side")
	if err != nil {
		t.Fatal(err)
	}
	provider := f.members()[f.id+"-vpn"]
	if now.ID == side.ID || string(now.HostConfig.NetworkMode) != "container:"+provider.ID || now.Image != f.imageID(v1d) {
		t.Fatalf("sidecar %s joins %s on %s; want a new one joining %s on its own image", now.ID, now.HostConfig.NetworkMode, now.Image, provider.ID)
	}
	if got := sideSees(); got != "v2" {
		t.Fatalf("after the rollout the sidecar sees %q through the shared network, want v2", got)
	}
	// The status lists the runtime's container with what it runs and who shares it.
	if cs := h.status("vpn").Containers; len(cs) != 1 || cs[0].Name != f.id+"-vpn" || cs[0].State != "running" || cs[0].Digest != v2d ||
		!slices.Equal(cs[0].Dependents, []string{f.id + "-side"}) {
		t.Fatalf("status containers %+v, want %s-vpn running %s shared by %s-side", cs, f.id, v2d, f.id)
	}

	bad := f.push(testkit.App{Version: "bad", Mode: "exit"})
	if code, _ := h.deliver(f.delivery(bad), "sc2"); code != 202 {
		t.Fatal("delivery not queued")
	}
	st = h.waitJob("vpn", st.LastRollout.JobID)
	if st.LastRollout.Result != "rolled_back" {
		t.Fatalf("broken provider: %+v", st.LastRollout)
	}
	if c := f.members()[f.id+"-vpn"]; c.ID != provider.ID || !c.State.Running {
		t.Fatal("the provider is not back")
	}
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		c, err := f.cli.ContainerInspect(ctx, f.id+"-side")
		return err == nil && c.State.Running, "sidecar not running"
	})
	if got := sideSees(); got != "v2" {
		t.Fatalf("after the roll back the sidecar sees %q, want v2 again", got)
	}
}

// Provider and dependent both in the runtime roll out in one go, the dependent on the new image
// joined to the new provider; a shared pid namespace the same way (ipc is the same code path;
// it needs a shareable donor), and --volumes-from (by name) keeps working.
func TestRolloutOfProviderAndDependentsInOneRuntime(t *testing.T) {
	f := newFleet(t, "web")
	v1d := f.push(testkit.App{Version: "v1"})
	f.install(v1d)
	providerID := f.start("main", true, nil)
	ctx := context.Background()
	l := testkit.Labels(t)
	l["hookd.runtime"] = "web"
	mk := func(suffix string, hc *container.HostConfig) string {
		c, err := f.cli.ContainerCreate(ctx, &container.Config{Image: f.repo + ":latest", Env: []string{"APP_ADDR=:" + map[string]string{"net": "8081", "pid": "8082", "vols": "8083"}[suffix]}, Labels: l},
			hc, nil, nil, f.id+"-"+suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	mk("net", &container.HostConfig{NetworkMode: container.NetworkMode("container:" + providerID)})
	mk("pid", &container.HostConfig{PidMode: container.PidMode("container:" + providerID)})
	mk("vols", &container.HostConfig{VolumesFrom: []string{f.id + "-main"}})
	h := startHookd(t, f.config(""), t.TempDir(), nil)

	v2d := f.push(testkit.App{Version: "v2"})
	if code, _ := h.deliver(f.delivery(v2d), "pd1"); code != 202 {
		t.Fatal("delivery not queued")
	}
	st := h.waitJob("web", 0)
	if st.LastRollout.Result != "rolled_out" || len(st.LastRollout.Recreated) != 4 {
		t.Fatalf("result %+v, want all four recreated", st.LastRollout)
	}
	members := f.members()
	provider := members[f.id+"-main"]
	for _, name := range []string{"net", "pid", "vols"} {
		c := members[f.id+"-"+name]
		if !c.State.Running || c.Image != f.imageID(v2d) {
			t.Fatalf("%s: running %v on %s, want running on v2", name, c.State.Running, c.Image)
		}
	}
	if got := string(members[f.id+"-net"].HostConfig.NetworkMode); got != "container:"+provider.ID {
		t.Fatalf("net joins %s, want the new provider %s", got, provider.ID)
	}
	if got := members[f.id+"-pid"].HostConfig.PidMode; string(got) != "container:"+provider.ID {
		t.Fatalf("pid joins %s, want the new provider", got)
	}
	if got := f.exec(f.id+"-net", "/app", "get", "http://127.0.0.1:8080/"); got != "v2" {
		t.Fatalf("net sidecar sees %q, want v2", got)
	}
	// The anonymous volume of the provider, written before the rollout, is the one volumes-from sees.
	if got := f.exec(f.id+"-vols", "/app", "read", "/anon/main"); got != "anon-main" {
		t.Fatalf("volumes-from sees %q", got)
	}
}
