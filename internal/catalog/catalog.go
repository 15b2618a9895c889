// Package catalog knows hookd's runtimes: the configured ones, or in zero-config mode the
// groups of containers labelled hookd.enable=true, one runtime per image reference.
package catalog

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/engine"
)

const (
	// LabelRuntime marks a container as a member of the named runtime.
	LabelRuntime = "hookd.runtime"
	// LabelEnable opts a container in when no runtimes are configured.
	LabelEnable = "hookd.enable"
	// TempSuffix and AsideSuffix end the names of hookd's own containers during a rollout (the
	// replacement being made, the old one set aside); they are never members of a runtime.
	TempSuffix  = "-hookd-new"
	AsideSuffix = "-hookd-old"
	// labelSwarmTask is on the containers Swarm runs for a service's tasks.
	labelSwarmTask = "com.docker.swarm.task.id"
)

// listTimeout bounds one zero-config listing, so a hung engine cannot hold deliveries past
// GitHub's 10 s.
const listTimeout = 5 * time.Second

// Lister is the part of the engine the catalog asks in zero-config mode.
type Lister interface {
	List(ctx context.Context, label, value string) ([]engine.Container, error)
}

// Catalog maps images to runtimes and runtimes to their containers.
type Catalog struct {
	lister     Lister
	zeroConfig bool
	maxAge     time.Duration

	listing    chan struct{} // held by the one caller asking the engine; a context ends the wait
	mu         sync.Mutex
	byName     map[string]hookd.Runtime
	byImage    map[string][]string
	byRepo     map[string][]string // "host/repo" → the runtimes following any of its tags
	discovered time.Time
	// listFailed is when the last listing failed, and why: with no view yet, callers within a
	// second get that answer instead of asking an engine that is away once more each.
	listFailed time.Time
	listErr    error
}

// New returns a catalog of the configured runtimes; with none, it discovers them through lister,
// re-reading the engine when its view is older than maxAge.
func New(runtimes []hookd.Runtime, lister Lister, maxAge time.Duration) *Catalog {
	return newCatalog(runtimes, len(runtimes) == 0, lister, maxAge)
}

// Configured returns a catalog of exactly runtimes, even none: with runtimes configured, an
// engine none of them lives on has none, never ones discovered from labels.
func Configured(runtimes []hookd.Runtime, lister Lister, maxAge time.Duration) *Catalog {
	return newCatalog(runtimes, false, lister, maxAge)
}

func newCatalog(runtimes []hookd.Runtime, zeroConfig bool, lister Lister, maxAge time.Duration) *Catalog {
	c := &Catalog{lister: lister, zeroConfig: zeroConfig, maxAge: maxAge, listing: make(chan struct{}, 1)}
	c.set(runtimes)
	return c
}

// ZeroConfig reports whether runtimes are discovered from labels.
func (c *Catalog) ZeroConfig() bool { return c.zeroConfig }

func (c *Catalog) set(runtimes []hookd.Runtime) {
	c.byName = make(map[string]hookd.Runtime, len(runtimes))
	c.byImage = make(map[string][]string, len(runtimes))
	c.byRepo = make(map[string][]string, len(runtimes))
	for _, r := range runtimes {
		c.byName[r.Name] = r
		c.byImage[r.Image] = append(c.byImage[r.Image], r.Name)
		c.byRepo[r.Repository()] = append(c.byRepo[r.Repository()], r.Name)
	}
}

// Match returns the names of the runtimes a push of image ("host/repo:tag", normalized)
// concerns: those following image, then those following another tag of its repository. A push
// of several tags can arrive as one delivery naming one of them, and each runtime resolves its
// own tag at the registry, so a runtime whose tag did not move ends up to date.
func (c *Catalog) Match(ctx context.Context, image string) ([]string, error) {
	repo := image
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		repo = image[:i]
	}
	return find(ctx, c, func() ([]string, bool) {
		names := slices.Clone(c.byImage[image])
		for _, n := range c.byRepo[repo] {
			if c.byName[n].Image != image {
				names = append(names, n)
			}
		}
		return names, len(names) > 0
	})
}

// Get returns the runtime called name.
func (c *Catalog) Get(ctx context.Context, name string) (hookd.Runtime, bool, error) {
	r, err := find(ctx, c, func() (hookd.Runtime, bool) {
		r, ok := c.byName[name]
		return r, ok
	})
	return r, r.Name != "", err
}

// find looks something up; in zero-config mode a miss re-reads the engine once, so a container
// labelled a moment ago need not wait for the view to age.
func find[T any](ctx context.Context, c *Catalog, lookup func() (T, bool)) (T, error) {
	var zero T
	for _, force := range []bool{false, true} {
		if err := c.refresh(ctx, force); err != nil {
			return zero, err
		}
		c.mu.Lock()
		v, ok := lookup()
		c.mu.Unlock()
		if ok || !c.zeroConfig {
			return v, nil
		}
	}
	return zero, nil
}

