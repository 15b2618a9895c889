package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd/internal/registry"
	"github.com/hookd/hookd/internal/testkit"
)

// tokenAuth wraps the testkit registry in the token auth GHCR uses: /v2/ requests without a
// valid bearer token get 401 and a challenge naming /token on the same host, and /token hands
// out tokens for the scopes asked for. It counts every request it sees.
type tokenAuth struct {
	mu       sync.Mutex
	seq      int
	tokens   map[string][]string // token -> scopes
	issued   map[string]int      // scope -> tokens handed out
	requests int
	denied   int
}

func newTokenAuth() *tokenAuth {
	return &tokenAuth{tokens: map[string][]string{}, issued: map[string]int{}}
}

func (a *tokenAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.requests++
		a.mu.Unlock()
		if r.URL.Path == "/token" {
			scopes := r.URL.Query()["scope"]
			a.mu.Lock()
			a.seq++
			tok := fmt.Sprintf("token-%d", a.seq)
			a.tokens[tok] = scopes
			for _, s := range scopes {
				a.issued[s]++
			}
			a.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_in": 300})
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/v2/") {
			next.ServeHTTP(w, r)
			return
		}
		scope := ""
		if repo := repositoryOf(r.URL.Path); repo != "" {
			scope = "repository:" + repo + ":pull"
		}
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !a.valid(tok, scope) {
			challenge := fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host)
			if scope != "" {
				challenge += fmt.Sprintf(`,scope=%q`, scope)
			}
			a.mu.Lock()
			a.denied++
			a.mu.Unlock()
			w.Header().Set("WWW-Authenticate", challenge)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *tokenAuth) valid(tok, scope string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	scopes, ok := a.tokens[tok]
	if !ok {
		return false
	}
	if scope == "" {
		return true
	}
	for _, s := range scopes {
		for _, one := range strings.Fields(s) {
			if one == scope {
				return true
			}
		}
	}
	return false
}

// expireAll makes every token handed out so far invalid, as its expiry would.
func (a *tokenAuth) expireAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.tokens)
}

func (a *tokenAuth) counts() (requests, denied int, issued map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	issued = map[string]int{}
	for k, v := range a.issued {
		issued[k] = v
	}
	return a.requests, a.denied, issued
}

// repositoryOf returns the repository a /v2/ path names ("" for the /v2/ root).
func repositoryOf(path string) string {
	rest := strings.TrimPrefix(path, "/v2/")
	for _, kind := range []string{"/manifests/", "/blobs/", "/tags/"} {
		if i := strings.LastIndex(rest, kind); i > 0 {
			return rest[:i]
		}
	}
	return ""
}

func newClient(t *testing.T, pace time.Duration) (*registry.Client, *prometheus.Registry) {
	t.Helper()
	metrics := prometheus.NewRegistry()
	// An empty keychain is anonymous: the token flow still runs, as for a public GHCR image.
	c, err := registry.New(authn.NewMultiKeychain(), registry.NewPacer(nil, pace, metrics))
	if err != nil {
		t.Fatal(err)
	}
	return c, metrics
}

func TestRegistryReusesOneTokenPerScope(t *testing.T) {
	auth := newTokenAuth()
	reg := testkit.StartRegistry(t, auth.wrap)
	digests := map[string]string{}
	for _, repo := range []string{"org/a", "org/b"} {
		digests[repo] = reg.Push(t, repo, "latest", testkit.App{Version: repo})
	}
	c, _ := newClient(t, 0)
	ctx := context.Background()
	const rounds = 10
	for range rounds {
		for repo, want := range digests {
			got, err := c.Resolve(ctx, reg.Host+"/"+repo+":latest")
			if err != nil {
				t.Fatalf("resolve %s: %v", repo, err)
			}
			if got != want {
				t.Fatalf("resolve %s = %s, want %s", repo, got, want)
			}
		}
	}
	requests, denied, issued := auth.counts()
	for repo := range digests {
		if n := issued["repository:"+repo+":pull"]; n != 1 {
			t.Errorf("tokens for %s: %d, want 1 (issued %v)", repo, n, issued)
		}
	}
	// Per repository: the ping (401), the token, then one HEAD per resolve.
	if want := len(digests) * (2 + rounds); requests != want || denied != len(digests) {
		t.Fatalf("registry saw %d requests (%d denied), want %d (%d denied)", requests, denied, want, len(digests))
	}
}

func TestRegistryFetchesNewTokenOnlyWhenExpired(t *testing.T) {
	auth := newTokenAuth()
	reg := testkit.StartRegistry(t, auth.wrap)
	want := reg.Push(t, "org/app", "latest", testkit.App{Version: "v1"})
	c, _ := newClient(t, 0)
	ctx := context.Background()
	image := reg.Host + "/org/app:latest"
	resolve := func() {
		t.Helper()
		if got, err := c.Resolve(ctx, image); err != nil || got != want {
			t.Fatalf("resolve: %s, %v; want %s", got, err, want)
		}
	}
	resolve()
	resolve()
	auth.expireAll()
	for range 5 {
		resolve()
	}
	_, _, issued := auth.counts()
	if n := issued["repository:org/app:pull"]; n != 2 {
		t.Fatalf("tokens issued: %d, want 2 (one, then one more after it expired)", n)
	}
}

func TestRegistryResolvesIndexDigest(t *testing.T) {
	auth := newTokenAuth()
	reg := testkit.StartRegistry(t, auth.wrap)
	index, image := reg.PushIndex(t, "org/multi", "latest", testkit.App{Version: "v1"})
	c, _ := newClient(t, 0)
	got, err := c.Resolve(context.Background(), reg.Host+"/org/multi:latest")
	if err != nil {
		t.Fatal(err)
	}
	// The engine records the index digest when it pulls by it, so that is what is compared.
	if got != index {
		t.Fatalf("resolve = %s, want the index digest %s (image %s)", got, index, image)
	}
}

func TestRegistryResolveWhenRateLimited(t *testing.T) {
	var mu sync.Mutex
	seen := 0
	reg := testkit.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen++
			mu.Unlock()
			if strings.Contains(r.URL.Path, "/manifests/") {
				w.Header().Set("Retry-After", "60")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	reg.Push(t, "org/app", "latest", testkit.App{Version: "v1"})
	c, _ := newClient(t, 0)
	image := reg.Host + "/org/app:latest"
	before := time.Now()
	_, err := c.Resolve(context.Background(), image)
	var limited *registry.RateLimitedError
	if !errors.As(err, &limited) || limited.Until.Before(before.Add(60*time.Second)) {
		t.Fatalf("resolve: %v, want a RateLimitedError until at least 60s on", err)
	}
	mu.Lock()
	n := seen
	mu.Unlock()
	if _, err := c.Resolve(context.Background(), image); !errors.As(err, &limited) {
		t.Fatalf("second resolve: %v, want a RateLimitedError", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen != n {
		t.Fatalf("registry saw %d more requests while it had asked to wait", seen-n)
	}
}
