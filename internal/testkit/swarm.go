package testkit

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// RequireSwarm skips t unless the engine is a swarm manager (`docker swarm init
// --advertise-addr 127.0.0.1` makes a single-node one), or fails it when HOOKD_REQUIRE_DOCKER=1.
// It also registers the removal of every service labelled with t's TestID, and waits for their
// tasks' containers to go, before the cleanups registered earlier (images, networks) run.
func RequireSwarm(t testing.TB, cli *client.Client) {
	t.Helper()
	info, err := cli.Info(context.Background())
	if err == nil && !info.Swarm.ControlAvailable {
		err = fmt.Errorf("the engine is not a swarm manager (swarm state %q); run `docker swarm init --advertise-addr 127.0.0.1`", info.Swarm.LocalNodeState)
	}
	if err != nil {
		if os.Getenv("HOOKD_REQUIRE_DOCKER") == "1" {
			t.Fatalf("swarm manager required (HOOKD_REQUIRE_DOCKER=1): %v", err)
		}
		t.Skipf("no swarm: %v", err)
	}
	id := TestID(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if err := removeServices(ctx, cli, id); err != nil {
			t.Errorf("testkit cleanup: %v", err)
		}
	})
}

func removeServices(ctx context.Context, cli *client.Client, id string) error {
	svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelTestID+"="+id))})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, s := range svcs {
		if err := cli.ServiceRemove(ctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove service %s: %w", s.Spec.Name, err)
		}
	}
	// Swarm stops and removes the tasks' containers after the service is gone.
	for _, s := range svcs {
		for {
			left, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.id="+s.ID))})
			if err != nil {
				return fmt.Errorf("list containers of service %s: %w", s.Spec.Name, err)
			}
			if len(left) == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("containers of service %s still present: %w", s.Spec.Name, ctx.Err())
			case <-time.After(100 * time.Millisecond): // polling interval
			}
		}
	}
	return nil
}
