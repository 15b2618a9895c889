package notify

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestRedactDropsTheURL(t *testing.T) {
	const u = "https://hooks.example.com/services/T0/B0/SECRET"
	cases := []error{
		&url.Error{Op: "Post", URL: u, Err: errors.New("dial tcp 10.0.0.1:443: connect: connection refused")},
		&url.Error{Op: "Post", URL: u, Err: errors.New("odd failure quoting " + u)},
		errors.New("bare error quoting " + u),
	}
	for _, err := range cases {
		if got := redact(err, u).Error(); strings.Contains(got, "SECRET") {
			t.Errorf("redact(%q) = %q", err, got)
		}
	}
	if got := redact(cases[0], u).Error(); !strings.Contains(got, "connection refused") {
		t.Errorf("redact lost the cause: %q", got)
	}
}
