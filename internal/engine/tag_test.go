package engine

import "testing"

func TestCanonicalMatchesDockerHubSpellings(t *testing.T) {
	d := "sha256:" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"
	same := []string{"nginx@" + d, "docker.io/library/nginx@" + d, "index.docker.io/library/nginx@" + d}
	for _, s := range same {
		if canonical(s) != canonical(same[0]) {
			t.Errorf("canonical(%s) = %s, want %s", s, canonical(s), canonical(same[0]))
		}
	}
	if canonical("ghcr.io/org/app@"+d) == canonical("ghcr.io/org/other@"+d) {
		t.Error("different repositories compare equal")
	}
	if got := canonical("127.0.0.1:5000/org/app@" + d); got != "127.0.0.1:5000/org/app@"+d {
		t.Errorf("loopback registry reference changed: %s", got)
	}
}
