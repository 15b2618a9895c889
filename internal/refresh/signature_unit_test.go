package refresh

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/signature"
	"github.com/hookd/hookd/internal/testkit"
)

// sigRegistry is the registry's side of signature lookups: it holds no signature, or fails.
type sigRegistry struct{ err error }

func (r sigRegistry) SignatureLayers(ctx context.Context, repo, digest string) ([]registry.Artifact, error) {
	if r.err != nil {
		return nil, r.err
	}
	return nil, registry.ErrNotFound
}

func (r sigRegistry) ReferrerArtifacts(ctx context.Context, repo, digest, artifactType string) ([]registry.Artifact, error) {
	return nil, r.err
}

// gated returns a site whose runtime "app" asks for a signature by a key, behind a real gate
// reading signatures from reg.
func gated(t *testing.T, reg sigRegistry) (*site, *atomic.Int32) {
	t.Helper()
	rt := hookd.NewRuntime("app", image)
	rt.MinUptime = 0
	rt.Verify = &hookd.VerifyPolicy{Keys: []string{testkit.NewKeySigner(t).PublicKeyFile(t)}}
	s := newSite(t, 0, rt)
	g, err := signature.NewGate(signature.NewVerifier(reg), s.runtimes, nil, signature.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	s.svc.WithGate(g)
	pulls := &atomic.Int32{}
	s.eng.OnPull = func(context.Context, string) error { pulls.Add(1); return nil }
	s.container("app-1", "app")
	s.run()
	return s, pulls
}

func TestUnsignedDigestIsRefusedAndChangesNothing(t *testing.T) {
	s, pulls := gated(t, sigRegistry{})
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeRefused || !strings.Contains(res.Reason, "no signature") || !strings.Contains(res.Reason, "want key ") {
		t.Fatalf("result %+v", res)
	}
	if n := pulls.Load(); n != 0 || len(res.Pulled) != 0 {
		t.Errorf("%d pulls, pulled %v: a refused digest must not be pulled", n, res.Pulled)
	}
	if ops := s.eng.Ops(); len(ops) != 0 {
		t.Errorf("engine changes %v, want none", ops)
	}
	if id := s.eng.Image(image); id != oldImg {
		t.Errorf("tag %s moved to %s", image, id)
	}
	s.running(oldImg, "app-1")
	if r := s.record("app"); r.FailedDigest != newDig || !strings.Contains(r.FailedReason, "no signature") {
		t.Errorf("record %+v: the refused digest is to be remembered as failed", r)
	}
	// The next delivery of the same digest is not verified again; a manual refresh is.
	s.push("app", "d-2")
	if res := s.waitResult("app", func(r hookd.Result) bool { return r.JobID != res.JobID }); res.Outcome != hookd.OutcomeSkipped {
		t.Errorf("same digest again: %+v, want skipped", res)
	}
}

func TestSignatureRegistryErrorIsFailedNotRefused(t *testing.T) {
	s, pulls := gated(t, sigRegistry{err: errors.New("GET .sig: 503 Service Unavailable")})
	res := s.refresh("app")
	if res.Outcome != hookd.OutcomeFailed || !strings.Contains(res.Reason, "verify signature") {
		t.Fatalf("result %+v, want failed", res)
	}
	if pulls.Load() != 0 || len(s.eng.Ops()) != 0 {
		t.Errorf("pulls %d, ops %v: nothing may happen on a signature that could not be read", pulls.Load(), s.eng.Ops())
	}
	if r := s.record("app"); r.FailedDigest != "" {
		t.Errorf("failed digest %q: a registry error must leave the digest eligible", r.FailedDigest)
	}
}

func TestPollJobPassesTheSameGate(t *testing.T) {
	s, pulls := gated(t, sigRegistry{})
	if _, err := s.svc.Submit(context.Background(), hookd.Job{Runtime: "app", Trigger: hookd.TriggerPoll, Requests: 1}); err != nil {
		t.Fatal(err)
	}
	res := s.waitResult("app", func(hookd.Result) bool { return true })
	if res.Trigger != hookd.TriggerPoll || res.Outcome != hookd.OutcomeRefused {
		t.Fatalf("poll job: %+v, want refused", res)
	}
	if pulls.Load() != 0 || len(s.eng.Ops()) != 0 {
		t.Errorf("pulls %d, ops %v after a refused poll job", pulls.Load(), s.eng.Ops())
	}
}
