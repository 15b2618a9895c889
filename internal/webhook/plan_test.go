package webhook_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// edit changes the package object of a delivery's JSON payload.
func edit(t *testing.T, body []byte, change func(pkg map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	key := "package"
	if _, ok := m["registry_package"]; ok {
		key = "registry_package"
	}
	change(m[key].(map[string]any))
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func version(pkg map[string]any) map[string]any { return pkg["package_version"].(map[string]any) }

// Tags are case-sensitive (RC1 is not rc1): the planned image keeps the tag as spelled, and only
// a runtime following that very tag takes the delivery's digest as its hint.
func TestIntakeKeepsTagCase(t *testing.T) {
	in := startIntake(t, t.TempDir(), 1<<20)
	for i, tag := range []string{"rc1", "RC1"} {
		// No runtime follows this repository: the reason shows the image as planned.
		code, answer := in.send(t, webhooktest.Delivery{Event: "package", ID: "other-" + tag, Body: push("Molecule-AI", "Other", tag, digestNew), Secret: secret})
		if want := "no runtime follows ghcr.io/molecule-ai/other:" + tag; code != 202 || answer["reason"] != want {
			t.Fatalf("%s: %d %v, want reason %q", tag, code, answer, want)
		}
		digest := []string{digestOld, digestNew}[i]
		code, answer = in.send(t, webhooktest.Delivery{Event: "package", ID: "app-" + tag, Body: push("Molecule-AI", "App", tag, digest), Secret: secret})
		if code != 202 || answer["status"] != "queued" {
			t.Fatalf("%s: %d %v", tag, code, answer)
		}
		j := in.pending(t)["app-rc"]
		if tag == "rc1" && j.Hint != "" {
			t.Fatalf("a push of rc1 gave the RC1 runtime its digest as hint: %+v", j)
		}
		if tag == "RC1" && j.Hint != digestNew {
			t.Fatalf("a push of RC1: RC1 runtime's job %+v, want hint %s", j, digestNew)
		}
	}
}

// A push of several tags can arrive as one delivery naming one of them: every runtime following
// a tag of the repository is woken (each resolves its own tag), the hint only for its own tag.
func TestIntakeWakesEveryTagOfTheRepository(t *testing.T) {
	cases := []struct {
		name, tag string
		want      []string          // runtimes answered, in order
		hints     map[string]string // runtime → hint of its pending job
	}{
		{"tag nobody follows", "stable", []string{"app-rc", "app"}, map[string]string{"app-rc": "", "app": ""}},
		{"one runtime's tag", "latest", []string{"app", "app-rc"}, map[string]string{"app": digestNew, "app-rc": ""}},
		{"other repository's runtimes untouched", "RC1", []string{"app-rc", "app"}, map[string]string{"app-rc": digestNew, "app": ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := startIntake(t, t.TempDir(), 1<<20)
			code, answer := in.send(t, webhooktest.Delivery{Event: "package", ID: "m-" + c.tag, Body: push("molecule-ai", "app", c.tag, digestNew), Secret: secret})
			var got []string
			rts, _ := answer["runtimes"].([]any)
			for _, r := range rts {
				got = append(got, r.(string))
			}
			if code != 202 || answer["status"] != "queued" || !slices.Equal(got, c.want) {
				t.Fatalf("answer %d %v, want runtimes %v", code, answer, c.want)
			}
			pending := in.pending(t)
			if len(pending) != len(c.hints) {
				t.Fatalf("pending %+v, want jobs for exactly %v", pending, c.want)
			}
			for r, hint := range c.hints {
				if j, ok := pending[r]; !ok || j.Hint != hint || !slices.Equal(j.Deliveries, []string{"m-" + c.tag}) {
					t.Errorf("%s: job %+v (ok=%v), want hint %q", r, j, ok, hint)
				}
			}
		})
	}
}

// Ignored deliveries say what was seen, and package_url or registry.url that disagree with
// registry_host/namespace/name are named in the reason with the planned image.
func TestIntakeIgnoredReasonsNameWhatWasSeen(t *testing.T) {
	in := startIntake(t, t.TempDir(), 1<<20)
	claude := webhooktest.Push{Namespace: "Molecule-AI", Name: "workspace-template-claude-code", Tag: "latest", Digest: digestNew, Host: host}
	with := func(change func(p *webhooktest.Push)) []byte {
		p := claude
		change(&p)
		return webhooktest.Payload(p)
	}
	base := webhooktest.Payload(claude)
	cases := []struct {
		name   string
		event  string
		body   []byte
		reason string
	}{
		{"npm package", "package", edit(t, base, func(p map[string]any) { p["package_type"], p["ecosystem"] = "npm", "npm" }), `package type "npm" is not a container`},
		{"documented mixed types", "package", edit(t, base, func(p map[string]any) { p["package_type"], p["ecosystem"] = "npm", "docker" }), `package type "npm" (ecosystem "docker") is not a container`},
		{"null package_version", "package", edit(t, base, func(p map[string]any) { p["package_version"] = nil }), "package_version is null"},
		{"no container_metadata", "package", edit(t, base, func(p map[string]any) { delete(version(p), "container_metadata") }), `version "sha256:222222222222" has no container_metadata`},
		{"no tag", "package", edit(t, base, func(p map[string]any) { delete(version(p)["container_metadata"].(map[string]any), "tag") }), `version "sha256:222222222222" has no container_metadata.tag`},
		{"untagged", "package", with(func(p *webhooktest.Push) { p.Tag = "" }), `version "sha256:222222222222" is untagged (a per-platform manifest)`},
		{"GitHub Enterprise host, no runtime follows", "package", with(func(p *webhooktest.Push) { p.Host, p.Name = "containers.ghe.example.com", "unfollowed" }),
			`package_url names registry "containers.ghe.example.com", not registry_host "ghcr.io" (GitHub Enterprise: set registry_host`},
		{"package_url of another repository", "registry_package", with(func(p *webhooktest.Push) {
			p.Event, p.PackageURL = "registry_package", "ghcr.io/molecule-ai/app:latest"
		}), `package_url names "ghcr.io/molecule-ai/app", not "ghcr.io/molecule-ai/workspace-template-claude-code" (registry_host/namespace/name)`},
		{"registry.url of another host, no package_url", "registry_package", edit(t, with(func(p *webhooktest.Push) { p.Event, p.Host = "registry_package", "" }), func(p map[string]any) {
			p["registry"].(map[string]any)["url"] = "https://containers.ghe.example.com/Molecule-AI"
			p["name"] = "unfollowed"
		}), `no runtime follows ghcr.io/molecule-ai/unfollowed:latest; registry.url names registry "containers.ghe.example.com", not registry_host "ghcr.io"`},
		{"registry.url of another owner, no package_url", "registry_package", edit(t, with(func(p *webhooktest.Push) { p.Event, p.Host = "registry_package", "" }), func(p map[string]any) {
			p["registry"].(map[string]any)["url"] = "https://ghcr.io/someone-else"
		}), `registry.url names "ghcr.io/someone-else", not "ghcr.io/molecule-ai/workspace-template-claude-code"`},
		{"hostile package_url is bounded", "package", with(func(p *webhooktest.Push) { p.PackageURL = "ghcr.io/" + strings.Repeat("a", 5000) }), `…", not "ghcr.io/molecule-ai/workspace-template-claude-code"`},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, answer := in.send(t, webhooktest.Delivery{Event: c.event, ID: "i-" + string(rune('a'+i)), Body: c.body, Secret: secret})
			reason, _ := answer["reason"].(string)
			if code != 202 || answer["status"] != "ignored" || !strings.Contains(reason, c.reason) || len(reason) > 400 {
				t.Fatalf("answer %d %v, want ignored with reason containing %q", code, answer, c.reason)
			}
			if p := in.pending(t); len(p) != 0 {
				t.Fatalf("queued %v", p)
			}
		})
	}
}

