package refresh

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/store"
)

const (
	// gatePoll is how often a new container's state is read while it proves itself.
	gatePoll = 200 * time.Millisecond
	// engineSlack bounds the engine calls of one container's switch beyond its gate, so a hung
	// engine ends in a roll back instead of a job that never ends.
	engineSlack = 5 * time.Minute
	// restoreTimeout bounds a roll back or a commit; the journal covers one cut short.
	restoreTimeout = 5 * time.Minute
	// planTimeout bounds what a rollout asks the engine before it changes anything.
	planTimeout = 2 * time.Minute
)

// digestFault marks a failure of the new image itself: it could not be created or started, or
// did not stay up and become healthy. Only these make a digest one hookd does not retry on its
// own; an engine or state error leaves the digest eligible.
type digestFault struct{ error }

func (f digestFault) Unwrap() error { return f.error }

// imageFault wraps a create or start error as the image's fault, unless it is the engine's or
// the host's (a deadline, a name or port conflict, a missing network or volume, a daemon away)
// or a hookd label's.
func imageFault(ctx context.Context, err error) error {
	if ctx.Err() != nil || engine.IsEngineFault(err) || errors.Is(err, engine.ErrLabel) {
		return err
	}
	return digestFault{err}
}

// rollout recreates the runtime's containers on ref, rt.Parallel at a time. It ends with every
// container on the new digest, or with every container back on its old one.
func (s *Service) rollout(ctx context.Context, rt hookd.Runtime, ref, imageID string, res *hookd.Result) hookd.Result {
	// A rollout of this runtime that did not end cleanly (its commit or roll back failed) is
	// settled first: a new journal would replace it, and with it the way back.
	if err := s.settle(ctx, rt.Name); err != nil {
		return finished(res, hookd.OutcomeFailed, "settle the previous rollout: "+err.Error())
	}
	// Nothing changes until the plan is made, so it is bounded: a hung engine fails the job.
	pctx, cancel := context.WithTimeout(ctx, planTimeout)
	todo, deps, members, reason, err := s.plan(pctx, rt, imageID)
	cancel()
	if err != nil {
		return finished(res, hookd.OutcomeFailed, err.Error())
	} else if reason != "" {
		return finished(res, hookd.OutcomeFailed, reason)
	}
	// The local tag follows the digest, as `docker pull` would leave it, so new containers keep
	// the image name they were created from and later `docker run`s get the same image.
	if err := s.engine.Tag(ctx, ref, rt.Image); err != nil {
		return finished(res, hookd.OutcomeFailed, "tag: "+err.Error())
	}
	if len(todo) == 0 && len(deps) == 0 {
		s.markRunning(rt.Name, res.Digest)
		if len(members) == 0 {
			return finished(res, hookd.OutcomeUpToDate, "no containers are labelled for this runtime")
		}
		return finished(res, hookd.OutcomeUpToDate, "")
	}

	j := &journal{store: s.store, r: &store.Rollout{
		Runtime: rt.Name, JobID: res.JobID, Ref: ref, Image: rt.Image, OldImageID: slices.Concat(todo, deps)[0].ImageID,
		Cleanup: rt.Cleanup, Containers: map[string]*store.Switch{},
	}}
	for _, d := range deps {
		j.r.Dependents = append(j.r.Dependents, store.Dependent{ID: d.ID, Name: d.Name, WasRunning: d.Running,
			Providers: slices.Sorted(maps.Values(d.Joins))})
	}
	startFirst, notes := orders(rt, todo, deps)
	res.Notes = append(res.Notes, notes...)
	minUptime, healthTimeout := rt.Gate()
	for start := 0; start < len(todo); start += rt.Parallel {
		batch := todo[start:min(start+rt.Parallel, len(todo))]
		bctx, cancel := context.WithTimeout(ctx, max(minUptime, healthTimeout)+engineSlack)
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for i, c := range batch {
			wg.Go(func() {
				if errs[i] = s.switchOne(bctx, j, rt, c, imageID, nil, true, startFirst[c.ID]); errs[i] != nil {
					cancel() // the batch rolls back anyway: the others need not sit out their gates
				}
			})
		}
		wg.Wait()
		cancel()
		if err := errors.Join(errs...); err != nil {
			return s.rollBack(ctx, j, err, res)
		}
		for _, c := range batch {
			res.Recreated = append(res.Recreated, c.Name)
		}
	}
	// Dependents follow once every provider runs its replacement, one at a time, each joining
	// the new containers; a failure rolls the whole graph back.
	// They go one at a time, in name order: each is a single container tied to its providers.
	if len(deps) > 0 {
		replaced := map[string]string{} // old provider ID → its replacement's
		for _, sw := range j.r.Containers {
			replaced[sw.OldID] = sw.NewID
		}
		for _, d := range deps {
			dctx, cancel := context.WithTimeout(ctx, max(minUptime, healthTimeout)+engineSlack)
			err := s.switchOne(dctx, j, rt, d, imageID, replaced, slices.ContainsFunc(members, func(m engine.Container) bool { return m.ID == d.ID }), false)
			cancel()
			if err != nil {
				return s.rollBack(ctx, j, err, res)
			}
			res.Recreated = append(res.Recreated, d.Name)
		}
	}
	j.r.Committed = true
	if err := s.store.WriteJournal(j.r); err != nil {
		// Without a durable commit a crash would revert the rollout anyway: revert now. The
		// failed write may yet have reached the disk, so the journal is told first: a settle
		// after a revert cut short must revert too, not commit a half-reverted runtime.
		j.r.Committed = false
		if werr := s.store.WriteJournal(j.r); werr != nil {
			s.log.Error("journal the revert of an uncommitted rollout", "runtime", rt.Name, "err", werr)
		}
		return s.rollBack(ctx, j, err, res)
	}
	rctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	if err := s.commit(rctx, j.r); err != nil {
		// Every container runs the new digest; the replaced ones are removed before the next
		// rollout of this runtime or at the next start.
		s.log.Warn("remove replaced containers", "runtime", rt.Name, "err", err)
	}
	s.markRunning(rt.Name, res.Digest)
	return finished(res, hookd.OutcomeRolledOut, "")
}

