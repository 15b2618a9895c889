package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/engine"
)

// containersTimeout bounds the engine calls of one status read, so a hung engine costs the page
// its container lists, not its answer.
const containersTimeout = 5 * time.Second

// Engine is what a status read asks the Docker engine about a runtime's containers.
type Engine interface {
	Joining(ctx context.Context, ids []string) ([]engine.Container, error)
	Digest(ctx context.Context, imageID, repo string) (string, error)
	Services(ctx context.Context, label, value string) ([]engine.Service, error)
}

// Service is one Swarm service of a runtime as the status shows it.
type Service struct {
	Name string `json:"name"`
	// Digest is the one its spec is pinned to ("" when none).
	Digest      string `json:"digest"`
	UpdateState string `json:"update_state,omitempty"` // Swarm's: updating, completed, rollback_completed, …
	Tasks       int    `json:"tasks"`                  // tasks that should run
	TasksOn     int    `json:"tasks_on_digest"`        // of those, running the spec's digest
}

// fillServices adds each runtime's Swarm services to statuses. An engine in no swarm has none;
// one that cannot list them (a worker, the engine away) leaves the reason in services_error.
func fillServices(ctx context.Context, cat *catalog.Catalog, eng Engine, statuses []Status) {
	if eng == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, containersTimeout)
	defer cancel()
	byRuntime, err := cat.ServiceMembersByRuntime(ctx, eng)
	if errors.Is(err, engine.ErrNotManager) {
		return // a worker's runtimes are its containers; one of services only says so in its result
	}
	for i := range statuses {
		s := &statuses[i]
		if err != nil {
			s.ServicesError = err.Error()
			continue
		}
		for _, svc := range byRuntime[s.Name] {
			v := Service{Name: svc.Name, Digest: engine.ImageDigest(svc.Image), UpdateState: svc.UpdateState, Tasks: len(svc.Tasks)}
			for _, t := range svc.Tasks {
				if t.State == "running" && v.Digest != "" && engine.ImageDigest(t.Image) == v.Digest {
					v.TasksOn++
				}
			}
			s.Services = append(s.Services, v)
		}
	}
}

// Container is one container of a runtime as the status shows it.
type Container struct {
	Name  string `json:"name"`
	State string `json:"state"` // the engine's: running, exited, paused, …
	// Digest is the registry digest of the image it runs, in the runtime's repository ("" when
	// the engine knows none, e.g. an image built locally).
	Digest string `json:"digest"`
	// Dependents share its network, pid or ipc namespace and are recreated with it.
	Dependents []string `json:"dependents,omitempty"`
}

// fillContainers adds each runtime's containers to statuses, from one listing of the engine.
// Without the engine the statuses say why instead.
func fillContainers(ctx context.Context, cat *catalog.Catalog, eng Engine, statuses []Status) {
	if eng == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, containersTimeout)
	defer cancel()
	fail := func(err error) {
		for i := range statuses {
			statuses[i].ContainersError = err.Error()
		}
	}
	byRuntime, err := cat.MembersByRuntime(ctx)
	if err != nil {
		fail(err)
		return
	}
	var ids []string
	for _, cs := range byRuntime {
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
	}
	joined, err := eng.Joining(ctx, ids)
	if err != nil {
		fail(err)
		return
	}
	dependents := map[string][]string{}
	for _, d := range joined {
		for _, p := range d.Joins {
			dependents[p] = append(dependents[p], d.Name)
		}
	}
	digests := map[string]string{} // image ID + repository → digest, asked once
	for i := range statuses {
		s := &statuses[i]
		repo := s.Image[:strings.LastIndex(s.Image, ":")]
		s.Containers = []Container{}
		for _, c := range byRuntime[s.Name] {
			digest, ok := digests[c.ImageID+" "+repo]
			if !ok {
				if digest, err = eng.Digest(ctx, c.ImageID, repo); err != nil {
					s.ContainersError = fmt.Sprintf("image of %s: %v", c.Name, err)
				}
				digests[c.ImageID+" "+repo] = digest
			}
			s.Containers = append(s.Containers, Container{Name: c.Name, State: c.State, Digest: digest, Dependents: dependents[c.ID]})
		}
	}
}
