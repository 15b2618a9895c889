package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// Container is what hookd needs to know about a container.
type Container struct {
	ID      string
	Name    string // without the leading "/"
	Image   string // Config.Image: the reference it was created from
	ImageID string
	Running bool
	State   string // created, running, paused, restarting, removing, exited, dead
	Labels  map[string]string
	// AutoRemove is set for `--rm` containers: the engine deletes them when they stop.
	AutoRemove bool
	// Joins maps "network", "pid" and "ipc" to the ID of the container whose namespace this
	// one shares (`--network container:X`, compose's `network_mode: service:X`).
	Joins map[string]string
	// Exclusive says why a second copy of this container could not run beside it (it binds a
	// host port, uses the host's network, or pins an address); "" when one can.
	Exclusive string
}

// List returns every container, running or not, labelled label=value (any
// value when value is ""), sorted by name.
func (e *Engine) List(ctx context.Context, label, value string) ([]Container, error) {
	if value == "" {
		return e.list(ctx, label)
	}
	return e.list(ctx, label+"="+value)
}

// Joining returns every container, running or not, that shares a namespace of one of ids.
func (e *Engine) Joining(ctx context.Context, ids []string) ([]Container, error) {
	all, err := e.list(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []Container
	for _, c := range all {
		for _, id := range c.Joins {
			if slices.Contains(ids, id) {
				out = append(out, c)
				break
			}
		}
	}
	return out, nil
}

// list inspects each match because the list endpoint shows an image ID
// instead of Config.Image once the tag the container was created from has
// moved, and hookd groups containers by that reference.
func (e *Engine) list(ctx context.Context, labelFilter string) ([]Container, error) {
	opts := container.ListOptions{All: true}
	if labelFilter != "" {
		opts.Filters = filters.NewArgs(filters.Arg("label", labelFilter))
	}
	found, err := e.api(ctx).ContainerList(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list containers %s: %w", labelFilter, err)
	}
	out := make([]Container, 0, len(found))
	for _, s := range found {
		c, err := e.Inspect(ctx, s.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Inspect describes one container, by ID or name.
func (e *Engine) Inspect(ctx context.Context, id string) (Container, error) {
	c, err := e.api(ctx).ContainerInspect(ctx, id)
	if err != nil {
		return Container{}, fmt.Errorf("inspect container %s: %w", id, err)
	}
	return summarise(c), nil
}

func summarise(c container.InspectResponse) Container {
	out := Container{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), ImageID: c.Image}
	if c.Config != nil {
		out.Image = c.Config.Image
		out.Labels = c.Config.Labels
	}
	if hc := c.HostConfig; hc != nil {
		out.AutoRemove = hc.AutoRemove
		for kind, id := range map[string]string{"network": hc.NetworkMode.ConnectedContainer(), "pid": hc.PidMode.Container(), "ipc": hc.IpcMode.Container()} {
			if id != "" {
				if out.Joins == nil {
					out.Joins = map[string]string{}
				}
				out.Joins[kind] = id
			}
		}
	}
	out.Exclusive = exclusive(c)
	if c.State != nil {
		out.Running = c.State.Running
		out.State = string(c.State.Status)
	}
	return out
}

// exclusive says why two copies of c cannot run at once: both would claim a host port, the
// host's network, a static address or a pinned MAC address.
func exclusive(c container.InspectResponse) string {
	if hc := c.HostConfig; hc != nil {
		if hc.NetworkMode.IsHost() {
			return "uses the host's network"
		}
		ports := slices.Sorted(maps.Keys(hc.PortBindings))
		for _, p := range ports {
			for _, b := range hc.PortBindings[p] {
				if b.HostPort != "" {
					return "publishes host port " + b.HostPort + " (" + string(p) + ")"
				}
			}
		}
	}
	if c.Config != nil && c.Config.MacAddress != "" { //nolint:staticcheck // the only place API < 1.44 keeps a pinned MAC
		return "pins MAC address " + c.Config.MacAddress
	}
	if c.NetworkSettings != nil {
		for _, n := range slices.Sorted(maps.Keys(c.NetworkSettings.Networks)) {
			es := c.NetworkSettings.Networks[n]
			if es == nil || es.IPAMConfig == nil {
				continue
			}
			if ip := es.IPAMConfig.IPv4Address + es.IPAMConfig.IPv6Address; ip != "" {
				return "pins its address on network " + n
			}
		}
	}
	return ""
}

// Stop stops the container with its own stop signal and stop timeout (the
// engine's default of 10 s when it has none). Stopping a stopped container
// does nothing.
func (e *Engine) Stop(ctx context.Context, id string) error {
	if err := e.api(ctx).ContainerStop(ctx, id, container.StopOptions{}); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return nil
}

// Restart stops (with its own signal and timeout) and starts the container: one that shares
// another's namespace joins it afresh after that one was restarted.
func (e *Engine) Restart(ctx context.Context, id string) error {
	if err := e.api(ctx).ContainerRestart(ctx, id, container.StopOptions{}); err != nil {
		return fmt.Errorf("restart container %s: %w", id, err)
	}
	return nil
}

// Rename gives the container a new name.
func (e *Engine) Rename(ctx context.Context, id, name string) error {
	if err := e.api(ctx).ContainerRename(ctx, id, name); err != nil {
		return fmt.Errorf("rename container %s to %s: %w", id, name, err)
	}
	return nil
}

// Start starts a created or stopped container.
func (e *Engine) Start(ctx context.Context, id string) error {
	if err := e.api(ctx).ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// Remove force-removes the container but never its volumes: anonymous
// volumes live on in the replacement. A missing container is not an error.
func (e *Engine) Remove(ctx context.Context, id string) error {
	err := e.api(ctx).ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: false})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// State is a container's run state, for health gates.
type State struct {
	Running      bool
	Status       string
	Health       string // starting, healthy, unhealthy; "" without a healthcheck
	ExitCode     int
	RestartCount int
	Error        string
}

// State reads the container's run state.
func (e *Engine) State(ctx context.Context, id string) (State, error) {
	c, err := e.api(ctx).ContainerInspect(ctx, id)
	if err != nil {
		return State{}, fmt.Errorf("container state %s: %w", id, err)
	}
	st := State{RestartCount: c.RestartCount}
	if s := c.State; s != nil {
		st.Running = s.Running
		st.Status = string(s.Status)
		st.ExitCode = s.ExitCode
		st.Error = s.Error
		if s.Health != nil {
			st.Health = string(s.Health.Status)
		}
	}
	return st, nil
}

// SelfID returns the ID of the container this process runs in, or "" when
// it runs outside a container of this engine. The engine bind-mounts
// /etc/hostname, /etc/hosts and /etc/resolv.conf from its containers/<id>/
// directory, which /proc/self/mountinfo shows; the hostname, which the
// engine defaults to the short ID, is the fallback.
func (e *Engine) SelfID(ctx context.Context) string {
	// A process does not move between containers: once the engine has answered, the answer
	// holds for the life of the process.
	e.selfMu.Lock()
	self, known := e.self, e.selfKnown
	e.selfMu.Unlock()
	if known {
		return self
	}
	// Asked outside the lock, so a caller whose engine call hangs holds up only itself; two
	// callers at once both ask and agree.
	remember := func(id string, known bool) string {
		e.selfMu.Lock()
		defer e.selfMu.Unlock()
		e.self, e.selfKnown = id, known
		return id
	}
	var candidates []string
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		candidates = containerIDsFromMountinfo(f)
		f.Close()
	}
	if h, err := os.Hostname(); err == nil && hexID.MatchString(h) {
		candidates = append(candidates, h)
	}
	known = true
	for _, id := range candidates {
		c, err := e.api(ctx).ContainerInspect(ctx, id)
		// Inspect also accepts names and ID prefixes; only an ID that
		// starts with the candidate counts.
		if err == nil && strings.HasPrefix(c.ID, id) {
			return remember(c.ID, true)
		}
		if err != nil && !cerrdefs.IsNotFound(err) {
			known = false // the engine did not answer: ask again next time
		}
	}
	return remember("", known)
}

var (
	hexID          = regexp.MustCompile(`^[0-9a-f]{12,64}$`)
	containersPath = regexp.MustCompile(`/containers/([0-9a-f]{64})/`)
)

// containerIDsFromMountinfo finds the container IDs in the roots of the
// files the engine bind-mounts into a container. On the host itself these
// mount points do not appear, while the engine's own per-container mounts
// (shm) do, which is why the mount point is checked too.
func containerIDsFromMountinfo(r io.Reader) []string {
	var ids []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		root, mountPoint := fields[3], fields[4]
		switch mountPoint {
		case "/etc/hostname", "/etc/hosts", "/etc/resolv.conf":
		default:
			continue
		}
		if m := containersPath.FindStringSubmatch(root); m != nil && !slices.Contains(ids, m[1]) {
			ids = append(ids, m[1])
		}
	}
	return ids
}
