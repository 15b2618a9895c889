package signature_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/signature"
	"github.com/hookd/hookd/internal/testkit"
)

const (
	ghIssuer  = "https://token.actions.githubusercontent.com"
	ghSubject = "https://github.com/acme/web/.github/workflows/release.yml@refs/heads/main"
)

// world is a loopback registry with an image pushed, hookd's registry client, and a fault
// switch that makes the registry fail every signature read.
type world struct {
	reg    *testkit.Registry
	client *registry.Client
	repo   string // "host/acme/web"
	digest string
	down   atomic.Bool
	// onMissingSig, when set, runs once at the first .sig lookup the registry answers 404.
	onMissingSig func()
	once         sync.Once
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	w.reg = testkit.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			sig := strings.Contains(r.URL.Path, ".sig") || strings.Contains(r.URL.Path, "/referrers/") ||
				strings.Contains(r.URL.Path, "/manifests/sha256-")
			if sig && w.down.Load() {
				http.Error(rw, "down", http.StatusServiceUnavailable)
				return
			}
			if strings.HasSuffix(r.URL.Path, ".sig") && w.onMissingSig != nil {
				rec := &statusRecorder{ResponseWriter: rw}
				next.ServeHTTP(rec, r)
				if rec.status == http.StatusNotFound {
					w.once.Do(w.onMissingSig)
				}
				return
			}
			next.ServeHTTP(rw, r)
		})
	})
	c, err := registry.New(authn.DefaultKeychain, http.DefaultTransport)
	if err != nil {
		t.Fatal(err)
	}
	w.client = c
	w.repo = w.reg.Host + "/acme/web"
	w.digest = w.reg.Push(t, "acme/web", "latest", testkit.App{Version: "v1"})
	return w
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func policy(t *testing.T, p hookd.VerifyPolicy) *signature.Policy {
	t.Helper()
	pol, err := signature.NewPolicy(p)
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return pol
}

func verify(t *testing.T, w *world, p *signature.Policy, digest string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return signature.NewVerifier(w.client).Verify(ctx, p, w.repo, digest)
}

func wantRefusal(t *testing.T, err error, found string) {
	t.Helper()
	var r *signature.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a refusal", err)
	}
	if !strings.Contains(r.Found, found) {
		t.Fatalf("refusal found %q, want it to say %q", r.Found, found)
	}
}

func TestKeySignature(t *testing.T) {
	w := newWorld(t)
	signer, other := testkit.NewKeySigner(t), testkit.NewKeySigner(t)
	keyFile := signer.PublicKeyFile(t)
	p := policy(t, hookd.VerifyPolicy{Keys: []string{keyFile}})

	wantRefusal(t, verify(t, w, p, w.digest), "no signature")

	w.reg.PushSignature(t, "acme/web", w.digest, other)
	err := verify(t, w, p, w.digest)
	wantRefusal(t, err, "key not in the policy")
	if !strings.Contains(err.Error(), "key "+keyFile) {
		t.Errorf("refusal %q does not name the expected key", err)
	}

	// cosign appends a second signature to the same .sig manifest: any one verifies.
	w.reg.PushSignature(t, "acme/web", w.digest, signer)
	if err := verify(t, w, p, w.digest); err != nil {
		t.Fatalf("signed by the policy's key: %v", err)
	}
}

func TestReplayedSignatureRefused(t *testing.T) {
	w := newWorld(t)
	signer := testkit.NewKeySigner(t)
	p := policy(t, hookd.VerifyPolicy{Keys: []string{signer.PublicKeyFile(t)}})
	old := w.digest
	newer := w.reg.Push(t, "acme/web", "latest", testkit.App{Version: "v2"})
	// A valid signature of the old digest, put where the new digest's signature belongs.
	w.reg.PushSignatureAt(t, "acme/web", newer, old, signer)
	wantRefusal(t, verify(t, w, p, newer), "signs another digest ("+old+")")
}

func TestKeyless(t *testing.T) {
	w := newWorld(t)
	ca := testkit.NewCA(t)
	p := policy(t, hookd.VerifyPolicy{
		TrustedRoot: ca.TrustedRootFile(t),
		Identities:  []hookd.Identity{{Issuer: ghIssuer, SubjectRegexp: `^https://github\.com/acme/web/\.github/workflows/release\.yml@refs/heads/main$`}},
	})
	other := w.reg.Push(t, "acme/web", "other", testkit.App{Version: "v2"})
	w.reg.PushSignature(t, "acme/web", w.digest, ca.Keyless(t, ghIssuer, ghSubject))
	if err := verify(t, w, p, w.digest); err != nil {
		t.Fatalf("keyless, matching identity: %v", err)
	}

	fork := "https://github.com/mallory/web/.github/workflows/release.yml@refs/heads/main"
	w.reg.PushSignature(t, "acme/web", other, ca.Keyless(t, ghIssuer, fork))
	wantRefusal(t, verify(t, w, p, other), "certificate for "+fork)

	// The right identity from a CA the trusted root does not name.
	third := w.reg.Push(t, "acme/web", "third", testkit.App{Version: "v3"})
	w.reg.PushSignature(t, "acme/web", third, testkit.NewCA(t).Keyless(t, ghIssuer, ghSubject))
	wantRefusal(t, verify(t, w, p, third), "not issued by a CA of the trusted root")
}

