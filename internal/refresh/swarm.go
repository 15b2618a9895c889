package refresh

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/store"
)

const (
	// serviceWait bounds hookd's wait for Swarm to end one service's update. Swarm goes on
	// rolling after it; the journal stays open and the runtime's worker reads the outcome later.
	serviceWait = 10 * time.Minute
	// servicePoll is how often a service is read while Swarm rolls its tasks, each read within
	// serviceRead.
	servicePoll = 250 * time.Millisecond
	serviceRead = 30 * time.Second
	// serviceConflicts is how many times an update refused as out of sequence (the spec changed
	// since hookd read it) is read again and submitted again.
	serviceConflicts = 3
)

// serviceEnd is how one service's part of a rollout ended.
type serviceEnd struct {
	outcome hookd.Outcome // up_to_date, rolled_out, rolled_back or failed
	reason  string        // Swarm's message, or why hookd did not touch the service
	// pending is set when Swarm was still rolling when hookd stopped waiting; stopped when
	// that was because hookd is stopping.
	pending, stopped bool
}

// rolloutServices updates the runtime's Swarm services to digest once its containers have
// rolled out (or were up to date): each service's spec image becomes "repo:tag@digest", and
// Swarm rolls the tasks with the service's own update_config while hookd waits for its outcome.
// A service Swarm is already updating is left alone. prevRunning is the digest the runtime was
// recorded running before this job: while a service is not on the new digest, that stays the
// record, so the poll looks again.
//
// done is false when hookd stopped while Swarm was still updating a service: the job is left for
// the next start, which reads Swarm's outcome from the journal first and submits nothing again.
func (s *Service) rolloutServices(ctx context.Context, rt hookd.Runtime, ref, digest, prevRunning string, res *hookd.Result) (_ hookd.Result, done bool) {
	if !res.Outcome.Good() || res.Outcome == hookd.OutcomePulled {
		return *res, true // the containers failed or rolled back: their digest goes no further
	}
	pctx, cancel := context.WithTimeout(ctx, planTimeout)
	svcs, err := s.catalog.ServiceMembers(pctx, s.engine, rt)
	cancel()
	noContainers := res.Reason == reasonNoContainers
	switch {
	case errors.Is(err, engine.ErrNotManager) && !noContainers:
		// The containers are this engine's to roll; services, if any, are a manager's.
		s.log.Warn("services not checked", "runtime", rt.Name, "err", err)
		return *res, true
	case errors.Is(err, engine.ErrNotManager):
		s.unmarkRunning(rt.Name, digest, prevRunning)
		return finished(res, hookd.OutcomeFailed, err.Error()), true
	case err != nil:
		s.unmarkRunning(rt.Name, digest, prevRunning)
		res.Failed = append(res.Failed, hookd.Failure{Ref: ref, Reason: err.Error()})
		return finished(res, hookd.OutcomeFailed, "services: "+err.Error()), true
	case len(svcs) == 0:
		return *res, true
	}
	if noContainers {
		res.Reason = ""
	}
	image := rt.Image + "@" + digest
	// The nodes pull with the credentials the manager's pull used, as --with-registry-auth.
	creds, err := s.registry.Credentials(ctx, rt.Image)
	if err != nil {
		s.unmarkRunning(rt.Name, digest, prevRunning)
		return finished(res, hookd.OutcomeFailed, "services: registry credentials: "+err.Error()), true
	}
	auth := engine.Auth{Username: creds.Username, Password: creds.Password, IdentityToken: creds.IdentityToken, RegistryToken: creds.RegistryToken}
	outcome := res.Outcome
	var reasons []string
	for _, svc := range svcs {
		end := s.updateService(ctx, rt, svc, image, digest, auth, res.JobID)
		if end.stopped {
			s.unmarkRunning(rt.Name, digest, prevRunning)
			return *res, false
		}
		s.log.Info("service update", "runtime", rt.Name, "service", svc.Name, "result", end.outcome, "reason", end.reason)
		switch end.outcome {
		case hookd.OutcomeRolledOut:
			res.Services = append(res.Services, svc.Name)
			if outcome == hookd.OutcomeUpToDate {
				outcome = hookd.OutcomeRolledOut
			}
		case hookd.OutcomeUpToDate:
		case hookd.OutcomeRolledBack:
			res.RolledBack = append(res.RolledBack, svc.Name)
			res.Failed = append(res.Failed, hookd.Failure{Ref: image, Reason: "service " + svc.Name + ": " + end.reason})
			reasons = append(reasons, "service "+svc.Name+" rolled back by Swarm: "+end.reason)
			if outcome != hookd.OutcomeFailed {
				outcome = hookd.OutcomeRolledBack
			}
		default:
			res.Failed = append(res.Failed, hookd.Failure{Ref: image, Reason: "service " + svc.Name + ": " + end.reason})
			reasons = append(reasons, "service "+svc.Name+": "+end.reason)
			outcome = hookd.OutcomeFailed
		}
	}
	if !outcome.Good() {
		s.unmarkRunning(rt.Name, digest, prevRunning)
	}
	if outcome == hookd.OutcomeRolledBack {
		s.rememberFailed(rt.Name, digest, strings.Join(reasons, "; "))
	}
	return finished(res, outcome, strings.Join(reasons, "; ")), true
}

