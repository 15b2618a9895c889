package webhook_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hookd/hookd/internal/verify"
)

// benchClients is how many deliveries are in flight at once, as GitHub plus redeliveries might
// send them; enough for bbolt to commit many per fsync.
const benchClients = 32

// benchIntake sends the ~6 KB mapped package delivery through the real handler, a fresh delivery
// id each time, from benchClients goroutines, and checks every answer's status.
func benchIntake(b *testing.B, signature string, wantCode int) {
	e, _, _ := newHandler(b, b.TempDir(), 1<<20)
	body := push("Molecule-AI", "workspace-template-claude-code", "latest", digestNew)
	var seq atomic.Uint64
	b.SetBytes(int64(len(body)))
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/hooks/ghcr", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "package")
			req.Header.Set("X-GitHub-Delivery", "bench-"+strconv.FormatUint(seq.Add(1), 10))
			req.Header.Set("X-Hub-Signature-256", signature)
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != wantCode {
				b.Errorf("status %d %s, want %d", rec.Code, rec.Body, wantCode)
				return
			}
		}
	})
}

// BenchmarkIntakeValid: every delivery is verified, planned and committed to the state file
// (fsync) before its 202.
func BenchmarkIntakeValid(b *testing.B) {
	body := push("Molecule-AI", "workspace-template-claude-code", "latest", digestNew)
	benchIntake(b, verify.Sign(secret, body), http.StatusAccepted)
}

// BenchmarkIntakeInvalidSignature: a well-formed signature by the wrong secret costs an HMAC per
// configured secret and nothing else.
func BenchmarkIntakeInvalidSignature(b *testing.B) {
	benchIntake(b, "sha256="+strings.Repeat("0", 64), http.StatusUnauthorized)
}
