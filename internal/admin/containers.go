package admin

import (
	"context"
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
