package engine

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"

	"github.com/hookd/hookd/internal/testkit"
)

func TestNewWithoutEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	eng, err := New()
	if err != nil {
		t.Fatalf("New with the engine down: %v", err)
	}
	defer eng.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := eng.Ping(ctx); err == nil {
		t.Error("Ping succeeded without an engine")
	}
}

func TestPullAndHasImage(t *testing.T) {
	e := newEnv(t)
	digest := e.reg.Push(t, "pull", "v1", testkit.App{Version: "v1"})
	repo := e.reg.Host + "/pull"
	if _, ok, err := e.eng.HasImage(e.ctx(), repo, digest); err != nil || ok {
		t.Fatalf("HasImage before pull = %v, %v", ok, err)
	}
	start := time.Now()
	if err := e.eng.Pull(e.ctx(), repo+"@"+digest, Auth{}); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	t.Logf("pull took %v", time.Since(start))
	id, ok, err := e.eng.HasImage(e.ctx(), repo, digest)
	if err != nil || !ok || !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("HasImage after pull = %q, %v, %v", id, ok, err)
	}

	missing := repo + "@sha256:" + strings.Repeat("1", 64)
	if err := e.eng.Pull(e.ctx(), missing, Auth{}); err == nil {
		t.Error("Pull of a digest the registry lacks succeeded")
	}
	if _, ok, err := e.eng.HasImage(e.ctx(), repo, "sha256:"+strings.Repeat("1", 64)); err != nil || ok {
		t.Errorf("HasImage of a missing digest = %v, %v", ok, err)
	}
}

func TestPullErrorHidesCredentials(t *testing.T) {
	testkit.RequireDocker(t)
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="hookd-test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
		})
	})
	testkit.Cleanup(t, cli, reg.Host)
	eng, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	secret := "s3cret-password-value"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = eng.Pull(ctx, reg.Host+"/private@sha256:"+strings.Repeat("2", 64), Auth{Username: "user", Password: secret})
	if err == nil {
		t.Fatal("Pull from a registry refusing the credentials succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error reveals the password: %v", err)
	}
	t.Logf("refused pull: %v", err)
}

func TestListInspectAndState(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{Version: "v1"})
	hc := e.image("app", "hc", testkit.App{Version: "hc", Healthcheck: true})
	runtime := testkit.TestID(t)
	b := e.create(e.name("b"), &container.Config{Image: hc, Labels: map[string]string{"hookd.runtime": runtime}}, nil, nil)
	a := e.create(e.name("a"), &container.Config{Image: v1, Labels: map[string]string{"hookd.runtime": runtime}}, nil, nil)
	e.create(e.name("other"), &container.Config{Image: v1, Labels: map[string]string{"hookd.runtime": runtime + "-other"}}, nil, nil)
	e.start(b)

	list, err := e.eng.List(e.ctx(), "hookd.runtime", runtime)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != a || list[1].ID != b {
		t.Fatalf("List = %+v", list)
	}
	if list[0].Name != e.name("a") || list[0].Image != v1 || list[0].Running || list[0].State != "created" || !strings.HasPrefix(list[0].ImageID, "sha256:") {
		t.Errorf("List[0] = %+v", list[0])
	}
	if !list[1].Running || list[1].Labels["hookd.runtime"] != runtime {
		t.Errorf("List[1] = %+v", list[1])
	}
	st, err := e.eng.State(e.ctx(), a)
	if err != nil || st.Running || st.Health != "" {
		t.Errorf("State(created) = %+v, %v", st, err)
	}
	e.waitFor("healthy", func() (bool, string) {
		st, err := e.eng.State(e.ctx(), b)
		return err == nil && st.Running && st.Health == "healthy", st.Health
	})

	bad := e.image("app", "unhealthy", testkit.App{Version: "bad", Mode: "unhealthy", Healthcheck: true})
	u := e.create(e.name("u"), &container.Config{Image: bad}, nil, nil)
	e.start(u)
	e.waitFor("unhealthy", func() (bool, string) {
		st, err := e.eng.State(e.ctx(), u)
		return err == nil && st.Running && st.Health == "unhealthy", st.Health
	})

	if _, err := e.eng.Inspect(e.ctx(), e.name("absent")); !cerrdefs.IsNotFound(err) {
		t.Errorf("Inspect of a missing container = %v, want not found", err)
	}
}

func TestStopHonoursStopSignalAndTimeout(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{Version: "v1"})
	one := 1
	// testapp ignores SIGUSR1, so only the kill after the container's own
	// timeout stops it.
	ignoring := e.create(e.name("ignoring"), &container.Config{Image: v1, StopSignal: "SIGUSR1", StopTimeout: &one}, nil, nil)
	// testapp exits cleanly on SIGINT.
	graceful := e.create(e.name("graceful"), &container.Config{Image: v1, StopSignal: "SIGINT", StopTimeout: &one}, nil, nil)
	e.start(ignoring)
	e.start(graceful)
	e.waitServing(ignoring)
	e.waitServing(graceful)

	start := time.Now()
	if err := e.eng.Stop(e.ctx(), ignoring); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("stop with a 1 s StopTimeout and an ignored signal took %v", took)
	st, err := e.eng.State(e.ctx(), ignoring)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || st.ExitCode != 137 {
		t.Errorf("after Stop: %+v, want killed (137)", st)
	}
	if took < time.Second {
		t.Errorf("killed after %v, before the container's 1 s StopTimeout", took)
	}

	if err := e.eng.Stop(e.ctx(), graceful); err != nil {
		t.Fatal(err)
	}
	if st, err := e.eng.State(e.ctx(), graceful); err != nil || st.Running || st.ExitCode != 0 {
		t.Errorf("after a graceful Stop: %+v, %v; want exit 0 from the container's own SIGINT", st, err)
	}
	if err := e.eng.Stop(e.ctx(), graceful); err != nil {
		t.Errorf("Stop of a stopped container: %v", err)
	}
}

