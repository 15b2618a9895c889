package registry_test

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd/internal/registry"
)

// GHCR_USER/GHCR_TOKEN serve registry_host only, and only when the Docker config has nothing
// for it.
func TestKeychainFallsBackToEnvCredentialsForTheHost(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"auths":{"docker.example.com":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("cfg-user:cfg-pass")) + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	cases := []struct {
		host, image, user, token, wantUser, wantPass string
	}{
		{"ghcr.io", "ghcr.io/o/app:latest", "ghcr-user", "ghcr-token", "ghcr-user", "ghcr-token"},
		{"GHCR.io", "ghcr.io/o/app:latest", "ghcr-user", "ghcr-token", "ghcr-user", "ghcr-token"},
		{"ghcr.io", "other.example.com/o/app:latest", "ghcr-user", "ghcr-token", "", ""},                        // another host: anonymous
		{"docker.example.com", "docker.example.com/o/app:1", "ghcr-user", "ghcr-token", "cfg-user", "cfg-pass"}, // the Docker config wins
		{"ghcr.io", "ghcr.io/o/app:latest", "", "ghcr-token", "", ""},                                           // half set: unused
	}
	for _, c := range cases {
		kc := registry.Keychain(authn.DefaultKeychain, c.host, c.user, c.token)
		client, err := registry.New(kc, registry.NewPacer(nil, 0, prometheus.NewRegistry()))
		if err != nil {
			t.Fatal(err)
		}
		creds, err := client.Credentials(context.Background(), c.image)
		if err != nil || creds.Username != c.wantUser || creds.Password != c.wantPass {
			t.Errorf("host %s, %s, env %q/%q: credentials %+v %v, want %s/%s", c.host, c.image, c.user, c.token, creds, err, c.wantUser, c.wantPass)
		}
	}
}
