package signature_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/signature"
	"github.com/hookd/hookd/internal/testkit"
)

// BenchmarkVerify is the time verification adds to a rollout: one Verify of a signed digest
// through hookd's registry client with its token already fetched (as after the resolve), on a
// loopback registry behind GHCR-style token auth. pace is the client's spacing of requests to one
// host (poll.pace; 50ms by default), which dominates: a verification is two or three requests.
func BenchmarkVerify(b *testing.B) {
	for _, pace := range []time.Duration{0, 50 * time.Millisecond} {
		for _, kind := range []string{"key", "keyless"} {
			b.Run(fmt.Sprintf("%s/pace=%s", kind, pace), func(b *testing.B) { benchVerify(b, kind, pace) })
		}
	}
}

func benchVerify(b *testing.B, kind string, pace time.Duration) {
	var tokens atomic.Int64
	reg := testkit.StartRegistry(b, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/token" {
				tokens.Add(1)
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"token":"good","expires_in":300}`)
				return
			}
			if r.Header.Get("Authorization") != "Bearer good" {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host))
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	digest := reg.Push(b, "acme/web", "latest", testkit.App{Version: "v1"})
	var p hookd.VerifyPolicy
	switch kind {
	case "key":
		s := testkit.NewKeySigner(b)
		reg.PushSignature(b, "acme/web", digest, s)
		p.Keys = []string{s.PublicKeyFile(b)}
	default:
		ca := testkit.NewCA(b)
		reg.PushSignature(b, "acme/web", digest, ca.Keyless(b, ghIssuer, ghSubject))
		p.TrustedRoot, p.Identities = ca.TrustedRootFile(b), []hookd.Identity{{Issuer: ghIssuer, Subject: ghSubject}}
	}
	pol, err := signature.NewPolicy(p)
	if err != nil {
		b.Fatal(err)
	}
	c, err := registry.New(authn.DefaultKeychain, registry.NewPacer(nil, pace, prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	v := signature.NewVerifier(c)
	repo := reg.Host + "/acme/web"
	ctx := context.Background()
	if _, err := c.Resolve(ctx, repo+":latest"); err != nil { // warms the token, as the rollout's resolve does
		b.Fatal(err)
	}
	if err := v.Verify(ctx, pol, repo, digest); err != nil {
		b.Fatal(err)
	}
	warm := tokens.Load()
	b.ResetTimer()
	for b.Loop() {
		if err := v.Verify(ctx, pol, repo, digest); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(tokens.Load()-warm)/float64(b.N), "tokens/op")
}
