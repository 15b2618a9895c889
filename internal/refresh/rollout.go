package refresh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/store"
)

// gatePoll is how often a new container's state is read while it proves itself.
const gatePoll = 200 * time.Millisecond

// rollout recreates the runtime's containers on ref, rt.Parallel at a time. It ends with every
// container on the new digest, or with every container back on its old one.
func (s *Service) rollout(ctx context.Context, rt config.Runtime, ref, imageID string, res *store.Result) store.Result {
	finish := func(outcome, reason string) store.Result {
		res.Outcome, res.Reason, res.Finished = outcome, reason, time.Now()
		return *res
	}
	members, err := s.catalog.Members(ctx, rt)
	if err != nil {
		return finish(OutcomeFailed, "list containers: "+err.Error())
	}
	self := s.engine.SelfID(ctx)
	var todo []engine.Container
	for _, c := range members {
		switch {
		case self != "" && c.ID == self:
			s.log.Warn("not recreating the container hookd runs in", "runtime", rt.Name, "container", c.Name)
		case c.ImageID != imageID:
			todo = append(todo, c)
		}
	}
	// The local tag follows the digest, as `docker pull` would leave it, so new containers keep
	// the image name they were created from and later `docker run`s get the same image.
	if err := s.engine.Tag(ctx, ref, rt.Image); err != nil {
		return finish(OutcomeFailed, "tag: "+err.Error())
	}
	for _, c := range todo {
		if c.AutoRemove && c.Running {
			// Stopping it would delete it, leaving nothing to roll back to.
			return finish(OutcomeFailed, c.Name+" was started with --rm (auto-remove); hookd cannot replace it safely")
		}
	}
	if len(todo) == 0 {
		s.markRunning(rt.Name, res.Digest)
		if len(members) == 0 {
			return finish(OutcomeUpToDate, "no containers are labelled for this runtime")
		}
		return finish(OutcomeUpToDate, "")
	}

	j := &journal{store: s.store, r: &store.Rollout{Runtime: rt.Name, JobID: res.JobID, Ref: ref, Containers: map[string]*store.Switch{}}}
	for start := 0; start < len(todo); start += rt.Parallel {
		batch := todo[start:min(start+rt.Parallel, len(todo))]
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for i, c := range batch {
			wg.Go(func() { errs[i] = s.switchOne(ctx, j, rt, c, imageID) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			for _, sw := range j.r.Containers {
				res.RolledBack = append(res.RolledBack, sw.Name)
			}
			res.Recreated = []string{}
			res.Failed = append(res.Failed, store.Failure{Ref: ref, Reason: err.Error()})
			if rerr := s.revert(ctx, j.r); rerr != nil {
				s.log.Error("roll back", "runtime", rt.Name, "err", rerr)
				return finish(OutcomeFailed, fmt.Sprintf("%v; roll back incomplete, retried at the next start: %v", err, rerr))
			}
			if _, uerr := s.store.UpdateRecord(rt.Name, func(r *store.Record) {
				r.FailedDigest, r.FailedAt, r.FailedReason = res.Digest, time.Now(), err.Error()
			}); uerr != nil {
				s.log.Error("remember failed digest", "runtime", rt.Name, "err", uerr)
			}
			return finish(OutcomeRolledBack, err.Error())
		}
		for _, c := range batch {
			res.Recreated = append(res.Recreated, c.Name)
		}
	}
	j.r.Committed = true
	if err := s.store.WriteJournal(j.r); err != nil {
		// Not committed: the old containers stay until the next start reverts and retries.
		return finish(OutcomeFailed, err.Error())
	}
	if err := s.commit(ctx, j.r, rt.Cleanup); err != nil {
		s.log.Error("remove replaced containers", "runtime", rt.Name, "err", err)
	}
	s.markRunning(rt.Name, res.Digest)
	return finish(OutcomeRolledOut, "")
}

func (s *Service) markRunning(runtime, digest string) {
	_, err := s.store.UpdateRecord(runtime, func(r *store.Record) {
		r.RunningDigest, r.RunningAt = digest, time.Now()
		if r.FailedDigest == digest {
			r.FailedDigest, r.FailedReason, r.FailedAt = "", "", time.Time{}
		}
	})
	if err != nil {
		s.log.Error("record running digest", "runtime", runtime, "err", err)
	}
}

// journal serialises the concurrent switches' writes to the one rollout record.
type journal struct {
	store *store.Store
	mu    sync.Mutex
	r     *store.Rollout
}

func (j *journal) step(sw *store.Switch, step string, change func()) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	sw.Step = step
	if change != nil {
		change()
	}
	j.r.Containers[sw.Name] = sw
	return j.store.WriteJournal(j.r)
}

// switchOne replaces one container: create under a temporary name, stop the old one and set it
// aside, give the new one the name, start it and let it prove itself. Each step is journaled
// before it is taken; the old container is kept until the whole runtime has switched.
func (s *Service) switchOne(ctx context.Context, j *journal, rt config.Runtime, c engine.Container, imageID string) error {
	sw := &store.Switch{
		Name: c.Name, OldID: c.ID, OldImageID: c.ImageID, WasRunning: c.Running,
		TempName: c.Name + "-hookd-new", AsideName: c.Name + "-hookd-old",
	}
	if err := j.step(sw, store.StepCreate, nil); err != nil {
		return err
	}
	// A temporary container under this name can only be a leftover of hookd's own.
	if stale, err := s.engine.Inspect(ctx, sw.TempName); err == nil && stale.ID != c.ID {
		if err := s.engine.Remove(ctx, stale.ID); err != nil {
			return fmt.Errorf("%s: remove leftover %s: %w", c.Name, sw.TempName, err)
		}
	}
	image := c.Image
	if img, err := config.NormalizeImage(c.Image); err != nil || img != rt.Image {
		image = rt.Image
	}
	newID, err := s.engine.CreateReplacement(ctx, c.ID, image, sw.TempName)
	if err != nil {
		return fmt.Errorf("%s: create: %w", c.Name, err)
	}
	if err := j.step(sw, store.StepStopOld, func() { sw.NewID = newID }); err != nil {
		return err
	}
	if created, err := s.engine.Inspect(ctx, newID); err != nil {
		return fmt.Errorf("%s: inspect replacement: %w", c.Name, err)
	} else if created.ImageID != imageID {
		return fmt.Errorf("%s: replacement got image %s, not the pulled %s", c.Name, created.ImageID, imageID)
	}
	if c.Running {
		if err := s.engine.Stop(ctx, c.ID); err != nil {
			return fmt.Errorf("%s: stop: %w", c.Name, err)
		}
	}
	if err := j.step(sw, store.StepRenameOld, nil); err != nil {
		return err
	}
	if err := s.engine.Rename(ctx, c.ID, sw.AsideName); err != nil {
		return fmt.Errorf("%s: rename old: %w", c.Name, err)
	}
	if err := j.step(sw, store.StepRenameNew, nil); err != nil {
		return err
	}
	if err := s.engine.Rename(ctx, newID, c.Name); err != nil {
		return fmt.Errorf("%s: rename new: %w", c.Name, err)
	}
	if c.Running {
		// A container that was stopped is recreated and left stopped.
		if err := j.step(sw, store.StepStartNew, nil); err != nil {
			return err
		}
		if err := s.engine.Start(ctx, newID); err != nil {
			return fmt.Errorf("%s: start: %w", c.Name, err)
		}
		if err := s.gate(ctx, newID, rt); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return j.step(sw, store.StepSwitched, nil)
}

// gate passes when the container has stayed up for min_uptime without restarting and, where it
// has a healthcheck, reports healthy within health_timeout.
func (s *Service) gate(ctx context.Context, id string, rt config.Runtime) error {
	minUptime, healthTimeout := rt.MinUptime.D(), max(rt.HealthTimeout.D(), rt.MinUptime.D())
	began := time.Now()
	first, err := s.engine.State(ctx, id)
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	tick := time.NewTicker(gatePoll)
	defer tick.Stop()
	for st := first; ; {
		switch {
		case !st.Running:
			return fmt.Errorf("exited with code %d during the first %s%s", st.ExitCode, minUptime, suffix(st.Error))
		case st.RestartCount != first.RestartCount || !st.StartedAt.Equal(first.StartedAt):
			return fmt.Errorf("restarted during the first %s", minUptime)
		case st.Health == "unhealthy":
			return errors.New("healthcheck reports unhealthy")
		}
		up := time.Since(began)
		if up >= minUptime && (st.Health == "" || st.Health == "healthy") {
			return nil
		}
		if st.Health != "" && up >= healthTimeout {
			return fmt.Errorf("not healthy within %s (health %q)", healthTimeout, st.Health)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gate: %w", ctx.Err())
		case <-tick.C:
		}
		if st, err = s.engine.State(ctx, id); err != nil {
			return fmt.Errorf("gate: %w", err)
		}
	}
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// commit removes the replaced containers of a rollout that switched completely, then forgets it.
func (s *Service) commit(ctx context.Context, r *store.Rollout, cleanup bool) error {
	var errs []error
	oldImages := map[string]bool{}
	for _, sw := range r.Containers {
		if err := s.engine.Remove(ctx, sw.OldID); err != nil {
			errs = append(errs, fmt.Errorf("remove old %s: %w", sw.Name, err))
		}
		oldImages[sw.OldImageID] = true
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // journal kept: the next start removes them
	}
	if cleanup {
		for id := range oldImages {
			if _, err := s.engine.RemoveImageIfUnused(ctx, id); err != nil {
				s.log.Warn("remove old image", "runtime", r.Runtime, "image", id, "err", err)
			}
		}
	}
	return s.store.ClearJournal(r.Runtime)
}

// revert puts every container of the rollout back as it was: the replacement removed, the old
// container under its name, running if it was. Each step checks the engine first, so a revert
// interrupted by a crash is simply run again.
func (s *Service) revert(ctx context.Context, r *store.Rollout) error {
	var errs []error
	for _, sw := range r.Containers {
		if err := s.revertOne(ctx, sw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sw.Name, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return s.store.ClearJournal(r.Runtime)
}

func (s *Service) revertOne(ctx context.Context, sw *store.Switch) error {
	newID := sw.NewID
	if newID == "" {
		// Created, perhaps, but hookd stopped before it journaled the id: find it by name.
		if c, err := s.engine.Inspect(ctx, sw.TempName); err == nil && c.ID != sw.OldID {
			newID = c.ID
		}
	}
	old, err := s.engine.Inspect(ctx, sw.OldID)
	if engine.IsNotFound(err) {
		// Someone removed the old container: keep the replacement rather than leave nothing.
		if newID == "" {
			return nil
		}
		if err := s.engine.Rename(ctx, newID, sw.Name); err != nil && !engine.IsConflict(err) {
			return err
		}
		if sw.WasRunning {
			return s.engine.Start(ctx, newID)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if newID != "" {
		if err := s.engine.Remove(ctx, newID); err != nil {
			return fmt.Errorf("remove replacement: %w", err)
		}
	}
	if old.Name != sw.Name {
		if err := s.engine.Rename(ctx, sw.OldID, sw.Name); err != nil {
			return fmt.Errorf("restore name: %w", err)
		}
	}
	if sw.WasRunning && !old.Running {
		if err := s.engine.Start(ctx, sw.OldID); err != nil {
			return fmt.Errorf("restart old: %w", err)
		}
	}
	return nil
}

// recover finishes or reverts every rollout the journal shows in progress: a committed one has
// its old containers removed, any other is reverted (its job is queued again by Resume).
func (s *Service) recover(ctx context.Context) error {
	rollouts, err := s.store.Journals()
	if err != nil {
		return err
	}
	for _, r := range rollouts {
		if r.Committed {
			err = s.commit(ctx, r, false)
		} else {
			err = s.revert(ctx, r)
		}
		if err != nil {
			return fmt.Errorf("recover rollout of %s: %w", r.Runtime, err)
		}
		s.log.Info("recovered interrupted rollout", "runtime", r.Runtime, "committed", r.Committed, "containers", len(r.Containers))
	}
	return nil
}
