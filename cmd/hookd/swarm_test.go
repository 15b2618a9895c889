package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/hookd/hookd/internal/testkit"
)

// swarmFleet is a runtime made of one Swarm service on the single-node swarm, pulling from the
// loopback registry.
type swarmFleet struct {
	*fleet
	overlay string
}

func newSwarmFleet(t *testing.T) *swarmFleet {
	// A runtime name of its own: other tests' hookds on this engine must not see the service.
	f := newFleet(t, fmt.Sprintf("swarm-%d-%s", os.Getpid(), strings.ToLower(strings.TrimPrefix(t.Name(), "TestSwarm"))))
	testkit.RequireSwarm(t, f.cli)
	s := &swarmFleet{fleet: f, overlay: f.id + "-ov"}
	if _, err := f.cli.NetworkCreate(context.Background(), s.overlay, network.CreateOptions{Driver: "overlay", Attachable: true, Labels: testkit.Labels(t)}); err != nil {
		t.Fatal(err)
	}
	return s
}

// create makes a 2-replica service of the runtime on repo:latest@digest, with an env entry, a
// named volume, the overlay network with an alias, labels of its own and a published port,
// and the given update and rollback configs.
func (s *swarmFleet) create(digest string, update, rollback *swarm.UpdateConfig) string {
	s.t.Helper()
	labels := testkit.Labels(s.t)
	labels["hookd.runtime"] = s.runtime
	labels["team"] = "core"
	two := uint64(2)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: s.id + "-svc", Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:  s.repo + ":latest@" + digest,
				Env:    []string{"APP_SHAPE=circle"},
				Labels: testkit.Labels(s.t),
				Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: s.id + "-svcdata", Target: "/data",
					VolumeOptions: &mount.VolumeOptions{Labels: testkit.Labels(s.t)}}},
			},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: s.overlay, Aliases: []string{"web"}}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
		},
		Mode:           swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &two}},
		UpdateConfig:   update,
		RollbackConfig: rollback,
		EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{
			{Protocol: swarm.PortConfigProtocolTCP, TargetPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress},
		}},
	}
	created, err := s.cli.ServiceCreate(context.Background(), spec, swarm.ServiceCreateOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	s.waitTasks(created.ID, digest)
	return created.ID
}

