// Package registry asks container registries what a tag points to, with the credentials the
// Docker CLI would use.
package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Credentials are what the engine needs to pull from a registry; empty means anonymous.
type Credentials struct {
	Username, Password, IdentityToken, RegistryToken string
}

// Keychain returns base, falling back for host (the registry deliveries name) to user and token
// as basic credentials when base has none for it: the old poller's GHCR_USER and GHCR_TOKEN
// next to the Docker config. Without both of user and token it is base.
func Keychain(base authn.Keychain, host, user, token string) authn.Keychain {
	if user == "" || token == "" {
		return base
	}
	reg, err := name.NewRegistry(host)
	if err != nil {
		return base // config has already refused such a host
	}
	static := authn.FromConfig(authn.AuthConfig{Username: user, Password: token})
	return authn.NewMultiKeychain(base, hostKeychain{host: reg.RegistryStr(), auth: static})
}

// hostKeychain hands auth to one registry host, and nothing (anonymous) to any other.
type hostKeychain struct {
	host string
	auth authn.Authenticator
}

func (k hostKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if strings.EqualFold(r.RegistryStr(), k.host) {
		return k.auth, nil
	}
	return authn.Anonymous, nil
}

// Client resolves tags to digests. It keeps one authenticated transport per repository, so a
// token is fetched once and reused until the registry says it expired.
type Client struct {
	keychain authn.Keychain
	puller   *remote.Puller
}

// New returns a client using keychain (authn.DefaultKeychain reads DOCKER_CONFIG like the
// Docker CLI) over transport, normally a Pacer.
func New(keychain authn.Keychain, transport http.RoundTripper) (*Client, error) {
	opts := []remote.Option{
		remote.WithAuthFromKeychain(keychain),
		remote.WithUserAgent("hookd"),
		remote.WithTransport(transport),
		// 429 is the Pacer's to handle: retrying it here would knock on a door asked to stay shut.
		remote.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout),
	}
	p, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, fmt.Errorf("registry client: %w", err)
	}
	return &Client{keychain: keychain, puller: p}, nil
}

// Resolve returns the digest the tag of image ("host/repo:tag") points to now. For a multi-arch
// image that is the index digest.
func (c *Client) Resolve(ctx context.Context, image string) (string, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", image, err)
	}
	desc, err := c.puller.Head(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", image, err)
	}
	return desc.Digest.String(), nil
}

// Credentials returns the keychain's credentials for the registry of image.
func (c *Client) Credentials(ctx context.Context, image string) (Credentials, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials for %s: %w", image, err)
	}
	auth, err := authn.Resolve(ctx, c.keychain, ref.Context())
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials for %s: %w", ref.Context().RegistryStr(), err)
	}
	cfg, err := authn.Authorization(ctx, auth)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials for %s: %w", ref.Context().RegistryStr(), err)
	}
	return Credentials{
		Username:      cfg.Username,
		Password:      cfg.Password,
		IdentityToken: cfg.IdentityToken,
		RegistryToken: cfg.RegistryToken,
	}, nil
}
