package engine

import (
	"archive/tar"
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/go-connections/nat"

	"github.com/hookd/hookd/internal/testkit"
)

func TestCreateReplacementFaithful(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{
		Version:     "v1",
		Env:         []string{"IMG_DEFAULT=one", "OVERRIDDEN=image"},
		Labels:      map[string]string{"org.example.image": "v1", "shared": "image"},
		Volumes:     []string{"/imgvol"},
		Healthcheck: true,
		Cmd:         []string{"serve", "image-cmd"},
	})
	v2 := e.image("app", "v2", testkit.App{
		Version:     "v2",
		Env:         []string{"IMG_DEFAULT=two", "OVERRIDDEN=image2", "NEW_KEY=new"},
		Labels:      map[string]string{"org.example.image": "v2", "org.example.new": "yes", "shared": "image"},
		Volumes:     []string{"/imgvol"},
		Healthcheck: true,
		Cmd:         []string{"serve", "image-cmd-2"},
	})

	_, prefix := e.network(e.name("net1"), true)
	net2, _ := e.network(e.name("net2"), false)
	vol, err := e.cli.VolumeCreate(e.ctx(), volume.CreateOptions{Name: e.name("data"), Labels: e.labels(nil)})
	if err != nil {
		t.Fatalf("volume create: %v", err)
	}
	staticIP := prefix + "50"
	const pinnedMAC = "92:d0:c6:0a:29:33"
	stopTimeout := 7
	name := e.name("svc")
	oldID := e.create(name, &container.Config{
		Image:       v1,
		Hostname:    "faithful-host",
		MacAddress:  pinnedMAC, //nolint:staticcheck // what `docker run --mac-address` sends at API 1.41
		Env:         []string{"OVERRIDDEN=container", "OWN=mine"},
		Cmd:         strslice.StrSlice{"serve", "container-cmd"},
		Labels:      map[string]string{"explicit": "c", "shared": "container", "hookd.runtime": "faithful", LabelComposeImage: e.imageID(v1)},
		Volumes:     map[string]struct{}{"/anon": {}},
		StopSignal:  "SIGINT",
		StopTimeout: &stopTimeout,
		Healthcheck: &container.HealthConfig{
			Test:     []string{"CMD", "/app", "health"},
			Interval: 1500 * time.Millisecond,
			Retries:  3,
		},
	}, &container.HostConfig{
		Binds: []string{vol.Name + ":/data", "/anonbind"},
		Mounts: []mount.Mount{
			{Type: mount.TypeVolume, Target: "/mountanon"},
			{Type: mount.TypeTmpfs, Target: "/tmpmount"},
		},
		NetworkMode:   container.NetworkMode(e.name("net1")),
		PortBindings:  nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 3},
		Resources:     container.Resources{Memory: 64 << 20, NanoCPUs: 500_000_000},
		CapAdd:        strslice.StrSlice{"NET_ADMIN"},
		CapDrop:       strslice.StrSlice{"MKNOD"},
		LogConfig:     container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "1m"}},
		Tmpfs:         map[string]string{"/scratch": "size=1m"},
	}, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		e.name("net1"): {Aliases: []string{"alpha", "alpha2"}, IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: staticIP}},
	}})
	if err := e.cli.NetworkConnect(e.ctx(), net2, oldID, &network.EndpointSettings{Aliases: []string{"beta"}}); err != nil {
		t.Fatalf("connect net2: %v", err)
	}
	e.start(oldID)
	e.waitServing(oldID)
	e.mustExec(oldID, "/app", "write", "/data/f", "named-data")
	e.mustExec(oldID, "/app", "write", "/anon/f", "anon-data")
	e.mustExec(oldID, "/app", "write", "/imgvol/f", "image-volume-data")
	e.mustExec(oldID, "/app", "write", "/anonbind/f", "anon-bind-data")
	e.mustExec(oldID, "/app", "write", "/mountanon/f", "anon-mount-data")
	e.mustExec(oldID, "/app", "write", "/scratch/f", "tmpfs-data")

	start := time.Now()
	newID, err := e.eng.CreateReplacement(e.ctx(), oldID, v2, name+"-next")
	if err != nil {
		t.Fatalf("CreateReplacement: %v", err)
	}
	t.Logf("CreateReplacement took %v", time.Since(start))
	old, repl := e.inspect(oldID), e.inspect(newID)

	// Config: overrides kept, image defaults from the new image.
	if repl.Config.Image != v2 {
		t.Errorf("Image = %q, want %q", repl.Config.Image, v2)
	}
	if repl.State.Status != "created" {
		t.Errorf("replacement status %q, want created", repl.State.Status)
	}
	for _, want := range []string{"OVERRIDDEN=container", "OWN=mine", "IMG_DEFAULT=two", "NEW_KEY=new", "APP_VERSION=v2"} {
		if !slices.Contains(repl.Config.Env, want) {
			t.Errorf("Env %v lacks %s", repl.Config.Env, want)
		}
	}
	for _, gone := range []string{"IMG_DEFAULT=one", "APP_VERSION=v1", "OVERRIDDEN=image2"} {
		if slices.Contains(repl.Config.Env, gone) {
			t.Errorf("Env %v still has %s", repl.Config.Env, gone)
		}
	}
	if !slices.Equal(repl.Config.Cmd, old.Config.Cmd) || !slices.Equal(repl.Config.Entrypoint, old.Config.Entrypoint) {
		t.Errorf("command = %v %v, want %v %v", repl.Config.Entrypoint, repl.Config.Cmd, old.Config.Entrypoint, old.Config.Cmd)
	}
	wantLabels := map[string]string{"explicit": "c", "shared": "container", "hookd.runtime": "faithful", "org.example.image": "v2", "org.example.new": "yes",
		LabelComposeImage: e.imageID(v2), LabelReplaces: oldID}
	for k, v := range e.labels(wantLabels) {
		if repl.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, repl.Config.Labels[k], v)
		}
	}
	if repl.Config.Hostname != "faithful-host" {
		t.Errorf("Hostname = %q", repl.Config.Hostname)
	}
	if repl.Config.StopSignal != "SIGINT" || repl.Config.StopTimeout == nil || *repl.Config.StopTimeout != 7 {
		t.Errorf("stop = %q %v", repl.Config.StopSignal, repl.Config.StopTimeout)
	}
	if h, o := repl.Config.Healthcheck, old.Config.Healthcheck; h == nil || !slices.Equal(h.Test, o.Test) || h.Interval != o.Interval || h.Retries != o.Retries || h.Timeout != o.Timeout {
		t.Errorf("Healthcheck = %+v, want %+v", h, o)
	}

	// HostConfig.
	oh, nh := old.HostConfig, repl.HostConfig
	if nh.NetworkMode != oh.NetworkMode {
		t.Errorf("NetworkMode = %q, want %q", nh.NetworkMode, oh.NetworkMode)
	}
	if pb := nh.PortBindings["8080/tcp"]; len(pb) != 1 || pb[0].HostIP != "127.0.0.1" || pb[0].HostPort != "" {
		t.Errorf("PortBindings = %v", nh.PortBindings)
	}
	if nh.RestartPolicy != oh.RestartPolicy {
		t.Errorf("RestartPolicy = %+v, want %+v", nh.RestartPolicy, oh.RestartPolicy)
	}
	if nh.Memory != 64<<20 || nh.NanoCPUs != 500_000_000 {
		t.Errorf("resources = %d %d", nh.Memory, nh.NanoCPUs)
	}
	if !slices.Equal(nh.CapAdd, oh.CapAdd) || !slices.Equal(nh.CapDrop, oh.CapDrop) {
		t.Errorf("caps = %v %v, want %v %v", nh.CapAdd, nh.CapDrop, oh.CapAdd, oh.CapDrop)
	}
	if nh.LogConfig.Type != "json-file" || nh.LogConfig.Config["max-size"] != "1m" {
		t.Errorf("LogConfig = %+v", nh.LogConfig)
	}
	if !slices.ContainsFunc(nh.Mounts, func(m mount.Mount) bool { return m.Type == mount.TypeTmpfs && m.Target == "/tmpmount" }) {
		t.Errorf("tmpfs mount lost: %+v", nh.Mounts)
	}
	if nh.Tmpfs["/scratch"] != "size=1m" {
		t.Errorf("Tmpfs = %v", nh.Tmpfs)
	}

	// Volumes: every volume of the old container, by name, at the same place.
	volumesOf := func(c container.InspectResponse) map[string]string {
		m := map[string]string{}
		for _, mp := range c.Mounts {
			if mp.Type == "volume" {
				m[mp.Destination] = mp.Name
			}
		}
		return m
	}
	ov, nv := volumesOf(old), volumesOf(repl)
	for _, dst := range []string{"/data", "/anon", "/imgvol", "/anonbind", "/mountanon"} {
		if ov[dst] == "" || nv[dst] != ov[dst] {
			t.Errorf("volume at %s: old %q, new %q", dst, ov[dst], nv[dst])
		}
	}
	if len(nv) != len(ov) {
		t.Errorf("volumes: old %v, new %v", ov, nv)
	}

	// Networks: both, with aliases and the static address.
	n1, n2 := repl.NetworkSettings.Networks[e.name("net1")], repl.NetworkSettings.Networks[e.name("net2")]
	if n1 == nil || n2 == nil {
		t.Fatalf("networks = %v", repl.NetworkSettings.Networks)
	}
	if !containsAll(n1.Aliases, "alpha", "alpha2") || slices.Contains(n1.Aliases, shortID(oldID)) {
		t.Errorf("net1 aliases = %v", n1.Aliases)
	}
	if n1.IPAMConfig == nil || n1.IPAMConfig.IPv4Address != staticIP {
		t.Errorf("net1 IPAM = %+v", n1.IPAMConfig)
	}
	if !containsAll(n2.Aliases, "beta") || slices.Contains(n2.Aliases, shortID(oldID)) {
		t.Errorf("net2 aliases = %v", n2.Aliases)
	}

	// The switch, by hand: stop, rename aside, rename, start, remove.
	if err := e.eng.Stop(e.ctx(), oldID); err != nil {
		t.Fatal(err)
	}
	if err := e.eng.Rename(e.ctx(), oldID, name+"-prev"); err != nil {
		t.Fatal(err)
	}
	if err := e.eng.Rename(e.ctx(), newID, name); err != nil {
		t.Fatal(err)
	}
	if err := e.eng.Start(e.ctx(), newID); err != nil {
		t.Fatal(err)
	}
	if err := e.eng.Remove(e.ctx(), oldID); err != nil {
		t.Fatal(err)
	}
	e.waitFor("replacement healthy", func() (bool, string) {
		st, err := e.eng.State(e.ctx(), newID)
		return err == nil && st.Health == "healthy", st.Status + "/" + st.Health
	})

	for file, want := range map[string]string{
		"/data/f": "named-data", "/anon/f": "anon-data", "/imgvol/f": "image-volume-data",
		"/anonbind/f": "anon-bind-data", "/mountanon/f": "anon-mount-data",
	} {
		if got, err := e.exec(newID, "/app", "read", file); err != nil || got != want {
			t.Errorf("read %s = %q, %v; want %q", file, got, err, want)
		}
	}
	if got, err := e.exec(newID, "/app", "read", "/scratch/f"); err == nil {
		t.Errorf("tmpfs kept data across containers: %q", got)
	}
	if got, err := e.exec(newID, "/app", "get", "http://127.0.0.1:8080/env?k=OVERRIDDEN"); err != nil || got != "container" {
		t.Errorf("OVERRIDDEN in the running replacement = %q, %v", got, err)
	}

	// From another container on each network, every alias reaches the new
	// version.
	probe := e.create(e.name("probe"), &container.Config{Image: v1}, &container.HostConfig{NetworkMode: container.NetworkMode(e.name("net1"))}, nil)
	if err := e.cli.NetworkConnect(e.ctx(), net2, probe, nil); err != nil {
		t.Fatalf("connect probe: %v", err)
	}
	e.start(probe)
	for _, host := range []string{"alpha", "alpha2", "beta", staticIP, name} {
		url := "http://" + host + ":8080/"
		e.waitFor("GET "+url, func() (bool, string) {
			got, err := e.exec(probe, "/app", "get", url)
			if err != nil {
				return false, err.Error()
			}
			return got == "v2", got
		})
	}
	if mac := e.inspect(newID).NetworkSettings.Networks[e.name("net1")].MacAddress; mac != pinnedMAC {
		t.Errorf("MAC on net1 %q, want the pinned %s", mac, pinnedMAC)
	}
	port := e.inspect(newID).NetworkSettings.Ports["8080/tcp"]
	if len(port) == 0 {
		t.Fatalf("no published port: %v", e.inspect(newID).NetworkSettings.Ports)
	}
	url := "http://127.0.0.1:" + port[0].HostPort + "/"
	e.waitFor("GET "+url, func() (bool, string) {
		got, err := hostGet(url)
		if err != nil {
			return false, err.Error()
		}
		return got == "v2", got
	})
}

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(list, w) {
			return false
		}
	}
	return true
}

