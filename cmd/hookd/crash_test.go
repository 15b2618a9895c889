package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// crashProc is one `hookd serve` run as a separate process, so that it can be SIGKILLed.
type crashProc struct {
	*daemonRun
	cmd  *exec.Cmd
	done chan error
}

// crashBuild builds the hookd binary once for the test; every run of it shares the binary.
func crashBuild(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hookd")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build hookd: %v\n%s", err, out)
	}
	return bin
}

func crashStart(t *testing.T, bin, cfgFile, stateDir string) *crashProc {
	t.Helper()
	logs := newLogBuffer()
	cmd := exec.Command(bin, "serve", "--config", cfgFile)
	cmd.Env = append(os.Environ(),
		"HOOKD_LISTEN=127.0.0.1:0",
		"HOOKD_STATE_DIR="+stateDir,
		"HOOKD_WEBHOOK_SECRET="+testSecret,
		"HOOKD_ADMIN_TOKEN="+testToken,
		"HOOKD_LOG_LEVEL=debug",
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hookd: %v", err)
	}
	p := &crashProc{daemonRun: &daemonRun{t: t, logs: logs}, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	// Whatever happens in the test, the process does not outlive it.
	t.Cleanup(func() { p.kill() })
	select {
	case addr := <-logs.listening:
		p.url = "http://" + addr
	case err := <-p.done:
		p.done <- err
		t.Fatalf("hookd ended at start: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("hookd did not start listening:\n%s", logs)
	}
	return p
}

// kill SIGKILLs the process (if it still runs) and reaps it.
func (p *crashProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL) // fails harmlessly once the process has ended
	err := <-p.done
	p.done <- err
}

// term stops the process as a service manager would and requires a clean exit.
func (p *crashProc) term() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM hookd: %v", err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			p.t.Fatalf("hookd after SIGTERM: %v\n%s", err, p.logs)
		}
	case <-time.After(time.Minute):
		p.t.Fatalf("hookd did not stop on SIGTERM\n%s", p.logs)
	}
}

// crashMember is one container of the runtime as the test created it.
type crashMember struct {
	name    string
	volume  string
	running bool
	// slowStop makes `docker stop` take a second: the app ignores the stop signal until the
	// engine kills it, as apps without signal handling do.
	slowStop bool
	runtime  string // its hookd.runtime label; "crash" when empty
}

// crashPoint is where a run SIGKILLs hookd: on the nth engine event of action for the runtime's
// containers (plus after), or, with no action, after from the delivery's 202.
type crashPoint struct {
	name   string
	action string
	member string // only events of this container name count; any when empty
	nth    int
	after  time.Duration
	done   bool // once the job has finished
}

