package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/config"
)

func env(kv ...string) func(string) string {
	m := map[string]string{"HOOKD_WEBHOOK_SECRET": "webhook-secret"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadWithoutFile(t *testing.T) {
	c, err := config.Load("", env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != config.DefaultListen || c.Webhook.Path != config.DefaultWebhookPath || len(c.Secrets) != 1 {
		t.Errorf("defaults not applied: %+v", c)
	}
	if len(c.Notify) != 0 {
		t.Errorf("notify = %+v, want none", c.Notify)
	}
}

func TestLoadNotify(t *testing.T) {
	dir := t.TempDir()
	urlFile := write(t, dir, "slack-url", "\n  https://hooks.slack.com/services/T0/B0/secretpath  \n")
	secretFile := write(t, dir, "notify-secret", "notify-hmac\nold-one\n")
	cfg := write(t, dir, "hookd.yaml", `
notify:
  - name: ops-slack
    url_file: `+urlFile+`
    format: slack
  - name: audit
    url: https://audit.example.com/hookd
    secret_file: `+secretFile+`
  - name: failures
    url: http://127.0.0.1:9000/x
    results: [failed, pulled]
`)
	c, err := config.Load(cfg, env())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notify) != 3 {
		t.Fatalf("notify = %+v", c.Notify)
	}
	slack, audit, failures := c.Notify[0], c.Notify[1], c.Notify[2]
	if slack.URL != "https://hooks.slack.com/services/T0/B0/secretpath" || slack.Format != config.NotifySlack || slack.Secret != nil {
		t.Errorf("ops-slack = %+v", slack)
	}
	if audit.Format != config.NotifyJSON || string(audit.Secret) != "notify-hmac" ||
		!slices.Equal(audit.Results, []hookd.Outcome{"rolled_out", "rolled_back", "failed", "refused"}) {
		t.Errorf("audit = %+v", audit)
	}
	if !slices.Equal(failures.Results, []hookd.Outcome{"failed", "pulled"}) {
		t.Errorf("failures = %+v", failures)
	}
}

func TestNotifyProblems(t *testing.T) {
	dir := t.TempDir()
	empty := write(t, dir, "empty", "\n\n")
	missing := filepath.Join(dir, "missing")
	const token = "TOKENsecret"
	cases := []struct {
		name, yaml, want string
	}{
		{"no name", "- url: https://a.example/x", "notify[0]: name is required"},
		{"same name", "- {name: a, url: https://a.example/x}\n- {name: a, url: https://b.example/x}", `notify[1]: name "a" used twice`},
		{"no url", "- name: a", `notify "a": url or url_file is required`},
		{"both", "- {name: a, url: https://a.example/x, url_file: " + empty + "}", "not both"},
		{"scheme", "- {name: a, url: 'ftp://" + token + "@a.example/" + token + "'}", "scheme must be http or https"},
		{"no host", "- {name: a, url: 'https:///" + token + "'}", "host is missing"},
		{"not a url", "- {name: a, url: 'http://a b/" + token + "%zz'}", "not a valid URL"},
		{"bad url in file", "- {name: a, url_file: " + write(t, dir, "bad-url", "slack.com/"+token) + "}", "scheme must be http or https"},
		{"empty url file", "- {name: a, url_file: " + empty + "}", "is empty"},
		{"missing url file", "- {name: a, url_file: " + missing + "}", "url_file"},
		{"format", "- {name: a, url: https://a.example/x, format: teams}", `format "teams": want json or slack`},
		{"result", "- {name: a, url: https://a.example/x, results: [rolled_out, exploded]}", `result "exploded"`},
		{"missing secret", "- {name: a, url: https://a.example/x, secret_file: " + missing + "}", "secret_file"},
		{"empty secret", "- {name: a, url: https://a.example/x, secret_file: " + empty + "}", "secret_file " + empty + " is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := write(t, t.TempDir(), "hookd.yaml", "notify:\n"+indent(c.yaml))
			_, err := config.Load(cfg, env())
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q lacks %q", err, c.want)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error quotes the URL: %q", err)
			}
		})
	}
}