func TestCreateReplacementMissingImageLeavesNothing(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{Version: "v1"})
	oldID := e.create(e.name("svc"), &container.Config{Image: v1}, nil, nil)
	missing := e.reg.Host + "/app@sha256:" + strings.Repeat("0", 64)
	if _, err := e.eng.CreateReplacement(e.ctx(), oldID, missing, e.name("next")); err == nil {
		t.Fatal("CreateReplacement of a missing image succeeded")
	}
	if _, err := e.eng.Inspect(e.ctx(), e.name("next")); err == nil {
		t.Error("a container was left behind")
	}
}

func TestCreateReplacementConnectFailureLeavesNothing(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{Version: "v1"})
	e.network(e.name("net1"), false)
	net2, prefix := e.network(e.name("net2"), true)
	oldID := e.create(e.name("svc"), &container.Config{Image: v1}, &container.HostConfig{NetworkMode: container.NetworkMode(e.name("net1"))}, nil)
	static := &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: prefix + "9"}}
	if err := e.cli.NetworkConnect(e.ctx(), net2, oldID, static); err != nil {
		t.Fatal(err)
	}
	// Swap the second network for one without a subnet, where a static
	// address is refused: the second endpoint's connect then fails. (A
	// never-started container holds no endpoint, so its network can go.)
	if err := e.cli.NetworkRemove(e.ctx(), net2); err != nil {
		t.Fatal(err)
	}
	e.network(e.name("net2"), false)
	_, err := e.eng.CreateReplacement(e.ctx(), oldID, v1, e.name("next"))
	if err == nil || !strings.Contains(err.Error(), "connect network") {
		t.Fatalf("CreateReplacement = %v, want a connect error", err)
	}
	t.Logf("connect failure: %v", err)
	if _, err := e.eng.Inspect(e.ctx(), e.name("next")); err == nil {
		t.Error("the half-made container was left behind")
	}
}

