package testkit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore-go/pkg/root"
	"google.golang.org/protobuf/encoding/protojson"
)

// The cosign layout, as `cosign sign` writes it (kept here rather than imported, so the tests
// check hookd against the layout, not against itself).
const (
	cosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	cosignSignatureAnn  = "dev.cosignproject.cosign/signature"
	cosignCertAnn       = "dev.sigstore.cosign/certificate"
	cosignChainAnn      = "dev.sigstore.cosign/chain"
	sigstoreBundle      = "application/vnd.dev.sigstore.bundle.v0.3+json"
)

// oidFulcioIssuer is Fulcio's OIDC issuer extension (v2: a DER UTF8String).
var oidFulcioIssuer = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}

// Signer signs like cosign: with a key of its own, or keyless with a certificate from a CA.
type Signer struct {
	key   *ecdsa.PrivateKey
	cert  *x509.Certificate // nil: a key signer
	chain []*x509.Certificate
}

// NewKeySigner returns a signer with a fresh ECDSA P-256 key, as `cosign generate-key-pair` makes.
func NewKeySigner(t testing.TB) *Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return &Signer{key: k}
}

// PublicKeyFile writes the signer's public key as PEM (cosign.pub) and returns its path.
func (s *Signer) PublicKeyFile(t testing.TB) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	return writeFile(t, "cosign.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// CA is a certificate authority standing in for Fulcio.
type CA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

// NewCA returns a self-signed root CA valid for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "hookd test fulcio", Organization: []string{"hookd tests"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatalf("create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{key: k, cert: cert}
}

// TrustedRootFile writes a Sigstore trusted_root.json naming the CA and returns its path.
func (ca *CA) TrustedRootFile(t testing.TB) string {
	t.Helper()
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{Root: ca.cert, ValidityPeriodStart: ca.cert.NotBefore, URI: "https://fulcio.test"}},
		nil, nil, nil)
	if err != nil {
		t.Fatalf("trusted root: %v", err)
	}
	raw, err := tr.MarshalJSON()
	if err != nil {
		t.Fatalf("trusted root: %v", err)
	}
	return writeFile(t, "trusted_root.json", raw)
}

// Keyless returns a signer holding a short-lived code-signing certificate for subject (a URI,
// as GitHub Actions workflow identities are) from issuer, the way Fulcio issues them.
func (ca *CA) Keyless(t testing.TB, issuer, subject string) *Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	san, err := url.Parse(subject)
	if err != nil {
		t.Fatalf("subject %q: %v", subject, err)
	}
	iss, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(10 * time.Minute),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		URIs:            []*url.URL{san},
		ExtraExtensions: []pkix.Extension{{Id: oidFulcioIssuer, Value: iss}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("issue certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{key: k, cert: cert, chain: []*x509.Certificate{ca.cert}}
}

func (s *Signer) sign(t testing.TB, msg []byte) []byte {
	t.Helper()
	h := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, h[:])
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return sig
}

// SignatureLayer returns the simple-signing payload that names digest of repo, and the
// annotations cosign puts on its layer: the signature and, keyless, the certificate and chain.
func (s *Signer) SignatureLayer(t testing.TB, repo, digest string) (payload []byte, annotations map[string]string) {
	t.Helper()
	payload = fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, repo, digest)
	annotations = map[string]string{cosignSignatureAnn: base64.StdEncoding.EncodeToString(s.sign(t, payload))}
	if s.cert != nil {
		annotations[cosignCertAnn] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw}))
		var chain []byte
		for _, c := range s.chain {
			chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		annotations[cosignChainAnn] = string(chain)
	}
	return payload, annotations
}

// PushSignature stores, as `cosign sign` does, s's signature of repo@digest under the
// sha256-<hex>.sig tag of repo. The signature is appended when the tag exists.
func (r *Registry) PushSignature(t testing.TB, repo, digest string, s *Signer) {
	t.Helper()
	r.PushSignatureAt(t, repo, digest, digest, s)
}

// PushSignatureAt stores s's signature of signed under the .sig tag of at: with at != signed it
// is a replayed signature, another digest's moved next to this one.
func (r *Registry) PushSignatureAt(t testing.TB, repo, at, signed string, s *Signer) {
	t.Helper()
	payload, ann := s.SignatureLayer(t, r.Host+"/"+repo, signed)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ref := r.tag(t, repo, strings.Replace(at, ":", "-", 1)+".sig")
	base := v1.Image(empty.Image)
	if old, err := remote.Image(ref, r.remoteOptions(ctx)...); err == nil {
		base = old
	}
	base = mutate.ConfigMediaType(mutate.MediaType(base, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: static.NewLayer(payload, cosignSimpleSigning), Annotations: ann})
	if err != nil {
		t.Fatalf("signature image: %v", err)
	}
	if err := remote.Write(ref, img, r.remoteOptions(ctx)...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// Bundle returns a Sigstore bundle v0.3 in which s signs, in a DSSE envelope, an in-toto
// statement whose subject is digest of repo (what `cosign sign --new-bundle-format` and GitHub
// artifact attestations store).
func (s *Signer) Bundle(t testing.TB, repo, digest string) []byte {
	t.Helper()
	hexDigest := strings.TrimPrefix(digest, "sha256:")
	if _, err := hex.DecodeString(hexDigest); err != nil {
		t.Fatalf("digest %s: %v", digest, err)
	}
	stmt, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": repo, "digest": map[string]string{"sha256": hexDigest}}},
		"predicateType": "https://sigstore.dev/cosign/sign/v1",
		"predicate":     map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	const payloadType = "application/vnd.in-toto+json"
	pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(stmt), stmt)
	b := &protobundle.Bundle{
		MediaType: sigstoreBundle,
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: stmt, PayloadType: payloadType,
			Signatures: []*protodsse.Signature{{Sig: s.sign(t, pae)}},
		}},
		VerificationMaterial: &protobundle.VerificationMaterial{},
	}
	if s.cert != nil {
		b.VerificationMaterial.Content = &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: s.cert.Raw}}
	} else {
		b.VerificationMaterial.Content = &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "cosign.pub"}}
	}
	raw, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// PushBundle stores s's bundle for repo@digest as an OCI 1.1 referrer of it (through the
// referrers tag on a registry without the referrers API, as go-containerregistry does).
func (r *Registry) PushBundle(t testing.TB, repo, digest string, s *Signer) {
	t.Helper()
	raw := s.Bundle(t, r.Host+"/"+repo, digest)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subjectRef, err := name.NewDigest(r.Host + "/" + repo + "@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := remote.Head(subjectRef, r.remoteOptions(ctx)...)
	if err != nil {
		t.Fatalf("head %s: %v", subjectRef, err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.MediaType(sigstoreBundle))
	img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(raw, sigstoreBundle)})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.Subject(img, *subject).(v1.Image)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(subjectRef.Context().Digest(d.String()), img, r.remoteOptions(ctx)...); err != nil {
		t.Fatalf("push bundle for %s: %v", subjectRef, err)
	}
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
