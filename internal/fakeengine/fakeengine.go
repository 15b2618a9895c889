// Package fakeengine is an in-memory stand-in for the Docker engine, for unit tests of the
// rollout and the poll: containers with names, images, run state and labels, and hooks that make
// any step fail the way the real engine does. Only tests use it; the real engine covers
// integration.
package fakeengine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/hookd/hookd/internal/engine"
)

// errDown is what every call returns while the engine is down, in the real engine's words.
func errDown() error {
	return errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
}

// Container is one fake container.
type Container struct {
	ID, Name, Image, ImageID string
	Running, Paused          bool
	Labels                   map[string]string
	AutoRemove               bool
	// Run state the gate reads.
	ExitCode, RestartCount int
	Health                 string
	StopRequested          bool
	// LastExit is the code the engine's die event would give; nil when none was logged.
	LastExit *int
	// Joins is as engine.Container's: namespace kind → ID of the container it shares.
	Joins map[string]string
	// Stale is set on a running container whose provider stopped: it runs in a namespace
	// the engine has torn down (no network), until it is started again.
	Stale bool
	// Exclusive is as engine.Container's: why two copies could not run at once. A copy keeps it.
	Exclusive string
}

// Engine is the fake. Its hooks, when set, are called with the engine's lock released; a hook's
// error is returned by the call.
type Engine struct {
	mu         sync.Mutex
	containers map[string]*Container // by ID
	images     map[string]string     // repo@digest and tags → image ID
	seq        int
	down       bool
	ops        []string
	self       string

	// OnStart runs before a container starts; its error fails the start.
	OnStart func(c Container) error
	// OnState runs when the gate reads a container's state and may change what it sees.
	OnState func(c *Container) error
	// OnPull runs for each pull; ctx is the pull's.
	OnPull func(ctx context.Context, ref string) error
	// OnCreate runs before a replacement is created.
	OnCreate func(oldID, image, name string) error
	// OnChange runs before a container is renamed ("rename"), stopped ("stop") or removed
	// ("remove"); its error fails the call.
	OnChange func(op string, c Container) error
	// ListCalls counts List calls.
	ListCalls int
	// OnServices, when set, answers Services (the fake is otherwise in no swarm).
	OnServices func(label, value string) ([]engine.Service, error)
	// Swarm, when set, makes the fake a swarm manager with these services.
	Swarm *Swarm
}

// New returns an empty engine.
func New() *Engine {
	return &Engine{containers: map[string]*Container{}, images: map[string]string{}}
}

// AddImage makes the engine hold an image under the given references; it returns the image ID.
func (e *Engine) AddImage(id string, refs ...string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range refs {
		e.images[r] = id
	}
	return id
}

// Image returns the image a reference names ("" when none).
func (e *Engine) Image(ref string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.images[ref]
}

// Run adds a container; image must be a reference AddImage knows.
func (e *Engine) Run(name, image string, labels map[string]string, running bool) Container {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	c := &Container{ID: fmt.Sprintf("%064d", e.seq), Name: name, Image: image, ImageID: e.images[image], Running: running, Labels: maps.Clone(labels)}
	e.containers[c.ID] = c
	return *c
}

// Put replaces a container's fields (found by ID).
func (e *Engine) Put(c Container) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cc := c
	e.containers[c.ID] = &cc
}

// SetDown makes every call fail as a stopped daemon's would, or brings the engine back.
func (e *Engine) SetDown(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = down
}

// SetSelf names the container hookd runs in.
func (e *Engine) SetSelf(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.self = id
}

// Containers returns every container, sorted by name.
func (e *Engine) Containers() []Container {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Container
	for _, c := range e.containers {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Container) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ByName returns the container with that name.
func (e *Engine) ByName(name string) (Container, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.find(name)
	if c == nil {
		return Container{}, false
	}
	return *c, true
}

// Ops returns the container-changing calls made so far, as "op name" lines.
func (e *Engine) Ops() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ops)
}

func (e *Engine) find(ref string) *Container {
	if c, ok := e.containers[ref]; ok {
		return c
	}
	for _, c := range e.containers {
		if c.Name == ref {
			return c
		}
	}
	return nil
}

// get finds ref with the lock held, or fails as the engine would.
func (e *Engine) get(ref string) (*Container, error) {
	if e.down {
		return nil, errDown()
	}
	c := e.find(ref)
	if c == nil {
		return nil, fmt.Errorf("No such container: %s: %w", ref, cerrdefs.ErrNotFound)
	}
	return c, nil
}

