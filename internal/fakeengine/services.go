package fakeengine

import (
	"context"
	"errors"

	"github.com/hookd/hookd/internal/engine"
)

// errNoSwarm is the fake's answer to service calls: it is in no swarm, as most engines are.
var errNoSwarm = errors.New("This node is not a swarm manager.")

// Services lists none unless OnServices says otherwise: the fake is in no swarm (the real
// engine answers the same, not an error).
func (e *Engine) Services(ctx context.Context, label, value string) ([]engine.Service, error) {
	e.mu.Lock()
	down, hook := e.down, e.OnServices
	e.mu.Unlock()
	if down {
		return nil, errDown()
	}
	if hook != nil {
		return hook(label, value)
	}
	return nil, nil
}

// Service fails: there are no services.
func (e *Engine) Service(ctx context.Context, id string) (engine.Service, error) {
	return engine.Service{}, errNoSwarm
}

// UpdateServiceImage fails: there are no services.
func (e *Engine) UpdateServiceImage(ctx context.Context, id string, version uint64, image string, auth engine.Auth) ([]string, error) {
	return nil, errNoSwarm
}
