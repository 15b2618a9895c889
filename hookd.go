// Package hookd holds the words every layer of hookd shares: a Runtime and the Job queued for
// it, the Result a job ends with and its Outcome. Config produces runtimes, the intake, the
// poll and the admin API queue jobs, refresh turns them into results, and the store, the
// status page, notifications and the CLI report them, all in these terms.
package hookd

import (
	"slices"
	"strings"
	"time"
)

// Runtime is a named group of containers that follow one image tag.
type Runtime struct {
	Name  string
	Image string // normalized "host/repo:tag"
	// Recreate is false for a pull-only runtime: the image is pulled and tagged, nothing else.
	Recreate bool
	// A new container must stay up MinUptime and, with a healthcheck, become healthy within
	// HealthTimeout.
	MinUptime     time.Duration
	HealthTimeout time.Duration
	Parallel      int  // containers switched at once
	Cleanup       bool // remove the old image when nothing uses it
	// Order says whether a replacement starts before or after the old container stops.
	Order Order
	// Verify, when set, is what a digest must be signed with before it is pulled.
	Verify *VerifyPolicy
	// Engines names the engines the runtime lives on; empty: every engine.
	Engines []string
}

// DefaultEngine names the one engine of a setup without `engines:` (DOCKER_HOST's).
const DefaultEngine = "local"

// On reports whether the runtime lives on the named engine.
func (r Runtime) On(engine string) bool {
	return len(r.Engines) == 0 || slices.Contains(r.Engines, engine)
}

// VerifyPolicy names what a digest's signature must match: any one key or identity verifies.
type VerifyPolicy struct {
	Keys        []string   // PEM public key files
	Identities  []Identity // keyless (Fulcio) signers
	TrustedRoot string     // Sigstore trusted_root.json naming the CAs keyless certificates chain to
	// Wait is how long a missing signature is looked for again: CI signs after it pushes, and
	// the webhook arrives first.
	Wait time.Duration
}

// Identity is a keyless signer: the OIDC issuer and the certificate's subject, each exact or
// a pattern.
type Identity struct {
	Issuer        string `yaml:"issuer"`
	IssuerRegexp  string `yaml:"issuer_regexp"`
	Subject       string `yaml:"subject"`
	SubjectRegexp string `yaml:"subject_regexp"`
}

// Gate defaults for a runtime that does not set them.
const (
	DefaultMinUptime     = 10 * time.Second
	DefaultHealthTimeout = 60 * time.Second
)

// DefaultRolloutsParallel is how many runtimes roll out at once unless configured.
const DefaultRolloutsParallel = 4

// NewRuntime returns a runtime with every default: recreate, one container at a time, the
// default gate.
func NewRuntime(name, image string) Runtime {
	return Runtime{Name: name, Image: image, Recreate: true, MinUptime: DefaultMinUptime, HealthTimeout: DefaultHealthTimeout, Parallel: 1, Order: OrderStopFirst}
}

// Order is when a replacement starts relative to the old container's stop (Swarm's words).
type Order string

const (
	// OrderStopFirst stops the old container, then starts and gates the replacement.
	OrderStopFirst Order = "stop-first"
	// OrderStartFirst starts and gates the replacement beside the old container, which serves
	// until the replacement has passed; a container two copies of which cannot run at once
	// (host ports, static addresses, shared namespaces) is switched stop-first, and the
	// result's notes say so.
	OrderStartFirst Order = "start-first"
)

// Orders lists every order, for config validation.
func Orders() []Order { return []Order{OrderStopFirst, OrderStartFirst} }

// Repository is the image without its tag ("host/repo").
func (r Runtime) Repository() string { return r.Image[:strings.LastIndex(r.Image, ":")] }

// Tag is the tag the runtime follows.
func (r Runtime) Tag() string { return r.Image[strings.LastIndex(r.Image, ":")+1:] }

// Gate returns how long a new container must stay up and how long it may take to become healthy.
func (r Runtime) Gate() (minUptime, healthTimeout time.Duration) {
	return r.MinUptime, r.HealthTimeout
}

// Trigger says what queued a job, and by which path a digest was learned.
type Trigger string

const (
	TriggerWebhook Trigger = "webhook"
	TriggerPoll    Trigger = "poll"
	TriggerAdmin   Trigger = "admin"
)

