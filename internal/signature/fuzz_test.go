package signature

import (
	"encoding/base64"
	"testing"

	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/testkit"
)

const fuzzDigest = "sha256:6e1e29bd16fde0ff5e3ea84c4ebd1e3a8c0ce11c0bd61c6a3ca5ee4b4e3a9f2a"

// Whatever a registry serves as a signature layer or a bundle, parsing ends in a value or an
// error: never a panic, never a digest it did not read from the payload.
func FuzzSignatureLayer(f *testing.F) {
	payload := `{"critical":{"identity":{"docker-reference":"ghcr.io/acme/web"},"image":{"docker-manifest-digest":"sha256:6e1e29bd16fde0ff5e3ea84c4ebd1e3a8c0ce11c0bd61c6a3ca5ee4b4e3a9f2a"},"type":"cosign container image signature"},"optional":null}`
	cert := "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBATAKBggqhkjOPQQDAjAAMB4XDTI0MDEwMTAwMDAwMFoX\n-----END CERTIFICATE-----\n"
	f.Add(payload, base64.StdEncoding.EncodeToString([]byte("sig")), "")
	f.Add(payload, "not base64!", "")
	f.Add(payload, base64.StdEncoding.EncodeToString([]byte("sig")), cert)
	// Layers as cosign writes them, key and keyless.
	for _, signer := range []*testkit.Signer{testkit.NewKeySigner(f), testkit.NewCA(f).Keyless(f, "https://token.actions.githubusercontent.com", "https://github.com/acme/web/.github/workflows/release.yml@refs/heads/main")} {
		data, ann := signer.SignatureLayer(f, "ghcr.io/acme/web", fuzzDigest)
		f.Add(string(data), ann[AnnotationSignature], ann[AnnotationCertificate])
	}
	f.Add(`{"critical":{}}`, "c2ln", "")
	f.Add(`[]`, "", "")
	f.Fuzz(func(t *testing.T, data, sig, cert string) {
		ann := map[string]string{AnnotationSignature: sig}
		if cert != "" {
			ann[AnnotationCertificate] = cert
		}
		l, err := parseLayer(registry.Artifact{MediaType: SimpleSigningMediaType, Annotations: ann, Data: []byte(data)})
		if err != nil {
			return
		}
		if l.digest == "" || len(l.sig) == 0 || string(l.payload) != data {
			t.Fatalf("parsed %q into %+v", data, l)
		}
	})
}

func FuzzBundle(f *testing.F) {
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"k"}},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"c2ln"}]}}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"certificate":{"rawBytes":"MIIB"}},"messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"AAAA"},"signature":"c2ln"}}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.1"}`))
	f.Add(testkit.NewKeySigner(f).Bundle(f, "ghcr.io/acme/web", fuzzDigest))
	f.Add(testkit.NewCA(f).Keyless(f, "https://token.actions.githubusercontent.com", "https://github.com/acme/web/.github/workflows/release.yml@refs/heads/main").Bundle(f, "ghcr.io/acme/web", fuzzDigest))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	p := &Policy{}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBundle(data)
		if err != nil {
			return
		}
		// A policy with no signer accepts nothing, whatever the bundle says.
		if why := p.checkBundle(b, fuzzDigest); why == "" {
			t.Fatalf("empty policy accepted %q", data)
		}
	})
}
