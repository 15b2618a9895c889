package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/testkit"
)

func TestLoadVerify(t *testing.T) {
	dir := t.TempDir()
	key := testkit.NewKeySigner(t).PublicKeyFile(t)
	trusted := testkit.NewCA(t).TrustedRootFile(t)
	cfg := write(t, dir, "hookd.yaml", `
verify:
  keys: [`+key+`]
runtimes:
  - name: web
    image: ghcr.io/acme/web:latest
    verify:
      identities:
        - issuer: https://token.actions.githubusercontent.com
          subject_regexp: '^https://github\.com/acme/web/'
      trusted_root: `+trusted+`
      wait: 2m
  - name: api
    image: ghcr.io/acme/api:latest
`)
	c, err := config.Load(cfg, env())
	if err != nil {
		t.Fatal(err)
	}
	web, api := c.Runtimes[0].Verify, c.Runtimes[1].Verify
	if web == nil || len(web.Identities) != 1 || web.TrustedRoot != trusted || len(web.Keys) != 0 || web.Wait != 2*time.Minute {
		t.Errorf("web verify = %+v", web)
	}
	if api == nil || len(api.Keys) != 1 || api.Keys[0] != key || api.Wait != 60*time.Second {
		t.Errorf("api verify = %+v, want the top-level policy with the default wait", api)
	}
	if d := c.DefaultVerify(); d == nil || d.Keys[0] != key {
		t.Errorf("default verify = %+v", d)
	}
}

func TestLoadVerifyProblems(t *testing.T) {
	dir := t.TempDir()
	notKey := write(t, dir, "cosign.pub", "not a key\n")
	notRoot := write(t, dir, "trusted_root.json", "{}")
	cfg := write(t, dir, "hookd.yaml", `
verify:
  keys: [`+notKey+`, `+dir+`/missing.pub]
runtimes:
  - name: web
    image: ghcr.io/acme/web:latest
    verify:
      identities:
        - issuer: https://token.actions.githubusercontent.com
          subject_regexp: '(unclosed'
      trusted_root: `+notRoot+`
      wait: 10m
  - name: api
    image: ghcr.io/acme/api:latest
    verify:
      identities:
        - subject: someone
`)
	_, err := config.Load(cfg, env())
	if err == nil {
		t.Fatal("bad verify policies accepted")
	}
	for _, want := range []string{
		"verify: key " + notKey + ": not a PEM public key",
		"missing.pub",
		`runtime "web": verify: identities[0]`,
		"trusted_root " + notRoot,
		"wait 10m0s",
		`runtime "api": verify: identities[0]`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems do not mention %q:\n%v", want, err)
		}
	}
}
