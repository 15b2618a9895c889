// Package webhooktest makes GitHub package deliveries for tests, fuzzing and the load generator:
// realistic ~6 KB payloads, signed the way GitHub signs them.
package webhooktest

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hookd/hookd/internal/verify"
)

//go:embed package.json
var template string

// Push describes a container version GitHub announces.
type Push struct {
	Event     string // "package" (default) or "registry_package"
	Action    string // "published" (default)
	Namespace string // the owner, capitals kept as GitHub sends them
	Name      string
	Tag       string // empty for an untagged per-platform manifest
	Digest    string
	// Host is the registry GitHub names in package_version.package_url ("ghcr.io/NS/NAME:TAG").
	// Empty leaves package_url null, for tests whose registry is not the one a delivery would
	// name; registry.url is then GitHub's placeholder (https://CONTAINER.pkg.github.com/NS).
	Host string
	// PackageURL, when set, is sent as package_url as given (Host is then ignored for it).
	PackageURL string
}

// Payload returns the JSON body GitHub would send for p.
func Payload(p Push) []byte {
	key := "package"
	if p.Event == "registry_package" {
		key = "registry_package"
	}
	packageURL, registryURL := "null", quote("https://CONTAINER.pkg.github.com/"+p.Namespace)
	if p.Host != "" {
		packageURL, registryURL = quote(p.Host+"/"+p.Namespace+"/"+p.Name+":"+p.Tag), quote("https://"+p.Host+"/"+p.Namespace)
	}
	if p.PackageURL != "" {
		packageURL = quote(p.PackageURL)
	}
	body := strings.NewReplacer(
		"{{KEY}}", key, "{{NAMESPACE}}", p.Namespace, "{{NAME}}", p.Name,
		"{{TAG}}", p.Tag, "{{DIGEST}}", p.Digest,
		"{{PACKAGE_URL}}", packageURL, "{{REGISTRY_URL}}", registryURL,
	).Replace(template)
	if p.Action != "" && p.Action != "published" {
		body = strings.Replace(body, `"action": "published"`, `"action": `+quote(p.Action), 1)
	}
	return []byte(body)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Delivery is one HTTP delivery.
type Delivery struct {
	Event       string // X-GitHub-Event
	ID          string // X-GitHub-Delivery
	Body        []byte
	ContentType string // application/json unless set
	Signature   string // X-Hub-Signature-256; computed from Secret when empty
	Secret      []byte
	SHA1Only    bool // send only X-Hub-Signature (sha1=…), as very old hooks did
}

// Form wraps a JSON payload the way GitHub's form content type sends it.
func Form(payload []byte) []byte {
	return []byte(url.Values{"payload": {string(payload)}}.Encode())
}

// Request builds the HTTP request for d against target.
func Request(ctx context.Context, target string, d Delivery) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(d.Body))
	if err != nil {
		return nil, err
	}
	ct := d.ContentType
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("User-Agent", "GitHub-Hookshot/test")
	if d.Event != "" {
		req.Header.Set("X-GitHub-Event", d.Event)
	}
	if d.ID != "" {
		req.Header.Set("X-GitHub-Delivery", d.ID)
	}
	switch {
	case d.SHA1Only:
		req.Header.Set("X-Hub-Signature", "sha1=0123456789abcdef0123456789abcdef01234567")
	case d.Signature != "":
		req.Header.Set("X-Hub-Signature-256", d.Signature)
	case d.Secret != nil:
		req.Header.Set("X-Hub-Signature-256", verify.Sign(d.Secret, d.Body))
	}
	return req, nil
}

// Send delivers d and returns the status and the decoded JSON answer.
func Send(ctx context.Context, client *http.Client, target string, d Delivery) (int, map[string]any, error) {
	req, err := Request(ctx, target, d)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var answer map[string]any
	if err := json.Unmarshal(raw, &answer); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("answer %q is not JSON: %w", raw, err)
	}
	return resp.StatusCode, answer, nil
}
