package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// composeProject is a project run by the real docker-compose (Debian's v1 package).
type composeProject struct {
	t    *testing.T
	dir  string
	name string
}

func newComposeProject(t *testing.T, file string) *composeProject {
	t.Helper()
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if os.Getenv("HOOKD_REQUIRE_DOCKER") == "1" {
			t.Fatal("docker-compose is required (HOOKD_REQUIRE_DOCKER=1); Debian: apt-get install docker-compose")
		}
		t.Skip("no docker-compose")
	}
	p := &composeProject{t: t, dir: t.TempDir(), name: strings.ToLower(strings.ReplaceAll(testkit.TestID(t), "-", ""))}
	if err := os.WriteFile(filepath.Join(p.dir, "docker-compose.yml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := p.run("down", "--volumes", "--remove-orphans"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})
	return p
}

func (p *composeProject) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-compose", append([]string{"--no-ansi", "-p", p.name, "-f", filepath.Join(p.dir, "docker-compose.yml")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// containers lists the project's containers by service.
func (p *composeProject) containers(f *fleet) map[string][]container.Summary {
	p.t.Helper()
	list, err := f.cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+p.name))})
	if err != nil {
		p.t.Fatal(err)
	}
	out := map[string][]container.Summary{}
	for _, c := range list {
		out[c.Labels["com.docker.compose.service"]] = append(out[c.Labels["com.docker.compose.service"]], c)
	}
	return out
}

// A compose project whose `side` runs in web's network namespace (`network_mode: service:web`):
// hookd rolls web out and recreates side with it, side keeps answering, and a later
// `docker-compose up -d` (v1, which hashes the image into its config hash and so recreates web
// once more) ends with two containers, web on the new image with its data, side answering.
func TestComposeProjectWithANetworkSidecar(t *testing.T) {
	f := newFleet(t, "web")
	// The image declares VOLUME /anon; the project gives it named volumes, which `down
	// --volumes` removes (anonymous ones that hookd carried over by name it would keep).
	v1d := f.push(testkit.App{Version: "v1"})
	f.install(v1d)
	labels := fmt.Sprintf("      %s: %q\n      %s: %q\n", testkit.LabelTest, "1", testkit.LabelTestID, f.id)
	p := newComposeProject(t, fmt.Sprintf(`version: "2.4"
services:
  web:
    image: %[1]s:latest
    ports: ["127.0.0.1::8080"]
    volumes: ["data:/data", "web-anon:/anon"]
    labels:
      hookd.runtime: web
%[2]s  side:
    image: %[1]s:latest
    environment: [APP_ADDR=:8081]
    network_mode: "service:web"
    depends_on: [web]
    volumes: ["side-anon:/anon"]
    labels:
%[2]svolumes:
  data:
    labels:
%[2]s  web-anon:
    labels:
%[2]s  side-anon:
    labels:
%[2]s`, f.repo, labels))
	if out, err := p.run("up", "-d"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	byService := p.containers(f)
	if len(byService["web"]) != 1 || len(byService["side"]) != 1 {
		t.Fatalf("project containers %v", byService)
	}
	web, side := byService["web"][0].Names[0][1:], byService["side"][0].Names[0][1:]
	f.waitServing(web)
	f.exec(web, "/app", "write", "/data/kept", "data-"+f.id)
	sideSees := func() (string, error) {
		c, err := f.cli.ContainerInspect(context.Background(), side)
		if err != nil || !c.State.Running {
			return "", fmt.Errorf("side not running: %v", err)
		}
		return f.exec(side, "/app", "get", "http://127.0.0.1:8080/"), nil
	}
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		v, err := sideSees()
		return err == nil && v == "v1", fmt.Sprintf("side sees %q %v", v, err)
	})

	h := startHookd(t, f.config(""), t.TempDir(), nil)
	v2d := f.push(testkit.App{Version: "v2"})
	if code, _ := h.deliver(webhooktest.Push{Namespace: "org", Name: "web", Tag: "latest", Digest: v2d}, "c1"); code != 202 {
		t.Fatal("delivery not queued")
	}
	st := h.waitJob("web", 0)
	if st.LastRollout.Result != "rolled_out" || len(st.LastRollout.Recreated) != 2 {
		t.Fatalf("rollout %+v, want web and side recreated", st.LastRollout)
	}
	if v, err := sideSees(); err != nil || v != "v2" {
		t.Fatalf("after the rollout side sees %q %v, want v2", v, err)
	}

	out, err := p.run("up", "-d")
	if err != nil {
		t.Fatalf("docker-compose up after the rollout: %v\n%s", err, out)
	}
	byService = p.containers(f)
	if len(byService["web"]) != 1 || len(byService["side"]) != 1 || len(byService) != 2 {
		t.Fatalf("after docker-compose up: %v\n%s", byService, out)
	}
	if img := byService["web"][0].ImageID; img != f.imageID(v2d) {
		t.Fatalf("web runs %s, want the new image %s", img, f.imageID(v2d))
	}
	web = byService["web"][0].Names[0][1:]
	if got := f.exec(web, "/app", "read", "/data/kept"); got != "data-"+f.id {
		t.Fatalf("web's volume holds %q", got)
	}
	side = byService["side"][0].Names[0][1:]
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		v, err := sideSees()
		return err == nil && v == "v2", fmt.Sprintf("side sees %q %v", v, err)
	})
}
