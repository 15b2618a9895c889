package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hookd/hookd/internal/testkit"
)

const (
	e2eIssuer  = "https://token.actions.githubusercontent.com"
	e2eSubject = "https://github.com/org/web/.github/workflows/release.yml@refs/heads/main"
)

// signedFleet is a fleet on a registry whose signature reads can be made to fail.
func signedFleet(t *testing.T) (*fleet, *atomic.Bool) {
	f := newFleet(t, "web")
	down := &atomic.Bool{}
	f.reg = testkit.StartRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() && (strings.Contains(r.URL.Path, "/manifests/sha256-") || strings.Contains(r.URL.Path, "/referrers/")) {
				http.Error(w, "signature store down", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	testkit.Cleanup(t, f.cli, f.reg.Host)
	f.repo = f.reg.Host + "/org/web"
	return f, down
}

// deliverAndWait delivers digest and returns the job's status once it has ended.
func deliverAndWait(t *testing.T, h *daemonRun, f *fleet, digest, id string, after uint64) runtimeStatus {
	t.Helper()
	if code, answer := h.deliver(f.delivery(digest), id); code != 202 {
		t.Fatalf("delivery %s: %d %v", id, code, answer)
	}
	return h.waitJob("web", after)
}

// stillOn asserts the one member runs oldImage and answers version, and the engine never got digest.
func stillOn(t *testing.T, f *fleet, oldImage, version, digest string) {
	t.Helper()
	c, ok := f.members()[f.id+"-a"]
	if !ok || c.Image != oldImage || !c.State.Running {
		t.Fatalf("member a: present=%v image %s running=%v, want the old image running", ok, c.Image, c.State.Running)
	}
	if v, err := f.get(f.id+"-a", "/"); err != nil || v != version {
		t.Fatalf("member a answers %q %v, want %s", v, err, version)
	}
	if _, err := f.cli.ImageInspect(context.Background(), f.repo+"@"+digest); err == nil {
		t.Fatalf("the engine holds %s: a refused digest must not be pulled", digest)
	}
}

func TestOnlySignedImagesRollOut(t *testing.T) {
	f, down := signedFleet(t)
	key := testkit.NewKeySigner(t)
	ca := testkit.NewCA(t)
	v1d := f.push(testkit.App{Version: "v1"})
	f.install(v1d)
	f.start("a", true, nil)
	oldImage := f.imageID(v1d)
	h := startHookd(t, f.config(fmt.Sprintf(`    verify:
      keys: [%s]
      identities:
        - issuer: %s
          subject_regexp: '^https://github\.com/org/web/\.github/workflows/release\.yml@refs/heads/main$'
      trusted_root: %s
      wait: 0s
`, key.PublicKeyFile(t), e2eIssuer, ca.TrustedRootFile(t))), t.TempDir(), nil)

	// Unsigned: refused, nothing pulled, nothing changed.
	v2d := f.push(testkit.App{Version: "v2"})
	st := deliverAndWait(t, h, f, v2d, "unsigned", 0)
	if st.LastRollout.Result != "refused" || !strings.Contains(st.LastRollout.Reason, "no signature") || st.Record.FailedDigest != v2d {
		t.Fatalf("unsigned: %+v (failed digest %s)", st.LastRollout, st.Record.FailedDigest)
	}
	stillOn(t, f, oldImage, "v1", v2d)
	if n := h.metric("hookd_verify_total", "runtime=web", "result=refused"); n != 1 {
		t.Errorf("hookd_verify_total refused = %v, want 1", n)
	}
	if n := h.metric("hookd_refresh_total", "runtime=web", "result=refused"); n != 1 {
		t.Errorf("hookd_refresh_total refused = %v, want 1", n)
	}

	// Signed by a key the policy does not name: refused.
	v3d := f.push(testkit.App{Version: "v3"})
	f.reg.PushSignature(t, "org/web", v3d, testkit.NewKeySigner(t))
	st = deliverAndWait(t, h, f, v3d, "other-key", st.LastRollout.JobID)
	if st.LastRollout.Result != "refused" || !strings.Contains(st.LastRollout.Reason, "key not in the policy") {
		t.Fatalf("other key: %+v", st.LastRollout)
	}
	stillOn(t, f, oldImage, "v1", v3d)

	// A valid signature of v1 replayed next to v4: refused.
	v4d := f.push(testkit.App{Version: "v4"})
	f.reg.PushSignatureAt(t, "org/web", v4d, v1d, key)
	st = deliverAndWait(t, h, f, v4d, "replay", st.LastRollout.JobID)
	if st.LastRollout.Result != "refused" || !strings.Contains(st.LastRollout.Reason, "signs another digest") {
		t.Fatalf("replayed: %+v", st.LastRollout)
	}
	stillOn(t, f, oldImage, "v1", v4d)

	// Keyless from another workflow: refused.
	v5d := f.push(testkit.App{Version: "v5"})
	fork := "https://github.com/mallory/web/.github/workflows/release.yml@refs/heads/main"
	f.reg.PushSignature(t, "org/web", v5d, ca.Keyless(t, e2eIssuer, fork))
	st = deliverAndWait(t, h, f, v5d, "other-subject", st.LastRollout.JobID)
	if st.LastRollout.Result != "refused" || !strings.Contains(st.LastRollout.Reason, fork) {
		t.Fatalf("other subject: %+v", st.LastRollout)
	}
	stillOn(t, f, oldImage, "v1", v5d)

	// The registry fails while the signature is read: failed (retried), never refused or passed.
	v6d := f.push(testkit.App{Version: "v6"})
	f.reg.PushSignature(t, "org/web", v6d, key)
	down.Store(true)
	st = deliverAndWait(t, h, f, v6d, "registry-down", st.LastRollout.JobID)
	if st.LastRollout.Result != "failed" || !strings.Contains(st.LastRollout.Reason, "verify signature") || st.Record.FailedDigest == v6d {
		t.Fatalf("registry down: %+v (failed digest %s)", st.LastRollout, st.Record.FailedDigest)
	}
	stillOn(t, f, oldImage, "v1", v6d)
	if n := h.metric("hookd_verify_total", "runtime=web", "result=failed"); n != 1 {
		t.Errorf("hookd_verify_total failed = %v, want 1", n)
	}

	// The registry back, the same digest is tried again on its own (it was not remembered):
	// signed by the key, it rolls out.
	down.Store(false)
	st = deliverAndWait(t, h, f, v6d, "registry-back", st.LastRollout.JobID)
	if st.LastRollout.Result != "rolled_out" || st.DigestRunning != v6d {
		t.Fatalf("signed by the key: %+v", st.LastRollout)
	}
	if v, err := f.get(f.id+"-a", "/"); err != nil || v != "v6" {
		t.Fatalf("member a answers %q %v, want v6", v, err)
	}

	// Keyless from the release workflow, signed on the multi-arch index: rolls out.
	index, _ := f.reg.PushIndex(t, "org/web", "latest", testkit.App{Version: "v7"})
	f.reg.PushSignature(t, "org/web", index, ca.Keyless(t, e2eIssuer, e2eSubject))
	st = deliverAndWait(t, h, f, index, "keyless-index", st.LastRollout.JobID)
	if st.LastRollout.Result != "rolled_out" || st.DigestRunning != index {
		t.Fatalf("keyless on the index: %+v", st.LastRollout)
	}
	if v, err := f.get(f.id+"-a", "/"); err != nil || v != "v7" {
		t.Fatalf("member a answers %q %v, want v7", v, err)
	}
	if n := h.metric("hookd_verify_total", "runtime=web", "result=verified"); n != 2 {
		t.Errorf("hookd_verify_total verified = %v, want 2", n)
	}
}

func TestCheckConfigValidatesVerify(t *testing.T) {
	key := testkit.NewKeySigner(t).PublicKeyFile(t)
	notKey := writeFile(t, "cosign.pub", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
	cfg := func(keys, pattern, root string) string {
		return fmt.Sprintf(`
runtimes:
  - name: web
    image: ghcr.io/org/web:latest
    verify:
      keys: [%s]
      identities: [{issuer: https://token.actions.githubusercontent.com, subject_regexp: '%s'}]
      trusted_root: %s
`, keys, pattern, root)
	}
	vars := env(map[string]string{"HOOKD_WEBHOOK_SECRET": "s"})
	var stdout, stderr bytes.Buffer
	bad := writeFile(t, "bad.yaml", cfg(notKey, "([a-z]", "/nonexistent/trusted_root.json"))
	if err := run(context.Background(), []string{"check-config", "--config", bad}, vars, &stdout, &stderr); err == nil {
		t.Fatalf("check-config accepted a bad verify policy:\n%s", stdout.String())
	}
	for _, want := range []string{"not a PEM public key", "identities[0]", "trusted_root /nonexistent/trusted_root.json"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	good := writeFile(t, "good.yaml", cfg(key, "^https://github\\.com/org/web/", testkit.NewCA(t).TrustedRootFile(t)))
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), []string{"check-config", "--config", good}, vars, &stdout, &stderr); err != nil {
		t.Fatalf("check-config refused a good verify policy: %v\n%s", err, stderr.String())
	}
}