func TestCreateReplacementSpecialNetworkModes(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{Version: "v1"})
	v2 := e.image("app", "v2", testkit.App{Version: "v2"})
	owner := e.create(e.name("owner"), &container.Config{Image: v1}, nil, nil)
	e.start(owner)
	for _, mode := range []container.NetworkMode{"none", "host", container.NetworkMode("container:" + owner)} {
		name := e.name(strings.ReplaceAll(string(mode[:4]), ":", ""))
		oldID := e.create(name, &container.Config{Image: v1}, &container.HostConfig{NetworkMode: mode}, nil)
		newID, err := e.eng.CreateReplacement(e.ctx(), oldID, v2, name+"-next")
		if err != nil {
			t.Errorf("%s: CreateReplacement: %v", mode, err)
			continue
		}
		old, repl := e.inspect(oldID), e.inspect(newID)
		if repl.HostConfig.NetworkMode != old.HostConfig.NetworkMode {
			t.Errorf("%s: NetworkMode = %q, want %q", mode, repl.HostConfig.NetworkMode, old.HostConfig.NetworkMode)
		}
		if mode == "none" && repl.Config.Hostname == old.Config.Hostname {
			t.Errorf("%s: the old default hostname %q was pinned", mode, old.Config.Hostname)
		}
	}
}

