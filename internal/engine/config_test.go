package engine

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

func TestCommandOverrides(t *testing.T) {
	img := []string{"/app"}
	imgCmd := []string{"serve"}
	cases := []struct {
		name             string
		ent, cmd         []string
		imgEnt, imgCmd   []string
		wantEnt, wantCmd []string
		wantEntNil       bool
	}{
		{"image defaults", img, imgCmd, img, imgCmd, nil, nil, true},
		{"cmd override", img, []string{"x"}, img, imgCmd, nil, []string{"x"}, true},
		{"entrypoint override keeps cmd", []string{"/sh"}, []string{"-c", "x"}, img, imgCmd, []string{"/sh"}, []string{"-c", "x"}, false},
		{"entrypoint override without cmd", []string{"/sh"}, nil, img, imgCmd, []string{"/sh"}, nil, false},
		{"entrypoint equal to image's but set", img, nil, img, imgCmd, img, nil, false},
		{"entrypoint emptied, image cmd applied", []string{}, imgCmd, img, imgCmd, []string{}, nil, false},
		{"entrypoint emptied, own cmd", nil, []string{"/x"}, img, imgCmd, []string{}, []string{"/x"}, false},
		{"no image entrypoint, cmd override", nil, []string{"x"}, nil, imgCmd, nil, []string{"x"}, true},
	}
	for _, tc := range cases {
		ent, cmd := commandOverrides(tc.ent, tc.cmd, tc.imgEnt, tc.imgCmd)
		if (ent == nil) != tc.wantEntNil || !slices.Equal(ent, tc.wantEnt) || !slices.Equal(cmd, tc.wantCmd) {
			t.Errorf("%s: got %#v %#v, want %#v %#v", tc.name, ent, cmd, tc.wantEnt, tc.wantCmd)
		}
	}
}

func TestEnvAndLabelOverrides(t *testing.T) {
	got := envOverrides([]string{"A=mine", "B=img", "PATH=/", "C=x"}, []string{"B=img", "PATH=/", "A=img"})
	if !slices.Equal(got, []string{"A=mine", "C=x"}) {
		t.Errorf("envOverrides = %v", got)
	}
	labels := labelOverrides(
		map[string]string{"img": "1", "changed": "mine", "own": "x", "hookd.enable": "true"},
		map[string]string{"img": "1", "changed": "img", "hookd.enable": "true"})
	want := map[string]string{"changed": "mine", "own": "x", "hookd.enable": "true"}
	if len(labels) != len(want) {
		t.Errorf("labelOverrides = %v, want %v", labels, want)
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("labelOverrides = %v, want %v", labels, want)
		}
	}
}

func TestHealthOverrides(t *testing.T) {
	img := &container.HealthConfig{Test: []string{"CMD", "h"}, Interval: time.Second, Retries: 2}
	if h := healthOverrides(&container.HealthConfig{Test: []string{"CMD", "h"}, Interval: time.Second, Retries: 2}, img); h != nil {
		t.Errorf("image's own healthcheck copied: %+v", h)
	}
	h := healthOverrides(&container.HealthConfig{Test: []string{"CMD", "h"}, Interval: 3 * time.Second, Retries: 2}, img)
	if h == nil || h.Test != nil || h.Interval != 3*time.Second || h.Retries != 0 {
		t.Errorf("partial override = %+v", h)
	}
	none := healthOverrides(&container.HealthConfig{Test: []string{"NONE"}}, img)
	if none == nil || !slices.Equal(none.Test, []string{"NONE"}) {
		t.Errorf("disabled healthcheck = %+v", none)
	}
	own := &container.HealthConfig{Test: []string{"CMD", "x"}, Interval: time.Second}
	if h := healthOverrides(own, nil); h == nil || !slices.Equal(h.Test, own.Test) || h.Interval != time.Second {
		t.Errorf("healthcheck on an image without one = %+v", h)
	}
}

func TestBindTargetAndLinks(t *testing.T) {
	cases := map[string]struct {
		dst  string
		anon bool
	}{
		"/anon":             {"/anon", true},
		"/anon:ro":          {"/anon", true},
		"vol:/data":         {"/data", false},
		"/host/dir:/mnt:ro": {"/mnt", false},
	}
	for b, want := range cases {
		if dst, anon := bindTarget(b); dst != want.dst || anon != want.anon {
			t.Errorf("bindTarget(%q) = %q, %v", b, dst, anon)
		}
	}
	if got := createLinks([]string{"/db:/web/database", "/cache:/web/cache"}); !slices.Equal(got, []string{"db:database", "cache:cache"}) {
		t.Errorf("createLinks = %v", got)
	}
}

func TestMountinfoOnTheHost(t *testing.T) {
	id := strings.Repeat("ab", 32)
	host := "1234 28 0:5 / /var/lib/docker/containers/" + id + "/mounts/shm rw,nosuid - tmpfs shm rw\n"
	if got := containerIDsFromMountinfo(strings.NewReader(host)); len(got) != 0 {
		t.Errorf("host mountinfo gave %v", got)
	}
	inside := "613 599 8:1 /var/lib/docker/containers/" + id + "/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw\n"
	if got := containerIDsFromMountinfo(strings.NewReader(inside)); !slices.Equal(got, []string{id}) {
		t.Errorf("container mountinfo gave %v", got)
	}
}