// reasonNoContainers is the containers' rollout's word for a runtime without containers.
const reasonNoContainers = "no containers are labelled for this runtime"

// updateService brings one service to image (pinned to digest) and waits for Swarm's outcome.
func (s *Service) updateService(ctx context.Context, rt hookd.Runtime, svc engine.Service, image, digest string, auth engine.Auth, jobID uint64) serviceEnd {
	for try := 0; ; try++ {
		switch {
		case engine.ImageDigest(svc.Image) == digest:
			// Pinned already (by hookd before, or by hand): never submitted again. Swarm may
			// still be rolling the tasks to it.
			if converged(svc, digest) {
				s.clearServiceUpdate(rt.Name, svc)
				return serviceEnd{outcome: hookd.OutcomeUpToDate}
			}
			end := s.awaitService(ctx, svc.ID, digest, svc.Version, false)
			if !end.pending {
				// This job reports the end: an update journaled by an interrupted job is done.
				s.clearServiceUpdate(rt.Name, svc)
			}
			return end
		case svc.Updating():
			return serviceEnd{outcome: hookd.OutcomeFailed, reason: fmt.Sprintf(
				"Swarm is already updating it (%s); not touched, the poll looks again later", svc.UpdateState)}
		}
		u := store.ServiceUpdate{Runtime: rt.Name, ServiceID: svc.ID, Service: svc.Name, Version: svc.Version,
			Ref: image, Digest: digest, PreviousImage: svc.Image, JobID: jobID, At: time.Now()}
		if err := s.store.WriteServiceUpdate(u); err != nil {
			return serviceEnd{outcome: hookd.OutcomeFailed, reason: err.Error()}
		}
		uctx, cancel := context.WithTimeout(ctx, engineSlack)
		warnings, err := s.engine.UpdateServiceImage(uctx, svc.ID, svc.Version, image, auth)
		cancel()
		if err == nil {
			for _, w := range warnings {
				s.log.Warn("service update warning", "runtime", rt.Name, "service", svc.Name, "warning", w)
			}
			end := s.awaitService(ctx, svc.ID, digest, svc.Version, true)
			if !end.pending {
				// Ended: Swarm's outcome is in the result. One still rolling stays journaled,
				// and the runtime's worker reads its end before the next job.
				s.clearServiceUpdate(rt.Name, svc)
			}
			return end
		}
		// Refused as out of sequence, the update certainly did not go out. Any other error may
		// have come after Swarm took it (an answer lost): the service, read again, tells.
		conflict := errors.Is(err, engine.ErrServiceConflict)
		rctx, cancel := context.WithTimeout(ctx, engineSlack)
		now, rerr := s.engine.Service(rctx, svc.ID)
		cancel()
		switch {
		case rerr != nil && !conflict:
			// Cannot tell: the journal stays, and the settle before the runtime's next job
			// decides from the spec's version, never submitting again.
			return serviceEnd{outcome: hookd.OutcomeFailed, reason: err.Error()}
		case !conflict && (now.Version > svc.Version || engine.ImageDigest(now.Image) == digest):
			s.log.Warn("service update answered with an error but went out; waiting for Swarm", "runtime", rt.Name, "service", svc.Name, "err", err)
			end := s.awaitService(ctx, svc.ID, digest, svc.Version, true)
			if !end.pending {
				s.clearServiceUpdate(rt.Name, svc)
			}
			return end
		}
		s.clearServiceUpdate(rt.Name, svc)
		if !conflict || try >= serviceConflicts {
			return serviceEnd{outcome: hookd.OutcomeFailed, reason: err.Error()}
		}
		if rerr != nil {
			return serviceEnd{outcome: hookd.OutcomeFailed, reason: rerr.Error()}
		}
		svc = now
	}
}