// rollBack undoes a rollout that failed with cause and reports it.
func (s *Service) rollBack(ctx context.Context, j *journal, cause error, res *hookd.Result) hookd.Result {
	res.Recreated = []string{}
	for name := range j.r.Containers {
		res.RolledBack = append(res.RolledBack, name)
	}
	slices.Sort(res.RolledBack)
	res.Failed = append(res.Failed, hookd.Failure{Ref: j.r.Ref, Reason: cause.Error()})
	// Remembered before the revert, so a crash during it does not retry the digest at start.
	if errors.As(cause, new(digestFault)) {
		s.rememberFailed(j.r.Runtime, res.Digest, cause.Error())
	}
	rctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	if err := s.revert(rctx, j.r); err != nil {
		return finished(res, hookd.OutcomeFailed, fmt.Sprintf("%v; roll back incomplete (hookd keeps trying, with backoff, before anything else for this runtime): %v", cause, err))
	}
	return finished(res, hookd.OutcomeRolledBack, cause.Error())
}

func finished(res *hookd.Result, outcome hookd.Outcome, reason string) hookd.Result {
	res.Outcome, res.Reason, res.Finished = outcome, reason, time.Now()
	return *res
}

// rememberFailed keeps digest from being tried again on its own: a newer push or a manual
// refresh tries again.
func (s *Service) rememberFailed(runtime, digest, reason string) {
	if _, err := s.store.UpdateRecord(runtime, func(r *store.Record) {
		r.FailedDigest, r.FailedAt, r.FailedReason = digest, time.Now(), reason
	}); err != nil {
		s.log.Error("remember failed digest", "runtime", runtime, "err", err)
	}
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
	if _, ok := j.r.Containers[sw.Name]; !ok {
		sw.Seq = len(j.r.Containers) + 1 // a revert undoes the switches in the reverse order
	}
	sw.Step = step
	if change != nil {
		change()
	}
	j.r.Containers[sw.Name] = sw
	return j.store.WriteJournal(j.r)
}

