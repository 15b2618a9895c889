// Package engine is hookd's only door to the Docker engine: small primitives
// (pull, inspect, create a faithful replacement, stop, rename, start, remove)
// that the rollout logic in internal/refresh composes.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/cli/cli/connhelper"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/google/go-containerregistry/pkg/name"
)

// Engine talks to one Docker engine.
type Engine struct {
	cli *client.Client

	// The client negotiates its API version lazily on its first request, and some of its calls
	// read the version before that negotiation, unlocked: two first requests at once race.
	// api negotiates once, holding negotiating, before any call goes out.
	negotiating chan struct{}
	negotiated  atomic.Bool

	selfMu    sync.Mutex
	self      string
	selfKnown bool
}

// New connects lazily to the engine named by the environment (DOCKER_HOST,
// DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_API_VERSION). It does not
// contact the engine, so it succeeds while the engine is down; the API
// version is negotiated on the first request that reaches it.
func New() (*Engine, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return newEngine(cli), nil
}

// TLS are the files of a tcp:// engine's mutual TLS.
type TLS struct {
	CA, Cert, Key string
}

// Open connects lazily to the engine at host, as DOCKER_HOST names one: unix://, tcp:// (with
// tls) or ssh://user@host, which goes through the docker CLI's connection helper (ssh on this
// machine, `docker system dial-stdio` on the other). An empty host is New's engine.
func Open(host string, tls *TLS) (*Engine, error) {
	if host == "" {
		return New()
	}
	opts := []client.Opt{client.WithAPIVersionNegotiation()}
	helper, err := connhelper.GetConnectionHelper(host)
	if err != nil {
		return nil, fmt.Errorf("docker host %s: %w", host, err)
	}
	switch {
	case helper != nil:
		opts = append(opts, client.WithHost(helper.Host), client.WithDialContext(helper.Dialer))
	default:
		opts = append(opts, client.WithHost(host))
	}
	if tls != nil {
		opts = append(opts, client.WithTLSClientConfig(tls.CA, tls.Cert, tls.Key))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", host, err)
	}
	return newEngine(cli), nil
}

func newEngine(cli *client.Client) *Engine {
	return &Engine{cli: cli, negotiating: make(chan struct{}, 1)}
}

// api returns the client once its API version is negotiated; while the engine does not answer,
// the calls that find it so go out one at a time and fail as they would have.
func (e *Engine) api(ctx context.Context) *client.Client {
	if e.negotiated.Load() {
		return e.cli
	}
	select {
	case e.negotiating <- struct{}{}:
	case <-ctx.Done():
		return e.cli // the call fails on ctx as it would have
	}
	defer func() { <-e.negotiating }()
	if !e.negotiated.Load() {
		if ping, err := e.cli.Ping(ctx); err == nil {
			e.cli.NegotiateAPIVersionPing(ping)
			e.negotiated.Store(true)
		}
	}
	return e.cli
}

// Close releases the client's connections.
func (e *Engine) Close() error {
	return e.cli.Close()
}

// Ping reports whether the engine answers.
func (e *Engine) Ping(ctx context.Context) error {
	if _, err := e.api(ctx).Ping(ctx); err != nil {
		return fmt.Errorf("ping docker engine: %w", err)
	}
	return nil
}

// Auth is a registry credential; the zero value pulls anonymously.
type Auth struct {
	Username      string
	Password      string
	IdentityToken string
	RegistryToken string
}

// redact removes the credential's secrets from err's text, keeping err
// itself (and so errors.Is) when it does not contain them.
func (a Auth) redact(err error) error {
	msg := err.Error()
	clean := a.redactString(msg)
	if clean == msg {
		return err
	}
	return errors.New(clean)
}

