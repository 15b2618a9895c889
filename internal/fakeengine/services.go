package fakeengine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/hookd/hookd/internal/engine"
)

// errNoSwarm is the fake's answer to service calls: it is in no swarm, as most engines are.
var errNoSwarm = errors.New("This node is not a swarm manager.")

// Swarm makes the fake a swarm manager holding services. An update is applied at once: the
// spec's version moves, and Swarm either rolls every task to the image (completed) or, with
// RollBack, back to the previous one (rollback_completed).
type Swarm struct {
	mu       sync.Mutex
	services map[string]*engine.Service
	// RollBack makes every update end rolled back by Swarm.
	RollBack bool
	// OnUpdate, when set, runs after an update was applied; its error is what the caller is
	// answered (an answer lost on its way back).
	OnUpdate func(id string) error
	updates  int
}

// NewSwarm returns a swarm with no services.
func NewSwarm() *Swarm { return &Swarm{services: map[string]*engine.Service{}} }

// Add creates a service of replicas tasks on image.
func (w *Swarm) Add(id, name, image string, replicas int, labels map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	svc := &engine.Service{ID: id, Name: name, Image: image, Labels: labels, Version: 10, Replicas: replicas}
	for i := range replicas {
		svc.Tasks = append(svc.Tasks, engine.Task{ID: fmt.Sprintf("%s.%d", id, i), Image: image, State: "running"})
	}
	w.services[id] = svc
}

// Updates counts the updates Swarm took.
func (w *Swarm) Updates() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.updates
}

// Get returns the service as Swarm holds it.
func (w *Swarm) Get(id string) engine.Service {
	w.mu.Lock()
	defer w.mu.Unlock()
	return copyService(w.services[id])
}

// Set replaces what Swarm holds of a service (a test's own update in progress, say).
func (w *Swarm) Set(svc engine.Service) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := copyService(&svc)
	w.services[svc.ID] = &c
}

func copyService(s *engine.Service) engine.Service {
	c := *s
	c.Tasks = append([]engine.Task(nil), s.Tasks...)
	return c
}

// Services lists none unless the fake is a swarm manager or OnServices says otherwise.
func (e *Engine) Services(ctx context.Context, label, value string) ([]engine.Service, error) {
	e.mu.Lock()
	down, hook, w := e.down, e.OnServices, e.Swarm
	e.mu.Unlock()
	switch {
	case down:
		return nil, errDown()
	case hook != nil:
		return hook(label, value)
	case w == nil:
		return nil, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []engine.Service
	for _, s := range w.services {
		if v, ok := s.Labels[label]; ok && (value == "" || v == value) {
			out = append(out, copyService(s))
		}
	}
	return out, nil
}

// Service reads one service.
func (e *Engine) Service(ctx context.Context, id string) (engine.Service, error) {
	e.mu.Lock()
	down, w := e.down, e.Swarm
	e.mu.Unlock()
	switch {
	case down:
		return engine.Service{}, errDown()
	case w == nil:
		return engine.Service{}, errNoSwarm
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.services[id]
	if !ok {
		return engine.Service{}, fmt.Errorf("service %s: %w", id, cerrdefs.ErrNotFound)
	}
	return copyService(s), nil
}

// UpdateServiceImage applies an update at version to image, as Swarm would end it.
func (e *Engine) UpdateServiceImage(ctx context.Context, id string, version uint64, image string, auth engine.Auth) ([]string, error) {
	e.mu.Lock()
	down, w := e.down, e.Swarm
	e.mu.Unlock()
	switch {
	case down:
		return nil, errDown()
	case w == nil:
		return nil, errNoSwarm
	}
	w.mu.Lock()
	s, ok := w.services[id]
	if !ok {
		w.mu.Unlock()
		return nil, fmt.Errorf("service %s: %w", id, cerrdefs.ErrNotFound)
	}
	if s.Version != version {
		w.mu.Unlock()
		return nil, fmt.Errorf("update service %s: %w", id, engine.ErrServiceConflict)
	}
	w.updates++
	s.Version += 2 // the update, then Swarm's own status writes
	if w.RollBack {
		s.UpdateState, s.UpdateMessage = "rollback_completed", "rollback completed"
	} else {
		s.Image, s.UpdateState, s.UpdateMessage = image, "completed", "update completed"
		for i := range s.Tasks {
			s.Tasks[i].Image = image
		}
	}
	hook := w.OnUpdate
	w.mu.Unlock()
	if hook != nil {
		if err := hook(id); err != nil {
			return nil, err
		}
	}
	return nil, nil
}