func TestCrashRecovery(t *testing.T) {
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	bin := crashBuild(t)
	id := testkit.TestID(t)
	tag := reg.Host + "/org/crash:latest"

	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "hookd.yaml")
	cfg := fmt.Sprintf(`
registry_host: %q
poll:
  interval: 0
runtimes:
  - name: crash
    image: %s
    min_uptime: 1s
    health_timeout: 10s
    parallel: 1
`, reg.Host, tag)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")

	d1 := reg.Push(t, "org/crash", "latest", crashApp(id, "v1", ""))
	crashPull(t, cli, reg.Host+"/org/crash@"+d1, tag)
	// Sorted by name, the stopped one comes last, so the early kill points land on running ones.
	members := []crashMember{
		{name: id + "-1", volume: id + "-vol1", running: true},
		{name: id + "-2", volume: id + "-vol2", running: true, slowStop: true},
		{name: id + "-3", volume: id + "-vol3", running: false},
	}
	for _, m := range members {
		crashCreate(t, cli, tag, m)
	}

	points := []crashPoint{
		{name: "at 202 (resolve, pull, tag)"},
		{name: "rename_old of #1", action: "create", nth: 1},
		{name: "rename_new of #1", action: "rename", nth: 1},
		{name: "stop_old of #1", action: "rename", nth: 2},
		{name: "start_new of #1", action: "stop", nth: 1},
		{name: "gate of #1", action: "start", nth: 1, after: 300 * time.Millisecond},
		{name: "create of #2, #1 switched", action: "create", nth: 2},
		// The engine goes on stopping #2 for a second after hookd dies: recovery must not
		// take the still-running old container for one it need not start again.
		// By then the old #2 is set aside under its temporary name.
		{name: "stop of #2 in flight", action: "kill", member: members[1].name + "-hookd-old", nth: 1},
		{name: "gate of #2", action: "start", nth: 2, after: 500 * time.Millisecond},
		{name: "stopped #3 set aside", action: "rename", nth: 5},
		{name: "commit", action: "destroy", nth: 1},
		{name: "after the job", done: true},
	}
	lastJob, good := uint64(0), ""
	for n, point := range points {
		version := fmt.Sprintf("v%d", n+2)
		digest := reg.Push(t, "org/crash", "latest", crashApp(id, version, ""))
		began := time.Now()
		p := crashStart(t, bin, cfgFile, stateDir)
		crashKillAt(t, cli, p, point, id, fmt.Sprintf("crash-%d", n), digest, lastJob)
		killed := time.Now()
		if bad := crashDegraded(t, cli, members); len(bad) > 1 {
			t.Fatalf("%s: killed hookd left more than one container down: %v", point.name, bad)
		}

		p = crashStart(t, bin, cfgFile, stateDir)
		st := crashConverged(t, cli, p, "crash", point, id, members, reg.Host+"/org/crash", digest)
		lastJob, good = st.LastRollout.JobID, crashImageID(t, cli, reg.Host+"/org/crash@"+digest)
		converged := time.Now()
		p.term()
		t.Logf("%s: killed after %s, converged %s after restart, stopped in %s", point.name, killed.Sub(began), converged.Sub(killed), time.Since(converged))
	}

	// A new image that exits at start, killed while it is gated: the restart reverts, the
	// resumed job fails the same way and the digest is remembered as failed.
	bad := reg.Push(t, "org/crash", "latest", crashApp(id, "broken", "exit"))
	p := crashStart(t, bin, cfgFile, stateDir)
	crashKillAt(t, cli, p, crashPoint{name: "gate of a failing image", action: "start", nth: 1}, id, "crash-exit", bad, lastJob)
	if bad := crashDegraded(t, cli, members); len(bad) > 1 {
		t.Fatalf("failing image: killed hookd left more than one container down: %v", bad)
	}
	// The failing replacement under the first name means hookd died before it rolled back.
	first, err := cli.ContainerInspect(context.Background(), members[0].name)
	midGate := err == nil && first.Image == crashImageID(t, cli, reg.Host+"/org/crash@"+bad)
	p = crashStart(t, bin, cfgFile, stateDir)
	var st runtimeStatus
	p.eventually(t, func() (bool, string) {
		st = p.daemonRun.status("crash")
		return st.Pending == nil && st.LastRollout != nil && st.LastRollout.Digest == bad,
			fmt.Sprintf("pending %+v last %+v", st.Pending, st.LastRollout)
	})
	if st.LastRollout.Result != "rolled_back" || st.Record.FailedDigest != bad {
		t.Fatalf("failing image: last rollout %+v, record %+v; want rolled_back with %s recorded as failed", st.LastRollout, st.Record, bad)
	}
	if problems := crashProblems(t, cli, id, members, good); len(problems) > 0 {
		t.Fatalf("failing image: after roll back: %v\n%s", problems, p.logs)
	}
	if !midGate {
		t.Log("failing image: the kill landed after hookd had rolled back by itself")
	} else if !p.logs.contains("settled interrupted rollout", `"committed":false`) {
		t.Fatalf("failing image: killed mid-gate, but the restart did not revert a journaled rollout:\n%s", p.logs)
	}
	crashVolumesIntact(t, cli, members)
	p.term()
}