func (a Auth) redactString(s string) string {
	for _, secret := range []string{a.Password, a.IdentityToken, a.RegistryToken} {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// Pull pulls ref ("host/repo@sha256:..." or "host/repo:tag"). The engine
// reports most failures inside the progress stream with a 200 status, so the
// whole stream is read and any error message in it fails the pull.
func (e *Engine) Pull(ctx context.Context, ref string, auth Auth) error {
	var opts image.PullOptions
	if auth != (Auth{}) {
		enc, err := registry.EncodeAuthConfig(registry.AuthConfig{
			Username:      auth.Username,
			Password:      auth.Password,
			IdentityToken: auth.IdentityToken,
			RegistryToken: auth.RegistryToken,
		})
		if err != nil {
			return fmt.Errorf("pull %s: encode credentials: %w", ref, auth.redact(err))
		}
		opts.RegistryAuth = enc
	}
	rc, err := e.api(ctx).ImagePull(ctx, ref, opts)
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, auth.redact(err))
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("pull %s: read progress: %w", ref, auth.redact(err))
		}
		if msg.Error != nil {
			return fmt.Errorf("pull %s: %s", ref, auth.redactString(msg.Error.Message))
		}
	}
}

// HasImage reports whether the engine holds repo@digest, and its image ID.
func (e *Engine) HasImage(ctx context.Context, repo, digest string) (string, bool, error) {
	ref := repo + "@" + digest
	img, err := e.api(ctx).ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	want := canonical(ref)
	for _, rd := range img.RepoDigests {
		if canonical(rd) == want {
			return img.ID, true, nil
		}
	}
	return "", false, nil
}

// Digest returns the registry digest under which the engine holds image imageID for repo
// ("host/path"), or "" when it holds none there (an image built or loaded locally).
func (e *Engine) Digest(ctx context.Context, imageID, repo string) (string, error) {
	img, err := e.api(ctx).ImageInspect(ctx, imageID)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", imageID, err)
	}
	for _, rd := range img.RepoDigests {
		if r, d, ok := strings.Cut(canonical(rd), "@"); ok && r == repo {
			return d, nil
		}
	}
	return "", nil
}

// canonical spells a repo@digest reference in full, so the engine's "nginx@d" and hookd's
// "index.docker.io/library/nginx@d" compare equal.
func canonical(ref string) string {
	d, err := name.NewDigest(ref)
	if err != nil {
		return ref
	}
	return d.Context().Name() + "@" + d.DigestStr()
}

// RemoveImageIfUnused removes the image when no container, in any state,
// was created from it. A missing image is not an error.
func (e *Engine) RemoveImageIfUnused(ctx context.Context, imageID string) (bool, error) {
	img, err := e.api(ctx).ImageInspect(ctx, imageID)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove image %s: inspect: %w", imageID, err)
	}
	used, err := e.imageUsed(ctx, img.ID)
	if err != nil || used {
		return false, err
	}
	refs := append(append([]string{}, img.RepoTags...), img.RepoDigests...)
	if repositories(refs) <= 1 {
		_, err := e.api(ctx).ImageRemove(ctx, img.ID, image.RemoveOptions{PruneChildren: true})
		if cerrdefs.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("remove image %s: %w", img.ID, err)
		}
		return true, nil
	}
	// The engine refuses to remove by ID, without force, an image referenced
	// from several repositories; force would also override its in-use check.
	// So drop the references one by one: the engine deletes the image with the
	// last one, and still refuses if a container appeared meanwhile.
	for _, ref := range refs {
		if _, err := e.api(ctx).ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return false, fmt.Errorf("remove image %s: untag %s: %w", img.ID, ref, err)
		}
	}
	_, err = e.api(ctx).ImageInspect(ctx, img.ID)
	if cerrdefs.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove image %s: inspect: %w", img.ID, err)
	}
	return false, fmt.Errorf("remove image %s: still present after removing its references", img.ID)
}

// repositories counts the distinct repositories among image references
// ("repo:tag", "repo@digest").
func repositories(refs []string) int {
	seen := map[string]bool{}
	for _, ref := range refs {
		repo, _, _ := strings.Cut(ref, "@")
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		seen[repo] = true
	}
	return len(seen)
}

func (e *Engine) imageUsed(ctx context.Context, imageID string) (bool, error) {
	list, err := e.api(ctx).ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs()})
	if err != nil {
		return false, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range list {
		if c.ImageID == imageID {
			return true, nil
		}
	}
	return false, nil
}
