// Package deploy holds the operator kit: the image, compose file, systemd unit, Prometheus
// rules and Grafana dashboard. Its tests check them against the real hookd and the real engine.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"go.yaml.in/yaml/v3"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// requireTool returns the path of a tool CI installs; without it the test skips, or fails when
// HOOKD_REQUIRE_DOCKER=1 (CI), so CI cannot skip these checks silently.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("HOOKD_REQUIRE_DOCKER") == "1" {
			t.Fatalf("%s required (HOOKD_REQUIRE_DOCKER=1): %v", name, err)
		}
		t.Skipf("no %s: %v", name, err)
	}
	return p
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPrometheusConfigAndRules(t *testing.T) {
	promtool := requireTool(t, "promtool")
	runTool(t, promtool, "check", "config", "prometheus/prometheus.yml")
	runTool(t, promtool, "check", "rules", "prometheus/hookd.rules.yml")
	out := runTool(t, promtool, "test", "rules", "prometheus/hookd.rules.test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules did not report success:\n%s", out)
	}
}

type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	var rules ruleFile
	readYAML(t, "prometheus/hookd.rules.yml", &rules)
	return rules
}

func readYAML(t *testing.T, path string, out any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// A rule without a test that sees it fire is a rule nobody knows works.
func TestEveryAlertHasAFiringTest(t *testing.T) {
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, "prometheus/hookd.rules.test.yml", &tests)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var alerts int
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alert %s needs a test where it fires (%v) and one where it does not (%v)", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts in prometheus/hookd.rules.yml")
	}
}

var hookdMetric = regexp.MustCompile(`\bhookd_[a-zA-Z0-9_]+`)

// metricsReferenced returns the hookd_* names the alert rules and the dashboard query, with
// where each is used.
func metricsReferenced(t *testing.T) map[string]string {
	t.Helper()
	refs := map[string]string{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			for _, m := range hookdMetric.FindAllString(r.Expr, -1) {
				refs[m] = "alert " + r.Alert
			}
		}
	}
	raw, err := os.ReadFile("grafana/hookd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/hookd-dashboard.json: %v", err)
	}
	var queries int
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if expr, ok := v["expr"].(string); ok {
				queries++
				for _, m := range hookdMetric.FindAllString(expr, -1) {
					refs[m] = "dashboard"
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(dash)
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return refs
}

// buildHookd builds the real binary, version-stamped the way the Makefile stamps it.
func buildHookd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hookd")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=deploytest", "-o", bin, "./cmd/hookd")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// lines collects a process's log and reports the address of its "hookd listening" line.
type lines struct {
	mu        sync.Mutex
	all       []string
	listening chan string
}

func (l *lines) add(line string) {
	l.mu.Lock()
	l.all = append(l.all, line)
	l.mu.Unlock()
	var entry struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "hookd listening" {
		select {
		case l.listening <- entry.Addr:
		default:
		}
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

// serve runs `bin serve` until the test ends and returns the address it listens on.
func serve(t *testing.T, bin string, env ...string) string {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log := &lines{listening: make(chan string, 1)}
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			log.add(sc.Text())
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("hookd serve exited: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("hookd serve did not stop within 30s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("hookd log:\n%s", log)
		}
	})
	select {
	case addr := <-log.listening:
		return addr
	case err := <-exited:
		t.Fatalf("hookd serve exited before listening: %v\n%s", err, log)
	case <-time.After(60 * time.Second):
		t.Fatalf("hookd serve did not log its address within 60s:\n%s", log)
	}
	return ""
}

// exposition is one scrape of /metrics: every sample name and every family name.
type exposition map[string]bool

func scrape(url string) (exposition, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	names := exposition{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names[strings.Fields(rest)[0]] = true
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		names[name] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				names[base] = true
			}
		}
	}
	return names, sc.Err()
}