// What agrees is queued: package_url in any case or escaped, GitHub's placeholder registry.url,
// and namespace "owner/repo" as GitHub's documented payloads carry it.
func TestIntakeQueuesWhatPackageURLConfirms(t *testing.T) {
	in := startIntake(t, t.TempDir(), 1<<20)
	cases := []struct {
		name    string
		push    webhooktest.Push
		runtime string
	}{
		{"package_url with capitals", webhooktest.Push{Namespace: "Molecule-AI", Name: "workspace-template-claude-code", Tag: "latest", PackageURL: "GHCR.IO/Molecule-AI/Workspace-Template-Claude-Code:latest"}, "claude-code"},
		{"nested name escaped", webhooktest.Push{Namespace: "molecule-ai", Name: "tools/builder", Tag: "stable", PackageURL: "ghcr.io/molecule-ai/tools%2Fbuilder:stable"}, "nested"},
		{"placeholder registry.url, no package_url", webhooktest.Push{Event: "registry_package", Namespace: "Molecule-AI", Name: "workspace-template-claude-code", Tag: "latest"}, "claude-code"},
		{"namespace owner/repo, image owner/name", webhooktest.Push{Namespace: "Molecule-AI/hookd", Name: "workspace-template-claude-code", Tag: "latest", PackageURL: "ghcr.io/Molecule-AI/workspace-template-claude-code:latest"}, "claude-code"},
		{"namespace owner/repo without package_url", webhooktest.Push{Namespace: "Molecule-AI/hookd", Name: "workspace-template-claude-code", Tag: "latest"}, "claude-code"},
		// Another host than registry_host (one a mirror of the other) is no reason to ignore: the
		// tag is resolved at registry_host anyway.
		{"package_url of another host (a mirror)", webhooktest.Push{Namespace: "Molecule-AI", Name: "workspace-template-claude-code", Tag: "latest", PackageURL: "mirror.example.com/molecule-ai/workspace-template-claude-code:latest"}, "claude-code"},
		{"namespace owner/repo, package_url owner/repo/name", webhooktest.Push{Namespace: "molecule-ai/tools", Name: "builder", Tag: "stable", PackageURL: "ghcr.io/molecule-ai/tools/builder:stable"}, "nested"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.push.Digest = digestNew
			event := "package"
			if c.push.Event != "" {
				event = c.push.Event
			}
			id := "ok-" + string(rune('a'+i))
			code, answer := in.send(t, webhooktest.Delivery{Event: event, ID: id, Body: webhooktest.Payload(c.push), Secret: secret})
			if rts, _ := answer["runtimes"].([]any); code != 202 || answer["status"] != "queued" || len(rts) != 1 || rts[0] != c.runtime {
				t.Fatalf("answer %d %v, want queued for %s", code, answer, c.runtime)
			}
			if _, ok, err := in.store.Take(c.runtime); err != nil || !ok {
				t.Fatalf("take %s: ok=%v err=%v", c.runtime, ok, err)
			}
		})
	}
}
