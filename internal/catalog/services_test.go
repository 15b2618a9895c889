package catalog

import (
	"context"
	"testing"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/engine"
)

// withServices stands in for an engine that lists containers and services.
type withServices struct {
	listed
	services []engine.Service
}

func (w withServices) Services(_ context.Context, label, value string) ([]engine.Service, error) {
	var out []engine.Service
	for _, s := range w.services {
		if v, ok := s.Labels[label]; ok && (value == "" || v == value) {
			out = append(out, s)
		}
	}
	return out, nil
}

func TestZeroConfigDiscoversServicesByTagWithoutDigest(t *testing.T) {
	enabled := map[string]string{LabelEnable: "true"}
	const d = "@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	eng := withServices{
		listed: listed{{ID: "1", Name: "web", Image: "ghcr.io/acme/web:latest", Labels: enabled},
			{ID: "2", Name: "web.1.task", Image: "ghcr.io/acme/web:latest" + d,
				Labels: map[string]string{LabelEnable: "true", "com.docker.swarm.task.id": "t1"}}},
		services: []engine.Service{
			{ID: "s1", Name: "api", Image: "ghcr.io/acme/api:1" + d, Labels: enabled},
			{ID: "s2", Name: "web-svc", Image: "ghcr.io/acme/web:latest" + d, Labels: enabled},
			{ID: "s3", Name: "pinned", Image: "ghcr.io/acme/pinned" + d, Labels: enabled},
			{ID: "s4", Name: "off", Image: "ghcr.io/acme/off:latest", Labels: map[string]string{LabelEnable: "false"}},
		},
	}
	cat := New(nil, eng, time.Minute)
	names, err := cat.Names(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0] != "ghcr.io/acme/api:1" || names[1] != "ghcr.io/acme/web:latest" {
		t.Fatalf("runtimes %v, want api:1 (a service alone) and web:latest", names)
	}
	web := hookd.NewRuntime("ghcr.io/acme/web:latest", "ghcr.io/acme/web:latest")
	svcs, err := cat.ServiceMembers(context.Background(), eng, web)
	if err != nil || len(svcs) != 1 || svcs[0].ID != "s2" {
		t.Fatalf("services of web: %+v %v, want web-svc", svcs, err)
	}
	members, err := cat.Members(context.Background(), web)
	if err != nil || len(members) != 1 || members[0].ID != "1" {
		t.Fatalf("containers of web: %+v %v, want web only (a Swarm task's container is its service's)", members, err)
	}
}

func TestConfiguredServiceMembersByServiceLabel(t *testing.T) {
	web := hookd.NewRuntime("web", "ghcr.io/acme/web:latest")
	eng := withServices{services: []engine.Service{
		{ID: "s1", Name: "a", Labels: map[string]string{LabelRuntime: "web"}},
		{ID: "s2", Name: "b", Labels: map[string]string{LabelRuntime: "webby"}},
	}}
	cat := New([]hookd.Runtime{web}, eng, time.Minute)
	svcs, err := cat.ServiceMembers(context.Background(), eng, web)
	if err != nil || len(svcs) != 1 || svcs[0].ID != "s1" {
		t.Fatalf("services of web: %+v %v, want a (exact label match)", svcs, err)
	}
}
