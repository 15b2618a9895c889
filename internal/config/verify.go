package config

import (
	"fmt"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/signature"
)

// VerifySpec is a signature policy as written in the file: at the top level (every runtime) or
// in a runtime (replacing the top-level one for it).
type VerifySpec struct {
	Keys        []string         `yaml:"keys"`
	Identities  []hookd.Identity `yaml:"identities"`
	TrustedRoot string           `yaml:"trusted_root"`
	Wait        *Duration        `yaml:"wait"` // nil: signature.DefaultWait
}

func (v *VerifySpec) policy() *hookd.VerifyPolicy {
	if v == nil {
		return nil
	}
	p := &hookd.VerifyPolicy{Keys: v.Keys, Identities: v.Identities, TrustedRoot: v.TrustedRoot, Wait: signature.DefaultWait}
	if v.Wait != nil {
		p.Wait = v.Wait.D()
	}
	return p
}

// DefaultVerify is the top-level policy, for runtimes discovered in zero-config mode; nil when
// the file sets none.
func (c *Config) DefaultVerify() *hookd.VerifyPolicy { return c.Verify.policy() }

// verifyFor is the policy a runtime spec ends up with.
func (c *Config) verifyFor(r RuntimeSpec) *hookd.VerifyPolicy {
	if r.Verify != nil {
		return r.Verify.policy()
	}
	return c.Verify.policy()
}

// validateVerify reads every key and trusted root the policies name and compiles their
// patterns, so a policy that could never verify is found by check-config, not at a rollout.
func (c *Config) validateVerify() []error {
	var problems []error
	if c.Verify != nil {
		if _, err := signature.NewPolicy(*c.Verify.policy()); err != nil {
			problems = append(problems, fmt.Errorf("verify: %w", err))
		}
	}
	for i, spec := range c.RuntimeSpecs {
		if spec.Verify == nil {
			continue
		}
		where := fmt.Sprintf("runtimes[%d]", i)
		if spec.Name != "" {
			where = fmt.Sprintf("runtime %q", spec.Name)
		}
		if _, err := signature.NewPolicy(*spec.Verify.policy()); err != nil {
			problems = append(problems, fmt.Errorf("%s: verify: %w", where, err))
		}
	}
	return problems
}
