package refresh

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/fakeengine"
)

func startFirstSite(t *testing.T) *site {
	t.Helper()
	rt := hookd.NewRuntime("app", image)
	rt.MinUptime, rt.HealthTimeout, rt.Order = 0, time.Second, hookd.OrderStartFirst
	return newSite(t, 0, rt)
}

// The replacement starts and is gated under its temporary name while the old container runs
// under its own; only then is the old one stopped and are the names swapped.
func TestStartFirstGatesBesideTheServingOld(t *testing.T) {
	s := startFirstSite(t)
	old := s.container("app-1", "app")
	var gated atomic.Bool
	s.eng.OnState = func(c *fakeengine.Container) error {
		if c.ImageID != newImg {
			return nil
		}
		gated.Store(true)
		if o, ok := s.eng.ByName("app-1"); !ok || o.ID != old.ID || !o.Running || c.Name != "app-1"+catalog.TempSuffix {
			t.Errorf("during the gate app-1 is %+v (old %s), the replacement is named %s", o, old.ID, c.Name)
		}
		return nil
	}
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledOut || len(res.Notes) != 0 || !gated.Load() {
		t.Fatalf("result %+v, gated %v", res, gated.Load())
	}
	s.running(newImg, "app-1")
	ops := s.eng.Ops()
	want := []string{"create app-1-hookd-new", "start app-1-hookd-new", "stop app-1", "rename app-1 → app-1-hookd-old",
		"rename app-1-hookd-new → app-1", "remove app-1-hookd-old"}
	if i := slices.Index(ops, want[0]); i < 0 || !slices.Equal(ops[i:i+len(want)], want) {
		t.Errorf("ops %q, want %q in that order", ops, want)
	}
}

// Containers two copies of which cannot run at once switch stop-first, and the result says so.
func TestStartFirstFallsBackAndSaysWhy(t *testing.T) {
	s := startFirstSite(t)
	web := s.container("web", "app")
	web.Exclusive = "publishes host port 8080 (80/tcp)"
	s.eng.Put(web)
	vpn := s.container("vpn", "app")
	s.sidecar("torrent", vpn)
	s.container("worker", "app")
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledOut {
		t.Fatalf("result %+v", res)
	}
	want := []string{
		"web: switched stop-first: publishes host port 8080 (80/tcp)",
		"vpn: switched stop-first: other containers share its namespaces",
		"torrent: switched stop-first: shares the network namespace of a replaced container",
	}
	for _, w := range want {
		if !slices.Contains(res.Notes, w) {
			t.Errorf("notes %q lack %q", res.Notes, w)
		}
	}
	if len(res.Notes) != len(want) {
		t.Errorf("notes %q, want only %q (worker switches start-first)", res.Notes, want)
	}
	s.running(newImg, "web", "vpn", "worker")
	s.joinedLive("torrent", "vpn")
	ops := s.eng.Ops()
	if i := slices.Index(ops, "stop web-hookd-old"); i < 0 || i > slices.Index(ops, "start web") {
		t.Errorf("web was started before its old container stopped: %q", ops)
	}
	if i := slices.Index(ops, "start worker-hookd-new"); i < 0 || i > slices.Index(ops, "stop worker") {
		t.Errorf("worker did not switch start-first: %q", ops)
	}
}

// A new image that fails its gate is removed; the old container was never stopped or renamed.
func TestStartFirstBrokenImageNeverTouchesTheOld(t *testing.T) {
	s := startFirstSite(t)
	old := s.container("app-1", "app")
	s.newImageExits(3)
	s.run()
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRolledBack || !strings.Contains(res.Reason, "exited with code 3") {
		t.Fatalf("result %+v", res)
	}
	s.running(oldImg, "app-1")
	if c, _ := s.eng.ByName("app-1"); c.ID != old.ID {
		t.Errorf("app-1 is %s, want the old container", c.ID)
	}
	for _, op := range s.eng.Ops() {
		if strings.HasPrefix(op, "stop ") || strings.HasPrefix(op, "rename ") || op == "start app-1" {
			t.Errorf("the old container was touched: %q in %q", op, s.eng.Ops())
		}
	}
}

// hookd killed before each engine call of a start-first switch: the next start's recovery
// converges with one container under the name, running, and nothing of hookd's left: the old
// one until the rollout committed, the new one after.
func TestStartFirstCrashAtEachStepConverges(t *testing.T) {
	for _, point := range []string{"create", "start", "gate", "stop", "rename-old", "rename-new", "commit"} {
		t.Run(point, func(t *testing.T) {
			s := startFirstSite(t)
			old := s.container("app-1", "app")
			dead := make(chan struct{}) // the first process "dies" here: it never takes another step
			reached := make(chan struct{}, 1)
			var armed atomic.Bool
			armed.Store(true)
			die := func(here bool) error {
				if !here || !armed.Swap(false) {
					return nil
				}
				reached <- struct{}{}
				<-dead
				return errors.New("process gone")
			}
			s.eng.OnCreate = func(oldID, _, _ string) error { return die(point == "create") }
			s.eng.OnStart = func(c fakeengine.Container) error { return die(point == "start" && c.ImageID == newImg) }
			s.eng.OnState = func(c *fakeengine.Container) error { return die(point == "gate" && c.ImageID == newImg) }
			s.eng.OnChange = func(op string, c fakeengine.Container) error {
				isOld := c.ID == old.ID
				return die(op == "rename" && isOld && point == "rename-old" ||
					op == "rename" && !isOld && point == "rename-new" ||
					op == "stop" && isOld && point == "stop" ||
					op == "remove" && isOld && point == "commit")
			}
			s.run()
			t.Cleanup(func() { close(dead) })                    // before the site's stop, which waits for the worker
			go s.svc.Refresh(context.Background(), "app", false) //nolint:errcheck // the process dies mid-way
			select {
			case <-reached:
			case <-time.After(20 * time.Second):
				t.Fatal("the rollout never reached " + point)
			}

			next := New(s.store, catalog.New(s.runtimes, s.eng, time.Minute), s.reg, s.eng, 0, NewMetrics(prometheus.NewRegistry()),
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			if unsettled := next.recover(context.Background()); len(unsettled) != 0 {
				t.Fatalf("unsettled after recovery: %v", unsettled)
			}
			if _, open, _ := s.store.Journal("app"); open {
				t.Error("journal still open after recovery")
			}
			if point == "commit" {
				s.running(newImg, "app-1")
			} else {
				s.running(oldImg, "app-1")
				if c, _ := s.eng.ByName("app-1"); c.ID != old.ID {
					t.Errorf("app-1 is %s, want the old container back", c.ID)
				}
			}
			if n := len(s.eng.Containers()); n != 1 {
				t.Errorf("%d containers, want 1: %+v", n, s.eng.Containers())
			}
		})
	}
}