func (s *swarmFleet) service(id string) swarm.Service {
	s.t.Helper()
	svc, _, err := s.cli.ServiceInspectWithRaw(context.Background(), id, swarm.ServiceInspectOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return svc
}

// tasksOn reports whether every task that should run runs digest, two of them.
func (s *swarmFleet) tasksOn(id, digest string) (bool, string) {
	tasks, err := s.cli.TaskList(context.Background(), swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", id), filters.Arg("desired-state", "running"))})
	if err != nil {
		return false, err.Error()
	}
	var seen []string
	ok := len(tasks) == 2
	for _, t := range tasks {
		seen = append(seen, fmt.Sprintf("%s %s", t.Status.State, t.Spec.ContainerSpec.Image))
		ok = ok && t.Status.State == swarm.TaskStateRunning && strings.HasSuffix(t.Spec.ContainerSpec.Image, "@"+digest)
	}
	return ok, fmt.Sprintf("tasks %v, want 2 running %s", seen, digest)
}

func (s *swarmFleet) waitTasks(id, digest string) {
	s.t.Helper()
	testkit.Eventually(s.t, 2*time.Minute, func() (bool, string) { return s.tasksOn(id, digest) })
}

// imageUpdates counts, from now on, the updates of service id that changed its image to one
// pinned to a digest (Swarm's own events: one per accepted spec change of the image).
type imageUpdates struct {
	mu     sync.Mutex
	to     map[string]int // digest → updates to it
	cancel context.CancelFunc
}

func (s *swarmFleet) watchImageUpdates(id string) *imageUpdates {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &imageUpdates{to: map[string]int{}, cancel: cancel}
	s.t.Cleanup(cancel)
	msgs, errs := s.cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", "service"), filters.Arg("service", id))})
	ready := make(chan struct{})
	go func() {
		close(ready)
		for {
			select {
			case m := <-msgs:
				if img := m.Actor.Attributes["image.new"]; m.Action == "update" && img != "" && img != m.Actor.Attributes["image.old"] {
					w.mu.Lock()
					w.to[img[strings.LastIndex(img, "@")+1:]]++
					w.mu.Unlock()
				}
			case <-errs:
				return
			}
		}
	}()
	<-ready
	return w
}

func (w *imageUpdates) count(digest string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.to[digest]
}

// swarmResult is what the tests read of a job's result.
type swarmResult struct {
	JobID      uint64   `json:"job_id"`
	Result     string   `json:"result"`
	Reason     string   `json:"reason"`
	Services   []string `json:"services"`
	RolledBack []string `json:"rolled_back"`
	Trigger    string   `json:"trigger"`
}

// lastResult reads the runtime's last result from /admin/status once it is from a job after
// afterJob and nothing is pending.
func (h *daemonRun) lastResult(runtime string, afterJob uint64) swarmResult {
	h.t.Helper()
	var res swarmResult
	testkit.Eventually(h.t, 3*time.Minute, func() (bool, string) {
		var out struct {
			Runtimes []struct {
				Name        string       `json:"name"`
				Pending     any          `json:"pending"`
				LastRollout *swarmResult `json:"last_rollout"`
			} `json:"runtimes"`
		}
		if code := h.admin(http.MethodGet, "/admin/status", &out); code != http.StatusOK {
			return false, fmt.Sprintf("/admin/status %d", code)
		}
		for _, r := range out.Runtimes {
			if r.Name == runtime && r.LastRollout != nil && r.LastRollout.JobID > afterJob && r.Pending == nil {
				res = *r.LastRollout
				return true, ""
			}
		}
		return false, fmt.Sprintf("no finished job of %s after %d yet: %+v", runtime, afterJob, out.Runtimes)
	})
	return res
}

func sameSpecBut(t *testing.T, before, after swarm.ServiceSpec) {
	t.Helper()
	b, a := before, after
	bcs, acs := *b.TaskTemplate.ContainerSpec, *a.TaskTemplate.ContainerSpec
	acs.Image = bcs.Image
	b.TaskTemplate.ContainerSpec, a.TaskTemplate.ContainerSpec = &bcs, &acs
	if !reflect.DeepEqual(b, a) {
		t.Errorf("the spec changed beyond the image:\nbefore %+v\nafter  %+v", b, a)
	}
}

var swarmUpdate = &swarm.UpdateConfig{Parallelism: 1, Monitor: time.Second, FailureAction: swarm.UpdateFailureActionRollback, Order: swarm.UpdateOrderStopFirst}

func TestSwarmServiceRollsOutOnceForABurst(t *testing.T) {
	s := newSwarmFleet(t)
	v1 := s.push(testkit.App{Version: "v1"})
	id := s.create(v1, swarmUpdate, &swarm.UpdateConfig{Parallelism: 2, Monitor: time.Second})
	before := s.service(id)
	updates := s.watchImageUpdates(id)
	h := startHookd(t, s.config(""), t.TempDir(), nil)

	v2 := s.push(testkit.App{Version: "v2"})
	for i := range 5 {
		if code, answer := h.deliver(s.delivery(v2), fmt.Sprintf("burst-%d", i)); code != http.StatusAccepted {
			t.Fatalf("delivery %d: %d %v", i, code, answer)
		}
	}
	res := h.lastResult(s.runtime, 0)
	s.waitTasks(id, v2)
	if res.Result != "rolled_out" && res.Result != "up_to_date" {
		t.Fatalf("last job: %+v", res)
	}
	if n := h.metric("hookd_refresh_total", "runtime="+s.runtime, "result=rolled_out"); n != 1 {
		t.Errorf("hookd_refresh_total{rolled_out} = %v, want 1 for 5 deliveries of one digest", n)
	}
	after := s.service(id)
	if want := s.repo + ":latest@" + v2; after.Spec.TaskTemplate.ContainerSpec.Image != want {
		t.Errorf("spec image %q, want %q", after.Spec.TaskTemplate.ContainerSpec.Image, want)
	}
	sameSpecBut(t, before.Spec, after.Spec)
	if after.UpdateStatus == nil || after.UpdateStatus.State != swarm.UpdateStateCompleted {
		t.Errorf("update status %+v, want completed", after.UpdateStatus)
	}
	// Swarm's event for the image change may trail the inspect a little.
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		return updates.count(v2) >= 1, "no image update event seen"
	})
	if n := updates.count(v2); n != 1 {
		t.Errorf("%d updates of the service to %s, want exactly 1", n, v2)
	}
	if !h.logs.contains(`"msg":"service update"`, `"service":"`+s.id+`-svc"`, `"result":"rolled_out"`) {
		t.Errorf("no job reported the service rolled out:\n%s", h.logs)
	}
	if b := h.metric("hookd_runtime_behind", "runtime="+s.runtime); b != 0 {
		t.Errorf("hookd_runtime_behind = %v after the rollout, want 0", b)
	}
	var status struct {
		Runtimes []struct {
			Name     string `json:"name"`
			Services []struct {
				Name    string `json:"name"`
				Digest  string `json:"digest"`
				Tasks   int    `json:"tasks"`
				TasksOn int    `json:"tasks_on_digest"`
			} `json:"services"`
		} `json:"runtimes"`
	}
	if code := h.admin(http.MethodGet, "/admin/status", &status); code != http.StatusOK {
		t.Fatalf("/admin/status: %d", code)
	}
	found := false
	for _, r := range status.Runtimes {
		if r.Name != s.runtime {
			continue
		}
		found = true
		if len(r.Services) != 1 || r.Services[0].Name != s.id+"-svc" || r.Services[0].Digest != v2 || r.Services[0].Tasks != 2 || r.Services[0].TasksOn != 2 {
			t.Errorf("/admin/status services of %s: %+v, want %s-svc on %s with 2 of 2 tasks", s.runtime, r.Services, s.id, v2)
		}
	}
	if !found {
		t.Errorf("runtime %s not in /admin/status", s.runtime)
	}
}