// crashApp is an image unique to this test: images are content-addressed, and another test's
// identical image would be shared with it (and its cleanup).
// crashConverged waits until the restarted hookd has finished the job on digest with every
// member healthy on it, and checks the outcome and the members' volumes.
func crashConverged(t *testing.T, cli *client.Client, p *crashProc, runtime string, point crashPoint, id string, members []crashMember, repo, digest string) runtimeStatus {
	t.Helper()
	var st runtimeStatus
	p.eventually(t, func() (bool, string) {
		st = p.daemonRun.status(runtime)
		if st.Pending != nil || st.LastRollout == nil || st.LastRollout.Digest != digest {
			return false, fmt.Sprintf("%s: waiting for the job on %s: pending %+v last %+v", point.name, digest, st.Pending, st.LastRollout)
		}
		problems := crashProblems(t, cli, id, members, crashImageID(t, cli, repo+"@"+digest))
		return len(problems) == 0, fmt.Sprintf("%s: %v", point.name, problems)
	})
	if r := st.LastRollout.Result; r != "rolled_out" && r != "up_to_date" {
		t.Fatalf("%s: last rollout %+v", point.name, st.LastRollout)
	}
	crashVolumesIntact(t, cli, members)
	return st
}

func crashApp(testID, version, mode string) testkit.App {
	return testkit.App{Version: version, Mode: mode, Env: []string{"CRASH_TEST=" + testID}}
}

// eventually polls cond for up to a minute; on failure it shows hookd's log too.
func (p *crashProc) eventually(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		ok, state := cond()
		if ok {
			return true, ""
		}
		return false, state + "\nhookd log:\n" + p.logs.String()
	})
}

// crashKillAt delivers a push of digest and SIGKILLs p at point.
func crashKillAt(t *testing.T, cli *client.Client, p *crashProc, point crashPoint, testID, delivery, digest string, lastJob uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Events since now are replayed, so none is missed while the stream connects.
	since := time.Now()
	msgs, errs := cli.Events(ctx, events.ListOptions{
		Since:   fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		Filters: filters.NewArgs(filters.Arg("type", "container"), filters.Arg("label", testkit.LabelTestID+"="+testID)),
	})
	if code, answer := p.deliver(webhooktest.Push{Namespace: "org", Name: "crash", Tag: "latest", Digest: digest}, delivery); code != http.StatusAccepted {
		t.Fatalf("%s: delivery: %d %v", point.name, code, answer)
	}
	switch {
	case point.done:
		p.waitJob("crash", lastJob)
	case point.action != "":
		seen := 0
		deadline := time.After(time.Minute)
		for seen < point.nth {
			select {
			case m := <-msgs:
				if string(m.Action) == point.action && (point.member == "" || m.Actor.Attributes["name"] == point.member) {
					seen++
				}
			case err := <-errs:
				t.Fatalf("%s: engine events: %v", point.name, err)
			case <-deadline:
				t.Fatalf("%s: saw %d of %d %q events\n%s", point.name, seen, point.nth, point.action, p.logs)
			}
		}
	}
	if point.after > 0 {
		<-time.After(point.after) // the kill point itself: a moment inside the step
	}
	p.kill()
}

// crashDegraded names the members that are not as they were: missing under their name, or
// stopped though they were running.
func crashDegraded(t *testing.T, cli *client.Client, members []crashMember) []string {
	t.Helper()
	var out []string
	for _, m := range members {
		c, err := cli.ContainerInspect(context.Background(), m.name)
		switch {
		case err != nil:
			out = append(out, m.name+": "+err.Error())
		case m.running && !c.State.Running:
			out = append(out, m.name+": "+c.State.Status)
		}
	}
	return out
}

