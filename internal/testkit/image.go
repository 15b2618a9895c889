package testkit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// App describes an image built around the testapp binary.
type App struct {
	Version     string            // APP_VERSION, answered by GET /
	Mode        string            // APP_MODE: ok (default), exit, exit-after, unhealthy
	Env         []string          // extra image ENV entries
	Healthcheck bool              // image HEALTHCHECK running "/app health" every second
	Labels      map[string]string // image labels
	Volumes     []string          // image VOLUME paths
	Cmd         []string          // image CMD; default ["serve"]
}

const testappPackage = "github.com/hookd/hookd/internal/testkit/testapp"

// Building testapp and compressing its layer take seconds (gzip is slow
// under -race), and every test in a process can share the result, so this
// one piece of package state caches the layer. v1.Layer is immutable.
var testapp struct {
	once  sync.Once
	layer v1.Layer // /app, mode 0755
	err   error
}

func testappLayer(t testing.TB) v1.Layer {
	t.Helper()
	testapp.once.Do(func() {
		tarBytes, err := buildTestappTar()
		if err != nil {
			testapp.err = err
			return
		}
		testapp.layer, testapp.err = tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(tarBytes)), nil
		}, tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
	})
	if testapp.err != nil {
		t.Fatalf("build testapp: %v", testapp.err)
	}
	return testapp.layer
}

func buildTestappTar() ([]byte, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("hookd-testapp-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "app")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, testappPackage)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", testappPackage, err, out)
	}
	content, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: "app", Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// moduleRoot walks up from this source file to go.mod, so the build works
// whatever directory the test binary runs in.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("module root: no caller information")
	}
	for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", fmt.Errorf("module root: no go.mod above %s", file)
		}
	}
}

// appImage builds the image for app; oci selects OCI media types (as buildx
// uses inside an OCI index) instead of Docker schema 2.
func appImage(t testing.TB, app App, oci bool) v1.Image {
	t.Helper()
	// The same gzip blob serves both; only the manifest's media type differs.
	layer := mutate.Addendum{Layer: testappLayer(t), MediaType: types.DockerLayer}
	base := empty.Image
	if oci {
		layer.MediaType = types.OCILayer
		base = mutate.MediaType(base, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	}

	mode := app.Mode
	if mode == "" {
		mode = "ok"
	}
	cmd := app.Cmd
	if cmd == nil {
		cmd = []string{"serve"}
	}
	cfg := v1.Config{
		Entrypoint:   []string{"/app"},
		Cmd:          cmd,
		Env:          append([]string{"PATH=/", "APP_VERSION=" + app.Version, "APP_MODE=" + mode}, app.Env...),
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Labels:       app.Labels,
	}
	if app.Healthcheck {
		cfg.Healthcheck = &v1.HealthConfig{
			Test:     []string{"CMD", "/app", "health"},
			Interval: time.Second,
			Timeout:  time.Second,
			Retries:  2,
		}
	}
	if len(app.Volumes) > 0 {
		cfg.Volumes = map[string]struct{}{}
		for _, v := range app.Volumes {
			cfg.Volumes[v] = struct{}{}
		}
	}
	// ConfigFile replaces RootFS, so it must come before Append adds the layer.
	img, err := mutate.ConfigFile(base, &v1.ConfigFile{OS: "linux", Architecture: "amd64", Config: cfg})
	if err != nil {
		t.Fatalf("image config: %v", err)
	}
	img, err = mutate.Append(img, layer)
	if err != nil {
		t.Fatalf("append layer: %v", err)
	}
	return img
}

func appIndex(t testing.TB, app App) v1.ImageIndex {
	t.Helper()
	img := appImage(t, app, true)
	imgDigest := digestOf(t, img)

	att := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	att = mutate.ConfigMediaType(att, types.OCIConfigJSON)
	att, err := mutate.ConfigFile(att, &v1.ConfigFile{OS: "unknown", Architecture: "unknown"})
	if err != nil {
		t.Fatalf("attestation config: %v", err)
	}
	statement := static.NewLayer([]byte(`{"_type":"https://in-toto.io/Statement/v0.1","subject":[]}`), "application/vnd.in-toto+json")
	att, err = mutate.Append(att, mutate.Addendum{
		Layer:       statement,
		Annotations: map[string]string{"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
	})
	if err != nil {
		t.Fatalf("attestation layer: %v", err)
	}

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx,
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: "amd64"},
		}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{
				"vnd.docker.reference.type":   "attestation-manifest",
				"vnd.docker.reference.digest": imgDigest,
			},
		}},
	)
}
