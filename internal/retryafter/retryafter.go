// Package retryafter reads a Retry-After header (RFC 9110 §10.2.3), for the registry's pacer and
// the notifier alike.
package retryafter

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Parse returns the wait v asks for at now: delay-seconds, or an HTTP date (a date already
// past asks for no wait). ok is false when v is empty or neither.
func Parse(v string, now time.Time) (wait time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
