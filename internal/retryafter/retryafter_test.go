package retryafter

import (
	"net/http"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	type want struct {
		wait time.Duration
		ok   bool
	}
	cases := map[string]want{
		"":     {0, false},
		"0":    {0, true},
		"7":    {7 * time.Second, true},
		" 7 ":  {7 * time.Second, true},
		"-3":   {0, false},
		"soon": {0, false},
		now.Add(90 * time.Second).Format(http.TimeFormat): {90 * time.Second, true},
		now.Add(-time.Hour).Format(http.TimeFormat):       {0, true},
	}
	for v, w := range cases {
		if wait, ok := Parse(v, now); wait != w.wait || ok != w.ok {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", v, wait, ok, w.wait, w.ok)
		}
	}
}