// switchOne replaces one container: create under a temporary name, set the old one aside and
// give the new one the name, stop the old one, start the new one and let it prove itself. Each
// step is journaled before it is taken; the old container is kept until the whole runtime has
// switched.
//
// A dependent (providers set: old provider ID → new) is recreated joining the new providers,
// on the runtime's image when it is a member of the runtime, otherwise on its own.
//
// startFirst (a running container two copies of which can run at once) starts the replacement
// under its temporary name instead, beside the old one, and gates it there: both serve the
// networks' aliases meanwhile. Only once it has passed is the old one stopped and are the names
// swapped, so the aliases always have a serving copy.
func (s *Service) switchOne(ctx context.Context, j *journal, rt hookd.Runtime, c engine.Container, imageID string, providers map[string]string, member, startFirst bool) error {
	sw := &store.Switch{
		Name: c.Name, OldID: c.ID, OldImageID: c.ImageID, WasRunning: c.Running,
		TempName: c.Name + catalog.TempSuffix, AsideName: c.Name + catalog.AsideSuffix,
	}
	if err := j.step(sw, store.StepCreate, nil); err != nil {
		return err
	}
	if stale, err := s.ownTemp(ctx, sw); err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	} else if stale != "" {
		if err := s.engine.Remove(ctx, stale); err != nil {
			return fmt.Errorf("%s: remove hookd's leftover %s: %w", c.Name, sw.TempName, err)
		}
	}
	image := c.Image
	if img, err := config.NormalizeImage(c.Image); err != nil || img != rt.Image {
		image = rt.Image
	}
	var newID string
	var err error
	startFirst = startFirst && c.Running && providers == nil
	switch {
	case startFirst:
		newID, err = s.engine.CreateBeside(ctx, c.ID, image, sw.TempName, c.Name)
	case providers == nil:
		newID, err = s.engine.CreateReplacement(ctx, c.ID, image, sw.TempName)
	default:
		if !member {
			image, imageID = "", c.ImageID // not the runtime's: it keeps its image
		}
		newID, err = s.engine.CreateDependent(ctx, c.ID, image, sw.TempName, providers)
	}
	if err != nil {
		return imageFault(ctx, fmt.Errorf("%s: create: %w", c.Name, err))
	}
	if created, err := s.engine.Inspect(ctx, newID); err != nil {
		return fmt.Errorf("%s: inspect replacement: %w", c.Name, err)
	} else if created.ImageID != imageID {
		return fmt.Errorf("%s: replacement got image %s, not %s", c.Name, created.ImageID, imageID)
	}
	if startFirst {
		return s.switchStartFirst(ctx, j, rt, sw, newID)
	}
	// Names are swapped while the old container still serves, so the time nothing answers is
	// only the engine's stop of the old one and start of the new one.
	if err := j.step(sw, store.StepRenameOld, func() { sw.NewID = newID }); err != nil {
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
	if !c.Running {
		// A container that was stopped is recreated and left stopped.
		return j.step(sw, store.StepSwitched, nil)
	}
	// From here until the new one answers, nothing does. The stop_old entry also covers the
	// start: a revert from it starts the old container again whatever the new one did.
	if err := j.step(sw, store.StepStopOld, nil); err != nil {
		return err
	}
	if err := s.engine.Stop(ctx, c.ID); err != nil {
		return fmt.Errorf("%s: stop: %w", c.Name, err)
	}
	started := time.Now()
	if err := s.engine.Start(ctx, newID); err != nil {
		return imageFault(ctx, fmt.Errorf("%s: start: %w", c.Name, err))
	}
	if err := j.step(sw, store.StepStartNew, nil); err != nil {
		return err
	}
	if err := s.gate(ctx, newID, rt, started); err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	return j.step(sw, store.StepSwitched, nil)
}