// All returns every runtime, sorted by name.
func (c *Catalog) All(ctx context.Context) ([]hookd.Runtime, error) {
	if err := c.refresh(ctx, false); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]hookd.Runtime, 0, len(c.byName))
	for _, r := range c.byName {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Names returns every runtime name, sorted.
func (c *Catalog) Names(ctx context.Context) ([]string, error) {
	all, err := c.All(ctx)
	names := make([]string, len(all))
	for i, r := range all {
		names[i] = r.Name
	}
	return names, err
}

// Members returns the containers of runtime r, running or stopped; exact label match.
func (c *Catalog) Members(ctx context.Context, r hookd.Runtime) ([]engine.Container, error) {
	var all []engine.Container
	var err error
	if c.zeroConfig {
		all, err = c.lister.List(ctx, LabelEnable, "true")
	} else {
		all, err = c.lister.List(ctx, LabelRuntime, r.Name)
	}
	if err != nil {
		return nil, err
	}
	return c.group(all)[r.Name], nil
}

// MembersByRuntime returns every runtime's containers from one listing of the engine, for a
// pass over all runtimes.
func (c *Catalog) MembersByRuntime(ctx context.Context) (map[string][]engine.Container, error) {
	var all []engine.Container
	var err error
	if c.zeroConfig {
		all, err = c.lister.List(ctx, LabelEnable, "true")
	} else {
		all, err = c.lister.List(ctx, LabelRuntime, "")
	}
	if err != nil {
		return nil, err
	}
	return c.group(all), nil
}

// group sorts listed containers into runtimes: by label, or in zero-config mode by the image
// reference they were created from. hookd's own temporary containers belong to none.
func (c *Catalog) group(all []engine.Container) map[string][]engine.Container {
	out := map[string][]engine.Container{}
	for _, ct := range all {
		if strings.HasSuffix(ct.Name, TempSuffix) || strings.HasSuffix(ct.Name, AsideSuffix) {
			continue
		}
		if ct.Labels[labelSwarmTask] != "" {
			continue // a Swarm task's container: its service is the member, Swarm replaces it
		}
		name := ct.Labels[LabelRuntime]
		if c.zeroConfig {
			img, err := config.NormalizeImage(ct.Image)
			if err != nil {
				continue
			}
			name = img // a zero-config runtime is named after its image
		}
		out[name] = append(out[name], ct)
	}
	return out
}

// refresh re-reads the labelled containers in zero-config mode when the view is stale, or
// when force is set and the view is older than a second (to bound engine calls under a flood).
// The engine is asked outside mu, so lookups never wait on it; listing lets one caller ask at a
// time while the others wait for its answer, or for their context to end.
func (c *Catalog) refresh(ctx context.Context, force bool) error {
	if !c.zeroConfig {
		return nil
	}
	c.mu.Lock()
	discovered := c.discovered
	c.mu.Unlock()
	select {
	case c.listing <- struct{}{}:
	case <-ctx.Done():
		if !discovered.IsZero() {
			return nil // a stale view beats none while the engine is slow
		}
		return fmt.Errorf("discover runtimes: %w", ctx.Err())
	}
	defer func() { <-c.listing }()
	c.mu.Lock()
	discovered, failed, failErr := c.discovered, c.listFailed, c.listErr
	c.mu.Unlock()
	age := time.Since(discovered)
	if age < c.maxAge && (!force || age < time.Second) {
		return nil
	}
	if discovered.IsZero() && time.Since(failed) < time.Second {
		return failErr
	}
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	cts, err := c.lister.List(lctx, LabelEnable, "true")
	if err != nil {
		if !discovered.IsZero() {
			return nil // a stale view beats none while the engine is briefly away
		}
		err = fmt.Errorf("discover runtimes: %w", err)
		c.mu.Lock()
		c.listFailed, c.listErr = time.Now(), err
		c.mu.Unlock()
		return err
	}
	var runtimes []hookd.Runtime
	seen := map[string]bool{}
	for _, ct := range cts {
		img, err := config.NormalizeImage(ct.Image)
		if err != nil || seen[img] {
			continue // pinned by digest or not a followable reference
		}
		seen[img] = true
		runtimes = append(runtimes, hookd.NewRuntime(img, img))
	}
	for _, img := range c.discoverServices(lctx) {
		if !seen[img] {
			seen[img] = true
			runtimes = append(runtimes, hookd.NewRuntime(img, img))
		}
	}
	c.mu.Lock()
	c.set(runtimes)
	c.discovered = time.Now()
	c.mu.Unlock()
	return nil
}
