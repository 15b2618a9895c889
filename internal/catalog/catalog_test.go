package catalog

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/engine"
)

// listed stands in for the engine's container listing.
type listed []engine.Container

func (l listed) List(_ context.Context, label, value string) ([]engine.Container, error) {
	var out []engine.Container
	for _, c := range l {
		if v, ok := c.Labels[label]; ok && (value == "" || v == value) {
			out = append(out, c)
		}
	}
	return out, nil
}

func TestZeroConfigRuntimesHaveEveryDefault(t *testing.T) {
	enabled := map[string]string{LabelEnable: "true"}
	cat := New(nil, listed{
		{ID: "1", Name: "web", Image: "GHCR.io/Acme/web:RC1", Labels: enabled},
		{ID: "2", Name: "web-2", Image: "ghcr.io/acme/web:RC1", Labels: enabled},
		{ID: "3", Name: "web" + TempSuffix, Image: "ghcr.io/acme/web:RC1", Labels: enabled},
		{ID: "4", Name: "pinned", Image: "ghcr.io/acme/db@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", Labels: enabled},
		{ID: "5", Name: "off", Image: "ghcr.io/acme/off:latest", Labels: map[string]string{LabelEnable: "false"}},
	}, time.Minute)
	all, err := cat.All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Fatalf("runtimes %+v, want one for ghcr.io/acme/web:RC1", all)
	}
	want := hookd.NewRuntime("ghcr.io/acme/web:RC1", "ghcr.io/acme/web:RC1")
	if !reflect.DeepEqual(all[0], want) {
		t.Fatalf("zero-config runtime %+v, want %+v (recreating, default gate)", all[0], want)
	}
	members, err := cat.Members(context.Background(), all[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || members[0].ID != "1" || members[1].ID != "2" {
		t.Fatalf("members %+v, want web and web-2 (not the temporary container)", members)
	}
}

func TestConfiguredMembersByLabel(t *testing.T) {
	web := hookd.NewRuntime("web", "ghcr.io/acme/web:latest")
	cat := New([]hookd.Runtime{web, hookd.NewRuntime("webby", "ghcr.io/acme/webby:latest")}, listed{
		{ID: "1", Name: "a", Labels: map[string]string{LabelRuntime: "web"}},
		{ID: "2", Name: "b", Labels: map[string]string{LabelRuntime: "webby"}},
		{ID: "3", Name: "a" + AsideSuffix, Labels: map[string]string{LabelRuntime: "web"}},
	}, time.Minute)
	members, err := cat.Members(context.Background(), web)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0].ID != "1" {
		t.Fatalf("members of web %+v, want only a (exact label, no set-aside container)", members)
	}
	byRuntime, err := cat.MembersByRuntime(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(byRuntime["web"]) != 1 || len(byRuntime["webby"]) != 1 {
		t.Fatalf("members by runtime %+v", byRuntime)
	}
}

func TestMatchWakesEveryTagOfTheRepository(t *testing.T) {
	cat := New([]hookd.Runtime{
		hookd.NewRuntime("web", "127.0.0.1:5000/acme/web:latest"),
		hookd.NewRuntime("web-rc", "127.0.0.1:5000/acme/web:RC1"),
		hookd.NewRuntime("webby", "127.0.0.1:5000/acme/webby:latest"),
		hookd.NewRuntime("nested", "127.0.0.1:5000/acme/web/api:latest"),
	}, nil, 0)
	for image, want := range map[string]string{
		"127.0.0.1:5000/acme/web:RC1":    "web-rc,web", // the runtime following the tag first
		"127.0.0.1:5000/acme/web:rc1":    "web,web-rc", // no runtime follows rc1; both are woken
		"127.0.0.1:5000/acme/web:latest": "web,web-rc",
		"127.0.0.1:5000/acme/web/api:v2": "nested",
		"127.0.0.1:5000/acme/other:v1":   "",
	} {
		got, err := cat.Match(context.Background(), image)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("Match(%s) = %v %v, want [%s]", image, got, err, want)
		}
	}
}

// With runtimes configured, a catalog of none (an engine no runtime lives on) discovers none.
func TestConfiguredWithNoneDiscoversNothing(t *testing.T) {
	cat := Configured(nil, listed{{ID: "1", Name: "web", Image: "ghcr.io/acme/web:latest", Labels: map[string]string{LabelEnable: "true"}}}, time.Minute)
	if all, err := cat.All(context.Background()); err != nil || len(all) != 0 || cat.ZeroConfig() {
		t.Fatalf("runtimes %+v err %v zero-config %v, want none", all, err, cat.ZeroConfig())
	}
}