// switchStartFirst takes a created replacement through start-first: start it under its
// temporary name and gate it while the old container still serves (both hold the networks'
// aliases, and the replacement the old one's name as an alias too), then stop the old one and
// only then swap the names. The old one is stopped under its own name, so the engine drops its
// name record with it; renaming it while it ran would leave that record behind (the engine does
// not move a running container's name record on a rename). Each step is journaled before it is
// taken; a revert from any of them removes the replacement and gives the old one its name and
// its run back.
func (s *Service) switchStartFirst(ctx context.Context, j *journal, rt hookd.Runtime, sw *store.Switch, newID string) error {
	if err := j.step(sw, store.StepStartTemp, func() { sw.NewID, sw.Order = newID, string(hookd.OrderStartFirst) }); err != nil {
		return err
	}
	started := time.Now()
	if err := s.engine.Start(ctx, newID); err != nil {
		return imageFault(ctx, fmt.Errorf("%s: start: %w", sw.Name, err))
	}
	if err := s.gate(ctx, newID, rt, started); err != nil {
		return fmt.Errorf("%s: %w", sw.Name, err)
	}
	if err := j.step(sw, store.StepStopOld, nil); err != nil {
		return err
	}
	if err := s.engine.Stop(ctx, sw.OldID); err != nil {
		return fmt.Errorf("%s: stop: %w", sw.Name, err)
	}
	if err := j.step(sw, store.StepRenameOld, nil); err != nil {
		return err
	}
	if err := s.engine.Rename(ctx, sw.OldID, sw.AsideName); err != nil {
		return fmt.Errorf("%s: rename old: %w", sw.Name, err)
	}
	if err := j.step(sw, store.StepRenameNew, nil); err != nil {
		return err
	}
	if err := s.engine.Rename(ctx, newID, sw.Name); err != nil {
		return fmt.Errorf("%s: rename new: %w", sw.Name, err)
	}
	return j.step(sw, store.StepSwitched, nil)
}

// orders picks, for a start-first runtime, the containers that can switch start-first (by ID)
// and notes why each other running one switches stop-first. Two copies of a container must be
// able to run at once: not when both would claim a host port, the host's network or a pinned
// address; not when it shares another's namespace (both would bind in one); not when others
// share its own (they join the copy only once it is final). The others keep stop-first.
func orders(rt hookd.Runtime, todo, deps []engine.Container) (map[string]bool, []string) {
	if rt.Order != hookd.OrderStartFirst {
		return nil, nil
	}
	provider := map[string]bool{}
	for _, d := range deps {
		for _, p := range d.Joins {
			provider[p] = true
		}
	}
	startFirst := map[string]bool{}
	var notes []string
	note := func(c engine.Container, why string) {
		notes = append(notes, c.Name+": switched stop-first: "+why)
	}
	for _, c := range todo {
		switch {
		case !c.Running: // recreated and left stopped: no order to keep
		case c.Exclusive != "":
			note(c, c.Exclusive)
		case len(c.Joins) > 0:
			note(c, "shares the "+slices.Sorted(maps.Keys(c.Joins))[0]+" namespace of another container")
		case provider[c.ID]:
			note(c, "other containers share its namespaces")
		default:
			startFirst[c.ID] = true
		}
	}
	for _, d := range deps {
		if d.Running {
			note(d, "shares the "+slices.Sorted(maps.Keys(d.Joins))[0]+" namespace of a replaced container")
		}
	}
	return startFirst, notes
}

