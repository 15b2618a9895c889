package verify

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzVerify: no body or header makes Verify panic or accept something it should not; a
// signed body verifies, and any change to that body or that header is refused.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(ghPayload), ghSig, []byte("x"), "x")
	f.Add([]byte(`{"zen":"hi"}`), "", []byte{}, "")
	f.Add([]byte{}, "sha256=", []byte{0}, "sha256=00")
	f.Add([]byte("body"), "sha1=0123456789abcdef0123456789abcdef01234567", []byte(" "), "SHA256=")
	f.Add([]byte("body"), "sha256="+strings.Repeat("G", 64), []byte("\n"), " ")
	// Upper-case hex decodes to the same MAC; a signature has one spelling only.
	f.Add([]byte(ghPayload), "sha256="+strings.ToUpper(ghSig[7:]), []byte{}, "")
	g, err := NewGitHub([][]byte{[]byte(ghSecret), []byte("second secret")})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, header string, bodyEdit []byte, headerEdit string) {
		// Arbitrary input: only the defined errors, and acceptance only of the exact signature.
		err := g.Verify(body, header)
		switch {
		case err == nil:
			if header != Sign([]byte(ghSecret), body) && header != Sign([]byte("second secret"), body) {
				t.Fatalf("accepted header %q for body %q", header, body)
			}
		case !errors.Is(err, ErrMissing) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMismatch):
			t.Fatalf("unexpected error %v", err)
		}

		signed := Sign([]byte(ghSecret), body)
		if err := g.Verify(body, signed); err != nil {
			t.Fatalf("signed body %q refused: %v", body, err)
		}
		// Changed body: the edit is appended, or replaces a prefix of the same length.
		for _, changed := range [][]byte{
			append(append([]byte{}, body...), bodyEdit...),
			append(append([]byte{}, bodyEdit...), body[min(len(bodyEdit), len(body)):]...),
		} {
			if !bytes.Equal(changed, body) && g.Verify(changed, signed) == nil {
				t.Fatalf("body changed from %q to %q still verifies", body, changed)
			}
		}
		// Changed header: same, and a flip of one character chosen by the edit.
		changedHeaders := []string{signed + headerEdit, headerEdit + signed[min(len(headerEdit), len(signed)):]}
		if len(headerEdit) > 0 {
			i := int(headerEdit[0]) % len(signed)
			flipped := []byte(signed)
			flipped[i] ^= headerEdit[len(headerEdit)-1] | 1
			changedHeaders = append(changedHeaders, string(flipped))
		}
		for _, h := range changedHeaders {
			if h != signed && g.Verify(body, h) == nil {
				t.Fatalf("header changed from %q to %q still verifies", signed, h)
			}
		}
	})
}
