package main

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// basicAuth makes the test registry refuse every request without the given basic credentials,
// and counts the accepted ones by client: the engine's pulls and hookd's own resolves.
type basicAuth struct {
	user, pass string

	mu            sync.Mutex
	engine, hookd int
	denied        int
}

func (b *basicAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		b.mu.Lock()
		defer b.mu.Unlock()
		if !ok || user != b.user || pass != b.pass {
			b.denied++
			w.Header().Set("WWW-Authenticate", `Basic realm="hookd-test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		switch ua := r.UserAgent(); {
		case strings.HasPrefix(ua, "docker/"):
			b.engine++
		case strings.HasPrefix(ua, "hookd"):
			b.hookd++
		}
		next.ServeHTTP(w, r)
	})
}

func (b *basicAuth) counts() (engine, hookd, denied int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.engine, b.hookd, b.denied
}

// The old poller's GHCR_USER and GHCR_TOKEN are credentials for registry_host when no Docker
// config has any: hookd resolves with them and the engine pulls with them, and neither reaches
// the log.
func TestGHCREnvCredentialsResolveAndPull(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no Docker config credentials at all
	cli := testkit.Docker(t)
	auth := &basicAuth{user: "old-poller", pass: "ghcr-token-" + testkit.TestID(t)}
	reg := testkit.StartRegistry(t, auth.wrap)
	testkit.Cleanup(t, cli, reg.Host)
	h := startHookd(t, pullOnlyConfig(reg.Host), t.TempDir(), map[string]string{"GHCR_USER": auth.user, "GHCR_TOKEN": auth.pass})

	d1 := reg.Push(t, "org/app", "latest", testkit.App{Version: "private"})
	if code, answer := h.deliver(webhooktest.Push{Namespace: "Org", Name: "app", Tag: "latest", Digest: d1, Host: reg.Host}, "private-1"); code != 202 {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	st := h.waitJob("app", 0)
	if st.LastRollout.Result != "pulled" || st.LastRollout.Digest != d1 || !hasImage(t, cli, reg.Host+"/org/app@"+d1) {
		t.Fatalf("result %+v, want %s pulled with the env credentials\n%s", st.LastRollout, d1, h.logs)
	}
	if engine, hookd, _ := auth.counts(); engine == 0 || hookd == 0 {
		t.Fatalf("authenticated requests: engine %d, hookd %d; want both to use the credentials", engine, hookd)
	}
	if strings.Contains(h.logs.String(), auth.pass) {
		t.Fatal("the token reached the log")
	}
}