// crashProblems lists how the runtime differs from converged on imageID: each member under its
// own name, on imageID, running as it was, on its own volume, and nothing else of the test's.
func crashProblems(t *testing.T, cli *client.Client, testID string, members []crashMember, imageID string) []string {
	t.Helper()
	ctx := context.Background()
	all, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", testkit.LabelTestID+"="+testID))})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var problems []string
	var names []string
	for _, c := range all {
		for _, n := range c.Names {
			names = append(names, strings.TrimPrefix(n, "/"))
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(members, func(m crashMember) bool { return m.name == n }) {
			problems = append(problems, "leftover container "+n)
		}
	}
	for _, m := range members {
		c, err := cli.ContainerInspect(ctx, m.name)
		if err != nil {
			problems = append(problems, m.name+": "+err.Error())
			continue
		}
		if c.Image != imageID {
			problems = append(problems, fmt.Sprintf("%s on %s, want %s", m.name, c.Image, imageID))
		}
		if c.State.Running != m.running {
			problems = append(problems, fmt.Sprintf("%s is %s", m.name, c.State.Status))
		}
		if !slices.ContainsFunc(c.Mounts, func(mp container.MountPoint) bool { return mp.Name == m.volume && mp.Destination == "/data" }) {
			problems = append(problems, fmt.Sprintf("%s lost volume %s: %+v", m.name, m.volume, c.Mounts))
		}
	}
	return problems
}

// crashVolumesIntact reads each running member's data back through its volume.
func crashVolumesIntact(t *testing.T, cli *client.Client, members []crashMember) {
	t.Helper()
	for _, m := range members {
		if !m.running {
			continue // its mount of the same volume is checked by crashProblems
		}
		if got := crashExec(t, cli, m.name, "/app", "read", "/data/file"); got != "data of "+m.name {
			t.Fatalf("%s: volume data %q", m.name, got)
		}
	}
}

func crashImageID(t *testing.T, cli *client.Client, ref string) string {
	t.Helper()
	img, err := cli.ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatalf("inspect image %s: %v", ref, err)
	}
	return img.ID
}

// crashPull pulls ref by digest and tags it as tag, as `docker pull` of the tag would leave it.
func crashPull(t *testing.T, cli *client.Client, ref, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	out, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("pull %s: %v %s", ref, err, out)
	}
	if err := cli.ImageTag(ctx, ref, tag); err != nil {
		t.Fatalf("tag %s: %v", ref, err)
	}
}

// crashCreate creates m from image with its own named volume holding data, restart policy
// unless-stopped, and leaves it running or stopped as m says.
func crashCreate(t *testing.T, cli *client.Client, image string, m crashMember) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: m.volume, Labels: testkit.Labels(t)}); err != nil {
		t.Fatalf("create volume %s: %v", m.volume, err)
	}
	labels := testkit.Labels(t)
	labels["hookd.runtime"] = "crash"
	if m.runtime != "" {
		labels["hookd.runtime"] = m.runtime
	}
	cfg := &container.Config{Image: image, Labels: labels}
	if m.slowStop {
		timeout := 1
		cfg.StopSignal, cfg.StopTimeout = "SIGWINCH", &timeout // a Go program ignores SIGWINCH
	}
	created, err := cli.ContainerCreate(ctx, cfg,
		&container.HostConfig{
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: m.volume, Target: "/data"}},
		}, nil, nil, m.name)
	if err != nil {
		t.Fatalf("create %s: %v", m.name, err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", m.name, err)
	}
	crashExec(t, cli, m.name, "/app", "write", "/data/file", "data of "+m.name)
	if !m.running {
		if err := cli.ContainerStop(ctx, created.ID, container.StopOptions{}); err != nil {
			t.Fatalf("stop %s: %v", m.name, err)
		}
	}
}

func crashExec(t *testing.T, cli *client.Client, id string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatalf("exec %v in %s: %v", cmd, id, err)
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec attach %v: %v", cmd, err)
	}
	defer att.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("exec %v output: %v", cmd, err)
	}
	res, err := cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		t.Fatalf("exec inspect %v: %v", cmd, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exec %v in %s: exit %d: %s", cmd, id, res.ExitCode, stderr.String())
	}
	return stdout.String()
}