func TestBundleReferrers(t *testing.T) {
	w := newWorld(t)
	ca := testkit.NewCA(t)
	signer := testkit.NewKeySigner(t)
	p := policy(t, hookd.VerifyPolicy{
		Keys:        []string{signer.PublicKeyFile(t)},
		TrustedRoot: ca.TrustedRootFile(t),
		Identities:  []hookd.Identity{{Issuer: ghIssuer, Subject: ghSubject}},
	})
	w.reg.PushBundle(t, "acme/web", w.digest, ca.Keyless(t, ghIssuer, ghSubject))
	if err := verify(t, w, p, w.digest); err != nil {
		t.Fatalf("keyless bundle: %v", err)
	}
	keyed := w.reg.Push(t, "acme/web", "keyed", testkit.App{Version: "v2"})
	w.reg.PushBundle(t, "acme/web", keyed, signer)
	if err := verify(t, w, p, keyed); err != nil {
		t.Fatalf("key bundle: %v", err)
	}
	stranger := w.reg.Push(t, "acme/web", "stranger", testkit.App{Version: "v3"})
	w.reg.PushBundle(t, "acme/web", stranger, testkit.NewKeySigner(t))
	wantRefusal(t, verify(t, w, p, stranger), "bundle 0: not signed for this digest by a key in the policy")
}

func TestIndexDigestSignature(t *testing.T) {
	w := newWorld(t)
	signer := testkit.NewKeySigner(t)
	p := policy(t, hookd.VerifyPolicy{Keys: []string{signer.PublicKeyFile(t)}})
	index, image := w.reg.PushIndex(t, "acme/web", "multi", testkit.App{Version: "v2"})
	w.reg.PushSignature(t, "acme/web", image, signer) // the platform image's signature is not the index's
	wantRefusal(t, verify(t, w, p, index), "no signature")
	w.reg.PushSignature(t, "acme/web", index, signer)
	if err := verify(t, w, p, index); err != nil {
		t.Fatalf("signed index: %v", err)
	}
}

func TestRegistryDownIsNotARefusal(t *testing.T) {
	w := newWorld(t)
	signer := testkit.NewKeySigner(t)
	p := policy(t, hookd.VerifyPolicy{Keys: []string{signer.PublicKeyFile(t)}})
	w.reg.PushSignature(t, "acme/web", w.digest, signer)
	w.down.Store(true)
	err := verify(t, w, p, w.digest)
	if err == nil || errors.As(err, new(*signature.Refusal)) {
		t.Fatalf("registry down: got %v, want a failure that is not a refusal", err)
	}
}

// CI signs after it pushes, and the webhook comes first: a missing signature is looked for
// again within the policy's wait.
func TestWaitForSignature(t *testing.T) {
	w := newWorld(t)
	signer := testkit.NewKeySigner(t)
	p := policy(t, hookd.VerifyPolicy{Keys: []string{signer.PublicKeyFile(t)}, Wait: 20 * time.Second})
	w.onMissingSig = func() { go w.reg.PushSignature(t, "acme/web", w.digest, signer) }
	if err := verify(t, w, p, w.digest); err != nil {
		t.Fatalf("signature pushed after the first look: %v", err)
	}
}

// Another artifact that does not satisfy the policy (a provenance bundle of the workflow, say)
// may reach the registry before the signature: it does not end the wait.
func TestWaitPastANonMatchingSignature(t *testing.T) {
	w := newWorld(t)
	signer := testkit.NewKeySigner(t)
	p := policy(t, hookd.VerifyPolicy{Keys: []string{signer.PublicKeyFile(t)}, Wait: 20 * time.Second})
	w.reg.PushBundle(t, "acme/web", w.digest, testkit.NewKeySigner(t))
	w.onMissingSig = func() { go w.reg.PushSignature(t, "acme/web", w.digest, signer) }
	if err := verify(t, w, p, w.digest); err != nil {
		t.Fatalf("signature pushed after another artifact: %v", err)
	}
}

func TestGateMetrics(t *testing.T) {
	w := newWorld(t)
	signer := testkit.NewKeySigner(t)
	reg := prometheus.NewRegistry()
	m := signature.NewMetrics(reg)
	runtimes := []hookd.Runtime{hookd.NewRuntime("web", w.repo+":latest"), hookd.NewRuntime("free", w.repo+":free")}
	runtimes[0].Verify = &hookd.VerifyPolicy{Keys: []string{signer.PublicKeyFile(t)}}
	g, err := signature.NewGate(signature.NewVerifier(w.client), runtimes, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := g.Check(ctx, "free", w.repo, w.digest); err != nil {
		t.Fatalf("runtime without a policy: %v", err)
	}
	if err := g.Check(ctx, "web", w.repo, w.digest); !errors.As(err, new(*signature.Refusal)) {
		t.Fatalf("unsigned: %v", err)
	}
	w.reg.PushSignature(t, "acme/web", w.digest, signer)
	if err := g.Check(ctx, "web", w.repo, w.digest); err != nil {
		t.Fatalf("signed: %v", err)
	}
	w.down.Store(true)
	if err := g.Check(ctx, "web", w.repo, w.digest); err == nil {
		t.Fatal("registry down passed")
	}
	const want = `
# HELP hookd_verify_total Signature checks of a digest before its rollout, by runtime and result (verified, refused, failed).
# TYPE hookd_verify_total counter
hookd_verify_total{result="failed",runtime="web"} 1
hookd_verify_total{result="refused",runtime="web"} 1
hookd_verify_total{result="verified",runtime="web"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "hookd_verify_total"); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyProblems(t *testing.T) {
	bad := testkit.NewKeySigner(t).PublicKeyFile(t) + ".missing"
	_, err := signature.NewPolicy(hookd.VerifyPolicy{
		Keys:       []string{bad},
		Identities: []hookd.Identity{{Issuer: ghIssuer, SubjectRegexp: "("}},
		Wait:       time.Hour,
	})
	if err == nil {
		t.Fatal("bad policy accepted")
	}
	for _, want := range []string{"key:", "identities[0]", "need a trusted_root", "wait 1h0m0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems %q do not mention %q", err, want)
		}
	}
}
