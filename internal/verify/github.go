// Package verify proves that a webhook delivery was signed by GitHub with a shared secret.
package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

var (
	// ErrMissing means the delivery carries no X-Hub-Signature-256 header. A SHA-1-only
	// delivery (X-Hub-Signature) lands here too: SHA-1 signatures are not accepted.
	ErrMissing = errors.New("missing X-Hub-Signature-256")
	// ErrMalformed means the header is not "sha256=" followed by 64 lowercase hex digits.
	ErrMalformed = errors.New("malformed X-Hub-Signature-256")
	// ErrMismatch means no configured secret produces the signature.
	ErrMismatch = errors.New("signature does not match")
)

// GitHub checks X-Hub-Signature-256 against one or more secrets; several secrets let an
// operator rotate without dropping deliveries.
type GitHub struct {
	secrets [][]byte
}

// NewGitHub returns a verifier for the given secrets; at least one is required.
func NewGitHub(secrets [][]byte) (*GitHub, error) {
	if len(secrets) == 0 {
		return nil, errors.New("verify: no webhook secret")
	}
	return &GitHub{secrets: secrets}, nil
}

// Verify reports whether header is a valid signature of body under any configured secret.
// The comparison is constant-time.
func (g *GitHub) Verify(body []byte, header string) error {
	if header == "" {
		return ErrMissing
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return ErrMalformed
	}
	// GitHub writes lowercase hex; refusing other spellings gives a signature exactly one
	// accepted form (hex.Decode alone would also take upper case).
	var want [sha256.Size]byte
	if _, err := hex.Decode(want[:], []byte(hexSig)); err != nil || strings.ContainsAny(hexSig, "ABCDEF") {
		return ErrMalformed
	}
	for _, s := range g.secrets {
		if hmac.Equal(mac(s, body), want[:]) {
			return nil
		}
	}
	return ErrMismatch
}

// Sign returns the X-Hub-Signature-256 value GitHub would send for body.
func Sign(secret, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, body))
}

func mac(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return m.Sum(nil)
}