// gate passes when the container has stayed up for min_uptime without restarting and, where it
// has a healthcheck, reports healthy within health_timeout. Its verdicts are digestFaults.
func (s *Service) gate(ctx context.Context, id string, rt hookd.Runtime, started time.Time) error {
	minUptime, healthTimeout := rt.Gate()
	healthTimeout = max(healthTimeout, minUptime)
	began := time.Now()
	tick := time.NewTicker(gatePoll)
	defer tick.Stop()
	for {
		st, err := s.engine.State(ctx, id)
		if err != nil {
			return fmt.Errorf("gate: %w", err)
		}
		// A new container starts with no restarts: any means it died and the engine restarted it.
		switch {
		case st.RestartCount > 0 || st.Status == "restarting" || !st.Running:
			return s.exitFault(ctx, id, started, st, minUptime)
		case st.Status == "paused":
			// Someone paused it: it proves nothing either way, and is not the image's doing.
			return errors.New("gate: the new container was paused from outside hookd")
		case st.Health == "unhealthy":
			return digestFault{errors.New("healthcheck reports unhealthy")}
		}
		up := time.Since(began)
		if up >= minUptime && (st.Health == "" || st.Health == "healthy") {
			return nil
		}
		if st.Health != "" && up >= healthTimeout {
			return digestFault{fmt.Errorf("not healthy within %s (health %q)", healthTimeout, st.Health)}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gate: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// exitFault explains a new container that stopped running during its gate. It is the image's
// fault unless someone asked it to stop: a user, or the engine shutting down.
func (s *Service) exitFault(ctx context.Context, id string, started time.Time, st engine.State, minUptime time.Duration) error {
	ex, err := s.engine.ExitSince(ctx, id, started)
	code := st.ExitCode
	if ex.Died {
		code = ex.Code // a restarted container shows 0 again
	}
	what := fmt.Sprintf("exited with code %d during the first %s%s", code, minUptime, suffix(st.Error))
	if st.RestartCount > 0 || st.Status == "restarting" {
		what = fmt.Sprintf("restarted during the first %s (exit code %d)", minUptime, code)
	}
	switch {
	case err != nil:
		return fmt.Errorf("gate: %s, and the engine could not say why: %w", what, err)
	case ex.Requested:
		return fmt.Errorf("gate: %s after a stop from outside hookd (a user or the engine)", what)
	}
	return digestFault{errors.New(what)}
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// commit removes the replaced containers of a rollout that switched completely, then forgets it.
func (s *Service) commit(ctx context.Context, r *store.Rollout) error {
	var errs []error
	oldImages := map[string]bool{}
	for _, sw := range reverseOrder(r) { // dependents before the containers they joined
		oldImages[sw.OldImageID] = true
		old, err := s.engine.Inspect(ctx, sw.OldID)
		if engine.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("inspect old %s: %w", sw.Name, err))
			continue
		}
		if old.Name == sw.Name {
			// It holds its name again: a revert ran after this commit was journaled (a journal
			// write that failed yet reached the disk). It is the runtime's container now.
			continue
		}
		if err := s.engine.Remove(ctx, sw.OldID); err != nil {
			errs = append(errs, fmt.Errorf("remove old %s: %w", sw.Name, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // journal kept: settled before the next rollout or at start
	}
	if r.Cleanup {
		for id := range oldImages {
			if _, err := s.engine.RemoveImageIfUnused(ctx, id); err != nil {
				s.log.Warn("remove old image", "runtime", r.Runtime, "image", id, "err", err)
			}
		}
	}
	return s.store.ClearJournal(r.Runtime)
}

// revert puts every container of the rollout back as it was: the replacement removed, the old
// container under its name, running if it was, and the tag back on the old image. Each step
// checks the engine first, so a revert interrupted by a crash is simply run again.
func (s *Service) revert(ctx context.Context, r *store.Rollout) error {
	// Last switched first. A dependent's old container can only start once its provider's
	// runs again, which the reverse order reaches after it: those are tried again, in order.
	var again []*store.Switch
	for _, sw := range reverseOrder(r) {
		if err := s.revertOne(ctx, sw); err != nil {
			again = append([]*store.Switch{sw}, again...)
		}
	}
	var errs []error
	for _, sw := range again {
		if err := s.revertOne(ctx, sw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sw.Name, err))
		}
	}
	if err := s.rejoin(ctx, r); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if r.Image != "" && r.OldImageID != "" {
		// The next `docker run` of the tag should get what runs, not what just failed.
		if err := s.engine.Tag(ctx, r.OldImageID, r.Image); err != nil && !engine.IsNotFound(err) {
			s.log.Warn("move the tag back", "runtime", r.Runtime, "err", err)
		}
	}
	return s.store.ClearJournal(r.Runtime)
}

// rejoin brings back the dependents that ran in the namespace of a provider this rollout
// stopped: the engine tore that namespace down (one sharing a pid namespace was killed with it),
// and only a start joins the provider's again.
func (s *Service) rejoin(ctx context.Context, r *store.Rollout) error {
	stopped := map[string]bool{} // providers this rollout stopped
	for _, sw := range r.Containers {
		if sw.WasRunning && stoppedOld(sw) {
			stopped[sw.OldID] = true
		}
	}
	var errs []error
	for _, d := range r.Dependents {
		if !d.WasRunning || !slices.ContainsFunc(d.Providers, func(id string) bool { return stopped[id] }) {
			continue
		}
		if stopped[d.ID] {
			continue // its own revert started it, after its provider
		}
		c, err := s.engine.Inspect(ctx, d.ID)
		switch {
		case engine.IsNotFound(err):
			continue
		case err != nil:
		case c.Running:
			err = s.engine.Restart(ctx, d.ID)
		default:
			err = s.engine.Start(ctx, d.ID)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rejoin %s to its provider: %w", d.Name, err))
		}
	}
	return errors.Join(errs...)
}

// stoppedOld reports whether the switch had reached the stop of its old container.
func stoppedOld(sw *store.Switch) bool {
	before := []string{store.StepCreate, store.StepRenameOld, store.StepRenameNew}
	if sw.Order == string(hookd.OrderStartFirst) {
		before = []string{store.StepCreate, store.StepStartTemp}
	}
	return !slices.Contains(before, sw.Step)
}

func (s *Service) revertOne(ctx context.Context, sw *store.Switch) error {
	newID := sw.NewID
	if newID == "" {
		// Created, perhaps, but hookd stopped before it journaled the id: find it by name, and
		// take it only when its label proves hookd made it for this container.
		id, err := s.ownTemp(ctx, sw)
		if err != nil {
			return err
		}
		newID = id
	}
	old, err := s.engine.Inspect(ctx, sw.OldID)
	if engine.IsNotFound(err) {
		// Someone removed the old container: keep the replacement rather than leave nothing.
		return s.keepReplacement(ctx, sw, newID)
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
	if sw.Step == store.StepStopOld && sw.WasRunning && old.Running {
		// A stop whose caller went away (hookd killed, or its deadline passed) is finished by the
		// engine anyway, so this "running" can turn into "stopped" after the revert, with no one
		// left to start it again. Stopping again waits for that stop; the start below undoes it.
		// After a stop that completed, the old container is not running and this does nothing.
		if err := s.engine.Stop(ctx, sw.OldID); err != nil {
			return fmt.Errorf("settle old: %w", err)
		}
		old.Running = false
	}
	if sw.WasRunning && !old.Running {
		if err := s.engine.Start(ctx, sw.OldID); err != nil {
			return fmt.Errorf("restart old: %w", err)
		}
	}
	return nil
}

func (s *Service) keepReplacement(ctx context.Context, sw *store.Switch, newID string) error {
	if newID == "" {
		return nil
	}
	cur, err := s.engine.Inspect(ctx, newID)
	if engine.IsNotFound(err) {
		return nil // both are gone: nothing of hookd's is left to put back
	}
	if err != nil {
		return err
	}
	if cur.Name != sw.Name {
		if err := s.engine.Rename(ctx, newID, sw.Name); err != nil {
			return fmt.Errorf("give the replacement its name: %w", err)
		}
	}
	if sw.WasRunning && !cur.Running {
		return s.engine.Start(ctx, newID)
	}
	return nil
}

// settle finishes the runtime's rollout the journal shows in progress, if any: a committed one
// has its replaced containers removed, any other is reverted.
func (s *Service) settle(ctx context.Context, runtime string) error {
	r, ok, err := s.store.Journal(runtime)
	if err != nil || !ok {
		return err
	}
	// Settling changes containers: once begun it ends on its own, bounded.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreTimeout)
	defer cancel()
	if r.Committed {
		err = s.commit(ctx, r)
	} else {
		err = s.revert(ctx, r)
	}
	if err != nil {
		return err
	}
	s.log.Info("settled interrupted rollout", "runtime", runtime, "committed", r.Committed, "containers", len(r.Containers))
	return nil
}

// recover settles every rollout the journal shows in progress when hookd starts (the
// interrupted job is queued again by Resume) and returns the runtimes it could not settle: their
// workers keep trying before they take any job. It stops trying new runtimes once ctx ends or
// restoreTimeout has passed, so a start (or a stop right after it) is never held for long.
func (s *Service) recover(ctx context.Context) (unsettled []string) {
	rollouts, err := s.store.Journals()
	if err != nil {
		s.log.Error("read rollout journal", "err", err)
		return nil
	}
	deadline := time.Now().Add(restoreTimeout)
	for _, r := range rollouts {
		if ctx.Err() != nil || time.Now().After(deadline) {
			unsettled = append(unsettled, r.Runtime)
			continue
		}
		if err := s.settle(ctx, r.Runtime); err != nil {
			s.log.Warn("settle interrupted rollout; its worker tries again", "runtime", r.Runtime, "err", err)
			unsettled = append(unsettled, r.Runtime)
		}
	}
	return unsettled
}

// reverseOrder lists the rollout's switches last begun first.
func reverseOrder(r *store.Rollout) []*store.Switch {
	out := slices.Collect(maps.Values(r.Containers))
	slices.SortFunc(out, func(a, b *store.Switch) int {
		if a.Seq != b.Seq {
			return b.Seq - a.Seq
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// ownTemp returns the id of the container under the switch's temporary name when hookd's label
// proves hookd made it to replace this switch's old container, "" when the name is free, and an
// error when someone else's container holds it: that one is never touched.
func (s *Service) ownTemp(ctx context.Context, sw *store.Switch) (string, error) {
	c, err := s.engine.Inspect(ctx, sw.TempName)
	switch {
	case engine.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("look for %s: %w", sw.TempName, err)
	case c.ID == sw.OldID:
		return "", nil
	case c.Labels[engine.LabelReplaces] == sw.OldID:
		return c.ID, nil
	}
	return "", fmt.Errorf("a container named %s exists that hookd did not make (id %s); rename or remove it", sw.TempName, engine.ShortID(c.ID))
}

// dependents finds the containers that share a namespace (network, pid, ipc) of one to be
// replaced. They are tied to the old container's ID: left alone they would lose their network
// with it, and fail to start once it is removed. So they are recreated after their providers,
// joining the new ones; members of the runtime among them move from todo to the dependents.
// Shapes hookd does not handle are refused with the reason before anything changes.
func (s *Service) dependents(ctx context.Context, todo, members []engine.Container, self string) (switched, deps []engine.Container, reason string, err error) {
	ids := make([]string, len(todo))
	byID := map[string]engine.Container{}
	for i, c := range todo {
		ids[i], byID[c.ID] = c.ID, c
	}
	found, err := s.engine.Joining(ctx, ids)
	if err != nil || len(found) == 0 {
		return todo, nil, "", err
	}
	member := func(id string) bool {
		return slices.ContainsFunc(members, func(m engine.Container) bool { return m.ID == id })
	}
	isDep := map[string]bool{}
	depIDs := make([]string, 0, len(found))
	for _, d := range found {
		isDep[d.ID] = true
		depIDs = append(depIDs, d.ID)
		switch {
		case d.ID == self:
			return nil, nil, d.Name + " (hookd itself) shares a namespace of a container to replace; hookd does not recreate itself", nil
		case strings.HasSuffix(d.Name, catalog.TempSuffix) || strings.HasSuffix(d.Name, catalog.AsideSuffix):
			return nil, nil, d.Name + " shares a namespace of a container to replace and is in the middle of another rollout; try again when it has ended", nil
		case !member(d.ID) && (d.Labels[catalog.LabelRuntime] != "" || d.Labels[catalog.LabelEnable] == "true"):
			// Its own runtime's rollouts replace it; two runtimes must not work on one container.
			return nil, nil, d.Name + " shares a namespace of a container to replace but belongs to another runtime; put both in one runtime", nil
		case d.State == "paused":
			return nil, nil, d.Name + " shares a namespace of a container to replace and is paused; unpause it and hookd rolls the runtime out", nil
		case d.AutoRemove && d.Running:
			return nil, nil, d.Name + " shares a namespace of a container to replace and runs with --rm; hookd cannot replace it safely", nil
		}
		for _, p := range d.Joins {
			if pc, ok := byID[p]; ok && d.Running && !pc.Running {
				// The replacement of a stopped provider stays stopped, so the dependent's could not start.
				return nil, nil, d.Name + " runs in a namespace of " + pc.Name + ", which is stopped; start " + pc.Name + " (or stop " + d.Name + ") and hookd rolls the runtime out", nil
			}
		}
	}
	if deeper, err := s.engine.Joining(ctx, depIDs); err != nil {
		return nil, nil, "", err
	} else if len(deeper) > 0 {
		return nil, nil, deeper[0].Name + " shares a namespace of a container that itself shares one of a container to replace; hookd recreates one level of such dependents", nil
	}
	for _, c := range todo {
		if !isDep[c.ID] {
			switched = append(switched, c)
		}
	}
	return switched, found, "", nil
}

// plan lists what the rollout of rt onto imageID replaces: the members to switch (in compose's
// depends_on order) and the dependents that follow them, or the reason it cannot go ahead.
// It changes nothing.
func (s *Service) plan(ctx context.Context, rt hookd.Runtime, imageID string) (todo, deps, all []engine.Container, reason string, err error) {
	all, err = s.catalog.Members(ctx, rt)
	if err != nil {
		return nil, nil, nil, "", fmt.Errorf("list containers: %w", err)
	}
	self := s.engine.SelfID(ctx)
	for _, c := range all {
		switch {
		case self != "" && c.ID == self:
			s.log.Warn("not recreating the container hookd runs in", "runtime", rt.Name, "container", c.Name)
		case c.ImageID == imageID:
		case c.AutoRemove && c.Running:
			// Stopping it would delete it, leaving nothing to roll back to.
			return nil, nil, nil, c.Name + " was started with --rm (auto-remove); hookd cannot replace it safely", nil
		case c.State == "paused":
			// A running replacement would undo what the user paused it for.
			return nil, nil, nil, c.Name + " is paused; unpause it (or remove its label) and hookd rolls the runtime out", nil
		default:
			todo = append(todo, c)
		}
	}
	todo, deps, reason, err = s.dependents(ctx, composeOrder(todo), all, self)
	if err != nil {
		return nil, nil, nil, "", fmt.Errorf("look for containers that share a namespace: %w", err)
	}
	if reason != "" {
		return nil, nil, nil, reason, nil
	}
	for _, c := range slices.Concat(todo, deps) {
		// A settings list that cannot be honoured is the user's to fix, not the image's fault.
		if err := engine.CheckKeep(c.Labels); err != nil {
			return nil, nil, nil, c.Name + ": " + err.Error(), nil
		}
		// A name taken by a container hookd did not make is the user's: nothing is touched.
		if err := s.checkTempName(ctx, c); err != nil {
			return nil, nil, nil, err.Error(), nil
		}
	}
	return todo, deps, all, "", nil
}

// composeOrder puts the containers of a compose project after the services they depend on
// (compose v2 records `depends_on` in com.docker.compose.depends_on as "svc:condition:restart",
// comma-separated), so a dependency is switched first; otherwise the order is kept.
func composeOrder(todo []engine.Container) []engine.Container {
	const project, service, dependsOn = "com.docker.compose.project", "com.docker.compose.service", "com.docker.compose.depends_on"
	key := func(c engine.Container) string { return c.Labels[project] + "/" + c.Labels[service] }
	present := map[string]bool{}
	for _, c := range todo {
		if c.Labels[service] != "" {
			present[key(c)] = true
		}
	}
	out := make([]engine.Container, 0, len(todo))
	placed := map[string]bool{}
	done := make([]bool, len(todo))
	for len(out) < len(todo) {
		progress := false
		for i, c := range todo {
			if done[i] {
				continue
			}
			ready := true
			for _, dep := range strings.Split(c.Labels[dependsOn], ",") {
				name, _, _ := strings.Cut(strings.TrimSpace(dep), ":")
				if d := c.Labels[project] + "/" + name; name != "" && present[d] && !placed[d] && d != key(c) {
					ready = false
				}
			}
			if ready {
				out, done[i], progress = append(out, c), true, true
			}
		}
		for i, c := range todo {
			if done[i] && c.Labels[service] != "" {
				placed[key(c)] = true
			}
		}
		if !progress { // a cycle: keep the rest in their order
			for i, c := range todo {
				if !done[i] {
					out, done[i] = append(out, c), true
				}
			}
		}
	}
	return out
}

// checkTempName refuses a rollout before it begins when a stranger holds c's temporary name.
func (s *Service) checkTempName(ctx context.Context, c engine.Container) error {
	_, err := s.ownTemp(ctx, &store.Switch{Name: c.Name, OldID: c.ID, TempName: c.Name + catalog.TempSuffix})
	return err
}