// Job is the work queued for one runtime. Several requests for a runtime that arrive while its
// job is still pending merge into that one job.
type Job struct {
	ID         uint64    `json:"id"`
	Runtime    string    `json:"runtime"`
	Engine     string    `json:"engine,omitempty"` // the engine it runs on; empty: the default engine
	Trigger    Trigger   `json:"trigger"`          // what queued it first
	Deliveries []string  `json:"deliveries,omitempty"`
	Hint       string    `json:"hint,omitempty"` // digest named by the last delivery; the registry decides
	Requests   int       `json:"requests"`
	Force      bool      `json:"force,omitempty"`     // try even a digest that failed before
	PullOnly   bool      `json:"pull_only,omitempty"` // every merged request asked for a pull only
	QueuedAt   time.Time `json:"queued_at"`
}

// MaxDeliveriesPerJob bounds the delivery ids a merged job remembers.
const MaxDeliveriesPerJob = 16

// Merge folds a later request for the same runtime into j.
func (j *Job) Merge(n Job) {
	j.Requests += n.Requests
	j.Deliveries = append(j.Deliveries, n.Deliveries...)
	if over := len(j.Deliveries) - MaxDeliveriesPerJob; over > 0 {
		j.Deliveries = j.Deliveries[over:]
	}
	if n.Hint != "" {
		j.Hint = n.Hint
	}
	j.Force = j.Force || n.Force
	j.PullOnly = j.PullOnly && n.PullOnly
}

// Outcome is how a job ended: the values of hookd_refresh_total's result label.
type Outcome string

const (
	OutcomePulled     Outcome = "pulled"      // pull-only runtime now holds the digest
	OutcomeUpToDate   Outcome = "up_to_date"  // nothing to do: the containers already run the digest
	OutcomeRolledOut  Outcome = "rolled_out"  // every container now runs the new digest
	OutcomeRolledBack Outcome = "rolled_back" // the new digest failed; every container is back on the old one
	OutcomeSkipped    Outcome = "skipped"     // the digest failed before and is not retried automatically
	OutcomeFailed     Outcome = "failed"      // could not resolve, pull or finish; nothing is left changed
	OutcomeRefused    Outcome = "refused"     // the digest is not signed as the runtime's policy asks; nothing pulled
)

// Outcomes lists every outcome, for zero metric series and config validation.
func Outcomes() []Outcome {
	return []Outcome{OutcomePulled, OutcomeUpToDate, OutcomeRolledOut, OutcomeRolledBack, OutcomeSkipped, OutcomeFailed, OutcomeRefused}
}

// Words is the outcome as a person reads it ("rolled out").
func (o Outcome) Words() string { return strings.ReplaceAll(string(o), "_", " ") }

// Good reports whether the outcome leaves the runtime where it should be.
func (o Outcome) Good() bool {
	return o == OutcomeRolledOut || o == OutcomeUpToDate || o == OutcomePulled
}

// Result is the outcome of one job.
type Result struct {
	JobID      uint64    `json:"job_id"`
	Runtime    string    `json:"runtime"`
	Engine     string    `json:"engine,omitempty"`
	Trigger    Trigger   `json:"trigger"`
	Outcome    Outcome   `json:"result"`
	Image      string    `json:"image"`
	Digest     string    `json:"digest,omitempty"`
	Pulled     []string  `json:"pulled"`
	Failed     []Failure `json:"failed"`
	Recreated  []string  `json:"recreated"`
	RolledBack []string  `json:"rolled_back,omitempty"`
	// Services are the Swarm services Swarm rolled to the digest in this job (a service Swarm
	// rolled back is in RolledBack).
	Services []string `json:"services,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	// Notes say where the rollout did other than asked, and why (a start-first runtime's
	// container switched stop-first): "NAME: stop-first: WHY".
	Notes    []string  `json:"notes,omitempty"`
	Requests int       `json:"requests"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Engines are each engine's own result, when the runtime lives on several.
	Engines []Result `json:"engines,omitempty"`
}

// Failure names what failed and why.
type Failure struct {
	Ref    string `json:"ref"`
	Reason string `json:"reason"`
}

// ShortDigest is a digest cut to what a person reads ("sha256:" and 12 hex digits).
func ShortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
