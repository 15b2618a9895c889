// Package ratelog writes a log line at most once per interval for events that an outsider can
// cause at will (wrong signatures, wrong tokens): each stays visible in the log, and a flood
// costs one line per interval, which says how many it stands for.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Logger logs one event of a kind per interval and counts the others.
type Logger struct {
	log      *slog.Logger
	level    slog.Level
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// New logs at level through log at most once per interval.
func New(log *slog.Logger, level slog.Level, interval time.Duration) *Logger {
	return &Logger{log: log, level: level, interval: interval}
}

// Due reports whether a line may be written now and how many events since the last line were
// not; when it is not due, the event is counted. Callers build their line only when due, so a
// flood costs a lock and a counter per event.
func (l *Logger) Due() (suppressed int, ok bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.interval {
		l.suppressed++
		return 0, false
	}
	l.last = now
	n := l.suppressed
	l.suppressed = 0
	return n, true
}

// Log writes msg with args, plus "suppressed" (how many events since the last line were not
// written) when there were any, unless a line was written less than the interval ago.
func (l *Logger) Log(msg string, args ...any) {
	n, ok := l.Due()
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Log(context.Background(), l.level, msg, args...)
}