func (e *Engine) log(op string, c *Container) { e.ops = append(e.ops, op+" "+c.Name) }

func summary(c *Container) engine.Container {
	state := "exited"
	switch {
	case c.Paused:
		state = "paused"
	case c.Running:
		state = "running"
	}
	return engine.Container{ID: c.ID, Name: c.Name, Image: c.Image, ImageID: c.ImageID, Running: c.Running, State: state,
		Labels: maps.Clone(c.Labels), AutoRemove: c.AutoRemove, Joins: maps.Clone(c.Joins), Exclusive: c.Exclusive}
}

// HasImage implements the engine's lookup of repo@digest.
func (e *Engine) HasImage(ctx context.Context, repo, digest string) (string, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return "", false, errDown()
	}
	id, ok := e.images[repo+"@"+digest]
	return id, ok, nil
}

// Pull makes ref held when a test registered its image with AddImage under "pull:"+ref.
func (e *Engine) Pull(ctx context.Context, ref string, _ engine.Auth) error {
	if e.OnPull != nil {
		if err := e.OnPull(ctx, ref); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return errDown()
	}
	id, ok := e.images["pull:"+ref]
	if !ok {
		return fmt.Errorf("pull %s: manifest unknown", ref)
	}
	e.images[ref] = id
	return nil
}

// Tag points target at what source names.
func (e *Engine) Tag(ctx context.Context, source, target string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return errDown()
	}
	id, ok := e.images[source]
	if !ok {
		if !strings.HasPrefix(source, "sha256:") {
			return fmt.Errorf("No such image: %s: %w", source, cerrdefs.ErrNotFound)
		}
		id = source
	}
	e.images[target] = id
	e.ops = append(e.ops, "tag "+target)
	return nil
}

// RemoveImageIfUnused removes nothing: the fake keeps images.
func (e *Engine) RemoveImageIfUnused(ctx context.Context, id string) (bool, error) { return false, nil }

// Inspect describes a container by ID or name.
func (e *Engine) Inspect(ctx context.Context, ref string) (engine.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(ref)
	if err != nil {
		return engine.Container{}, err
	}
	return summary(c), nil
}

