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

// Log writes msg with args, plus "suppressed" (how many events since the last line were not
// written) when there were any, unless a line was written less than the interval ago.
func (l *Logger) Log(msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if !l.last.IsZero() && now.Sub(l.last) < l.interval {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.last = now
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Log(context.Background(), l.level, msg, args...)
}
