package engine

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/go-connections/nat"
)

// CreateReplacement creates, without starting it, a container named name
// from image (a reference the engine holds) that is given everything the old
// container was given: its Config overrides, its HostConfig, its networks
// with aliases and static addresses, and its volumes (anonymous ones by
// name, so their data carries over). What the old image supplied and the
// container did not override is left unset, so the new image's defaults
// apply. On failure nothing is left behind.
func (e *Engine) CreateReplacement(ctx context.Context, oldID, image, name string) (string, error) {
	return e.createReplacement(ctx, oldID, image, name, nil, "")
}

// CreateBeside is CreateReplacement for a replacement that is started beside the old
// container, before it takes the name: it also holds the old one's name (nameAlias) as a
// network alias on each user-defined network, so that name resolves to it from its start and
// after the swap. The engine's name record does not follow a rename of a running container
// (measured on 20.10: the old name keeps resolving to the old address, even after it stops), so
// the swap cannot be left to it.
func (e *Engine) CreateBeside(ctx context.Context, oldID, image, name, nameAlias string) (string, error) {
	return e.createReplacement(ctx, oldID, image, name, nil, nameAlias)
}

// CreateDependent is CreateReplacement for a container that shares the network, pid or ipc
// namespace of another (`container:<id>`): providers maps each old provider's ID to its
// replacement's, so the copy joins the new one. With image "" it keeps its own image, under the
// reference it was created from while that still names the same image.
func (e *Engine) CreateDependent(ctx context.Context, oldID, image, name string, providers map[string]string) (string, error) {
	return e.createReplacement(ctx, oldID, image, name, providers, "")
}