func TestCreateReplacementEntrypointOverride(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{Version: "v1", Cmd: []string{"serve", "a"}})
	v2 := e.image("app", "v2", testkit.App{Version: "v2", Cmd: []string{"serve", "b"}})
	cases := []struct {
		name             string
		ent, cmd         strslice.StrSlice
		wantEnt, wantCmd []string
		keep             string
	}{
		{"defaults", nil, nil, []string{"/app"}, []string{"serve", "b"}, ""},
		{"cmd", nil, strslice.StrSlice{"serve", "mine"}, []string{"/app"}, []string{"serve", "mine"}, ""},
		{"entrypoint", strslice.StrSlice{"/app", "serve"}, nil, []string{"/app", "serve"}, nil, ""},
		{"same-entrypoint", strslice.StrSlice{"/app"}, nil, []string{"/app"}, nil, ""},
		// The image's defaults, frozen by the container's label.
		{"kept-command", nil, nil, []string{"/app"}, []string{"serve", "a"}, "command"},
	}
	for _, tc := range cases {
		name := e.name(tc.name)
		cfg := &container.Config{Image: v1, Entrypoint: tc.ent, Cmd: tc.cmd}
		if tc.keep != "" {
			cfg.Labels = map[string]string{LabelKeep: tc.keep}
		}
		oldID := e.create(name, cfg, nil, nil)
		newID, err := e.eng.CreateReplacement(e.ctx(), oldID, v2, name+"-next")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		repl := e.inspect(newID)
		if !slices.Equal(repl.Config.Entrypoint, tc.wantEnt) || !slices.Equal(repl.Config.Cmd, tc.wantCmd) {
			t.Errorf("%s: got %q %q, want %q %q", tc.name, repl.Config.Entrypoint, repl.Config.Cmd, tc.wantEnt, tc.wantCmd)
		}
	}
}

