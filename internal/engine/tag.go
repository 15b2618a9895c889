package engine

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
)

// IsNotFound reports whether err says a container or image does not exist.
func IsNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// IsConflict reports whether err says a name is taken or a change conflicts with the state.
func IsConflict(err error) bool { return cerrdefs.IsConflict(err) }

// Tag points the local tag target ("host/repo:tag") at source, as `docker pull` of a tag would.
func (e *Engine) Tag(ctx context.Context, source, target string) error {
	if err := e.api(ctx).ImageTag(ctx, source, target); err != nil {
		return fmt.Errorf("tag %s as %s: %w", source, target, err)
	}
	return nil
}
