package notify

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":     0,
		"0":    0,
		"7":    7 * time.Second,
		"-3":   0,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	}
	for v, want := range cases {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

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
