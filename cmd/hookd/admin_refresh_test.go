package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hookd/hookd/internal/testkit"
)

// POST /admin/refresh without a runtime is the replaced endpoint's: every runtime through the
// same rollout, one answer of {pulled, failed, recreated}, a runtime that fails listed there.
func TestAdminRefreshEveryRuntime(t *testing.T) {
	f := newFleet(t, "web")
	v1 := f.push(testkit.App{Version: "v1"})
	f.install(v1)
	f.start("a", true, nil)
	missing := f.reg.Host + "/org/missing:latest" // never pushed: resolving it fails
	h := startHookd(t, f.config("  - name: missing\n    image: "+missing+"\n"), t.TempDir(), nil)
	v2 := f.push(testkit.App{Version: "v2"})

	var all struct {
		Pulled    []string `json:"pulled"`
		Recreated []string `json:"recreated"`
		Failed    []struct {
			Ref    string `json:"ref"`
			Reason string `json:"reason"`
		} `json:"failed"`
		Results []struct {
			Runtime string `json:"runtime"`
			Result  string `json:"result"`
		} `json:"results"`
	}
	if code := h.admin(http.MethodPost, "/admin/refresh", &all); code != http.StatusOK {
		t.Fatalf("refresh of every runtime: %d %+v", code, all)
	}
	if !slices.Equal(all.Pulled, []string{f.repo + "@" + v2}) || !slices.Equal(all.Recreated, []string{f.id + "-a"}) {
		t.Fatalf("pulled %v recreated %v, want %s@%s and %s-a", all.Pulled, all.Recreated, f.repo, v2, f.id)
	}
	if len(all.Failed) != 1 || all.Failed[0].Ref != missing || !strings.Contains(all.Failed[0].Reason, "resolve") {
		t.Fatalf("failed %+v, want the missing tag's resolve failure only", all.Failed)
	}
	if len(all.Results) != 2 {
		t.Fatalf("results %+v, want one per runtime", all.Results)
	}
	for _, r := range all.Results {
		if want := map[string]string{"web": "rolled_out", "missing": "failed"}[r.Runtime]; r.Result != want {
			t.Errorf("%s: %s, want %s", r.Runtime, r.Result, want)
		}
	}
	if v, err := f.get(f.id+"-a", "/"); err != nil || v != "v2" {
		t.Fatalf("serving %q %v, want v2", v, err)
	}

	// ?runtime= keeps the single runtime's answer; an unknown one is still refused.
	var one struct {
		Runtime   string   `json:"runtime"`
		Result    string   `json:"result"`
		Pulled    []string `json:"pulled"`
		Recreated []string `json:"recreated"`
	}
	if code := h.admin(http.MethodPost, "/admin/refresh?runtime=web", &one); code != http.StatusOK || one.Runtime != "web" || one.Result != "up_to_date" || one.Pulled == nil {
		t.Fatalf("refresh of web: %d %+v, want 200 up_to_date", code, one)
	}
	var refused struct {
		Known []string `json:"known_runtimes"`
	}
	if code := h.admin(http.MethodPost, "/admin/refresh?runtime=nope", &refused); code != http.StatusBadRequest || !slices.Equal(refused.Known, []string{"missing", "web"}) {
		t.Fatalf("unknown runtime: %d %+v", code, refused)
	}
}