func TestNotifyProblemsAreAllReported(t *testing.T) {
	cfg := write(t, t.TempDir(), "hookd.yaml", `
notify:
  - {name: a, format: xml}
  - {name: b, url: https://b.example/x, results: [nope]}
`)
	_, err := config.Load(cfg, env())
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{`notify "a": url or url_file is required`, `notify "a": format "xml"`, `notify "b": result "nope"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

func TestRuntimesEnvAndDurations(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "hookd.yaml", `
listen: ":9000"
poll:
  interval: 0
runtimes:
  - name: a
    image: GHCR.io/Org/App
    min_uptime: 0
  - name: b
    image: ghcr.io/org/b:v2
    recreate: false
    health_timeout: 5s
    order: start-first
`)
	c, err := config.Load(file, env("HOOKD_LISTEN", "127.0.0.1:9001", "HOOKD_POLL_INTERVAL", "15m"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9001" || c.Poll.Interval.D().String() != "15m0s" {
		t.Errorf("environment does not override the file: listen %s, poll %s", c.Listen, c.Poll.Interval)
	}
	a, b := c.Runtimes[0], c.Runtimes[1]
	if a.Image != "ghcr.io/org/app:latest" || !a.Recreate || a.Parallel != 1 || a.Order != hookd.OrderStopFirst {
		t.Errorf("runtime a: %+v", a)
	}
	if up, health := a.Gate(); up != 0 || health != hookd.DefaultHealthTimeout {
		t.Errorf("runtime a gate: %s %s, want 0 and the default", up, health)
	}
	if b.Order != hookd.OrderStartFirst {
		t.Errorf("runtime b order: %q, want start-first", b.Order)
	}
	if up, health := b.Gate(); up != hookd.DefaultMinUptime || health.String() != "5s" || b.Recreate {
		t.Errorf("runtime b gate: %s %s recreate %v", up, health, b.Recreate)
	}
	if c, err := config.Load(file, env()); err != nil || c.Poll.Interval != 0 {
		t.Errorf("poll interval 0 in the file: %v %v", c.Poll.Interval, err)
	}
}

func TestUnknownKeyIsRefused(t *testing.T) {
	file := write(t, t.TempDir(), "hookd.yaml", "runtimes:\n  - name: a\n    image: ghcr.io/o/a\n    min_uptim: 3s\n")
	if _, err := config.Load(file, env()); err == nil || !strings.Contains(err.Error(), "min_uptim") {
		t.Fatalf("a misspelt key was accepted: %v", err)
	}
}

// check-config lists an unknown order with the others.
func TestUnknownOrderIsListed(t *testing.T) {
	file := write(t, t.TempDir(), "hookd.yaml", "runtimes:\n  - {name: a, image: ghcr.io/o/a, order: blue-green}\n  - {name: b, image: ghcr.io/o/b, parallel: -1}\n")
	_, err := config.Load(file, env())
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{`runtime "a": order "blue-green" is not one of stop-first, start-first`, `runtime "b": parallel must be at least 1`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// OCI tags are case-sensitive; registries' hosts and repositories are not.
func TestNormalizeImageKeepsTheTagAsSpelled(t *testing.T) {
	for in, want := range map[string]string{
		"GHCR.io/Acme/Web:RC1":             "ghcr.io/acme/web:RC1",
		"ghcr.io/acme/web":                 "ghcr.io/acme/web:latest",
		"127.0.0.1:5000/Org/App:Nightly-B": "127.0.0.1:5000/org/app:Nightly-B",
		"127.0.0.1:5000/org/app":           "127.0.0.1:5000/org/app:latest",
	} {
		got, err := config.NormalizeImage(in)
		if err != nil || got != want {
			t.Errorf("NormalizeImage(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := config.NormalizeImage("ghcr.io/acme/web@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"); err == nil {
		t.Error("a reference pinned to a digest was accepted")
	}
}

func TestEngines(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Load("", env())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.EngineNames(); !slices.Equal(got, []string{hookd.DefaultEngine}) || c.Engines[0].Host != "" {
		t.Fatalf("engines without config: %+v, want one named local from DOCKER_HOST", c.Engines)
	}
	ca := write(t, dir, "ca.pem", "x")
	cfg := write(t, dir, "ok.yaml", `
engines:
  - {name: a, host: "unix:///var/run/docker.sock"}
  - {name: b, host: "tcp://10.0.0.2:2376", tls: {ca: `+ca+`, cert: `+ca+`, key: `+ca+`}}
  - {name: c, host: "ssh://deploy@10.0.0.3"}
runtimes:
  - {name: web, image: ghcr.io/acme/web, engines: [a, c]}
  - {name: api, image: ghcr.io/acme/api}
`)
	c, err = config.Load(cfg, env())
	if err != nil {
		t.Fatal(err)
	}
	names := func(rts []hookd.Runtime) (out []string) {
		for _, r := range rts {
			out = append(out, r.Name)
		}
		return out
	}
	if got := names(c.RuntimesOn("b")); !slices.Equal(got, []string{"api"}) {
		t.Fatalf("runtimes on b: %v, want api only", got)
	}
	if got := names(c.RuntimesOn("c")); !slices.Equal(got, []string{"web", "api"}) {
		t.Fatalf("runtimes on c: %v", got)
	}
	bad := write(t, dir, "bad.yaml", `
engines:
  - {name: a, host: "unix:///var/run/docker.sock", tls: {ca: /nonexistent/ca.pem}}
  - {name: a, host: "tcp://10.0.0.2:2376"}
  - {name: "b c", host: "http://x"}
  - {name: d}
  - {name: e, host: "ssh://"}
runtimes:
  - {name: web, image: ghcr.io/acme/web, engines: [nowhere]}
`)
	_, err = config.Load(bad, env())
	if err == nil {
		t.Fatal("a config of bad engines loaded")
	}
	for _, want := range []string{
		"tls is for tcp:// hosts only", "tls.ca: stat /nonexistent/ca.pem", "tls.cert is required",
		`name "a" used twice`, `name "b c"`, "scheme http", "host is required when there are several engines", `host "ssh://" names no machine`,
		`runtime "web": engine "nowhere" is not in engines`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems %q do not say %q", err, want)
		}
	}
}