// List returns the containers labelled label=value (any value for ""), sorted by name.
func (e *Engine) List(ctx context.Context, label, value string) ([]engine.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ListCalls++
	if e.down {
		return nil, errDown()
	}
	var out []engine.Container
	for _, c := range e.containers {
		if v, ok := c.Labels[label]; ok && (value == "" || v == value) {
			out = append(out, summary(c))
		}
	}
	slices.SortFunc(out, func(a, b engine.Container) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// CreateReplacement creates a stopped copy of oldID on image under name, labelled as hookd's.
func (e *Engine) CreateReplacement(ctx context.Context, oldID, image, name string) (string, error) {
	return e.CreateDependent(ctx, oldID, image, name, nil)
}

// CreateBeside is CreateReplacement; the fake has no networks to alias on.
func (e *Engine) CreateBeside(ctx context.Context, oldID, image, name, _ string) (string, error) {
	return e.CreateDependent(ctx, oldID, image, name, nil)
}

// CreateDependent is CreateReplacement with the copy's Joins moved from old providers to new
// ones; image "" keeps the old container's.
func (e *Engine) CreateDependent(ctx context.Context, oldID, image, name string, providers map[string]string) (string, error) {
	if e.OnCreate != nil {
		if err := e.OnCreate(oldID, image, name); err != nil {
			return "", err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old, err := e.get(oldID)
	if err != nil {
		return "", err
	}
	if e.find(name) != nil {
		return "", fmt.Errorf("Conflict. The container name %q is already in use: %w", "/"+name, cerrdefs.ErrConflict)
	}
	e.seq++
	labels := maps.Clone(old.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[engine.LabelReplaces] = old.ID
	imageID := e.images[image]
	if image == "" {
		image, imageID = old.Image, old.ImageID
	}
	c := &Container{ID: fmt.Sprintf("%064d", e.seq), Name: name, Image: image, ImageID: imageID, Labels: labels, AutoRemove: old.AutoRemove, Exclusive: old.Exclusive}
	for kind, id := range old.Joins {
		if c.Joins == nil {
			c.Joins = map[string]string{}
		}
		c.Joins[kind] = id
		if n, ok := providers[id]; ok {
			c.Joins[kind] = n
		}
	}
	e.containers[c.ID] = c
	e.log("create", c)
	return c.ID, nil
}

// change runs OnChange for ref, with the lock released.
func (e *Engine) change(op, ref string) error {
	if e.OnChange == nil {
		return nil
	}
	e.mu.Lock()
	c := e.find(ref)
	var snapshot Container
	if c != nil {
		snapshot = *c
	}
	e.mu.Unlock()
	if c == nil {
		return nil
	}
	return e.OnChange(op, snapshot)
}

// Rename renames a container; a name in use is a conflict.
func (e *Engine) Rename(ctx context.Context, id, name string) error {
	if err := e.change("rename", id); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if other := e.find(name); other != nil && other != c {
		return fmt.Errorf("Conflict. The container name %q is already in use: %w", "/"+name, cerrdefs.ErrConflict)
	}
	e.log("rename "+c.Name+" →", &Container{Name: name})
	c.Name = name
	return nil
}

// Stop stops a container; a stopped one stays stopped.
func (e *Engine) Stop(ctx context.Context, id string) error {
	if err := e.change("stop", id); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return err
	}
	c.Running, c.Paused = false, false
	// What the engine does to the containers sharing its namespaces: a pid namespace dies with
	// its first process, a network namespace is torn down under those still running in it.
	for _, d := range e.containers {
		switch {
		case !d.Running:
		case d.Joins["pid"] == c.ID:
			d.Running = false
		case slices.Contains(slices.Collect(maps.Values(d.Joins)), c.ID):
			d.Stale = true
		}
	}
	e.log("stop", c)
	return nil
}

// Start starts a container after OnStart agrees.
func (e *Engine) Start(ctx context.Context, id string) error {
	e.mu.Lock()
	c, err := e.get(id)
	var snapshot Container
	if err == nil {
		snapshot = *c
	}
	e.mu.Unlock()
	if err != nil {
		return err
	}
	if e.OnStart != nil {
		if err := e.OnStart(snapshot); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, err = e.get(id); err != nil {
		return err
	}
	for _, p := range c.Joins {
		if pc, ok := e.containers[p]; !ok || !pc.Running {
			return fmt.Errorf("cannot join network of a non running container: %s", p)
		}
	}
	c.Running = true
	c.Stale = false
	e.log("start", c)
	return nil
}

// Restart stops and starts a container; it joins its providers' namespaces afresh.
func (e *Engine) Restart(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return err
	}
	for _, p := range c.Joins {
		if pc, ok := e.containers[p]; !ok || !pc.Running {
			return fmt.Errorf("cannot join network of a non running container: %s", p)
		}
	}
	c.Running, c.Paused, c.Stale = true, false, false
	e.log("restart", c)
	return nil
}

// Remove force-removes a container; a missing one is not an error, as with the engine adapter.
func (e *Engine) Remove(ctx context.Context, id string) error {
	if err := e.change("remove", id); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if engine.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	delete(e.containers, c.ID)
	e.log("remove", c)
	return nil
}

// State reads a container's run state, after OnState had its say.
func (e *Engine) State(ctx context.Context, id string) (engine.State, error) {
	e.mu.Lock()
	c, err := e.get(id)
	e.mu.Unlock()
	if err != nil {
		return engine.State{}, err
	}
	if e.OnState != nil {
		e.mu.Lock()
		cc := *c
		e.mu.Unlock()
		if err := e.OnState(&cc); err != nil {
			return engine.State{}, err
		}
		e.mu.Lock()
		if cur, ok := e.containers[cc.ID]; ok {
			*cur = cc
		}
		e.mu.Unlock()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, err = e.get(id); err != nil {
		return engine.State{}, err
	}
	st := engine.State{Running: c.Running, Status: "exited", Health: c.Health, ExitCode: c.ExitCode, RestartCount: c.RestartCount}
	switch {
	case c.Paused:
		st.Status = "paused"
	case c.Running:
		st.Status = "running"
	}
	return st, nil
}

// ExitSince reports the container's StopRequested flag, and its LastExit code when one is set.
func (e *Engine) ExitSince(ctx context.Context, id string, since time.Time) (engine.Exit, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return engine.Exit{}, err
	}
	return engine.Exit{Requested: c.StopRequested, Died: c.LastExit != nil, Code: derefInt(c.LastExit)}, nil
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// Joining returns the containers whose Joins name one of ids.
func (e *Engine) Joining(ctx context.Context, ids []string) ([]engine.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return nil, errDown()
	}
	var out []engine.Container
	for _, c := range e.containers {
		for _, id := range c.Joins {
			if slices.Contains(ids, id) {
				out = append(out, summary(c))
				break
			}
		}
	}
	return out, nil
}

// SelfID returns what SetSelf named.
func (e *Engine) SelfID(ctx context.Context) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.self
}
