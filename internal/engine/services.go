package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
)

// ErrNotManager is returned for any service call on an engine that is a swarm worker: only a
// manager can read or change services.
var ErrNotManager = errors.New("services need a swarm manager: this engine is a swarm worker (run hookd against a manager, or promote this node)")

// ErrServiceConflict is a service update refused because the service changed since it was read
// (Swarm's "update out of sequence"): read it again and decide again.
var ErrServiceConflict = errors.New("the service changed since it was read")

// Service is what hookd needs to know about a Swarm service.
type Service struct {
	ID     string
	Name   string
	Image  string // the spec's ContainerSpec.Image, e.g. "host/repo:tag@sha256:…"
	Labels map[string]string
	// Version is the spec's version index: an update names the one it was read at.
	Version uint64
	// Replicas is the desired count of a replicated service; -1 for a global one.
	Replicas int
	// UpdateState is Swarm's UpdateStatus.State ("" before the first update): updating,
	// paused, completed, rollback_started, rollback_paused, rollback_completed.
	UpdateState   string
	UpdateMessage string
	// Tasks are the service's tasks that should run (desired state running), with the image
	// each was created from.
	Tasks []Task
}

// Task is one task of a service.
type Task struct {
	ID    string
	Image string // the task's ContainerSpec.Image, pinned by digest
	State string // Swarm's task state: new, pending, …, running, failed, …
}

// Updating reports whether Swarm is rolling the service's tasks (forward or back).
func (s Service) Updating() bool {
	return s.UpdateState == string(swarm.UpdateStateUpdating) || s.UpdateState == string(swarm.UpdateStateRollbackStarted)
}

// ImageDigest is the digest an image reference is pinned to ("" when none).
func ImageDigest(image string) string {
	_, d, _ := strings.Cut(image, "@")
	return d
}

// Services returns the services labelled label=value (any value when value is ""), each with
// its tasks, sorted by name. An engine that is in no swarm has none; on a swarm worker it fails
// with ErrNotManager.
func (e *Engine) Services(ctx context.Context, label, value string) ([]Service, error) {
	f := label
	if value != "" {
		f += "=" + value
	}
	list, err := e.api(ctx).ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", f))})
	if err != nil {
		// The engine answers "not a swarm manager" both outside a swarm and on a worker; its
		// swarm state tells the two apart.
		if mgr, ierr := e.swarmState(ctx); ierr == nil && mgr != swarmManager {
			if mgr == swarmNone {
				return nil, nil
			}
			return nil, ErrNotManager
		}
		return nil, fmt.Errorf("list services %s: %w", f, err)
	}
	out := make([]Service, 0, len(list))
	for _, s := range list {
		svc, err := e.service(ctx, s)
		if err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Service describes one service, by ID or name, with its tasks.
func (e *Engine) Service(ctx context.Context, id string) (Service, error) {
	s, _, err := e.api(ctx).ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return Service{}, e.serviceErr(ctx, fmt.Sprintf("inspect service %s", id), err)
	}
	return e.service(ctx, s)
}

func (e *Engine) service(ctx context.Context, s swarm.Service) (Service, error) {
	out := Service{ID: s.ID, Name: s.Spec.Name, Labels: s.Spec.Labels, Version: s.Version.Index, Replicas: -1}
	if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil {
		out.Image = cs.Image
	}
	if r := s.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
		out.Replicas = int(*r.Replicas)
	}
	if st := s.UpdateStatus; st != nil {
		out.UpdateState, out.UpdateMessage = string(st.State), st.Message
	}
	tasks, err := e.api(ctx).TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", s.ID), filters.Arg("desired-state", "running"))})
	if err != nil {
		return Service{}, e.serviceErr(ctx, fmt.Sprintf("list tasks of service %s", s.Spec.Name), err)
	}
	for _, t := range tasks {
		task := Task{ID: t.ID, State: string(t.Status.State)}
		if cs := t.Spec.ContainerSpec; cs != nil {
			task.Image = cs.Image
		}
		out.Tasks = append(out.Tasks, task)
	}
	sort.Slice(out.Tasks, func(i, j int) bool { return out.Tasks[i].ID < out.Tasks[j].ID })
	return out, nil
}

// UpdateServiceImage submits an update of the service's spec, read at version, that changes
// nothing but ContainerSpec.Image, with the registry credential the nodes pull with (as
// `docker service update --with-registry-auth --image` does). Swarm then rolls the tasks with
// the service's own update_config. A service changed since version fails with
// ErrServiceConflict and is not updated. It returns Swarm's warnings.
func (e *Engine) UpdateServiceImage(ctx context.Context, id string, version uint64, image string, auth Auth) ([]string, error) {
	s, _, err := e.api(ctx).ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return nil, e.serviceErr(ctx, fmt.Sprintf("update service %s: inspect", id), err)
	}
	if s.Version.Index != version {
		return nil, fmt.Errorf("update service %s: version %d, not %d: %w", s.Spec.Name, s.Version.Index, version, ErrServiceConflict)
	}
	spec := s.Spec
	if spec.TaskTemplate.ContainerSpec == nil {
		return nil, fmt.Errorf("update service %s: not a container service", s.Spec.Name)
	}
	cs := *spec.TaskTemplate.ContainerSpec
	cs.Image = image
	spec.TaskTemplate.ContainerSpec = &cs
	// The image is pinned already: the engine need not ask the registry again.
	opts := swarm.ServiceUpdateOptions{QueryRegistry: false}
	if auth != (Auth{}) {
		enc, err := registry.EncodeAuthConfig(registry.AuthConfig{
			Username: auth.Username, Password: auth.Password, IdentityToken: auth.IdentityToken, RegistryToken: auth.RegistryToken,
		})
		if err != nil {
			return nil, fmt.Errorf("update service %s: encode credentials: %w", s.Spec.Name, auth.redact(err))
		}
		opts.EncodedRegistryAuth = enc
	}
	resp, err := e.api(ctx).ServiceUpdate(ctx, s.ID, s.Version, spec, opts)
	if err != nil {
		if strings.Contains(err.Error(), "update out of sequence") {
			return nil, fmt.Errorf("update service %s: %w", s.Spec.Name, ErrServiceConflict)
		}
		return nil, auth.redact(e.serviceErr(ctx, fmt.Sprintf("update service %s", s.Spec.Name), err))
	}
	return resp.Warnings, nil
}

type swarmRole int

const (
	swarmNone swarmRole = iota
	swarmWorker
	swarmManager
)

func (e *Engine) swarmState(ctx context.Context) (swarmRole, error) {
	info, err := e.api(ctx).Info(ctx)
	if err != nil {
		return swarmNone, fmt.Errorf("engine info: %w", err)
	}
	switch {
	case info.Swarm.LocalNodeState == swarm.LocalNodeStateInactive:
		return swarmNone, nil
	case info.Swarm.ControlAvailable:
		return swarmManager, nil
	}
	return swarmWorker, nil
}

// serviceErr names a worker node plainly: the engine's own words suggest a swarm init.
func (e *Engine) serviceErr(ctx context.Context, op string, err error) error {
	if st, ierr := e.swarmState(ctx); ierr == nil && st == swarmWorker {
		return fmt.Errorf("%s: %w", op, ErrNotManager)
	}
	return fmt.Errorf("%s: %w", op, err)
}
