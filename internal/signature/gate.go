package signature

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
)

// Results of hookd_verify_total.
const (
	ResultVerified = "verified"
	ResultRefused  = "refused"
	ResultFailed   = "failed"
)

// Metrics counts verifications.
type Metrics struct {
	verify *prometheus.CounterVec
}

// NewMetrics registers hookd_verify_total on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{verify: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookd_verify_total",
		Help: "Signature checks of a digest before its rollout, by runtime and result (verified, refused, failed).",
	}, []string{"runtime", "result"})}
	reg.MustRegister(m.verify)
	return m
}

// Gate holds each runtime's policy and checks digests against it.
type Gate struct {
	v        *Verifier
	policies map[string]*Policy
	def      *Policy
	m        *Metrics
}

// NewGate compiles the policy of every runtime; def (nil: none) applies to runtimes without
// one, such as those discovered in zero-config mode.
func NewGate(v *Verifier, runtimes []hookd.Runtime, def *hookd.VerifyPolicy, m *Metrics) (*Gate, error) {
	g := &Gate{v: v, policies: map[string]*Policy{}, m: m}
	var problems []error
	if def != nil {
		p, err := NewPolicy(*def)
		if err != nil {
			problems = append(problems, fmt.Errorf("verify: %w", err))
		}
		g.def = p
	}
	for _, rt := range runtimes {
		if rt.Verify == nil {
			continue
		}
		p, err := NewPolicy(*rt.Verify)
		if err != nil {
			problems = append(problems, fmt.Errorf("runtime %q: verify: %w", rt.Name, err))
			continue
		}
		g.policies[rt.Name] = p
		g.known(rt.Name)
	}
	if g.def != nil {
		for _, rt := range runtimes {
			g.known(rt.Name)
		}
	}
	return g, errors.Join(problems...)
}

func (g *Gate) known(runtime string) {
	for _, r := range []string{ResultVerified, ResultRefused, ResultFailed} {
		g.m.verify.WithLabelValues(runtime, r)
	}
}

// Check returns nil when runtime asks for no signature or repo@digest is signed as it asks, a
// *Refusal when it is not, and any other error when the signatures could not be read.
func (g *Gate) Check(ctx context.Context, runtime, repo, digest string) error {
	p := g.policies[runtime]
	if p == nil {
		p = g.def
	}
	if p == nil {
		return nil
	}
	err := g.v.Verify(ctx, p, repo, digest)
	if errors.Is(err, context.Canceled) {
		return err // hookd is stopping: the job runs again at the next start, nothing was decided
	}
	result := ResultVerified
	switch {
	case errors.As(err, new(*Refusal)):
		result = ResultRefused
	case err != nil:
		result = ResultFailed
	}
	g.m.verify.WithLabelValues(runtime, result).Inc()
	return err
}
