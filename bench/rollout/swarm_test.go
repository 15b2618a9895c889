package rollout

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/hookd/hookd/internal/testkit"
)

// BenchmarkSwarmService measures, on a single-node swarm, the time from a delivery to every
// task of a 2-replica service running the new digest, against Swarm's own `docker service
// update --image repo@digest` of the same digest on a twin service, timed the same way. Both
// services roll one task at a time, stop-first, with a 1 s monitor.
//
//	HOOKD_REQUIRE_DOCKER=1 go test -run '^$' -bench SwarmService -benchtime 5x ./bench/rollout
func BenchmarkSwarmService(b *testing.B) {
	cli := testkit.Docker(b)
	reg := testkit.StartRegistry(b, nil)
	testkit.Cleanup(b, cli, reg.Host)
	testkit.RequireSwarm(b, cli)
	id := testkit.TestID(b)
	runtime := fmt.Sprintf("swarm-bench-%d", os.Getpid())
	repo := reg.Host + "/org/swarmbench"
	app := func(version string) testkit.App {
		return testkit.App{Version: version, Env: []string{"BENCH=" + id}}
	}
	first := reg.Push(b, "org/swarmbench", "latest", app("swarm-0"))
	withHookd := createBenchService(b, cli, id+"-hookd", repo+":latest@"+first, map[string]string{"hookd.runtime": runtime})
	withCLI := createBenchService(b, cli, id+"-cli", repo+":latest@"+first, nil)
	h := startHookdFor(b, reg.Host, runtime, "swarmbench")

	var hookdTimes, cliTimes, hookdJobs []time.Duration
	lastJob := h.lastJob(b)
	for n := range b.N {
		digest := reg.Push(b, "org/swarmbench", "latest", app(fmt.Sprintf("swarm-%d", n+1)))

		began := time.Now()
		h.deliver(b, digest, fmt.Sprintf("%s-swarm-%d", id, n))
		hookdTimes = append(hookdTimes, waitServiceOn(b, cli, withHookd, digest).Sub(began))
		lastJob = h.waitJob(b, lastJob) // Swarm reported the update completed
		hookdJobs = append(hookdJobs, time.Since(began))

		began = time.Now()
		out, err := exec.Command("docker", "service", "update", "--detach", "--image", repo+"@"+digest, withCLI).CombinedOutput()
		if err != nil {
			b.Fatalf("docker service update: %v\n%s", err, out)
		}
		cliTimes = append(cliTimes, waitServiceOn(b, cli, withCLI, digest).Sub(began))
		waitCompleted(b, cli, withCLI)
	}
	b.StopTimer()

	report := func(key, what string, ds []time.Duration) {
		p50, p90 := percentile(ds, 50), percentile(ds, 90)
		b.ReportMetric(ms(p50), key+"-p50-ms")
		b.ReportMetric(ms(p90), key+"-p90-ms")
		b.Logf("%-40s median %7.1f ms   p90 %7.1f ms   (n=%d)", what, ms(p50), ms(p90), len(ds))
	}
	report("hookd", "hookd: delivery → tasks on the digest", hookdTimes)
	report("cli", "docker service update → tasks", cliTimes)
	report("hookd-job", "hookd: delivery → job done (completed)", hookdJobs)
	b.Logf("hookd adds %.1f ms (median) to Swarm's own update of the same digest",
		ms(percentile(hookdTimes, 50)-percentile(cliTimes, 50)))
}

func createBenchService(b *testing.B, cli *client.Client, name, image string, extra map[string]string) string {
	b.Helper()
	labels := testkit.Labels(b)
	for k, v := range extra {
		labels[k] = v
	}
	two := uint64(2)
	spec := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: image, Labels: testkit.Labels(b)}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &two}},
		UpdateConfig: &swarm.UpdateConfig{Parallelism: 1, Monitor: time.Second, Order: swarm.UpdateOrderStopFirst, FailureAction: swarm.UpdateFailureActionRollback},
	}
	created, err := cli.ServiceCreate(context.Background(), spec, swarm.ServiceCreateOptions{})
	if err != nil {
		b.Fatalf("create service %s: %v", name, err)
	}
	waitServiceOn(b, cli, created.ID, image[strings.LastIndex(image, "@")+1:])
	return created.ID
}

// waitServiceOn polls the service's tasks until both that should run are running digest, and
// returns when it saw that.
func waitServiceOn(b *testing.B, cli *client.Client, id, digest string) time.Time {
	b.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		tasks, err := cli.TaskList(context.Background(), swarm.TaskListOptions{Filters: filters.NewArgs(
			filters.Arg("service", id), filters.Arg("desired-state", "running"))})
		if err != nil {
			b.Fatal(err)
		}
		on := 0
		for _, t := range tasks {
			if t.Status.State == swarm.TaskStateRunning && strings.HasSuffix(t.Spec.ContainerSpec.Image, "@"+digest) {
				on++
			}
		}
		now := time.Now()
		if on == 2 && len(tasks) == 2 {
			return now
		}
		if now.After(deadline) {
			b.Fatalf("service %s: tasks not on %s within 3 minutes", id, digest)
		}
		time.Sleep(10 * time.Millisecond) // the polling interval
	}
}

// waitCompleted waits for Swarm to call the service's update completed, so the next one does
// not interrupt it.
func waitCompleted(b *testing.B, cli *client.Client, id string) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		svc, _, err := cli.ServiceInspectWithRaw(context.Background(), id, swarm.ServiceInspectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if st := svc.UpdateStatus; st != nil && st.State == swarm.UpdateStateCompleted {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("service %s: update not completed within a minute: %+v", id, svc.UpdateStatus)
		}
		time.Sleep(10 * time.Millisecond) // the polling interval
	}
}
