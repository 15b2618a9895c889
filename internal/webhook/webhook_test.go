package webhook_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/catalog"
	"github.com/hookd/hookd/internal/refresh"
	"github.com/hookd/hookd/internal/store"
	"github.com/hookd/hookd/internal/testkit"
	"github.com/hookd/hookd/internal/verify"
	"github.com/hookd/hookd/internal/webhook"
	"github.com/hookd/hookd/internal/webhook/webhooktest"
)

const (
	host      = "ghcr.io"
	digestOld = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	digestNew = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	cosign    = "sha256-2222222222222222222222222222222222222222222222222222222222222222.sig"
)

var (
	secret    = []byte("current-secret")
	oldSecret = []byte("previous-secret")
)

// intake is hookd's real intake over real HTTP with a real state file; its workers are not
// started, so whatever a delivery queued stays visible in the store.
type intake struct {
	url   string
	store *store.Store
	reg   *prometheus.Registry
	close func()
}

func startIntake(t *testing.T, dir string, maxBody int64) *intake {
	t.Helper()
	e, st, reg := newHandler(t, dir, maxBody)
	srv := httptest.NewServer(e)
	in := &intake{url: srv.URL + "/hooks/ghcr", store: st, reg: reg}
	in.close = func() { srv.Close(); st.Close() }
	t.Cleanup(in.close)
	return in
}

// newHandler is hookd's real intake with a real state file in dir, a catalog of config
// runtimes, and refresh workers not running, so what a delivery queued stays in the store.
func newHandler(tb testing.TB, dir string, maxBody int64) (*echo.Echo, *store.Store, *prometheus.Registry) {
	tb.Helper()
	st, err := store.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	runtimes := []hookd.Runtime{
		{Name: "claude-code", Image: "ghcr.io/molecule-ai/workspace-template-claude-code:latest"},
		{Name: "nested", Image: "ghcr.io/molecule-ai/tools/builder:stable"},
		{Name: "app-rc", Image: "ghcr.io/molecule-ai/app:RC1"},
		{Name: "app", Image: "ghcr.io/molecule-ai/app:latest"},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	cat := catalog.New(runtimes, nil, 0)
	svc := refresh.New(st, cat, nil, nil, 0, refresh.NewMetrics(reg), log)
	v, err := verify.NewGitHub([][]byte{secret, oldSecret})
	if err != nil {
		tb.Fatal(err)
	}
	e := echo.New()
	e.POST("/hooks/ghcr", webhook.New(v, cat, refresh.NewFleet(st, svc), host, maxBody, webhook.NewMetrics(reg), nil, log).Handle)
	return e, st, reg
}

func (in *intake) send(t *testing.T, d webhooktest.Delivery) (int, map[string]any) {
	t.Helper()
	code, answer, err := webhooktest.Send(context.Background(), http.DefaultClient, in.url, d)
	if err != nil {
		t.Fatal(err)
	}
	return code, answer
}

// pending returns the pending job of each runtime that has one.
func (in *intake) pending(t *testing.T) map[string]hookd.Job {
	t.Helper()
	out := map[string]hookd.Job{}
	for _, r := range intakeRuntimes {
		j, ok, err := in.store.Pending(r)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out[r] = j
		}
	}
	return out
}

// intakeRuntimes are the runtimes newHandler configures.
var intakeRuntimes = []string{"claude-code", "nested", "app-rc", "app"}

// push is a package delivery as GitHub sends it for ghcr.io, package_url included.
func push(namespace, name, tag, digest string) []byte {
	return webhooktest.Payload(webhooktest.Push{Namespace: namespace, Name: name, Tag: tag, Digest: digest, Host: host})
}