func TestRemoveKeepsVolumes(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{Version: "v1", Volumes: []string{"/imgvol"}})
	named, err := e.cli.VolumeCreate(e.ctx(), volume.CreateOptions{Name: e.name("named"), Labels: e.labels(nil)})
	if err != nil {
		t.Fatal(err)
	}
	id := e.create(e.name("svc"), &container.Config{Image: v1, Volumes: map[string]struct{}{"/anon": {}}},
		&container.HostConfig{Binds: []string{named.Name + ":/data"}}, nil)
	e.start(id)
	var vols []string
	for _, m := range e.inspect(id).Mounts {
		vols = append(vols, m.Name)
	}
	if len(vols) != 3 {
		t.Fatalf("mounts = %v", vols)
	}
	t.Cleanup(func() {
		for _, v := range vols {
			e.cli.VolumeRemove(context.Background(), v, true)
		}
	})
	if err := e.eng.Remove(e.ctx(), id); err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if _, err := e.cli.VolumeInspect(e.ctx(), v); err != nil {
			t.Errorf("volume %s gone after Remove: %v", v, err)
		}
	}
	if err := e.eng.Remove(e.ctx(), id); err != nil {
		t.Errorf("Remove of a missing container: %v", err)
	}
}

func TestRemoveImageIfUnused(t *testing.T) {
	e := newEnv(t)
	ref := e.image("app", "v1", testkit.App{Version: "v1"})
	repo, digest, _ := strings.Cut(ref, "@")
	imageID, ok, err := e.eng.HasImage(e.ctx(), repo, digest)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	// The same image under a second repository: removal must drop both.
	if err := e.cli.ImageTag(e.ctx(), imageID, e.reg.Host+"/other:tag"); err != nil {
		t.Fatal(err)
	}
	id := e.create(e.name("user"), &container.Config{Image: ref}, nil, nil) // created, never started
	if removed, err := e.eng.RemoveImageIfUnused(e.ctx(), imageID); err != nil || removed {
		t.Fatalf("RemoveImageIfUnused with a container using it = %v, %v", removed, err)
	}
	if _, ok, _ := e.eng.HasImage(e.ctx(), repo, digest); !ok {
		t.Fatal("image in use was removed")
	}
	if err := e.eng.Remove(e.ctx(), id); err != nil {
		t.Fatal(err)
	}
	if removed, err := e.eng.RemoveImageIfUnused(e.ctx(), imageID); err != nil || !removed {
		t.Fatalf("RemoveImageIfUnused of an unused image = %v, %v", removed, err)
	}
	if _, err := e.cli.ImageInspect(e.ctx(), imageID); !cerrdefs.IsNotFound(err) {
		t.Errorf("image still there: %v", err)
	}
	if removed, err := e.eng.RemoveImageIfUnused(e.ctx(), imageID); err != nil || removed {
		t.Errorf("RemoveImageIfUnused of a missing image = %v, %v", removed, err)
	}
}

func TestSelfID(t *testing.T) {
	e := newEnv(t)
	if id := e.eng.SelfID(e.ctx()); id != "" {
		t.Errorf("SelfID outside a container = %q", id)
	}
	// What the process in a container sees: its own mountinfo.
	v1 := e.image("app", "v1", testkit.App{Version: "v1"})
	id := e.create(e.name("svc"), &container.Config{Image: v1, Hostname: "not-the-id"}, nil, nil)
	e.start(id)
	mountinfo := e.mustExec(id, "/app", "read", "/proc/self/mountinfo")
	if got := containerIDsFromMountinfo(strings.NewReader(mountinfo)); !slices.Equal(got, []string{id}) {
		t.Errorf("IDs from the container's mountinfo = %v, want [%s]", got, id)
	}
}

// With a restart policy the engine runs a crashed container again and inspect shows exit code
// 0; the die event keeps the code the app exited with.
func TestExitSinceKeepsTheCodeARestartHides(t *testing.T) {
	e := newEnv(t)
	crashy := e.image("app", "exit", testkit.App{Version: "exit", Mode: "exit"})
	id := e.create(e.name("crashy"), &container.Config{Image: crashy}, &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways}}, nil)
	since := time.Now()
	e.start(id)
	e.waitFor("a restart", func() (bool, string) {
		st, err := e.eng.State(e.ctx(), id)
		return err == nil && st.RestartCount > 0, fmt.Sprintf("%+v %v", st, err)
	})
	ex, err := e.eng.ExitSince(e.ctx(), id, since)
	if err != nil || !ex.Died || ex.Code != 1 || ex.Requested {
		t.Fatalf("exit %+v, %v; want died with code 1, not requested", ex, err)
	}
	if err := e.eng.Stop(e.ctx(), id); err != nil {
		t.Fatal(err)
	}
	if ex, err := e.eng.ExitSince(e.ctx(), id, since); err != nil || !ex.Requested {
		t.Fatalf("after docker stop: %+v, %v; want requested", ex, err)
	}
}