// Every series the alerts and the dashboard query is one hookd serves. The runtime is on a
// loopback registry and the poll runs every second, so the poll's series (made on the first
// check) are there too; the notify endpoint makes the notifications' series.
func TestRulesAndDashboardUseHookdsMetrics(t *testing.T) {
	refs := metricsReferenced(t)
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	// A version of its own: images shared with other tests' registries are not this test's to remove.
	reg.Push(t, "org/app", "latest", testkit.App{Version: "v1-" + testkit.TestID(t)})
	cfg := filepath.Join(t.TempDir(), "hookd.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
registry_host: %q
poll:
  interval: 1s
  pace: 1ms
runtimes:
  - name: %s
    image: %s/org/app:latest
    recreate: false
notify:
  - name: ops
    url: http://127.0.0.1:9/hookd
`, reg.Host, strings.ToLower(testkit.TestID(t)), reg.Host), 0o600)
	addr := serve(t, buildHookd(t),
		"HOOKD_CONFIG="+cfg, "HOOKD_LISTEN=127.0.0.1:0", "HOOKD_STATE_DIR="+t.TempDir(),
		"HOOKD_WEBHOOK_SECRET=deploytest", "HOOKD_LOG_LEVEL=debug")

	var last exposition
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		names, err := scrape("http://" + addr + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		last = names
		return names["hookd_poll_checks_total"] && names["hookd_runtime_behind"], "no poll series yet"
	})
	for name, where := range refs {
		if !last[name] {
			t.Errorf("%s (used by %s) is not in hookd's /metrics", name, where)
		}
	}
	if len(refs) == 0 {
		t.Fatal("no hookd_* metric referenced by the rules or the dashboard")
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is masked by the umask; containers read these as another user.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// The example config is valid, and the compose file wires hookd the way the image expects.
func TestComposeAndExampleConfig(t *testing.T) {
	bin := buildHookd(t)
	secret := filepath.Join(t.TempDir(), "secret")
	writeFile(t, secret, "deploytest\n", 0o600)
	cmd := exec.Command(bin, "check-config", "--config", "hookd.yaml")
	cmd.Env = append(os.Environ(), "HOOKD_WEBHOOK_SECRET_FILE="+secret)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 runtime(s)") {
		t.Fatalf("hookd check-config --config hookd.yaml: %v\n%s", err, out)
	}

	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			GroupAdd    []string          `yaml:"group_add"`
			Environment map[string]string `yaml:"environment"`
			Secrets     []string          `yaml:"secrets"`
			Volumes     []string          `yaml:"volumes"`
			Labels      map[string]string `yaml:"labels"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	readYAML(t, "compose.yaml", &compose)
	hookd := compose.Services["hookd"]
	if hookd.Image != "hookd:latest" || len(hookd.GroupAdd) != 1 {
		t.Errorf("hookd service: image %q, group_add %v", hookd.Image, hookd.GroupAdd)
	}
	for _, v := range []string{"/var/run/docker.sock:/var/run/docker.sock", "./hookd.yaml:/etc/hookd/hookd.yaml:ro", "hookd-state:/var/lib/hookd"} {
		if !slices.Contains(hookd.Volumes, v) {
			t.Errorf("hookd service does not mount %s: %v", v, hookd.Volumes)
		}
	}
	if hookd.Environment["HOOKD_CONFIG"] != "/etc/hookd/hookd.yaml" {
		t.Errorf("hookd service does not read the mounted config: HOOKD_CONFIG=%q", hookd.Environment["HOOKD_CONFIG"])
	}
	for _, s := range hookd.Secrets {
		if compose.Secrets[s].File == "" {
			t.Errorf("secret %s is not read from a file", s)
		}
		if !strings.Contains(hookd.Environment["HOOKD_WEBHOOK_SECRET_FILE"]+hookd.Environment["HOOKD_ADMIN_TOKEN_FILE"], "/run/secrets/"+s) {
			t.Errorf("secret %s is mounted but hookd is not told about it", s)
		}
	}
	if hookd.Environment["HOOKD_WEBHOOK_SECRET_FILE"] == "" {
		t.Error("hookd service has no HOOKD_WEBHOOK_SECRET_FILE")
	}
	var cfg struct {
		Runtimes []struct {
			Name  string `yaml:"name"`
			Image string `yaml:"image"`
		} `yaml:"runtimes"`
	}
	readYAML(t, "hookd.yaml", &cfg)
	example := compose.Services["example"]
	if len(cfg.Runtimes) != 1 || example.Labels["hookd.runtime"] != cfg.Runtimes[0].Name || example.Image != cfg.Runtimes[0].Image {
		t.Errorf("the example service (label %q, image %q) is not the runtime in hookd.yaml (%+v)", example.Labels["hookd.runtime"], example.Image, cfg.Runtimes)
	}
}

func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("no systemd-analyze: %v", err)
	}
	raw, err := os.ReadFile("hookd.service")
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/hookd"
	if !bytes.Contains(raw, []byte("ExecStart="+installed+" ")) {
		t.Fatalf("hookd.service does not start %s", installed)
	}
	// verify checks that ExecStart's binary exists: point it at a real one.
	unit := filepath.Join(t.TempDir(), "hookd.service")
	writeFile(t, unit, strings.ReplaceAll(string(raw), installed, buildHookd(t)), 0o644)

	out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// verify exits 0 for settings it ignores (unknown keys, bad values); it names the unit then.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "hookd.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}

	// The sandbox keeps its strength: offline security analysis exists since systemd 250.
	ver, err := exec.Command(analyze, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(ver)); len(f) < 2 || atoi(f[1]) < 250 {
		t.Logf("systemd %s: no offline security analysis", strings.TrimSpace(string(ver)))
		return
	}
	// Exposure is out of 10 and --threshold counts tenths: 2.0 and below is "OK".
	if out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", unit).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0: %v\n%s", err, out)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// dockerSocket is the engine's socket on this host, which the hookd container mounts.
