// Package signature decides whether a digest may run: it looks up the signatures the registry
// holds for it, the way `cosign sign` stores them (the sha256-<hex>.sig tag) and as Sigstore
// bundles among its OCI 1.1 referrers, and checks them against the runtime's policy: a known key,
// or a keyless certificate chaining to the trusted root with a known issuer and subject.
package signature

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigsig "github.com/sigstore/sigstore/pkg/signature"

	"github.com/hookd/hookd"
)

// Bounds of a policy's wait for a signature that is not there yet.
const (
	DefaultWait = 60 * time.Second
	MaxWait     = 5 * time.Minute
)

// Policy is a hookd.VerifyPolicy with its keys read, its patterns compiled and its trusted root
// loaded: what a signature must match for a digest to run.
type Policy struct {
	keys       []key
	identities []identity
	root       root.TrustedMaterial
	wait       time.Duration
}

type key struct {
	name string // the file it was read from
	v    sigsig.Verifier
}

type identity struct {
	text string
	id   verify.CertificateIdentity
}

// NewPolicy reads and checks everything p names. Every problem is in the one error.
func NewPolicy(p hookd.VerifyPolicy) (*Policy, error) {
	out := &Policy{wait: p.Wait}
	var problems []error
	for _, f := range p.Keys {
		v, err := loadKey(f)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		out.keys = append(out.keys, key{name: f, v: v})
	}
	for i, id := range p.Identities {
		ci, err := verify.NewShortCertificateIdentity(id.Issuer, id.IssuerRegexp, id.Subject, id.SubjectRegexp)
		if err != nil {
			problems = append(problems, fmt.Errorf("identities[%d]: %w", i, err))
			continue
		}
		out.identities = append(out.identities, identity{text: describe(id), id: ci})
	}
	switch {
	case p.TrustedRoot != "":
		tr, err := root.NewTrustedRootFromPath(p.TrustedRoot)
		if err != nil {
			problems = append(problems, fmt.Errorf("trusted_root %s: %w", p.TrustedRoot, err))
		} else {
			out.root = tr
		}
	case len(p.Identities) > 0:
		problems = append(problems, errors.New("identities need a trusted_root (the Sigstore trusted_root.json naming the CAs their certificates chain to)"))
	}
	if len(p.Keys) == 0 && len(p.Identities) == 0 {
		problems = append(problems, errors.New("set keys or identities: a policy that names no signer would refuse everything"))
	}
	if p.Wait < 0 || p.Wait > MaxWait {
		problems = append(problems, fmt.Errorf("wait %s: want 0 to %s", p.Wait, MaxWait))
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return out, nil
}

func loadKey(path string) (sigsig.Verifier, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("key %s: not a PEM public key: %w", path, err)
	}
	// cosign signs the SHA-256 of the payload whatever the key.
	v, err := sigsig.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return v, nil
}

func describe(id hookd.Identity) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("issuer", id.Issuer)
	add("issuer matching", id.IssuerRegexp)
	add("subject", id.Subject)
	add("subject matching", id.SubjectRegexp)
	return strings.Join(parts, ", ")
}

// Expected says who may sign, as a refusal quotes it.
func (p *Policy) Expected() string {
	var parts []string
	for _, k := range p.keys {
		parts = append(parts, "key "+k.name)
	}
	for _, id := range p.identities {
		parts = append(parts, "identity ("+id.text+")")
	}
	return strings.Join(parts, " or ")
}

const cryptoHash = crypto.SHA256
