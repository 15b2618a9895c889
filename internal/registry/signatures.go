package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrNotFound is returned when the registry says the manifest asked for does not exist.
var ErrNotFound = errors.New("not found")

// Limits on what a signature lookup reads: a registry (or whoever pushes to it) must not be
// able to make hookd read or hold much.
const (
	maxArtifactLayers = 32
	maxArtifactBytes  = 1 << 20
	maxReferrers      = 32
)

// Artifact is one layer of a signature manifest: its media type, annotations and contents.
type Artifact struct {
	MediaType   string
	Annotations map[string]string
	Data        []byte
}

// SignatureLayers returns the layers of the manifest tagged the way `cosign sign` stores the
// signatures of digest in repo ("host/repo"): sha256-<hex>.sig. ErrNotFound when there is none.
func (c *Client) SignatureLayers(ctx context.Context, repo, digest string) ([]Artifact, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return nil, fmt.Errorf("signatures of %s: %w", repo, err)
	}
	tag := r.Tag(strings.Replace(digest, ":", "-", 1) + ".sig")
	return c.artifacts(ctx, tag)
}

// ReferrerArtifacts returns the layers of every OCI 1.1 referrer of repo@digest whose artifact
// type is artifactType (the referrers API, or the referrers tag where the registry lacks it).
func (c *Client) ReferrerArtifacts(ctx context.Context, repo, digest, artifactType string) ([]Artifact, error) {
	d, err := name.NewDigest(repo + "@" + digest)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s@%s: %w", repo, digest, err)
	}
	idx, err := remote.Referrers(d, remote.Reuse(c.puller), remote.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, notFound(err))
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	var out []Artifact
	for i, desc := range m.Manifests {
		if i >= maxReferrers {
			break
		}
		if desc.ArtifactType != artifactType {
			continue
		}
		layers, err := c.artifacts(ctx, d.Context().Digest(desc.Digest.String()))
		if err != nil {
			return nil, err
		}
		out = append(out, layers...)
	}
	return out, nil
}

func (c *Client) artifacts(ctx context.Context, ref name.Reference) ([]Artifact, error) {
	desc, err := c.puller.Get(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", ref, notFound(err))
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("get %s: manifest: %w", ref, err)
	}
	if len(m.Layers) > maxArtifactLayers {
		m.Layers = m.Layers[:maxArtifactLayers]
	}
	out := make([]Artifact, 0, len(m.Layers))
	for _, l := range m.Layers {
		if l.Size > maxArtifactBytes {
			continue // no signature layer is this big
		}
		data, err := c.blob(ctx, ref.Context().Digest(l.Digest.String()))
		if err != nil {
			return nil, fmt.Errorf("get %s: layer %s: %w", ref, l.Digest, err)
		}
		out = append(out, Artifact{MediaType: string(l.MediaType), Annotations: l.Annotations, Data: data})
	}
	return out, nil
}

func (c *Client) blob(ctx context.Context, d name.Digest) ([]byte, error) {
	l, err := c.puller.Layer(ctx, d)
	if err != nil {
		return nil, err
	}
	// Compressed is the blob as stored; its digest is checked by go-containerregistry as it is read.
	rc, err := l.Compressed()
	if err != nil {
		return nil, notFound(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxArtifactBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxArtifactBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxArtifactBytes)
	}
	return data, nil
}

// notFound turns the registry's 404 into ErrNotFound and leaves every other error as it is.
func notFound(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}