func TestRedact(t *testing.T) {
	a := Auth{Username: "u", Password: "hunter2", RegistryToken: "tok-123"}
	err := a.redact(errors.New("login hunter2 failed with tok-123"))
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "tok-123") {
		t.Errorf("redact = %v", err)
	}
	plain := errors.New("plain")
	if a.redact(plain) != plain {
		t.Error("redact replaced an error without secrets")
	}
	if got := repositories([]string{"h:5000/a:latest", "h:5000/a@sha256:x", "h:5000/b:1"}); got != 2 {
		t.Errorf("repositories = %d", got)
	}
}

// From API 1.44 every endpoint shows a MAC; only the one the engine derived from the address
// is dropped, so a pinned MAC (a DHCP reservation, a licence bound to it) survives the rollout.
func TestEndpointMACKeptOnlyWhenPinned(t *testing.T) {
	cases := []struct {
		name, mac, ip string
		keep          bool
	}{
		{"generated from the address", "02:42:ac:13:00:02", "172.19.0.2", false},
		{"generated, container stopped", "02:42:ac:13:00:02", "", false},
		{"pinned", "92:d0:c6:0a:29:33", "172.19.0.2", true},
		{"pinned under docker's prefix", "02:42:00:00:00:07", "172.19.0.2", true},
		{"pinned, upper case", "92:D0:C6:0A:29:33", "", true},
		{"none", "", "172.19.0.2", false},
	}
	for _, tc := range cases {
		es := &network.EndpointSettings{MacAddress: tc.mac, IPAddress: tc.ip}
		got := endpointSettings("0123456789abcdef", "front", es, true).MacAddress
		if want := map[bool]string{true: tc.mac, false: ""}[tc.keep]; got != want {
			t.Errorf("%s: MAC %q, want %q", tc.name, got, want)
		}
		if got := endpointSettings("0123456789abcdef", "front", es, false).MacAddress; got != "" {
			t.Errorf("%s: API < 1.44 got endpoint MAC %q; the pinned one is in Config there", tc.name, got)
		}
	}
}

func TestKeepLabelFreezesSettings(t *testing.T) {
	old := &container.Config{
		Entrypoint: []string{"/app"}, Cmd: []string{"serve"}, Env: []string{"PATH=/bin", "A=1"},
		User: "1000", WorkingDir: "/srv", StopSignal: "SIGTERM",
		Labels: map[string]string{LabelKeep: "command, env,user,working_dir,stop_signal"},
	}
	// What replacementConfig makes when all of these equal the old image's defaults.
	cfg := &container.Config{Labels: map[string]string{}}
	if err := keepAsIs(cfg, old); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Entrypoint, old.Entrypoint) || !slices.Equal(cfg.Cmd, old.Cmd) || !slices.Equal(cfg.Env, old.Env) ||
		cfg.User != "1000" || cfg.WorkingDir != "/srv" || cfg.StopSignal != "SIGTERM" {
		t.Fatalf("kept %+v", cfg)
	}
	old.Labels[LabelKeep] = "command"
	old.Entrypoint = nil
	cfg = &container.Config{}
	if err := keepAsIs(cfg, old); err != nil || cfg.Entrypoint == nil || len(cfg.Entrypoint) != 0 {
		t.Fatalf("kept entrypoint %#v, %v; want empty, not nil (nil takes the new image's)", cfg.Entrypoint, err)
	}
	old.Labels[LabelKeep] = "command,ports"
	if err := keepAsIs(&container.Config{}, old); err == nil || !strings.Contains(err.Error(), `"ports"`) {
		t.Fatalf("unknown setting: %v", err)
	}
}

func TestComposeImageRecordFollowsTheNewImage(t *testing.T) {
	oldRD := []string{"ghcr.io/acme/web@sha256:aaa", "mirror.test/acme/web@sha256:aaa"}
	newRD := []string{"ghcr.io/acme/web@sha256:bbb"}
	for _, tc := range []struct{ recorded, want string }{
		{"sha256:old-id", "sha256:new-id"},                                     // compose v2 with the classic store: the image ID
		{"sha256:aaa", "sha256:bbb"},                                           // the registry digest
		{"ghcr.io/acme/web@sha256:aaa", "ghcr.io/acme/web@sha256:bbb"},         // a full reference
		{"mirror.test/acme/web@sha256:aaa", "mirror.test/acme/web@sha256:aaa"}, // no digest of the new image there: kept
		{"something-else", "something-else"},
	} {
		if got := composeImage(tc.recorded, "sha256:old-id", oldRD, "sha256:new-id", newRD); got != tc.want {
			t.Errorf("record %q became %q, want %q", tc.recorded, got, tc.want)
		}
	}
}
