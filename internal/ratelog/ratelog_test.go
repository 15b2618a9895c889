package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood is one line per interval, and the next line says how many it stands for.
func TestOneLinePerInterval(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), slog.LevelWarn, 20*time.Millisecond)
	for range 100 {
		l.Log("rejected", "remote", "192.0.2.1")
	}
	if n := strings.Count(buf.String(), "msg=rejected"); n != 1 {
		t.Fatalf("%d lines for 100 events within the interval:\n%s", n, &buf)
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(buf.String(), "msg=rejected") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no second line after the interval")
		}
		l.Log("rejected", "remote", "192.0.2.1")
	}
	if !strings.Contains(buf.String(), "suppressed=") {
		t.Fatalf("the second line does not say how many were suppressed:\n%s", &buf)
	}
}