func TestIntakeRejectsAndIgnoresWithoutQueueing(t *testing.T) {
	in := startIntake(t, t.TempDir(), 8<<10)
	mapped := push("Molecule-AI", "workspace-template-claude-code", "latest", digestNew)
	signed := func(body []byte) webhooktest.Delivery {
		return webhooktest.Delivery{Event: "package", ID: "d-" + fmt.Sprint(len(body)), Body: body, Secret: secret}
	}
	cases := []struct {
		name       string
		delivery   webhooktest.Delivery
		wantCode   int
		wantStatus string // "status" of the answer; "" when an "error" is expected
	}{
		{"no signature", webhooktest.Delivery{Event: "package", ID: "a1", Body: mapped}, 401, ""},
		{"wrong signature", webhooktest.Delivery{Event: "package", ID: "a2", Body: mapped, Signature: verify.Sign(secret, []byte("other"))}, 401, ""},
		{"sha1 only", webhooktest.Delivery{Event: "package", ID: "a3", Body: mapped, SHA1Only: true}, 401, ""},
		{"wrong secret", webhooktest.Delivery{Event: "package", ID: "a4", Body: mapped, Secret: []byte("guess")}, 401, ""},
		{"oversize body", webhooktest.Delivery{Event: "package", ID: "a5", Body: append(mapped, make([]byte, 8<<10)...), Secret: secret}, 413, ""},
		{"truncated json", webhooktest.Delivery{Event: "package", ID: "a6", Body: mapped[:len(mapped)/2], Secret: secret}, 400, ""},
		{"unsupported content type", webhooktest.Delivery{Event: "package", ID: "a7", Body: mapped, Secret: secret, ContentType: "text/plain"}, 415, ""},
		{"unknown event", webhooktest.Delivery{Event: "issues", ID: "a8", Body: []byte(`{"action":"opened"}`), Secret: secret}, 202, "ignored"},
		{"missing event", webhooktest.Delivery{ID: "a9", Body: mapped, Secret: secret}, 400, ""},
		{"missing delivery id", webhooktest.Delivery{Event: "package", Body: mapped, Secret: secret}, 400, ""},
		{"untagged version", signed(push("Molecule-AI", "workspace-template-claude-code", "", digestOld)), 202, "ignored"},
		{"cosign tag", signed(push("Molecule-AI", "workspace-template-claude-code", cosign, digestOld)), 202, "ignored"},
		{"unmapped package", signed(push("Molecule-AI", "something-else", "latest", digestOld)), 202, "ignored"},
		{"deleted action", signed(webhooktest.Payload(webhooktest.Push{Action: "deleted", Namespace: "Molecule-AI", Name: "workspace-template-claude-code", Tag: "latest", Digest: digestOld})), 202, "ignored"},
		{"ping", webhooktest.Delivery{Event: "ping", ID: "a10", Body: []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`), Secret: secret}, 200, "pong"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, answer := in.send(t, c.delivery)
			if code != c.wantCode {
				t.Fatalf("status %d %v, want %d", code, answer, c.wantCode)
			}
			if c.wantStatus == "" {
				if msg, _ := answer["error"].(string); msg == "" {
					t.Fatalf("answer %v has no error reason", answer)
				}
			} else if answer["status"] != c.wantStatus {
				t.Fatalf("answer %v, want status %q", answer, c.wantStatus)
			}
			if p := in.pending(t); len(p) != 0 {
				t.Fatalf("queued %v", p)
			}
		})
	}
	// Nothing bad was recorded as taken: a valid delivery with an id used above still queues.
	code, answer := in.send(t, webhooktest.Delivery{Event: "package", ID: "a1", Body: mapped, Secret: secret})
	if code != 202 || answer["status"] != "queued" {
		t.Fatalf("valid delivery after rejections: %d %v", code, answer)
	}
	if got := count(t, in.reg, "bad_signature"); got != 4 {
		t.Fatalf("hookd_webhook_deliveries_total{outcome=bad_signature} = %v, want 4", got)
	}
}

// count sums hookd_webhook_deliveries_total over events for one outcome.
func count(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	return testkit.Sample(t, reg, "hookd_webhook_deliveries_total", "outcome="+outcome)
}

func TestIntakeQueuesMappedPushes(t *testing.T) {
	in := startIntake(t, t.TempDir(), 1<<20)
	cases := []struct {
		name     string
		delivery webhooktest.Delivery
		runtime  string
	}{
		{"mixed-case owner", webhooktest.Delivery{Event: "package", ID: "q1", Body: push("Molecule-AI", "workspace-template-claude-code", "latest", digestNew), Secret: secret}, "claude-code"},
		{"rotated secret", webhooktest.Delivery{Event: "package", ID: "q2", Body: push("molecule-ai", "tools/builder", "stable", digestNew), Secret: oldSecret}, "nested"},
		{"registry_package event, form encoded", webhooktest.Delivery{Event: "registry_package", ID: "q3", ContentType: "application/x-www-form-urlencoded",
			Body: webhooktest.Form(webhooktest.Payload(webhooktest.Push{Event: "registry_package", Namespace: "MOLECULE-AI", Name: "Workspace-Template-Claude-Code", Tag: "latest", Digest: digestNew, Host: host})), Secret: secret}, "claude-code"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, answer := in.send(t, c.delivery)
			if code != 202 || answer["status"] != "queued" || answer["delivery"] != c.delivery.ID {
				t.Fatalf("answer %d %v, want 202 queued", code, answer)
			}
			if rts, _ := answer["runtimes"].([]any); len(rts) != 1 || rts[0] != c.runtime {
				t.Fatalf("runtimes %v, want [%s]", answer["runtimes"], c.runtime)
			}
			j, ok := in.pending(t)[c.runtime]
			if !ok || j.Hint != digestNew || j.Trigger != hookd.TriggerWebhook {
				t.Fatalf("pending job %+v (ok=%v), want one with hint %s", j, ok, digestNew)
			}
		})
	}
}

func TestIntakeMultiArchBurstIsOneJob(t *testing.T) {
	in := startIntake(t, t.TempDir(), 1<<20)
	// One push of a multi-arch image: the tagged index, then one untagged delivery per manifest.
	burst := []webhooktest.Delivery{
		{Event: "package", ID: "b-index", Body: push("Molecule-AI", "workspace-template-claude-code", "latest", digestNew), Secret: secret},
		{Event: "package", ID: "b-amd64", Body: push("Molecule-AI", "workspace-template-claude-code", "", "sha256:aaaa"), Secret: secret},
		{Event: "package", ID: "b-arm64", Body: push("Molecule-AI", "workspace-template-claude-code", "", "sha256:bbbb"), Secret: secret},
		{Event: "package", ID: "b-attest", Body: push("Molecule-AI", "workspace-template-claude-code", "", "sha256:cccc"), Secret: secret},
		{Event: "package", ID: "b-sig", Body: push("Molecule-AI", "workspace-template-claude-code", cosign, "sha256:dddd"), Secret: secret},
	}
	queued := 0
	for _, d := range burst {
		code, answer := in.send(t, d)
		if code != 202 {
			t.Fatalf("%s: %d %v", d.ID, code, answer)
		}
		if answer["status"] == "queued" {
			queued++
		}
	}
	// A second push of the same tag while the first job is still pending merges into it.
	if code, answer := in.send(t, webhooktest.Delivery{Event: "package", ID: "b-again", Body: push("Molecule-AI", "workspace-template-claude-code", "latest", digestNew), Secret: secret}); code != 202 || answer["status"] != "queued" {
		t.Fatalf("second push: %d %v", code, answer)
	}
	p := in.pending(t)
	j, ok := p["claude-code"]
	if queued != 1 || len(p) != 1 || !ok || j.Requests != 2 || strings.Join(j.Deliveries, ",") != "b-index,b-again" {
		t.Fatalf("queued=%d pending=%+v, want one job carrying b-index and b-again", queued, p)
	}
}

func TestIntakeDuplicateAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	d := webhooktest.Delivery{Event: "package", ID: "same-id", Body: push("molecule-ai", "workspace-template-claude-code", "latest", digestNew), Secret: secret}
	in := startIntake(t, dir, 1<<20)
	if code, answer := in.send(t, d); code != 202 {
		t.Fatalf("first: %d %v", code, answer)
	}
	if code, answer := in.send(t, d); code != 200 || answer["status"] != "duplicate" {
		t.Fatalf("replay: %d %v, want 200 duplicate", code, answer)
	}
	// The job is taken (as a worker would) so that any new queueing would show.
	if _, ok, err := in.store.Take("claude-code"); err != nil || !ok {
		t.Fatalf("take: ok=%v err=%v", ok, err)
	}
	in.close()

	again := startIntake(t, dir, 1<<20)
	if code, answer := again.send(t, d); code != 200 || answer["status"] != "duplicate" {
		t.Fatalf("replay after restart: %d %v, want 200 duplicate", code, answer)
	}
	if p := again.pending(t); len(p) != 0 {
		t.Fatalf("replay queued %v", p)
	}
}
