package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/config"
)

// Rollout is the JSON body sent to a json endpoint: the job's result, named as hookd's result
// JSON names it. Lists are never null, so a receiver can iterate without checking.
type Rollout struct {
	Runtime    string          `json:"runtime"`
	Engine     string          `json:"engine,omitempty"` // the engine the rollout ran on
	Result     hookd.Outcome   `json:"result"`           // rolled_out, rolled_back, failed (or another job result the endpoint asked for)
	Digest     string          `json:"digest"`
	Image      string          `json:"image"`
	Reason     string          `json:"reason"`
	Recreated  []string        `json:"recreated"`
	RolledBack []string        `json:"rolled_back"`
	Failed     []hookd.Failure `json:"failed"`
	Notes      []string        `json:"notes"` // where a start-first runtime's container switched stop-first, and why
	Started    time.Time       `json:"started"`
	Finished   time.Time       `json:"finished"`
	JobID      uint64          `json:"job_id"`
	Trigger    hookd.Trigger   `json:"trigger"` // webhook, poll or admin
	Hookd      Sender          `json:"hookd"`
}

// Sender names the hookd that sent a notification.
type Sender struct {
	Version string `json:"version,omitempty"`
}

// Slack is the body of a Slack-compatible incoming webhook.
type Slack struct {
	Text string `json:"text"`
}

func (n *Notifier) encode(format string, res hookd.Result) ([]byte, error) {
	var v any
	if format == config.NotifySlack {
		v = Slack{Text: summary(res)}
	} else {
		v = Rollout{
			Runtime: res.Runtime, Engine: res.Engine, Result: res.Outcome, Digest: res.Digest, Image: res.Image, Reason: res.Reason,
			Recreated: orEmpty(res.Recreated), RolledBack: orEmpty(res.RolledBack), Failed: orEmpty(res.Failed),
			Notes: orEmpty(res.Notes), Started: res.Started, Finished: res.Finished, JobID: res.JobID, Trigger: res.Trigger,
			Hookd: Sender{Version: n.version},
		}
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode notification: %w", err)
	}
	return body, nil
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// summary is one line for people (Unicode emoji, which every Slack-compatible receiver shows): what happened to which runtime, on which digest, and why.
func summary(res hookd.Result) string {
	var b strings.Builder
	emoji := map[hookd.Outcome]string{
		hookd.OutcomeRolledOut: "✅", hookd.OutcomeRolledBack: "↩️", hookd.OutcomeFailed: "❌",
		hookd.OutcomePulled: "⬇️", hookd.OutcomeUpToDate: "🆗", hookd.OutcomeSkipped: "⏭️", hookd.OutcomeRefused: "⛔",
	}[res.Outcome]
	if emoji == "" {
		emoji = "❔"
	}
	fmt.Fprintf(&b, "%s hookd: %s", emoji, res.Runtime)
	if res.Engine != "" && res.Engine != hookd.DefaultEngine {
		b.WriteString(" on " + res.Engine)
	}
	b.WriteString(" " + res.Outcome.Words())
	if res.Image != "" {
		b.WriteString(" " + res.Image)
	}
	if res.Digest != "" {
		b.WriteString(" @ " + hookd.ShortDigest(res.Digest))
	}
	var facts []string
	if k := len(res.Recreated); k > 0 {
		facts = append(facts, plural(k, "container recreated", "containers recreated"))
	}
	if k := len(res.RolledBack); k > 0 {
		facts = append(facts, plural(k, "container rolled back", "containers rolled back"))
	}
	if d := res.Finished.Sub(res.Started); d > 0 {
		facts = append(facts, d.Round(time.Second).String())
	}
	if res.Trigger != "" {
		facts = append(facts, "via "+string(res.Trigger))
	}
	if len(facts) > 0 {
		b.WriteString(" (" + strings.Join(facts, ", ") + ")")
	}
	if res.Reason != "" {
		b.WriteString(": " + res.Reason)
	}
	return slackEscape(strings.Join(strings.Fields(b.String()), " "))
}

func plural(k int, one, many string) string {
	if k == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", k, many)
}

// slackEscape escapes the three characters Slack's message format gives meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
