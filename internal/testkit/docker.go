package testkit

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// Label keys put on everything a test creates. LabelTest=1 marks any test
// leftover; LabelTestID says which test made it, so Cleanup in one test never
// removes another (possibly parallel) test's objects.
const (
	LabelTest   = "hookd.test"
	LabelTestID = "hookd.test.id"
)

// RequireDocker skips t when no Docker engine answers, or fails it when
// HOOKD_REQUIRE_DOCKER=1 so CI cannot silently skip the engine tests.
func RequireDocker(t testing.TB) {
	t.Helper()
	if err := pingDocker(); err != nil {
		if os.Getenv("HOOKD_REQUIRE_DOCKER") == "1" {
			t.Fatalf("docker engine required (HOOKD_REQUIRE_DOCKER=1): %v", err)
		}
		t.Skipf("no docker engine: %v", err)
	}
}

func pingDocker() error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		return fmt.Errorf("docker ping: %w", err)
	}
	return nil
}

// Docker returns a client for the engine, closed when t ends.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	RequireDocker(t)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestID identifies t on the engine. It includes the pid because test names
// repeat across packages whose test binaries run concurrently.
func TestID(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, t.Name())
	return fmt.Sprintf("%s-%d", name, os.Getpid())
}

// Labels are the labels a test must put on containers, networks and volumes
// it creates so that Cleanup finds them.
func Labels(t testing.TB) map[string]string {
	return map[string]string{LabelTest: "1", LabelTestID: TestID(t)}
}

// Cleanup registers removal, when t ends, of: containers labelled with t's
// TestID or created from an image of registryHost (hookd recreates containers
// without our labels), images from registryHost, and networks and volumes
// labelled with t's TestID. Failures are reported with t.Errorf so leftovers
// are not silent.
func Cleanup(t testing.TB, cli *client.Client, registryHost string) {
	t.Helper()
	id := TestID(t)
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, err := range cleanup(ctx, cli, id, registryHost) {
			t.Errorf("testkit cleanup: %v", err)
		}
	})
}

func cleanup(ctx context.Context, cli *client.Client, id, registryHost string) []error {
	var errs []error
	add := func(err error) {
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	fromRegistry := func(ref string) bool {
		return registryHost != "" && strings.HasPrefix(ref, registryHost+"/")
	}

	containers, err := cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return append(errs, fmt.Errorf("list containers: %w", err))
	}
	// A volume a rollout carried over is mounted by name on the replacement, so removing the
	// container with its volumes leaves it: the test's containers' volumes are removed by name.
	var volumesUsed []string
	for _, c := range containers {
		if c.Labels[LabelTestID] != id && !fromRegistry(c.Image) {
			continue
		}
		for _, m := range c.Mounts {
			if m.Type == mount.TypeVolume && m.Name != "" {
				volumesUsed = append(volumesUsed, m.Name)
			}
		}
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			add(fmt.Errorf("remove container %s: %w", c.ID, err))
		}
	}
	for _, v := range volumesUsed {
		if err := cli.VolumeRemove(ctx, v, false); err != nil && !cerrdefs.IsConflict(err) {
			add(fmt.Errorf("remove volume %s: %w", v, err)) // a conflict: another test's, still in use
		}
	}

	if registryHost != "" {
		images, err := cli.ImageList(ctx, image.ListOptions{All: true})
		if err != nil {
			return append(errs, fmt.Errorf("list images: %w", err))
		}
		for _, img := range images {
			// By reference, never by ID: identical test images pushed to another test's
			// registry share this ID, and that test may still be using them.
			for _, ref := range append(append([]string{}, img.RepoTags...), img.RepoDigests...) {
				if !fromRegistry(ref) {
					continue
				}
				if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true}); err != nil {
					add(fmt.Errorf("remove image %s: %w", ref, err))
				}
			}
		}
	}
	// A pull cancelled mid-way may still end in the engine, as an image with no reference;
	// the test's own images carry its id in their config.
	dangling, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("dangling", "true"))})
	if err != nil {
		return append(errs, fmt.Errorf("list dangling images: %w", err))
	}
	for _, img := range dangling {
		insp, err := cli.ImageInspect(ctx, img.ID)
		if err != nil || insp.Config == nil || !slices.Contains(insp.Config.Env, "HOOKD_TEST_ID="+id) {
			continue
		}
		if _, err := cli.ImageRemove(ctx, img.ID, image.RemoveOptions{PruneChildren: true}); err != nil {
			add(fmt.Errorf("remove dangling image %s: %w", img.ID, err))
		}
	}

	byID := filters.NewArgs(filters.Arg("label", LabelTestID+"="+id))
	networks, err := cli.NetworkList(ctx, network.ListOptions{Filters: byID})
	if err != nil {
		return append(errs, fmt.Errorf("list networks: %w", err))
	}
	for _, n := range networks {
		if err := cli.NetworkRemove(ctx, n.ID); err != nil {
			add(fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	volumes, err := cli.VolumeList(ctx, volume.ListOptions{Filters: byID})
	if err != nil {
		return append(errs, fmt.Errorf("list volumes: %w", err))
	}
	for _, v := range volumes.Volumes {
		if err := cli.VolumeRemove(ctx, v.Name, true); err != nil {
			add(fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	return errs
}

// Eventually polls cond until it holds, failing the test with cond's account of the state when
// within has passed. Tests wait on conditions, never on time.
func Eventually(t testing.TB, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, state)
		}
		time.Sleep(50 * time.Millisecond) // the polling interval, not synchronisation
	}
}

// SecondEngineEnv names the DOCKER_HOST of a second engine for the tests of several engines;
// `.ci/engine2 start` starts one and prints it.
const SecondEngineEnv = "HOOKD_TEST_DOCKER_HOST_2"

// SecondEngine returns a client for the second engine and its host, closed when t ends. It
// skips t without one, or fails it when HOOKD_REQUIRE_DOCKER=1.
func SecondEngine(t testing.TB) (*client.Client, string) {
	t.Helper()
	host := os.Getenv(SecondEngineEnv)
	if host == "" {
		if os.Getenv("HOOKD_REQUIRE_DOCKER") == "1" {
			t.Fatalf("a second docker engine is required (HOOKD_REQUIRE_DOCKER=1): set %s (.ci/engine2 start prints one)", SecondEngineEnv)
		}
		t.Skipf("no second docker engine: %s is not set", SecondEngineEnv)
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client for %s: %v", host, err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		t.Fatalf("second docker engine %s does not answer: %v", host, err)
	}
	return cli, host
}
