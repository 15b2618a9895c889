package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/hookd/hookd/internal/testkit"
)

// env is one engine test's world: a registry, a raw client for setup and
// assertions, and the Engine under test.
type env struct {
	t   *testing.T
	reg *testkit.Registry
	cli *client.Client
	eng *Engine
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testkit.RequireDocker(t)
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	// Registered before testkit.Cleanup so that it runs after it: volumes
	// can only go once the containers using them are gone.
	volumes := &volumeSweep{cli: cli}
	t.Cleanup(func() { volumes.run(t) })
	testkit.Cleanup(t, cli, reg.Host)
	eng, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	e := &env{t: t, reg: reg, cli: cli, eng: eng}
	t.Cleanup(func() { volumes.collect(e) })
	return e
}

// volumeSweep removes the anonymous volumes of a test's containers, which
// the container cleanup cannot: the replacement mounts them by name, and
// the engine only removes anonymous mounts with a container.
type volumeSweep struct {
	cli   *client.Client
	names []string
}

func (v *volumeSweep) collect(e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		e.t.Errorf("list containers: %v", err)
		return
	}
	for _, c := range list {
		if c.Labels[testkit.LabelTestID] != testkit.TestID(e.t) && !strings.HasPrefix(c.Image, e.reg.Host+"/") {
			continue
		}
		for _, m := range c.Mounts {
			if m.Type == "volume" {
				v.names = append(v.names, m.Name)
			}
		}
	}
}

func (v *volumeSweep) run(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range v.names {
		if err := v.cli.VolumeRemove(ctx, name, true); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove volume %s: %v", name, err)
		}
	}
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	e.t.Cleanup(cancel)
	return ctx
}

// name is a container/network name unique to the test.
func (e *env) name(suffix string) string {
	return "hookd-" + strings.ToLower(testkit.TestID(e.t)) + "-" + suffix
}

// image pushes app as repo:tag, pulls it by digest through the Engine and
// returns the digest reference.
func (e *env) image(repo, tag string, app testkit.App) string {
	e.t.Helper()
	digest := e.reg.Push(e.t, repo, tag, app)
	ref := e.reg.Host + "/" + repo + "@" + digest
	if err := e.eng.Pull(e.ctx(), ref, Auth{}); err != nil {
		e.t.Fatalf("Pull %s: %v", ref, err)
	}
	return ref
}

func (e *env) labels(extra map[string]string) map[string]string {
	l := testkit.Labels(e.t)
	for k, v := range extra {
		l[k] = v
	}
	return l
}

// create creates a container; cfg.Labels get the test labels.
func (e *env) create(name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) string {
	e.t.Helper()
	cfg.Labels = e.labels(cfg.Labels)
	if hc == nil {
		hc = &container.HostConfig{}
	}
	c, err := e.cli.ContainerCreate(e.ctx(), cfg, hc, nc, nil, name)
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return c.ID
}

func (e *env) start(id string) {
	e.t.Helper()
	if err := e.cli.ContainerStart(e.ctx(), id, container.StartOptions{}); err != nil {
		e.t.Fatalf("start %s: %v", id, err)
	}
}

func (e *env) inspect(id string) container.InspectResponse {
	e.t.Helper()
	c, err := e.cli.ContainerInspect(e.ctx(), id)
	if err != nil {
		e.t.Fatalf("inspect %s: %v", id, err)
	}
	return c
}

// waitFor polls cond until it holds or a generous deadline passes.
func (e *env) waitFor(what string, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
	e.t.Fatalf("timed out waiting for %s (last: %s)", what, last)
}

// waitServing waits for the app in id to answer its own health check.
func (e *env) waitServing(id string) {
	e.t.Helper()
	e.waitFor("app serving in "+id, func() (bool, string) {
		_, err := e.exec(id, "/app", "health")
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// exec runs cmd in the running container id and returns its stdout.
func (e *env) exec(id string, cmd ...string) (string, error) {
	ctx := e.ctx()
	ex, err := e.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return "", fmt.Errorf("exec create %v: %w", cmd, err)
	}
	att, err := e.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", fmt.Errorf("exec attach %v: %w", cmd, err)
	}
	defer att.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		return "", fmt.Errorf("exec read %v: %w", cmd, err)
	}
	res, err := e.cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return "", fmt.Errorf("exec inspect %v: %w", cmd, err)
	}
	if res.ExitCode != 0 {
		return stdout.String(), fmt.Errorf("exec %v: exit %d: %s", cmd, res.ExitCode, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (e *env) mustExec(id string, cmd ...string) string {
	e.t.Helper()
	out, err := e.exec(id, cmd...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// network creates a labelled bridge network; with a subnet it tries a
// few /24s so parallel test runs and existing networks do not collide.
func (e *env) network(name string, withSubnet bool) (id, subnetPrefix string) {
	e.t.Helper()
	opts := network.CreateOptions{Driver: "bridge", Labels: e.labels(nil)}
	if !withSubnet {
		n, err := e.cli.NetworkCreate(e.ctx(), name, opts)
		if err != nil {
			e.t.Fatalf("network create %s: %v", name, err)
		}
		return n.ID, ""
	}
	var lastErr error
	for i := 0; i < 40; i++ {
		prefix := fmt.Sprintf("10.213.%d.", (time.Now().Nanosecond()/1000+i*7)%250)
		opts.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: prefix + "0/24", Gateway: prefix + "1"}}}
		n, err := e.cli.NetworkCreate(e.ctx(), name, opts)
		if err == nil {
			return n.ID, prefix
		}
		lastErr = err
	}
	e.t.Fatalf("network create %s: %v", name, lastErr)
	return "", ""
}

// hostGet fetches url from this process (loopback only).
func hostGet(url string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// imageID is the engine's ID of the image ref names.
func (e *env) imageID(ref string) string {
	e.t.Helper()
	img, err := e.cli.ImageInspect(e.ctx(), ref)
	if err != nil {
		e.t.Fatal(err)
	}
	return img.ID
}
