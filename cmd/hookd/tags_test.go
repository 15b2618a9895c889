package main

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

// A push of several tags can arrive as one delivery naming one of them. Every runtime following
// a tag of the repository resolves its own tag: the one whose tag did not move keeps its image,
// and the delivery's digest is never taken for another tag's.
func TestOneDeliveryWakesEveryTagOfTheRepository(t *testing.T) {
	cli := testkit.Docker(t)
	reg := testkit.StartRegistry(t, nil)
	testkit.Cleanup(t, cli, reg.Host)
	repo := reg.Host + "/org/app"
	h := startHookd(t, fmt.Sprintf(`
registry_host: %q
poll:
  interval: 0
runtimes:
  - {name: app-latest, image: "%s:latest", recreate: false}
  - {name: app-stable, image: "%s:stable", recreate: false}
  - {name: app-old, image: "%s:old", recreate: false}
`, reg.Host, repo, repo, repo), t.TempDir(), nil)

	v1 := reg.Push(t, "org/app", "old", testkit.App{Version: "v1"})
	// One build pushed as latest and stable; GitHub announced only stable.
	v2 := reg.Push(t, "org/app", "latest", testkit.App{Version: "v2"})
	if d := reg.Push(t, "org/app", "stable", testkit.App{Version: "v2"}); d != v2 {
		t.Fatalf("the same image pushed twice has digests %s and %s", v2, d)
	}
	want := map[string]string{"app-stable": v2, "app-latest": v2, "app-old": v1}
	lastJob := map[string]uint64{}
	for round, outcomes := range [][]string{{"pulled", "up_to_date"}, {"up_to_date"}} {
		id := fmt.Sprintf("stable-%d", round)
		code, answer := h.deliver(webhooktest.Push{Namespace: "Org", Name: "app", Tag: "stable", Digest: v2, Host: reg.Host}, id)
		rts, _ := answer["runtimes"].([]any)
		if code != 202 || answer["status"] != "queued" || fmt.Sprint(rts) != "[app-stable app-latest app-old]" {
			t.Fatalf("round %d: %d %v, want every runtime of the repository queued, app-stable first", round, code, answer)
		}
		for rt, digest := range want {
			st := h.waitJob(rt, lastJob[rt])
			lastJob[rt] = st.LastRollout.JobID
			if st.LastRollout.Digest != digest || st.DigestSeen != digest || !slices.Contains(outcomes, st.LastRollout.Result) {
				t.Fatalf("round %d, %s: %+v seen %s, want %s with a result in %v", round, rt, st.LastRollout, st.DigestSeen, digest, outcomes)
			}
		}
	}
	// The local tags name what each tag points to at the registry, as `docker pull` would.
	for tag, digest := range map[string]string{"latest": v2, "stable": v2, "old": v1} {
		byTag, err := cli.ImageInspect(context.Background(), repo+":"+tag)
		if err != nil {
			t.Fatal(err)
		}
		byDigest, err := cli.ImageInspect(context.Background(), repo+"@"+digest)
		if err != nil || byTag.ID != byDigest.ID {
			t.Fatalf("%s:%s is %s, want %s (%s) %v", repo, tag, byTag.ID, digest, byDigest.ID, err)
		}
	}
	if n := h.metric("hookd_pulls_total", "result=pulled"); n != 2 {
		t.Fatalf("pulls: %v, want 2 (v1 and v2, once each)", n)
	}
}
