package signature

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/hookd/hookd/internal/registry"
)

// Media types and annotations of cosign's signature layout.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	BundleMediaType        = "application/vnd.dev.sigstore.bundle.v0.3+json"
	AnnotationSignature    = "dev.cosignproject.cosign/signature"
	AnnotationCertificate  = "dev.sigstore.cosign/certificate"
	AnnotationChain        = "dev.sigstore.cosign/chain"
)

// simpleSigning is the part of cosign's signed payload hookd reads.
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// sigLayer is one cosign signature: the payload, the signature over it and, when keyless, the
// signing certificate.
type sigLayer struct {
	payload []byte
	sig     []byte
	cert    *x509.Certificate // nil for a key signature
	digest  string            // the digest the payload names
}

// parseLayer reads one layer of a .sig manifest.
func parseLayer(a registry.Artifact) (sigLayer, error) {
	if a.MediaType != SimpleSigningMediaType {
		return sigLayer{}, fmt.Errorf("media type %q is not a cosign signature", a.MediaType)
	}
	b64, ok := a.Annotations[AnnotationSignature]
	if !ok {
		return sigLayer{}, errors.New("no " + AnnotationSignature + " annotation")
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sig) == 0 {
		return sigLayer{}, errors.New("signature annotation is not base64")
	}
	var p simpleSigning
	if err := json.Unmarshal(a.Data, &p); err != nil {
		return sigLayer{}, fmt.Errorf("payload is not simple signing JSON: %w", err)
	}
	if p.Critical.Image.DockerManifestDigest == "" {
		return sigLayer{}, errors.New("payload names no digest")
	}
	l := sigLayer{payload: a.Data, sig: sig, digest: p.Critical.Image.DockerManifestDigest}
	if pemCert, ok := a.Annotations[AnnotationCertificate]; ok && pemCert != "" {
		certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(pemCert))
		if err != nil || len(certs) == 0 {
			return sigLayer{}, errors.New("certificate annotation is not a PEM certificate")
		}
		l.cert = certs[0]
	}
	return l, nil
}

// parseBundle reads a Sigstore bundle; sigstore-go checks its structure.
func parseBundle(data []byte) (*bundle.Bundle, error) {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("not a Sigstore bundle: %w", err)
	}
	return &b, nil
}