func (e *Engine) createReplacement(ctx context.Context, oldID, image, name string, providers map[string]string, nameAlias string) (string, error) {
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("create replacement %s for %s: %w", name, oldID, err)
	}
	old, err := e.api(ctx).ContainerInspect(ctx, oldID)
	if err != nil {
		return fail(fmt.Errorf("inspect: %w", err))
	}
	if old.Config == nil || old.HostConfig == nil {
		return fail(errors.New("inspect: no config"))
	}
	if image == "" {
		image = old.Image
		if cur, err := e.api(ctx).ImageInspect(ctx, old.Config.Image); err == nil && cur.ID == old.Image {
			image = old.Config.Image
		}
	}
	// Without the old image hookd cannot tell the container's own settings
	// from the image's defaults; guessing either way could break the new
	// image, so this is an error. (The engine keeps an image while a
	// container uses it, so this is rare.)
	oldImage, err := e.api(ctx).ImageInspect(ctx, old.Image)
	if err != nil {
		return fail(fmt.Errorf("inspect old image %s: %w", old.Image, err))
	}
	defaults := imageDefaults{}
	if c := oldImage.Config; c != nil {
		defaults = imageDefaults{
			Env: c.Env, Cmd: c.Cmd, Entrypoint: c.Entrypoint, Healthcheck: c.Healthcheck,
			WorkingDir: c.WorkingDir, User: c.User, StopSignal: c.StopSignal,
			ExposedPorts: c.ExposedPorts, Volumes: c.Volumes, Labels: c.Labels,
		}
	}
	hostHostname := ""
	if old.HostConfig.NetworkMode.IsHost() {
		// With the host's network the engine defaults the hostname to its own.
		if info, err := e.api(ctx).Info(ctx); err == nil {
			hostHostname = info.Name
		}
	}
	cfg := replacementConfig(old, defaults, image, hostHostname)
	if err := keepAsIs(cfg, old.Config); err != nil {
		return fail(err)
	}
	if recorded := cfg.Labels[LabelComposeImage]; recorded != "" {
		newImage, err := e.api(ctx).ImageInspect(ctx, image)
		if err != nil {
			return fail(fmt.Errorf("inspect new image %s: %w", image, err))
		}
		cfg.Labels[LabelComposeImage] = composeImage(recorded, oldImage.ID, oldImage.RepoDigests, newImage.ID, newImage.RepoDigests)
	}
	// From API 1.44 the engine keeps a MAC per network endpoint (inspect shows the generated
	// ones there too) and Config.MacAddress is deprecated; before, Config.MacAddress held
	// only a pinned one. The version is the negotiated one: the inspect above negotiated it.
	endpointMACs := !versions.LessThan(e.api(ctx).ClientVersion(), "1.44")
	if endpointMACs {
		cfg.MacAddress = "" //nolint:staticcheck // superseded by the endpoints' MACs
	}

	hc, err := e.replacementHostConfig(ctx, old)
	if err != nil {
		return fail(err)
	}
	if id, ok := providers[hc.NetworkMode.ConnectedContainer()]; ok {
		hc.NetworkMode = container.NetworkMode("container:" + id)
	}
	if id, ok := providers[hc.PidMode.Container()]; ok {
		hc.PidMode = container.PidMode("container:" + id)
	}
	if id, ok := providers[hc.IpcMode.Container()]; ok {
		hc.IpcMode = container.IpcMode("container:" + id)
	}
	first, rest := replacementEndpoints(old, hc, endpointMACs)
	if nameAlias != "" && first != nil {
		for _, ep := range append([]endpoint{*first}, rest...) {
			if container.NetworkMode(ep.network).IsUserDefined() && !slices.Contains(ep.settings.Aliases, nameAlias) {
				ep.settings.Aliases = append(ep.settings.Aliases, nameAlias)
			}
		}
	}
	var netCfg *network.NetworkingConfig
	if first != nil {
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{first.network: first.settings}}
	}

	created, err := e.api(ctx).ContainerCreate(ctx, cfg, hc, netCfg, nil, name)
	if err != nil {
		if ctx.Err() != nil {
			// The engine may have created it after the request was abandoned.
			if rmErr := e.removeAbandoned(ctx, name, image, old.ID); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("clean up: %w", rmErr))
			}
		}
		return fail(err)
	}
	// API 1.41 takes a single endpoint at create; the others are connected
	// before the first start, which works on every API version.
	for _, ep := range rest {
		if err := e.api(ctx).NetworkConnect(ctx, ep.network, created.ID, ep.settings); err != nil {
			err = fmt.Errorf("connect network %s: %w", ep.network, err)
			if rmErr := e.removeHalfMade(ctx, created.ID); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("clean up: %w", rmErr))
			}
			return fail(err)
		}
	}
	if err := e.copyFiles(ctx, old.ID, created.ID, old.Config.Labels[LabelCopy]); err != nil {
		if rmErr := e.removeHalfMade(ctx, created.ID); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", rmErr))
		}
		return fail(err)
	}
	return created.ID, nil
}

// reroot copies the tar archive from r to w with dir prefixed to every name.
func reroot(r io.Reader, w io.Writer, dir string) error {
	tr, tw := tar.NewReader(r), tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		h.Name = path.Join(dir, h.Name)
		if h.Typeflag == tar.TypeLink {
			h.Linkname = path.Join(dir, h.Linkname)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// ErrLabel marks a failure that a container's hookd label caused (hookd.keep, hookd.copy): the
// user's to fix, never the new image's fault.
var ErrLabel = errors.New("label")

// LabelCopy names, comma-separated, files or directories that were put into the container
// after it was created — compose v2 copies inline `configs:` and `secrets:` (content or
// environment) in that way, and inspect cannot show them — to copy from the old container into
// its replacement before that starts.
const LabelCopy = "hookd.copy"

// copyFiles copies the paths listed in list from one container into the other, with their
// owners and modes.
func (e *Engine) copyFiles(ctx context.Context, fromID, toID, list string) error {
	for _, p := range strings.Split(list, ",") {
		p = path.Clean(strings.TrimSpace(p))
		if p == "." {
			continue
		}
		if !path.IsAbs(p) || p == "/" {
			return fmt.Errorf("%w %s: %q is not an absolute path below /", ErrLabel, LabelCopy, p)
		}
		rc, _, err := e.api(ctx).CopyFromContainer(ctx, fromID, p)
		if err != nil {
			return fmt.Errorf("%w %s: copy %s out of the old container: %w", ErrLabel, LabelCopy, p, err)
		}
		// The archive names the path by its last element; extracted at / under its full path,
		// the directories above it need not exist in the new image.
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(reroot(rc, pw, strings.TrimPrefix(path.Dir(p), "/"))) }()
		err = e.api(ctx).CopyToContainer(ctx, toID, "/", pr, container.CopyToContainerOptions{CopyUIDGID: true})
		pr.CloseWithError(err)
		rc.Close()
		if err != nil {
			return fmt.Errorf("%w %s: copy %s into the replacement: %w", ErrLabel, LabelCopy, p, err)
		}
	}
	return nil
}

// removeHalfMade removes a replacement that could not be completed, even when
// ctx is already done.
func (e *Engine) removeHalfMade(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return e.Remove(ctx, id)
}

// removeAbandoned removes the container name if it is a never-started
// replacement from image (and not the old container itself).
func (e *Engine) removeAbandoned(ctx context.Context, name, image, oldID string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	c, err := e.api(ctx).ContainerInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", name, err)
	}
	if c.ID == oldID || c.Config == nil || c.Config.Image != image || c.State == nil || c.State.Status != "created" {
		return nil // not ours
	}
	return e.Remove(ctx, c.ID)
}

