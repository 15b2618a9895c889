package testkit_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hookd/hookd/internal/testkit"
)

func TestPushPullRunAndCleanup(t *testing.T) {
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)

	t.Run("run", func(t *testing.T) {
		testkit.Cleanup(t, cli, reg.Host)
		d1 := reg.Push(t, "app", "v1", testkit.App{
			Version: "v1",
			Env:     []string{"EXTRA=1"},
			Labels:  map[string]string{"org.example": "yes"},
			Volumes: []string{"/data"},
		})
		d2 := reg.Push(t, "app", "v2", testkit.App{Version: "v2"})
		if d1 == d2 || !strings.HasPrefix(d1, "sha256:") {
			t.Fatalf("digests v1=%q v2=%q: want distinct sha256 digests", d1, d2)
		}

		ref := reg.Host + "/app@" + d1
		pull(t, cli, ref)
		inspect, err := cli.ImageInspect(context.Background(), ref)
		if err != nil {
			t.Fatalf("inspect %s: %v", ref, err)
		}
		if !slices.Contains(inspect.RepoDigests, ref) {
			t.Fatalf("RepoDigests = %v, want %s", inspect.RepoDigests, ref)
		}
		cfg := inspect.Config
		if !slices.Contains(cfg.Env, "EXTRA=1") || !slices.Contains(cfg.Env, "APP_VERSION=v1") ||
			cfg.Labels["org.example"] != "yes" || len(cfg.Volumes) != 1 {
			t.Fatalf("image config env=%v labels=%v volumes=%v", cfg.Env, cfg.Labels, cfg.Volumes)
		}

		id, port := run(t, cli, ref)
		waitBody(t, "http://127.0.0.1:"+port+"/", "v1")
		if out := exec(t, cli, id, "/app", "get", "http://127.0.0.1:8080/env?k=APP_MODE"); out != "ok" {
			t.Fatalf("exec get /env = %q, want ok", out)
		}
		exec(t, cli, id, "/app", "write", "/data/x/file", "hello")
		if out := exec(t, cli, id, "/app", "read", "/data/x/file"); out != "hello" {
			t.Fatalf("exec read = %q, want hello", out)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cli.ContainerStop(ctx, id, container.StopOptions{}); err != nil {
			t.Fatalf("stop: %v", err)
		}
		// Exit code 0 shows testapp handled SIGTERM rather than being killed.
		if st := state(t, cli, id); st.Running || st.ExitCode != 0 {
			t.Fatalf("after stop: running=%v exit=%d, want stopped with 0", st.Running, st.ExitCode)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	containers, err := cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	for _, c := range containers {
		if strings.HasPrefix(c.Image, reg.Host+"/") {
			t.Errorf("container %s (%s) left after cleanup", c.ID, c.Image)
		}
	}
	images, err := cli.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		t.Fatalf("list images: %v", err)
	}
	for _, img := range images {
		for _, r := range append(img.RepoTags, img.RepoDigests...) {
			if strings.HasPrefix(r, reg.Host+"/") {
				t.Errorf("image %s left after cleanup", r)
			}
		}
	}
}

func TestExitMode(t *testing.T) {
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	ref := reg.Host + "/app@" + reg.Push(t, "app", "exit", testkit.App{Version: "v1", Mode: "exit"})
	pull(t, cli, ref)
	id, _ := run(t, cli, ref)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Waiting on "not-running" right after start still catches a container
	// that already exited.
	waitc, errc := cli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case res := <-waitc:
		if res.StatusCode != 1 {
			t.Fatalf("exit code %d, want 1", res.StatusCode)
		}
	case err := <-errc:
		t.Fatalf("wait: %v", err)
	}
}

func TestHealthcheck(t *testing.T) {
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	ref := reg.Host + "/app@" + reg.Push(t, "app", "health", testkit.App{Version: "v1", Healthcheck: true})
	pull(t, cli, ref)
	id, _ := run(t, cli, ref)

	var last string
	if !poll(30*time.Second, func() bool {
		st := state(t, cli, id)
		if st.Health != nil {
			last = st.Health.Status
		}
		return last == container.Healthy
	}) {
		t.Fatalf("health status %q, want healthy", last)
	}
}

func TestPushIndex(t *testing.T) {
	cli := testkit.Docker(t)
	var requests atomic.Int64
	reg := testkit.StartRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			h.ServeHTTP(w, r)
		})
	})
	testkit.Cleanup(t, cli, reg.Host)

	indexDigest, imageDigest := reg.PushIndex(t, "app", "multi", testkit.App{Version: "v3"})
	if indexDigest == imageDigest {
		t.Fatalf("index and image digest are both %s", indexDigest)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("wrap saw %d requests from the testkit's own push, want 0", n)
	}

	tag, err := name.NewTag(reg.Host + "/app:multi")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(tag, remote.WithContext(context.Background()))
	if err != nil {
		t.Fatalf("head %s: %v", tag, err)
	}
	if desc.Digest.String() != indexDigest {
		t.Fatalf("head digest %s, want index digest %s", desc.Digest, indexDigest)
	}

	ref := reg.Host + "/app@" + indexDigest
	pull(t, cli, ref)
	_, port := run(t, cli, ref)
	waitBody(t, "http://127.0.0.1:"+port+"/", "v3")
	if requests.Load() == 0 {
		t.Fatal("wrap saw no requests from head and pull")
	}
}

func pull(t *testing.T, cli *client.Client, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc, err := cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	defer rc.Close()
	// The pull only completes once its progress stream is drained; errors
	// arrive inside the stream, so look for them there.
	out, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("pull %s: %s", ref, out)
	}
}

// run starts ref with port 8080 published on a random loopback port.
func run(t *testing.T, cli *client.Client, ref string) (id, hostPort string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := cli.ContainerCreate(ctx,
		&container.Config{Image: ref, Labels: testkit.Labels(t)},
		&container.HostConfig{PortBindings: nat.PortMap{
			"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "0"}},
		}},
		nil, nil, "")
	if err != nil {
		t.Fatalf("create %s: %v", ref, err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", ref, err)
	}
	info, err := cli.ContainerInspect(ctx, created.ID)
	if err != nil {
		t.Fatalf("inspect container: %v", err)
	}
	if b := info.NetworkSettings.Ports["8080/tcp"]; len(b) > 0 {
		hostPort = b[0].HostPort
	}
	return created.ID, hostPort
}

func state(t *testing.T, cli *client.Client, id string) *container.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := cli.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatalf("inspect container %s: %v", id, err)
	}
	return info.State
}

func exec(t *testing.T, cli *client.Client, id string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatalf("exec %v: %v", cmd, err)
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec attach %v: %v", cmd, err)
	}
	defer att.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		t.Fatalf("exec %v output: %v", cmd, err)
	}
	res, err := cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		t.Fatalf("exec inspect %v: %v", cmd, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exec %v: exit %d: %s", cmd, res.ExitCode, stderr.String())
	}
	return stdout.String()
}

func waitBody(t *testing.T, url, want string) {
	t.Helper()
	var last string
	c := http.Client{Timeout: 2 * time.Second}
	ok := poll(30*time.Second, func() bool {
		resp, err := c.Get(url)
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = string(b)
		return resp.StatusCode == http.StatusOK && last == want
	})
	if !ok {
		t.Fatalf("GET %s: last answer %q, want %q", url, last, want)
	}
}

// poll calls cond until it holds or the deadline passes, pacing with a
// ticker rather than sleeping.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
}