// clearServiceUpdate forgets the journaled update of svc, if any, once its end is known.
func (s *Service) clearServiceUpdate(runtime string, svc engine.Service) {
	if err := s.store.ClearServiceUpdate(runtime, svc.ID); err != nil {
		s.log.Error("clear service journal", "runtime", runtime, "service", svc.Name, "err", err)
	}
}

// converged reports whether the service's spec is pinned to digest and all its tasks run it.
func converged(svc engine.Service, digest string) bool {
	if engine.ImageDigest(svc.Image) != digest || (svc.Replicas >= 0 && len(svc.Tasks) != svc.Replicas) {
		return false
	}
	for _, t := range svc.Tasks {
		if engine.ImageDigest(t.Image) != digest || t.State != "running" {
			return false
		}
	}
	return true
}

// awaitService waits, within serviceWait, for Swarm to end the update of service id to digest
// submitted at spec version from (ours when submitted is set). Swarm resets UpdateStatus when a spec changes, but a status left from an earlier
// update is never taken for this one: completion needs the tasks on digest, a rollback needs
// the spec off it.
func (s *Service) awaitService(ctx context.Context, id, digest string, from uint64, submitted bool) serviceEnd {
	ctx, cancel := context.WithTimeout(ctx, serviceWait)
	defer cancel()
	tick := time.NewTicker(servicePoll)
	defer tick.Stop()
	var cause string // Swarm says why it rolls back while it does; its last word is "rollback completed"
	var warned time.Time
	for {
		// Each read is bounded on its own: an engine that stops answering costs one read, and a
		// stop of hookd is seen between reads.
		rctx, rcancel := context.WithTimeout(ctx, serviceRead)
		svc, err := s.engine.Service(rctx, id)
		rcancel()
		if err == nil {
			if svc.UpdateState == "rollback_started" && svc.UpdateMessage != "" {
				cause = svc.UpdateMessage
			}
			if end, ok := serviceOutcome(svc, digest, from, submitted); ok {
				if end.outcome == hookd.OutcomeRolledBack && cause != "" && cause != end.reason {
					end.reason = cause + " (" + end.reason + ")"
				}
				return end
			}
		} else if ctx.Err() == nil && time.Since(warned) > 30*time.Second {
			warned = time.Now() // once in a while, not every read
			s.log.Warn("read service during its update", "service", id, "err", err)
		}
		select {
		case <-s.stopping:
			// Swarm goes on without hookd: the journal stays, and the next start reads the end.
			return serviceEnd{outcome: hookd.OutcomeFailed, pending: true, stopped: true,
				reason: "hookd stopped while Swarm was updating the service; the next start reads its outcome"}
		case <-ctx.Done():
			state := svc.UpdateState
			if state == "" {
				state = "no update status"
			}
			return serviceEnd{outcome: hookd.OutcomeFailed, pending: true, reason: fmt.Sprintf(
				"Swarm's update did not end within %s (%s); hookd reads its outcome before this runtime's next job", serviceWait, state)}
		case <-tick.C:
		}
	}
}

