package testkit

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// setupHeader marks the testkit's own pushes. They bypass the wrap handler so
// that a test's request counts, auth requirements or injected 429s apply only
// to the traffic of the code under test (hookd and the engine).
const setupHeader = "X-Hookd-Testkit-Setup"

// Registry is an in-memory OCI registry served on loopback. Hosts on
// 127.0.0.1 are plain http to both go-containerregistry and the engine.
type Registry struct {
	Host string // "127.0.0.1:PORT"
}

// StartRegistry serves go-containerregistry's registry on 127.0.0.1 until t
// ends. wrap, when not nil, wraps the handler for requests other than the
// testkit's own pushes.
func StartRegistry(t testing.TB, wrap func(http.Handler) http.Handler) *Registry {
	t.Helper()
	raw := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	wrapped := raw
	if wrap != nil {
		wrapped = wrap(raw)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registry listen: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get(setupHeader) != "" {
			raw.ServeHTTP(w, req)
			return
		}
		wrapped.ServeHTTP(w, req)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return &Registry{Host: l.Addr().String()}
}

// setupTransport adds setupHeader to every request.
type setupTransport struct{ next http.RoundTripper }

func (s setupTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(setupHeader, "1")
	return s.next.RoundTrip(req)
}

func (r *Registry) tag(t testing.TB, repo, tag string) name.Tag {
	t.Helper()
	ref, err := name.NewTag(r.Host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatalf("parse tag %s/%s:%s: %v", r.Host, repo, tag, err)
	}
	return ref
}

func (r *Registry) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(setupTransport{next: http.DefaultTransport}),
	}
}

// Push pushes the image for app as r.Host/repo:tag and returns its manifest
// digest ("sha256:...").
func (r *Registry) Push(t testing.TB, repo, tag string, app App) string {
	t.Helper()
	img := appImage(t, app, false)
	ref := r.tag(t, repo, tag)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := remote.Write(ref, img, r.remoteOptions(ctx)...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return digestOf(t, img)
}

// PushIndex pushes, as r.Host/repo:tag, an OCI index shaped like buildx
// output: the linux/amd64 image for app plus an unknown/unknown attestation
// manifest. It returns the index digest and the image digest.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, app App) (indexDigest, imageDigest string) {
	t.Helper()
	idx := appIndex(t, app)
	ref := r.tag(t, repo, tag)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := remote.WriteIndex(ref, idx, r.remoteOptions(ctx)...); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("index digest: %v", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("index manifest: %v", err)
	}
	return d.String(), m.Manifests[0].Digest.String()
}

func digestOf(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("image digest: %v", err)
	}
	return d.String()
}
