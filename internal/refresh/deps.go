package refresh

import (
	"context"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/engine"
	"github.com/hookd/hookd/internal/registry"
)

// Images is what a job asks of the engine about images.
type Images interface {
	HasImage(ctx context.Context, repo, digest string) (id string, ok bool, err error)
	Pull(ctx context.Context, ref string, auth engine.Auth) error
	Tag(ctx context.Context, source, target string) error
	RemoveImageIfUnused(ctx context.Context, id string) (bool, error)
}

// Containers is what a rollout asks of the engine about containers.
type Containers interface {
	Inspect(ctx context.Context, id string) (engine.Container, error)
	CreateReplacement(ctx context.Context, oldID, image, name string) (string, error)
	// CreateBeside is CreateReplacement for a start-first switch: the copy also holds the old
	// container's name as a network alias.
	CreateBeside(ctx context.Context, oldID, image, name, nameAlias string) (string, error)
	// CreateDependent is CreateReplacement for a container sharing the namespace of others:
	// providers maps their old IDs to their replacements'. Image "" keeps its own.
	CreateDependent(ctx context.Context, oldID, image, name string, providers map[string]string) (string, error)
	Restart(ctx context.Context, id string) error
	Rename(ctx context.Context, id, name string) error
	Stop(ctx context.Context, id string) error
	Start(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	State(ctx context.Context, id string) (engine.State, error)
	// ExitSince says whether someone (a user, the engine shutting down) asked the container to
	// stop since the given time, an exit that follows being no fault of the image, and the code
	// of its last exit.
	ExitSince(ctx context.Context, id string, since time.Time) (engine.Exit, error)
	SelfID(ctx context.Context) string
	// Joining returns the containers that share a namespace (network, pid, ipc) of one of ids.
	Joining(ctx context.Context, ids []string) ([]engine.Container, error)
}

// Services is what a rollout asks of a Swarm manager about services.
type Services interface {
	Services(ctx context.Context, label, value string) ([]engine.Service, error)
	Service(ctx context.Context, id string) (engine.Service, error)
	UpdateServiceImage(ctx context.Context, id string, version uint64, image string, auth engine.Auth) ([]string, error)
}

// Engine is the Docker engine as the rollout path sees it.
type Engine interface {
	Images
	Containers
	Services
}

// Registry resolves tags and hands out the credentials a pull needs.
type Registry interface {
	Resolve(ctx context.Context, image string) (string, error)
	Credentials(ctx context.Context, image string) (registry.Credentials, error)
}

// Catalog knows the runtimes and their containers.
type Catalog interface {
	// Match names the runtimes a push of image concerns.
	Match(ctx context.Context, image string) ([]string, error)
	Get(ctx context.Context, name string) (hookd.Runtime, bool, error)
	All(ctx context.Context) ([]hookd.Runtime, error)
	Members(ctx context.Context, rt hookd.Runtime) ([]engine.Container, error)
	// ServiceMembers returns the runtime's Swarm services on the engine sl.
	ServiceMembers(ctx context.Context, sl catalog.ServiceLister, rt hookd.Runtime) ([]engine.Service, error)
}

// Gate decides, before anything is pulled, whether a digest may run: nil when it may, a
// *signature.Refusal when it is not signed as the runtime asks, any other error when that could
// not be told.
type Gate interface {
	Check(ctx context.Context, runtime, repo, digest string) error
}