// serviceOutcome reads Swarm's verdict on the update to digest; ok is false while it goes on.
func serviceOutcome(svc engine.Service, digest string, from uint64, submitted bool) (serviceEnd, bool) {
	pinned := engine.ImageDigest(svc.Image) == digest
	msg := svc.UpdateMessage
	switch {
	case pinned && converged(svc, digest) && !svc.Updating():
		return serviceEnd{outcome: hookd.OutcomeRolledOut, reason: msg}, true
	case pinned && svc.UpdateState == "paused":
		return serviceEnd{outcome: hookd.OutcomeFailed, reason: "Swarm paused the update: " + msg}, true
	case !pinned && svc.UpdateState == "rollback_completed":
		return serviceEnd{outcome: hookd.OutcomeRolledBack, reason: msg}, true
	case !pinned && svc.UpdateState == "rollback_paused":
		return serviceEnd{outcome: hookd.OutcomeFailed, reason: "Swarm paused the roll back: " + msg}, true
	case !pinned && !svc.Updating() && (submitted || svc.Version > from):
		return serviceEnd{outcome: hookd.OutcomeFailed, reason: "the service's image was changed outside hookd to " + svc.Image}, true
	}
	return serviceEnd{}, false
}

// settleServices ends the service updates journaled for runtime, from one read of each
// service: one that went out (the spec's version moved past the one it was submitted at, or
// the spec is pinned to the digest) and has ended gets its outcome recorded; one that never
// went out is forgotten. One Swarm still rolls stays journaled without holding the runtime up:
// the next job finds its spec pinned and waits for it, or finds Swarm busy and leaves it. None
// is submitted again.
func (s *Service) settleServices(ctx context.Context, runtime string) error {
	open, err := s.store.ServiceUpdates(runtime)
	if err != nil || len(open) == 0 {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	for _, u := range open {
		rctx, cancel := context.WithTimeout(ctx, engineSlack)
		svc, err := s.engine.Service(rctx, u.ServiceID)
		cancel()
		switch {
		case engine.IsNotFound(err):
			// Removed meanwhile: nothing to wait for.
		case errors.Is(err, engine.ErrNotManager):
			// The node left the managers: what Swarm did is no longer this engine's to read.
			s.log.Warn("interrupted service update cannot be read: this engine is no longer a swarm manager", "runtime", runtime, "service", u.Service)
		case err != nil:
			return fmt.Errorf("settle service %s: %w", u.Service, err)
		case svc.Version > u.Version || engine.ImageDigest(svc.Image) == u.Digest:
			end, ended := serviceOutcome(svc, u.Digest, u.Version, true)
			if !ended {
				s.log.Info("interrupted service update still rolling; its end is read later", "runtime", runtime, "service", u.Service, "state", svc.UpdateState)
				continue
			}
			s.log.Info("settled interrupted service update", "runtime", runtime, "service", u.Service, "result", end.outcome, "reason", end.reason)
			switch end.outcome {
			case hookd.OutcomeRolledBack:
				s.metrics.rollbacks.WithLabelValues(runtime).Inc()
				s.rememberFailed(runtime, u.Digest, "service "+u.Service+" rolled back by Swarm: "+end.reason)
			case hookd.OutcomeRolledOut:
			default:
				s.log.Warn("interrupted service update did not roll out", "runtime", runtime, "service", u.Service, "reason", end.reason)
			}
			if end.outcome != hookd.OutcomeRolledOut {
				// The containers' commit recorded the digest running before the services were
				// asked; the service runs what it ran before.
				s.unmarkRunning(runtime, u.Digest, engine.ImageDigest(u.PreviousImage))
			}
		default:
			s.log.Info("interrupted service update never reached Swarm", "runtime", runtime, "service", u.Service)
		}
		if err := s.store.ClearServiceUpdate(runtime, u.ServiceID); err != nil {
			return err
		}
	}
	return nil
}

// serviceJournalRuntimes lists the runtimes with a service update journaled, for their workers
// to settle at start.
func (s *Service) serviceJournalRuntimes() []string {
	open, err := s.store.ServiceUpdates("")
	if err != nil {
		s.log.Error("read service journal", "err", err)
		return nil
	}
	var out []string
	for _, u := range open {
		out = append(out, u.Runtime)
	}
	return out
}

// unmarkRunning puts back the digest recorded running before a job whose services did not all
// reach digest, so the poll judges the runtime behind and looks again.
func (s *Service) unmarkRunning(runtime, digest, prev string) {
	if _, err := s.store.UpdateRecord(runtime, func(r *store.Record) {
		if r.RunningDigest == digest {
			r.RunningDigest = prev
		}
	}); err != nil {
		s.log.Error("record running digest", "runtime", runtime, "err", err)
	}
}
