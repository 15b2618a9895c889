package store

import (
	"testing"
	"time"

	"github.com/hookd/hookd"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenTwiceIsLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if _, err := Open(dir); err == nil {
		t.Fatal("a second Open of a held state file succeeded")
	}
}

func TestAcceptMergesAndDeduplicates(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now()
	job := func(id string) []hookd.Job {
		return []hookd.Job{{Runtime: "r", Trigger: hookd.TriggerWebhook, Deliveries: []string{id}, Requests: 1}}
	}
	for _, id := range []string{"d1", "d2", "d1"} {
		if _, err := s.Accept(id, now, job(id)); err != nil {
			t.Fatal(err)
		}
	}
	j, ok, err := s.Pending("r")
	if err != nil || !ok || j.Requests != 2 || len(j.Deliveries) != 2 {
		t.Fatalf("pending %+v ok=%v err=%v, want one job of 2 requests", j, ok, err)
	}
	if dup, err := s.Accept("d2", now, job("d2")); err != nil || !dup {
		t.Fatalf("replayed d2: dup=%v err=%v", dup, err)
	}
	if n, err := s.PruneDeliveries(now.Add(time.Second)); err != nil || n != 2 {
		t.Fatalf("prune: %d %v, want 2", n, err)
	}
	if dup, _ := s.Accept("d2", now, nil); dup {
		t.Fatal("a pruned delivery id is still a duplicate")
	}
}

// A job interrupted by a crash is queued again at start; a job queued since keeps its id,
// because only that one can have a waiter.
func TestResumeMergesInterruptedIntoPending(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	first, err := s.Enqueue(hookd.Job{Runtime: "r", Trigger: hookd.TriggerWebhook, Hint: "sha256:a"})
	if err != nil {
		t.Fatal(err)
	}
	if j, ok, err := s.Take("r"); err != nil || !ok || j.ID != first {
		t.Fatalf("take: %+v %v %v", j, ok, err)
	}
	later, err := s.Enqueue(hookd.Job{Runtime: "r", Trigger: hookd.TriggerAdmin, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, dir)
	runtimes, err := s.Resume()
	if err != nil || len(runtimes) != 1 || runtimes[0] != "r" {
		t.Fatalf("resume: %v %v", runtimes, err)
	}
	j, ok, err := s.Pending("r")
	if err != nil || !ok || j.ID != later || j.Requests != 2 || !j.Force || j.Trigger != hookd.TriggerWebhook || j.Hint != "sha256:a" {
		t.Fatalf("resumed job %+v, want id %d carrying both requests", j, later)
	}
	if _, ok, _ := s.Take("r"); !ok {
		t.Fatal("resumed job cannot be taken")
	}
	if err := s.Finish(hookd.Result{Runtime: "r", JobID: later, Outcome: "rolled_out"}); err != nil {
		t.Fatal(err)
	}
	if runtimes, _ := s.Resume(); len(runtimes) != 0 {
		t.Fatalf("finished work resumed: %v", runtimes)
	}
}

// Pruning goes batch by batch: every expired id is gone and every other kept, across batches.
func TestPruneAcrossBatches(t *testing.T) {
	s := open(t, t.TempDir())
	cutoff := time.Now()
	seedDeliveries(t, s, 2*pruneBatch+500, cutoff)
	n, err := s.PruneDeliveries(cutoff)
	if err != nil || n != (2*pruneBatch+500)/10 {
		t.Fatalf("pruned %d (%v), want %d", n, err, (2*pruneBatch+500)/10)
	}
	if again, err := s.PruneDeliveries(cutoff); err != nil || again != 0 {
		t.Fatalf("a second prune removed %d (%v)", again, err)
	}
	// The first seeded id is expired, the second not.
	if dup, _ := s.Accept("00000000-0000-4000-8000-000000000000", cutoff, nil); dup {
		t.Fatal("an expired id is still known")
	}
	if dup, _ := s.Accept("00000001-0000-4000-8000-000000000001", cutoff, nil); !dup {
		t.Fatal("a live id was pruned")
	}
}

// Each engine keeps its own queue, journals and records; one delivery id is shared by all. The
// default engine's state is where a hookd of one engine kept it.
func TestEnginesKeepTheirOwnState(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Enqueue(hookd.Job{Runtime: "r", Trigger: hookd.TriggerPoll}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteJournal(&Rollout{Runtime: "r", Ref: "before-engines"}); err != nil {
		t.Fatal(err)
	}
	local, err := s.Engine(hookd.DefaultEngine)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Engine("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := local.Pending("r"); !ok {
		t.Fatal("the default engine does not see the queue of a hookd without engines")
	}
	if r, ok, _ := local.Journal("r"); !ok || r.Ref != "before-engines" {
		t.Fatalf("the default engine's journal: %+v %v", r, ok)
	}
	if _, ok, _ := b.Pending("r"); ok {
		t.Fatal("engine b sees the default engine's job")
	}
	if js, _ := b.Journals(); len(js) != 0 {
		t.Fatalf("engine b sees journals %+v", js)
	}

	jobs := []hookd.Job{{Runtime: "r", Engine: "b", Requests: 1}, {Runtime: "r", Engine: hookd.DefaultEngine, Requests: 1}}
	if dup, err := s.Accept("d1", time.Now(), jobs); err != nil || dup {
		t.Fatalf("accept: dup=%v err=%v", dup, err)
	}
	if dup, _ := b.Accept("d1", time.Now(), jobs); !dup {
		t.Fatal("a delivery id taken on one engine's view is new on another's")
	}
	if j, ok, _ := b.Take("r"); !ok || j.Engine != "b" {
		t.Fatalf("engine b's job: %+v %v", j, ok)
	}
	if j, ok, _ := local.Pending("r"); !ok || j.Requests != 2 {
		t.Fatalf("the default engine's job: %+v %v, want the poll's merged with the delivery's", j, ok)
	}
	if _, err := b.UpdateRecord("r", func(r *Record) { r.RunningDigest = "sha256:b" }); err != nil {
		t.Fatal(err)
	}
	if rec, _ := local.Record("r"); rec.RunningDigest != "" {
		t.Fatalf("engine b's record reached the default engine: %+v", rec)
	}
	s.Close()
	again := open(t, dir)
	b2, err := again.Engine("b")
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := b2.Record("r"); rec.RunningDigest != "sha256:b" {
		t.Fatalf("engine b's record after reopening: %+v", rec)
	}
}

// Work left in the state of an engine taken out of the configuration is found.
func TestUnsettledEngines(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.WriteJournal(&Rollout{Runtime: "web"}); err != nil {
		t.Fatal(err)
	}
	b, err := s.Engine("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Enqueue(hookd.Job{Runtime: "api"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Engine("c"); err != nil { // configured once, nothing left
		t.Fatal(err)
	}
	left, err := s.Unsettled([]string{"edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || len(left[hookd.DefaultEngine]) != 1 || left[hookd.DefaultEngine][0] != "interrupted rollout of web" ||
		len(left["b"]) != 1 || left["b"][0] != "queued job of api" {
		t.Fatalf("unsettled %v", left)
	}
	if left, _ := s.Unsettled([]string{hookd.DefaultEngine, "b"}); len(left) != 0 {
		t.Fatalf("configured engines reported unsettled: %v", left)
	}
}