func dockerSocket(t *testing.T) string {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		return "/var/run/docker.sock"
	}
	if p, ok := strings.CutPrefix(host, "unix://"); ok {
		return p
	}
	t.Skipf("DOCKER_HOST=%s: the engine's socket is not on this host", host)
	return ""
}

// buildImage runs `make image` as a user would, under a name of the test's own, and removes the
// image (every tag) when the test ends.
func buildImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	name := "hookd-" + strings.ToLower(testkit.TestID(t))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		imgs, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", name))})
		if err != nil {
			t.Errorf("list images %s: %v", name, err)
			return
		}
		for _, img := range imgs {
			if _, err := cli.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
				t.Errorf("remove image %s: %v", name, err)
			}
		}
	})
	cmd := exec.Command("make", "--no-print-directory", "-C", "..", "image", "IMAGE="+name, "IMAGE_CONTEXT="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	return name + ":latest"
}

// freePort returns a loopback address nothing listens on just now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// containerLog returns a container's stdout and stderr.
func containerLog(cli *client.Client, id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		return "", err
	}
	return out.String(), nil
}

// The image, run the way compose.yaml runs it (a non-root user in the socket's group, a read-only
// root, the config and the secret from files, state on a volume), rolls a labelled container
// out to the digest a signed delivery announces.
func TestImageRollsOutFromAContainer(t *testing.T) {
	cli := testkit.Docker(t)
	socket := dockerSocket(t)
	ref := buildImage(t, cli)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	ctx := context.Background()
	id := strings.ToLower(testkit.TestID(t))
	repo := reg.Host + "/org/app"

	// The runtime's container, made from v1 as `docker pull` + `docker run` would.
	// Versions of its own: images shared with other tests' registries are not this test's to remove.
	d1 := reg.Push(t, "org/app", "latest", testkit.App{Version: "v1-" + id})
	rc, err := cli.ImagePull(ctx, repo+"@"+d1, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	if err := cli.ImageTag(ctx, repo+"@"+d1, repo+":latest"); err != nil {
		t.Fatal(err)
	}
	// Runtimes are found by label across the engine: a name of its own keeps other tests' hookds
	// away from this test's container, and this hookd away from theirs.
	runtime := id
	labels := testkit.Labels(t)
	labels["hookd.runtime"] = runtime
	app, err := cli.ContainerCreate(ctx, &container.Config{Image: repo + ":latest", Labels: labels}, nil, nil, nil, id+"-app")
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, app.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}

	// hookd's files, as an operator would lay them out.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hookd.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
registry_host: %q
webhook:
  path: /hooks/ghcr
  secret_files: [/run/secrets/hookd-webhook]
poll:
  interval: 0
  pace: 1ms
runtimes:
  - name: %s
    image: %s:latest
    min_uptime: 1s
    health_timeout: 30s
`, reg.Host, runtime, repo), 0o644)
	secretBytes := make([]byte, 16)
	_, _ = rand.Read(secretBytes)
	secret := hex.EncodeToString(secretBytes)
	secretFile := filepath.Join(dir, "hookd-webhook")
	writeFile(t, secretFile, secret+"\n", 0o644)
	stateVolume := id + "-state"
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: stateVolume, Labels: testkit.Labels(t)}); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(socket, &st); err != nil {
		t.Fatalf("docker socket: %v", err)
	}

	// Host network: hookd reaches the loopback registry, and the test reaches hookd. The port is
	// fixed, not :0, because the healthcheck finds hookd through HOOKD_LISTEN.
	listen := freePort(t)
	created, err := cli.ContainerCreate(ctx, &container.Config{
		Image:       ref,
		Env:         []string{"HOOKD_CONFIG=/etc/hookd/hookd.yaml", "HOOKD_LISTEN=" + listen, "HOOKD_LOG_LEVEL=debug"},
		Labels:      testkit.Labels(t),
		Healthcheck: &container.HealthConfig{Interval: time.Second}, // the image's check, more often
	}, &container.HostConfig{
		NetworkMode: "host",
		GroupAdd:    []string{strconv.Itoa(int(st.Gid))},
		Binds: []string{
			socket + ":/var/run/docker.sock",
			cfg + ":/etc/hookd/hookd.yaml:ro",
			secretFile + ":/run/secrets/hookd-webhook:ro",
			stateVolume + ":/var/lib/hookd",
		},
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges:true"},
	}, nil, nil, id+"-hookd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, err := containerLog(cli, created.ID)
			t.Logf("hookd container log (%v):\n%s", err, out)
		}
	})
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}

	var addr string
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := containerLog(cli, created.ID)
		if err != nil {
			return false, err.Error()
		}
		log := &lines{listening: make(chan string, 1)}
		for _, l := range strings.Split(out, "\n") {
			log.add(l)
		}
		select {
		case addr = <-log.listening:
			return addr == listen, "hookd listens on " + addr + ", not " + listen
		default:
			return false, "no \"hookd listening\" line in:\n" + out
		}
	})
	// Ready means the engine answers through the mounted socket: the added group works.
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("readyz: %s %s", resp.Status, body)
	})

	d2 := reg.Push(t, "org/app", "latest", testkit.App{Version: "v2-" + id})
	code, answer, err := webhooktest.Send(ctx, http.DefaultClient, "http://"+addr+"/hooks/ghcr", webhooktest.Delivery{
		Event:  "package",
		ID:     id + "-1",
		Body:   webhooktest.Payload(webhooktest.Push{Namespace: "Org", Name: "app", Tag: "latest", Digest: d2}),
		Secret: []byte(secret),
	})
	if err != nil || code != http.StatusAccepted || answer["status"] != "queued" {
		t.Fatalf("delivery: %d %v %v", code, answer, err)
	}

	testkit.Eventually(t, 3*time.Minute, func() (bool, string) {
		v2, err := cli.ImageInspect(ctx, repo+"@"+d2)
		if err != nil {
			return false, "v2 not pulled: " + err.Error()
		}
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", "hookd.runtime="+runtime), filters.Arg("label", testkit.LabelTestID+"="+testkit.TestID(t)))})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, c := range list {
			seen = append(seen, fmt.Sprintf("%s %s %s", c.Names, c.ImageID, c.State))
		}
		ok := len(list) == 1 && list[0].ImageID == v2.ID && list[0].State == "running" && list[0].ID != app.ID
		return ok, fmt.Sprintf("want one running container of %s, not %s; have %v", v2.ID, app.ID, seen)
	})

	// The image's HEALTHCHECK (`hookd health`) finds hookd on HOOKD_LISTEN.
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		c, err := cli.ContainerInspect(ctx, created.ID)
		if err != nil {
			return false, err.Error()
		}
		if c.State.Health == nil {
			return false, "no health state"
		}
		var last string
		if n := len(c.State.Health.Log); n > 0 {
			last = c.State.Health.Log[n-1].Output
		}
		return c.State.Health.Status == "healthy", fmt.Sprintf("health %s: %s", c.State.Health.Status, last)
	})
}
