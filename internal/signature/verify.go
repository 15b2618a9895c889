package signature

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	sigsig "github.com/sigstore/sigstore/pkg/signature"

	"github.com/hookd/hookd/internal/registry"
)

// Registry is where the signatures are.
type Registry interface {
	SignatureLayers(ctx context.Context, repo, digest string) ([]registry.Artifact, error)
	ReferrerArtifacts(ctx context.Context, repo, digest, artifactType string) ([]registry.Artifact, error)
}

// Refusal is a digest whose signatures, all of them read, do not satisfy the policy.
type Refusal struct {
	Expected string // who may sign
	Found    string // what the registry holds
}

func (r *Refusal) Error() string {
	return "signature: want " + r.Expected + "; found " + r.Found
}

// Verifier checks a digest's signatures against a policy.
type Verifier struct {
	reg Registry
}

// NewVerifier returns a verifier reading signatures from reg.
func NewVerifier(reg Registry) *Verifier { return &Verifier{reg: reg} }

// Poll intervals while waiting for a signature that is not there yet.
const (
	waitFirst = 500 * time.Millisecond
	waitMax   = 10 * time.Second
)

// Verify returns nil when a signature of repo@digest satisfies p, a *Refusal when none does,
// and any other error when the registry could not be read: that decides nothing. A digest
// without a satisfying signature is looked at again, with backoff, until p's wait has passed.
func (v *Verifier) Verify(ctx context.Context, p *Policy, repo, digest string) error {
	deadline := time.Now().Add(p.wait)
	pause := waitFirst
	for {
		// Signatures that do not satisfy p do not end the wait either: CI may attach another
		// artifact (a provenance attestation) before it signs.
		found, err := v.check(ctx, p, repo, digest)
		switch {
		case err == nil:
			return nil
		case found == nil && !errors.Is(err, errNoSignature):
			return err // the registry could not be read: nothing is decided
		case !time.Now().Add(pause).Before(deadline):
			return &Refusal{Expected: p.Expected(), Found: found.String()}
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for a signature: %w", ctx.Err())
		case <-t.C:
		}
		pause = min(pause*2, waitMax)
	}
}

var errNoSignature = errors.New("no signature")

// findings collects why each signature read did not satisfy the policy.
type findings []string

func (f findings) String() string {
	if len(f) == 0 {
		return "no signature (no sha256-<hex>.sig tag, no Sigstore bundle among the referrers)"
	}
	// A registry can hold many signatures; the reason stays readable.
	const shown = 5
	if len(f) > shown {
		return strings.Join(f[:shown], "; ") + fmt.Sprintf("; and %d more", len(f)-shown)
	}
	return strings.Join(f, "; ")
}

// check reads the signatures once. It returns nil when one satisfies p; otherwise the findings
// (nil when there is nothing yet, with errNoSignature) or a registry error.
func (v *Verifier) check(ctx context.Context, p *Policy, repo, digest string) (findings, error) {
	var found findings
	layers, err := v.reg.SignatureLayers(ctx, repo, digest)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return nil, fmt.Errorf("fetch signatures: %w", err)
	}
	for i, a := range layers {
		l, err := parseLayer(a)
		if err != nil {
			found = append(found, fmt.Sprintf(".sig layer %d: %v", i, err))
			continue
		}
		why := p.checkLayer(l, digest)
		if why == "" {
			return nil, nil
		}
		found = append(found, fmt.Sprintf(".sig layer %d: %s", i, why))
	}
	bundles, err := v.reg.ReferrerArtifacts(ctx, repo, digest, BundleMediaType)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return nil, fmt.Errorf("fetch signature bundles: %w", err)
	}
	for i, a := range bundles {
		b, err := parseBundle(a.Data)
		if err != nil {
			found = append(found, fmt.Sprintf("bundle %d: %v", i, err))
			continue
		}
		why := p.checkBundle(b, digest)
		if why == "" {
			return nil, nil
		}
		found = append(found, fmt.Sprintf("bundle %d: %s", i, why))
	}
	if len(found) == 0 {
		return nil, errNoSignature
	}
	return found, errors.New(found.String())
}

// checkLayer returns "" when l signs digest for a signer of p, else what it found instead.
func (p *Policy) checkLayer(l sigLayer, digest string) string {
	// The payload is what is signed: a valid signature over another digest's payload is a replay.
	if l.digest != digest {
		return "signs another digest (" + l.digest + ")"
	}
	if l.cert == nil {
		for _, k := range p.keys {
			if k.v.VerifySignature(bytes.NewReader(l.sig), bytes.NewReader(l.payload)) == nil {
				return ""
			}
		}
		return "a signature by a key not in the policy"
	}
	v, err := sigsig.LoadVerifier(l.cert.PublicKey, cryptoHash)
	if err != nil {
		return "certificate key: " + err.Error()
	}
	if err := v.VerifySignature(bytes.NewReader(l.sig), bytes.NewReader(l.payload)); err != nil {
		return "signature does not verify with its certificate"
	}
	return p.checkCert(l.cert)
}

// checkCert returns "" when cert chains to the trusted root and names an identity of p.
func (p *Policy) checkCert(cert *x509.Certificate) string {
	sum, err := certificate.SummarizeCertificate(cert)
	if err != nil {
		return "certificate: " + err.Error()
	}
	who := fmt.Sprintf("certificate for %s from issuer %s", sum.SubjectAlternativeName, sum.Issuer)
	if p.root == nil || len(p.identities) == 0 {
		return who + " (the policy accepts no keyless signer)"
	}
	// Without a transparency log entry there is no proof of when it signed: the chain is
	// checked as of the certificate's issue.
	if _, err := verify.VerifyLeafCertificate(cert.NotBefore, cert, p.root); err != nil {
		return who + ", not issued by a CA of the trusted root"
	}
	for _, id := range p.identities {
		if id.id.Verify(sum) == nil {
			return ""
		}
	}
	return who
}

// checkBundle returns "" when b signs digest for a signer of p, else what it found instead.
func (p *Policy) checkBundle(b *bundle.Bundle, digest string) string {
	vc, err := b.VerificationContent()
	if err != nil {
		return err.Error()
	}
	sc, err := b.SignatureContent()
	if err != nil {
		return err.Error()
	}
	algo, hexDigest, _ := strings.Cut(digest, ":")
	raw, err := hex.DecodeString(hexDigest)
	if err != nil || algo != "sha256" {
		return "digest " + digest + " is not sha256"
	}
	want := []verify.ArtifactDigest{{Algorithm: algo, Digest: raw}}
	if cert := vc.Certificate(); cert != nil {
		if err := verify.VerifySignatureWithArtifactDigests(sc, vc, &root.BaseTrustedMaterial{}, want); err != nil {
			return "does not sign this digest with its certificate: " + err.Error()
		}
		return p.checkCert(cert)
	}
	for _, k := range p.keys {
		tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(k.v, time.Time{}, time.Time{}), nil
		})
		if verify.VerifySignatureWithArtifactDigests(sc, vc, tm, want) == nil {
			return ""
		}
	}
	return "not signed for this digest by a key in the policy"
}