// Compose v2 copies inline configs and secrets into a container after creating it; inspect
// does not show them. Listed in hookd.copy, they are copied into the replacement, owner and
// mode kept.
func TestCreateReplacementCopiesListedFiles(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{Version: "v1"})
	v2 := e.image("app", "v2", testkit.App{Version: "v2"})
	name := e.name("copy")
	oldID := e.create(name, &container.Config{Image: v1, Labels: map[string]string{LabelCopy: "/run/secrets/db, /app.conf"}}, nil, nil)
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	for _, f := range []struct {
		name, body string
		mode       int64
	}{{"run/secrets/db", "s3cret", 0o400}, {"app.conf", "mode=fast", 0o644}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Uid: 1000, Gid: 1000, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	tw.Close()
	if err := e.cli.CopyToContainer(e.ctx(), oldID, "/", &tarball, container.CopyToContainerOptions{CopyUIDGID: true}); err != nil {
		t.Fatal(err)
	}
	newID, err := e.eng.CreateReplacement(e.ctx(), oldID, v2, name+"-next")
	if err != nil {
		t.Fatal(err)
	}
	e.start(newID)
	if got := e.mustExec(newID, "/app", "read", "/run/secrets/db"); got != "s3cret" {
		t.Errorf("secret in the replacement: %q", got)
	}
	if got := e.mustExec(newID, "/app", "read", "/app.conf"); got != "mode=fast" {
		t.Errorf("config in the replacement: %q", got)
	}
	st, err := e.cli.ContainerStatPath(e.ctx(), newID, "/run/secrets/db")
	if err != nil || st.Mode.Perm() != 0o400 {
		t.Errorf("secret's mode %v, %v; want 0400", st.Mode, err)
	}

	// A path the old container lacks fails the create and leaves nothing behind.
	bad := e.create(e.name("nocopy"), &container.Config{Image: v1, Labels: map[string]string{LabelCopy: "/missing"}}, nil, nil)
	if _, err := e.eng.CreateReplacement(e.ctx(), bad, v2, e.name("nocopy")+"-next"); err == nil || !strings.Contains(err.Error(), "/missing") {
		t.Fatalf("missing path: %v", err)
	}
	if _, err := e.cli.ContainerInspect(e.ctx(), e.name("nocopy")+"-next"); err == nil {
		t.Error("a half-made replacement was left")
	}
}