// imageDefaults are the parts of an image's config that become a
// container's settings unless the container overrides them.
type imageDefaults struct {
	Env          []string
	Cmd          []string
	Entrypoint   []string
	Healthcheck  *container.HealthConfig
	WorkingDir   string
	User         string
	StopSignal   string
	ExposedPorts map[string]struct{}
	Volumes      map[string]struct{}
	Labels       map[string]string
}

// hookdLabelPrefix marks labels hookd itself relies on (membership,
// opt-in); they are always kept, even when the old image supplied them.
const hookdLabelPrefix = "hookd."

func replacementConfig(old container.InspectResponse, img imageDefaults, image, hostHostname string) *container.Config {
	oc := old.Config
	cfg := &container.Config{
		Domainname:      oc.Domainname,
		AttachStdin:     oc.AttachStdin,
		AttachStdout:    oc.AttachStdout,
		AttachStderr:    oc.AttachStderr,
		Tty:             oc.Tty,
		OpenStdin:       oc.OpenStdin,
		StdinOnce:       oc.StdinOnce,
		Image:           image,
		NetworkDisabled: oc.NetworkDisabled,
		MacAddress:      oc.MacAddress, //nolint:staticcheck // the only place API < 1.44 keeps a pinned MAC
		StopTimeout:     oc.StopTimeout,
	}
	mode := old.HostConfig.NetworkMode
	// The engine sets the hostname to the short ID (or, with the host's
	// network, to the host's name) when none was given; copying that would
	// pin the old ID. With another container's network a hostname is refused.
	if h := oc.Hostname; h != "" && !mode.IsContainer() && h != shortID(old.ID) && !(mode.IsHost() && h == hostHostname) {
		cfg.Hostname = h
	}
	if oc.User != img.User {
		cfg.User = oc.User
	}
	if oc.WorkingDir != img.WorkingDir {
		cfg.WorkingDir = oc.WorkingDir
	}
	if oc.StopSignal != img.StopSignal {
		cfg.StopSignal = oc.StopSignal
	}
	cfg.Env = envOverrides(oc.Env, img.Env)
	cfg.Entrypoint, cfg.Cmd = commandOverrides(oc.Entrypoint, oc.Cmd, img.Entrypoint, img.Cmd)
	cfg.Healthcheck = healthOverrides(oc.Healthcheck, img.Healthcheck)
	if ports := setBeyond(portKeys(oc.ExposedPorts), img.ExposedPorts); len(ports) > 0 && !mode.IsContainer() {
		cfg.ExposedPorts = nat.PortSet{}
		for p := range ports {
			cfg.ExposedPorts[nat.Port(p)] = struct{}{}
		}
	}
	if vols := setBeyond(oc.Volumes, img.Volumes); len(vols) > 0 {
		cfg.Volumes = vols
	}
	cfg.Labels = labelOverrides(oc.Labels, img.Labels)
	cfg.Labels[LabelReplaces] = old.ID
	return cfg
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// envOverrides drops the entries that are exactly the old image's, so the
// new image's values apply; the engine appends the new image's entries for
// keys the container does not set.
func envOverrides(env, imageEnv []string) []string {
	var out []string
	for _, kv := range env {
		if !slices.Contains(imageEnv, kv) {
			out = append(out, kv)
		}
	}
	return out
}

// commandOverrides returns the Entrypoint and Cmd to create with. The engine
// applies the image's Cmd only when the container sets no Entrypoint (or an
// empty one) and no Cmd, and the image's Entrypoint only when the container
// sets none at all (nil, as opposed to empty).
func commandOverrides(ent, cmd, imageEnt, imageCmd []string) (strslice.StrSlice, strslice.StrSlice) {
	entSet := !slices.Equal(ent, imageEnt)
	// An empty Cmd beside a non-empty image Cmd means the engine did not
	// apply the image's Cmd: the Entrypoint was given explicitly, even if it
	// equals the image's.
	if !entSet && len(cmd) == 0 && len(imageCmd) > 0 && len(ent) > 0 {
		entSet = true
	}
	if !entSet {
		if slices.Equal(cmd, imageCmd) {
			return nil, nil
		}
		return nil, cmd
	}
	if ent == nil {
		ent = []string{} // empty, not nil: nil would bring back the image's
	}
	if len(ent) == 0 && slices.Equal(cmd, imageCmd) {
		return ent, nil // the engine filled in the image's Cmd
	}
	return ent, cmd
}

// healthOverrides keeps the healthcheck fields the container set itself; the
// engine fills the others from the new image field by field.
func healthOverrides(h, image *container.HealthConfig) *container.HealthConfig {
	if h == nil {
		return nil
	}
	out := *h
	out.Test = slices.Clone(h.Test)
	if image != nil {
		if slices.Equal(out.Test, image.Test) {
			out.Test = nil
		}
		if out.Interval == image.Interval {
			out.Interval = 0
		}
		if out.Timeout == image.Timeout {
			out.Timeout = 0
		}
		if out.StartPeriod == image.StartPeriod {
			out.StartPeriod = 0
		}
		if out.StartInterval == image.StartInterval {
			out.StartInterval = 0
		}
		if out.Retries == image.Retries {
			out.Retries = 0
		}
	}
	if len(out.Test) == 0 && out.Interval == 0 && out.Timeout == 0 && out.StartPeriod == 0 && out.StartInterval == 0 && out.Retries == 0 {
		return nil
	}
	return &out
}

func portKeys(ports nat.PortSet) map[string]struct{} {
	out := map[string]struct{}{}
	for p := range ports {
		out[string(p)] = struct{}{}
	}
	return out
}

// setBeyond returns the members of set that are not in image: the ones the
// container added (the engine merges the new image's in).
func setBeyond(set, image map[string]struct{}) map[string]struct{} {
	out := map[string]struct{}{}
	for k := range set {
		if _, ok := image[k]; !ok {
			out[k] = struct{}{}
		}
	}
	return out
}

// labelOverrides drops labels whose value the old image supplied (the engine
// merges the new image's labels), except hookd's own.
func labelOverrides(labels, image map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range labels {
		if iv, ok := image[k]; ok && iv == v && !strings.HasPrefix(k, hookdLabelPrefix) {
			continue
		}
		out[k] = v
	}
	return out
}

// replacementHostConfig is the old HostConfig, with anonymous volumes turned
// into mounts of the same volumes by name and links in create syntax.
func (e *Engine) replacementHostConfig(ctx context.Context, old container.InspectResponse) (*container.HostConfig, error) {
	hc := *old.HostConfig
	hc.ContainerIDFile = ""
	hc.Links = createLinks(old.HostConfig.Links)

	// Volumes shared from other containers stay VolumesFrom.
	covered := map[string]bool{}
	for _, ref := range old.HostConfig.VolumesFrom {
		from, _, _ := strings.Cut(ref, ":")
		c, err := e.api(ctx).ContainerInspect(ctx, from)
		if err != nil {
			return nil, fmt.Errorf("inspect volumes-from container %s: %w", from, err)
		}
		for _, mp := range c.Mounts {
			covered[mp.Destination] = true
		}
	}
	hc.Binds = nil
	for _, b := range old.HostConfig.Binds {
		dst, anonymous := bindTarget(b)
		if anonymous {
			continue // carried below, by volume name
		}
		hc.Binds = append(hc.Binds, b)
		covered[dst] = true
	}
	volumeAt := map[string]container.MountPoint{}
	for _, mp := range old.Mounts {
		if mp.Type == mount.TypeVolume && mp.Name != "" {
			volumeAt[mp.Destination] = mp
		}
	}
	hc.Mounts = nil
	for _, m := range old.HostConfig.Mounts {
		if m.Type == mount.TypeVolume && m.Source == "" {
			if mp, ok := volumeAt[m.Target]; ok {
				m.Source = mp.Name
			}
		}
		hc.Mounts = append(hc.Mounts, m)
		covered[m.Target] = true
	}
	dests := slices.Sorted(maps.Keys(volumeAt))
	for _, dst := range dests {
		if covered[dst] {
			continue
		}
		mp := volumeAt[dst]
		m := mount.Mount{Type: mount.TypeVolume, Source: mp.Name, Target: dst, ReadOnly: !mp.RW}
		if mp.Driver != "" && mp.Driver != "local" {
			m.VolumeOptions = &mount.VolumeOptions{DriverConfig: &mount.Driver{Name: mp.Driver}}
		}
		hc.Mounts = append(hc.Mounts, m)
	}
	return &hc, nil
}

// bindTarget parses a Binds entry: "src:dst[:mode]", or "dst[:mode]" for an
// anonymous volume (no source: the engine creates a fresh volume from it).
func bindTarget(b string) (dst string, anonymous bool) {
	parts := strings.Split(b, ":")
	switch {
	case len(parts) == 1:
		return parts[0], true
	case len(parts) == 2 && !strings.HasPrefix(parts[1], "/"):
		return parts[0], true // "dst:mode": a target is always absolute
	default:
		return parts[1], false
	}
}

// createLinks turns inspect's "/other:/self/alias" into create's
// "other:alias".
func createLinks(links []string) []string {
	var out []string
	for _, l := range links {
		name, alias, ok := strings.Cut(l, ":")
		if !ok {
			out = append(out, strings.TrimPrefix(l, "/"))
			continue
		}
		out = append(out, strings.TrimPrefix(name, "/")+":"+alias[strings.LastIndex(alias, "/")+1:])
	}
	return out
}

type endpoint struct {
	network  string
	settings *network.EndpointSettings
}

// replacementEndpoints picks the endpoint to create with (the one of the
// network mode) and the ones to connect afterwards, and points hc's network
// mode at the first.
func replacementEndpoints(old container.InspectResponse, hc *container.HostConfig, endpointMACs bool) (*endpoint, []endpoint) {
	mode := hc.NetworkMode
	if mode.IsHost() || mode.IsNone() || mode.IsContainer() || old.NetworkSettings == nil {
		return nil, nil
	}
	nets := old.NetworkSettings.Networks
	names := make([]string, 0, len(nets))
	for n := range nets {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, nil
	}
	primary := mode.NetworkName()
	if mode.IsDefault() {
		primary = network.NetworkBridge
	}
	if _, ok := nets[primary]; !ok {
		// Disconnected from the network it was created on: start from one it
		// is on.
		primary = names[0]
		hc.NetworkMode = container.NetworkMode(primary)
	}
	first := &endpoint{network: primary, settings: endpointSettings(old.ID, primary, nets[primary], endpointMACs)}
	var rest []endpoint
	for _, n := range names {
		if n != primary {
			rest = append(rest, endpoint{network: n, settings: endpointSettings(old.ID, n, nets[n], endpointMACs)})
		}
	}
	return first, rest
}

// endpointSettings keeps the configured part of an endpoint, with its MAC address when the
// API carries MACs per endpoint and the engine did not generate this one.
func endpointSettings(oldID, networkName string, es *network.EndpointSettings, endpointMACs bool) *network.EndpointSettings {
	out := &network.EndpointSettings{}
	if es == nil {
		return out
	}
	if endpointMACs && !generatedMAC(es.MacAddress, es.IPAddress) {
		out.MacAddress = es.MacAddress
	}
	if es.IPAMConfig != nil {
		ipam := *es.IPAMConfig
		ipam.LinkLocalIPs = slices.Clone(es.IPAMConfig.LinkLocalIPs)
		out.IPAMConfig = &ipam
	}
	out.Links = slices.Clone(es.Links)
	out.DriverOpts = maps.Clone(es.DriverOpts)
	out.GwPriority = es.GwPriority
	// The engine adds the short ID as an alias on user-defined networks (and
	// refuses aliases on the default ones).
	if container.NetworkMode(networkName).IsUserDefined() {
		for _, a := range es.Aliases {
			if a != shortID(oldID) && !slices.Contains(out.Aliases, a) {
				out.Aliases = append(out.Aliases, a)
			}
		}
	}
	return out
}

// generatedMAC reports whether the engine made mac up: Docker derives it from the endpoint's
// IPv4 address under the 02:42 prefix. A stopped container has no address to compare, so there
// the prefix decides. (Engines from 28 draw random MACs instead; those are kept, which only
// holds the container to the MAC it had.)
func generatedMAC(mac, ipv4 string) bool {
	mac = strings.ToLower(mac)
	if mac == "" {
		return true
	}
	if !strings.HasPrefix(mac, "02:42:") {
		return false
	}
	ip := net.ParseIP(ipv4).To4()
	if ip == nil {
		return true
	}
	return mac == fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", ip[0], ip[1], ip[2], ip[3])
}

// LabelKeep names, comma-separated, the settings a replacement takes over exactly as the old
// container has them, even where they equal the old image's defaults: inspect cannot tell
// `--entrypoint /app` from an image whose entrypoint is /app, so without it such a setting
// follows the new image.
const LabelKeep = "hookd.keep"

// CheckKeep reports a hookd.keep label that names a setting hookd cannot keep, so a rollout can
// refuse before it changes anything.
func CheckKeep(labels map[string]string) error {
	return keepAsIs(&container.Config{}, &container.Config{Labels: labels})
}

// keepAsIs applies the container's hookd.keep label to cfg.
func keepAsIs(cfg *container.Config, oc *container.Config) error {
	list := strings.TrimSpace(oc.Labels[LabelKeep])
	if list == "" {
		return nil
	}
	for _, field := range strings.Split(list, ",") {
		switch strings.TrimSpace(field) {
		case "command":
			cfg.Entrypoint, cfg.Cmd = slices.Clone(oc.Entrypoint), slices.Clone(oc.Cmd)
			if cfg.Entrypoint == nil {
				cfg.Entrypoint = strslice.StrSlice{} // nil would bring back the new image's
			}
		case "env":
			cfg.Env = slices.Clone(oc.Env)
		case "user":
			cfg.User = oc.User
		case "working_dir":
			cfg.WorkingDir = oc.WorkingDir
		case "stop_signal":
			cfg.StopSignal = oc.StopSignal
		case "healthcheck":
			cfg.Healthcheck = oc.Healthcheck
		case "":
		default:
			return fmt.Errorf("%w %s: unknown setting %q (command, env, user, working_dir, stop_signal, healthcheck)", ErrLabel, LabelKeep, strings.TrimSpace(field))
		}
	}
	return nil
}

// LabelComposeImage is where docker compose records the image a service container was created
// from; `docker compose up` recreates a container whose record differs from the image it
// would use now.
const LabelComposeImage = "com.docker.compose.image"

// composeImage is the record compose would make for the new image, in the form it made for the
// old one: the image ID, or the registry digest. A record of another form is left as it is.
func composeImage(recorded, oldID string, oldRepoDigests []string, newID string, newRepoDigests []string) string {
	if recorded == oldID {
		return newID
	}
	for _, rd := range oldRepoDigests {
		repo, digest, _ := strings.Cut(rd, "@")
		if recorded != digest && recorded != rd {
			continue
		}
		for _, nd := range newRepoDigests {
			if r, d, _ := strings.Cut(nd, "@"); r == repo {
				if recorded == rd {
					return nd
				}
				return d
			}
		}
	}
	return recorded
}