func TestSwarmServiceRolledBackBySwarm(t *testing.T) {
	s := newSwarmFleet(t)
	v1 := s.push(testkit.App{Version: "v1"})
	id := s.create(v1, &swarm.UpdateConfig{Parallelism: 1, Monitor: 2 * time.Second, FailureAction: swarm.UpdateFailureActionRollback},
		&swarm.UpdateConfig{Parallelism: 2, Monitor: time.Second})
	h := startHookd(t, s.config(""), t.TempDir(), nil)

	bad := s.push(testkit.App{Version: "v2", Mode: "exit"})
	if code, answer := h.deliver(s.delivery(bad), "bad-1"); code != http.StatusAccepted {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	res := h.lastResult(s.runtime, 0)
	t.Logf("result: %+v", res)
	if res.Result != "rolled_back" || !strings.Contains(res.Reason, "rolled back by Swarm") || len(res.RolledBack) != 1 {
		t.Fatalf("result %+v, want rolled_back by Swarm naming the service", res)
	}
	svc := s.service(id)
	if want := s.repo + ":latest@" + v1; svc.Spec.TaskTemplate.ContainerSpec.Image != want {
		t.Errorf("spec image %q after Swarm's roll back, want %q", svc.Spec.TaskTemplate.ContainerSpec.Image, want)
	}
	s.waitTasks(id, v1)
	if n := h.metric("hookd_rollbacks_total", "runtime="+s.runtime); n != 1 {
		t.Errorf("hookd_rollbacks_total = %v, want 1", n)
	}
	if st := h.status(s.runtime); st.Record.FailedDigest != bad {
		t.Errorf("failed digest %q, want %s remembered", st.Record.FailedDigest, bad)
	}
	// A redelivery of the failed digest is skipped: no second update goes to Swarm.
	version := svc.Version.Index
	if code, _ := h.deliver(s.delivery(bad), "bad-2"); code != http.StatusAccepted {
		t.Fatalf("second delivery: %d", code)
	}
	if again := h.lastResult(s.runtime, res.JobID); again.Result != "skipped" {
		t.Errorf("redelivery of the failed digest: %+v, want skipped", again)
	}
	if v := s.service(id).Version.Index; v != version {
		t.Errorf("service version %d after the skipped job, want %d", v, version)
	}
}

func TestSwarmServiceMidUpdateLeftAlone(t *testing.T) {
	s := newSwarmFleet(t)
	v1 := s.push(testkit.App{Version: "v1"})
	// One task at a time with a long delay between them: an update stays "updating" for a
	// minute after its first task.
	id := s.create(v1, &swarm.UpdateConfig{Parallelism: 1, Delay: time.Minute, Monitor: time.Second}, nil)
	ctx := context.Background()
	svc := s.service(id)
	spec := svc.Spec
	spec.TaskTemplate.ContainerSpec.Env = append(spec.TaskTemplate.ContainerSpec.Env, "APP_COLOR=green")
	if _, err := s.cli.ServiceUpdate(ctx, id, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		st := s.service(id).UpdateStatus
		return st != nil && st.State == swarm.UpdateStateUpdating, fmt.Sprintf("update status %+v", st)
	})
	updates := s.watchImageUpdates(id)
	h := startHookd(t, s.config(""), t.TempDir(), nil)

	v2 := s.push(testkit.App{Version: "v2"})
	if code, answer := h.deliver(s.delivery(v2), "mid-1"); code != http.StatusAccepted {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	res := h.lastResult(s.runtime, 0)
	if res.Result != "failed" || !strings.Contains(res.Reason, "already updating") {
		t.Fatalf("result %+v, want the service left alone", res)
	}
	after := s.service(id)
	if n := updates.count(v2); n != 0 {
		t.Errorf("hookd submitted %d updates to a service mid-update", n)
	}
	if after.UpdateStatus == nil || after.UpdateStatus.State != swarm.UpdateStateUpdating {
		t.Errorf("the test's own update was disturbed: %+v", after.UpdateStatus)
	}
	if after.Spec.TaskTemplate.ContainerSpec.Image != s.repo+":latest@"+v1 {
		t.Errorf("spec image %q, want still v1", after.Spec.TaskTemplate.ContainerSpec.Image)
	}
	if st := h.status(s.runtime); st.DigestRunning == v2 {
		t.Errorf("digest running recorded as %s though the service is not on it", v2)
	}
}

func TestSwarmServiceSIGKILLMidUpdate(t *testing.T) {
	s := newSwarmFleet(t)
	bin := crashBuild(t)
	v1 := s.push(testkit.App{Version: "v1"})
	// A delay between the two tasks keeps Swarm's update going for seconds after hookd submits it.
	id := s.create(v1, &swarm.UpdateConfig{Parallelism: 1, Delay: 4 * time.Second, Monitor: time.Second, FailureAction: swarm.UpdateFailureActionRollback}, nil)
	updates := s.watchImageUpdates(id)
	cfgFile := filepath.Join(t.TempDir(), "hookd.yaml")
	if err := os.WriteFile(cfgFile, []byte(s.config("")), 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	p := crashStart(t, bin, cfgFile, state)

	v2 := s.push(testkit.App{Version: "v2"})
	if code, answer := p.deliver(s.delivery(v2), "kill-1"); code != http.StatusAccepted {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	// Killed once Swarm has the update and is rolling it.
	testkit.Eventually(t, time.Minute, func() (bool, string) {
		svc := s.service(id)
		st := svc.UpdateStatus
		return st != nil && st.State == swarm.UpdateStateUpdating && strings.HasSuffix(svc.Spec.TaskTemplate.ContainerSpec.Image, "@"+v2),
			fmt.Sprintf("service image %s, status %+v", svc.Spec.TaskTemplate.ContainerSpec.Image, st)
	})
	p.kill()
	if ok, _ := s.tasksOn(id, v2); ok {
		t.Fatal("Swarm finished before hookd was killed: the test proves nothing")
	}

	q := crashStart(t, bin, cfgFile, state)
	res := q.lastResult(s.runtime, 0)
	if res.Result != "up_to_date" && res.Result != "rolled_out" {
		t.Fatalf("after restart: %+v", res)
	}
	s.waitTasks(id, v2)
	// The restart reads the journal: Swarm has ended the update (settled), or still rolls it
	// (left journaled, and the job run again waits for it); either way nothing is submitted.
	if !q.logs.contains("settled interrupted service update", s.runtime) && !q.logs.contains("interrupted service update still rolling", s.runtime) {
		t.Errorf("the restarted hookd did not read the journaled update:\n%s", q.logs)
	}
	if open := q.logs.contains("clear service journal"); open {
		t.Errorf("the service journal could not be cleared:\n%s", q.logs)
	}
	if n := updates.count(v2); n != 1 {
		t.Errorf("%d updates of the service to %s across the crash, want exactly 1", n, v2)
	}
	if st := s.service(id).UpdateStatus; st == nil || st.State != swarm.UpdateStateCompleted {
		t.Errorf("update status %+v, want completed", st)
	}
}

func TestSwarmPollQueuesABehindService(t *testing.T) {
	s := newSwarmFleet(t)
	v1 := s.push(testkit.App{Version: "v1"})
	id := s.create(v1, swarmUpdate, nil)
	// The tag moves with no delivery; the engine already holds the new digest, so only the
	// service's spec and tasks say the runtime is behind.
	v2 := s.push(testkit.App{Version: "v2"})
	s.install(v2)
	h := startHookd(t, s.config(""), t.TempDir(), map[string]string{"HOOKD_POLL_INTERVAL": "1h"}) // one pass at start

	res := h.lastResult(s.runtime, 0)
	if res.Result != "rolled_out" || res.Trigger != "poll" || len(res.Services) != 1 {
		t.Fatalf("result %+v, want the poll's job rolling the service out", res)
	}
	s.waitTasks(id, v2)
	if n := h.metric("hookd_poll_checks_total", "result=queued"); n != 1 {
		t.Errorf("hookd_poll_checks_total{queued} = %v, want 1", n)
	}
}
