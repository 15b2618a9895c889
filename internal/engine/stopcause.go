package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// Exit is what the engine logged about a container's stops since a moment.
type Exit struct {
	// Requested: a kill or stop was asked for (a user's `docker stop`, the daemon stopping its
	// containers as it shuts down). A container that exits without one exited by itself.
	Requested bool
	// Died and Code: the container's process ended, and the code of its last exit. With a
	// restart policy the container runs again and inspect shows code 0; the event keeps it.
	Died bool
	Code int
}

// ExitSince reads the container's kill, stop and die events since the given time.
func (e *Engine) ExitSince(ctx context.Context, id string, since time.Time) (Exit, error) {
	until := time.Now()
	msgs, errs := e.api(ctx).Events(ctx, events.ListOptions{
		Since: fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		Until: fmt.Sprintf("%d.%09d", until.Unix(), until.Nanosecond()),
		Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)), filters.Arg("container", id),
			filters.Arg("event", string(events.ActionKill)), filters.Arg("event", string(events.ActionStop)),
			filters.Arg("event", string(events.ActionDie))),
	})
	var ex Exit
	for {
		select {
		case m := <-msgs:
			switch m.Action {
			case events.ActionKill, events.ActionStop:
				ex.Requested = true
			case events.ActionDie:
				ex.Died = true
				ex.Code, _ = strconv.Atoi(m.Actor.Attributes["exitCode"])
			}
		case err := <-errs:
			if err == nil || errors.Is(err, io.EOF) {
				return ex, nil
			}
			return ex, fmt.Errorf("read events of %s: %w", id, err)
		case <-ctx.Done():
			return ex, ctx.Err()
		}
	}
}

// IsEngineFault reports whether err is the engine's or the host's doing rather than the image's:
// a name, port or state conflict, a missing network or volume, a deadline, or a daemon that is
// away or shutting down.
func IsEngineFault(err error) bool {
	if err == nil {
		return false
	}
	if IsConflict(err) || IsNotFound(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		client.IsErrConnectionFailed(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	// The engine's words for failures of the host, not of the image.
	engineFaultMessages := [...]string{
		"port is already allocated", "address already in use", "is the docker daemon running",
		"connection refused", "daemon is shutting down", "shutting down", "no space left on device",
		"connection reset by peer",
	}
	msg := strings.ToLower(err.Error())
	for _, s := range engineFaultMessages {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// LabelReplaces is put on every replacement hookd creates, naming the container it replaces:
// the proof that a container under a temporary name is hookd's own to remove.
const LabelReplaces = "hookd.replaces"

// ShortID is the 12-character form of a container ID.
func ShortID(id string) string { return shortID(id) }
