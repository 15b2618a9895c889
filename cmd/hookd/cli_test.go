package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookd/hookd/internal/testkit"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConfigListsEveryProblem(t *testing.T) {
	const problems = `
webhook:
  path: hooks
runtimes:
  - name: a
    image: ghcr.io/Org/App@sha256:0000000000000000000000000000000000000000000000000000000000000000
  - name: a
  - image: ghcr.io/org/other:latest
    parallel: -1
`
	bad := writeFile(t, "bad.yaml", "poll:\n  interval: soon\n"+problems)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"check-config", "--config", bad}, env(nil), &stdout, &stderr)
	if err == nil {
		t.Fatalf("check-config accepted a bad file:\n%s", stdout.String())
	}
	// The duration error stops the YAML decode, so it is the one problem reported for this file.
	if !strings.Contains(stderr.String(), "not a duration") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}

	bad = writeFile(t, "bad2.yaml", problems)
	stdout.Reset()
	stderr.Reset()
	err = run(context.Background(), []string{"check-config", "--config", bad}, env(nil), &stdout, &stderr)
	if err == nil {
		t.Fatal("check-config accepted a bad file")
	}
	for _, want := range []string{
		"webhook.path", "pinned to a digest", "name used twice", "image is required",
		"name is required", "parallel", "no webhook secret",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("problem %q not reported:\n%s", want, stderr.String())
		}
	}

	good := writeFile(t, "good.yaml", `
webhook:
  secret_files: [`+writeFile(t, "secret", "s1\ns2\n")+`]
runtimes:
  - name: claude-code
    image: ghcr.io/Molecule-AI/workspace-template-claude-code
`)
	stdout.Reset()
	if err := run(context.Background(), []string{"check-config", "--config", good}, env(nil), &stdout, &stderr); err != nil {
		t.Fatalf("good config refused: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "valid: 1 runtime(s)") || !strings.Contains(stdout.String(), "2 secret(s)") {
		t.Fatalf("stdout: %s", stdout.String())
	}
}

func TestServeRefusesWithoutSecret(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"serve"}, env(map[string]string{"HOOKD_STATE_DIR": t.TempDir()}), &bytes.Buffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no webhook secret") || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("serve without a secret: %v", err)
	}
}

func TestSignMatchesGitHubVector(t *testing.T) {
	secret := writeFile(t, "secret", "It's a Secret to Everybody\n")
	body := writeFile(t, "body", "Hello, World!")
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"sign", "--secret-file", secret, body}, env(nil), &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(stdout.String()); got != "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" {
		t.Fatalf("sign = %s", got)
	}
}

func TestSendHealthAndRemoteRefresh(t *testing.T) {
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	state := t.TempDir()
	cfg := pullOnlyConfig(reg.Host)
	h := startHookd(t, cfg, state, nil)
	secret := writeFile(t, "secret", testSecret+"\n")

	var stdout bytes.Buffer
	ping := writeFile(t, "ping.json", `{"zen":"Design for failure.","hook_id":42}`)
	if err := run(context.Background(), []string{"send", "--url", h.url + "/hooks/ghcr", "--secret-file", secret, "--event", "ping", ping}, env(nil), &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("send ping: %v\n%s", err, stdout.String())
	}
	if !strings.Contains(stdout.String(), "200 OK") || !strings.Contains(stdout.String(), `"pong"`) {
		t.Fatalf("send output: %s", stdout.String())
	}
	wrong := writeFile(t, "wrong", "not-the-secret\n")
	stdout.Reset()
	if err := run(context.Background(), []string{"send", "--url", h.url + "/hooks/ghcr", "--secret-file", wrong, "--event", "ping", ping}, env(nil), &stdout, &bytes.Buffer{}); err == nil || !strings.Contains(stdout.String(), "401") {
		t.Fatalf("send with a wrong secret: %v %s", err, stdout.String())
	}

	listen := strings.TrimPrefix(h.url, "http://")
	if err := run(context.Background(), []string{"health"}, env(map[string]string{"HOOKD_LISTEN": listen}), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("health: %v", err)
	}

	// hookd serve holds the state file: `hookd refresh` goes through its admin API.
	d := reg.Push(t, "org/app", "latest", testkit.App{Version: "v1"})
	cfgFile := writeFile(t, "hookd.yaml", cfg)
	vars := map[string]string{"HOOKD_STATE_DIR": state, "HOOKD_WEBHOOK_SECRET": testSecret, "HOOKD_ADMIN_TOKEN": testToken, "HOOKD_LISTEN": listen}
	stdout.Reset()
	if err := run(context.Background(), []string{"refresh", "--config", cfgFile, "app"}, env(vars), &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	var res struct {
		Result  string   `json:"result"`
		Digest  string   `json:"digest"`
		Trigger string   `json:"trigger"`
		Pulled  []string `json:"pulled"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("refresh output %q: %v", stdout.String(), err)
	}
	if res.Result != "pulled" || res.Digest != d || res.Trigger != "admin" || len(res.Pulled) != 1 {
		t.Fatalf("refresh result %+v", res)
	}
	stdout.Reset()
	if err := run(context.Background(), []string{"refresh", "--config", cfgFile, "nope"}, env(vars), &stdout, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "known_runtimes") {
		t.Fatalf("refresh of an unknown runtime: %v", err)
	}

	// With hookd stopped, `hookd refresh` runs the job itself.
	h.stop()
	stdout.Reset()
	if err := run(context.Background(), []string{"refresh", "--config", cfgFile, "app"}, env(vars), &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("refresh without serve: %v", err)
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Result != "up_to_date" {
		t.Fatalf("refresh without serve: %q %v", stdout.String(), err)
	}
}
