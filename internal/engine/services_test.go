package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/hookd/hookd/internal/testkit"
)

func TestServicesListUpdateAndConflict(t *testing.T) {
	e := newEnv(t)
	testkit.RequireSwarm(t, e.cli)
	ctx := context.Background()
	v1 := e.reg.Push(t, "org/svc", "latest", testkit.App{Version: "v1"})
	v2 := e.reg.Push(t, "org/svc", "latest", testkit.App{Version: "v2"})
	repo := e.reg.Host + "/org/svc"
	labels := testkit.Labels(t)
	labels["hookd.runtime"] = testkit.TestID(t)
	one := uint64(1)
	created, err := e.cli.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: testkit.TestID(t), Labels: labels},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: repo + ":latest@" + v1, Env: []string{"A=1"}}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	list, err := e.eng.Services(ctx, "hookd.runtime", testkit.TestID(t))
	if err != nil || len(list) != 1 || list[0].ID != created.ID {
		t.Fatalf("Services: %+v %v, want the one labelled service", list, err)
	}
	svc := list[0]
	if ImageDigest(svc.Image) != v1 || svc.Replicas != 1 || svc.UpdateState != "" || svc.Updating() {
		t.Fatalf("service %+v: want pinned to v1, one replica, never updated", svc)
	}

	// A version read before someone else's change is refused, and nothing is submitted.
	stale := svc.Version
	other, _, err := e.cli.ServiceInspectWithRaw(ctx, created.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other.Spec.TaskTemplate.ContainerSpec.Env = []string{"A=2"}
	if _, err := e.cli.ServiceUpdate(ctx, created.ID, other.Version, other.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.UpdateServiceImage(ctx, created.ID, stale, repo+":latest@"+v2, Auth{}); !errors.Is(err, ErrServiceConflict) {
		t.Fatalf("update at a stale version: %v, want ErrServiceConflict", err)
	}

	now, err := e.eng.Service(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.UpdateServiceImage(ctx, created.ID, now.Version, repo+":latest@"+v2, Auth{}); err != nil {
		t.Fatalf("update: %v", err)
	}
	testkit.Eventually(t, 2*time.Minute, func() (bool, string) {
		s, err := e.eng.Service(ctx, created.ID)
		ok := err == nil && ImageDigest(s.Image) == v2 && len(s.Tasks) == 1 && ImageDigest(s.Tasks[0].Image) == v2 && s.Tasks[0].State == "running"
		return ok, "service " + s.Image + " tasks " + strings.Join(taskImages(s), ",")
	})
	after, _, err := e.cli.ServiceInspectWithRaw(ctx, created.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if env := after.Spec.TaskTemplate.ContainerSpec.Env; len(env) != 1 || env[0] != "A=2" {
		t.Errorf("env %v after the image update, want the other writer's A=2 kept", env)
	}
}

func taskImages(s Service) []string {
	var out []string
	for _, t := range s.Tasks {
		out = append(out, t.State+" "+t.Image)
	}
	return out
}
