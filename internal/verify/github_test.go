package verify

import (
	"errors"
	"strings"
	"testing"
)

// GitHub's published example: secret "It's a Secret to Everybody", payload "Hello, World!".
const (
	ghSecret  = "It's a Secret to Everybody"
	ghPayload = "Hello, World!"
	ghSig     = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

func TestGitHubPublishedVector(t *testing.T) {
	if got := Sign([]byte(ghSecret), []byte(ghPayload)); got != ghSig {
		t.Fatalf("Sign = %s, want %s", got, ghSig)
	}
	g, err := NewGitHub([][]byte{[]byte(ghSecret)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Verify([]byte(ghPayload), ghSig); err != nil {
		t.Fatalf("Verify(published vector) = %v", err)
	}
}

func TestGitHubVerify(t *testing.T) {
	body := []byte(`{"zen":"hi"}`)
	old, cur := []byte("old-secret"), []byte("new-secret")
	g, err := NewGitHub([][]byte{cur, old})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		header string
		want   error
	}{
		{"current secret", Sign(cur, body), nil},
		{"rotated-out secret still listed", Sign(old, body), nil},
		{"missing", "", ErrMissing},
		{"sha1 prefix", "sha1=" + Sign(cur, body)[7:47], ErrMalformed},
		{"wrong secret", Sign([]byte("other"), body), ErrMismatch},
		{"tampered body", Sign(cur, append(body, ' ')), ErrMismatch},
		{"not hex", "sha256=" + string(make([]byte, 64)), ErrMalformed},
		{"short", "sha256=abcd", ErrMalformed},
		{"uppercase prefix", "SHA256=" + Sign(cur, body)[7:], ErrMalformed},
		{"uppercase hex", "sha256=" + strings.ToUpper(Sign(cur, body)[7:]), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := g.Verify(body, c.header); !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
	if _, err := NewGitHub(nil); err == nil {
		t.Fatal("NewGitHub(nil) accepted no secret")
	}
}