// A start-first replacement holds the old container's name as an alias on its user-defined
// networks, beside the old one's own aliases; the default bridge takes none.
func TestCreateBesideAddsTheNameAlias(t *testing.T) {
	e := newEnv(t)
	v1 := e.image("app", "v1", testkit.App{Version: "v1"})
	e.network(e.name("net1"), false)
	name := e.name("svc")
	oldID := e.create(name, &container.Config{Image: v1}, &container.HostConfig{NetworkMode: container.NetworkMode(e.name("net1"))},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{e.name("net1"): {Aliases: []string{"svc"}}}})
	if err := e.cli.NetworkConnect(e.ctx(), "bridge", oldID, nil); err != nil {
		t.Fatal(err)
	}
	newID, err := e.eng.CreateBeside(e.ctx(), oldID, v1, name+"-next", name)
	if err != nil {
		t.Fatal(err)
	}
	repl := e.inspect(newID)
	if got := repl.NetworkSettings.Networks[e.name("net1")].Aliases; !containsAll(got, "svc", name) {
		t.Errorf("aliases on the user network %q, want svc and %s", got, name)
	}
	if got := repl.NetworkSettings.Networks["bridge"]; got == nil || len(got.Aliases) != 0 {
		t.Errorf("default bridge endpoint %+v, want it connected without aliases", got)
	}
	if got := e.inspect(oldID).NetworkSettings.Networks[e.name("net1")].Aliases; slices.Contains(got, name) {
		t.Errorf("the old container's aliases changed: %q", got)
	}
}

// What keeps two copies of a container from running at once.
func TestExclusive(t *testing.T) {
	for _, c := range []struct {
		name string
		c    container.InspectResponse
		want string
	}{
		{"nothing", container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{HostConfig: &container.HostConfig{}}}, ""},
		{"random host port", container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{HostConfig: &container.HostConfig{
			PortBindings: nat.PortMap{"80/tcp": {{HostIP: "127.0.0.1"}}}}}}, ""},
		{"fixed host port", container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{HostConfig: &container.HostConfig{
			PortBindings: nat.PortMap{"80/tcp": {{HostPort: "8080"}}}}}}, "publishes host port 8080 (80/tcp)"},
		{"host network", container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{HostConfig: &container.HostConfig{NetworkMode: "host"}}}, "uses the host's network"},
		{"pinned MAC", container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{HostConfig: &container.HostConfig{}},
			Config: &container.Config{MacAddress: "02:00:00:00:00:01"}}, "pins MAC address 02:00:00:00:00:01"},
		{"static address", container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{HostConfig: &container.HostConfig{}},
			NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
				"back": {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.0.0.9"}}}}}, "pins its address on network back"},
	} {
		if got := exclusive(c.c); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
