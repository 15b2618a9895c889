package statuspage

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/admin"
	"github.com/hookd/hookd/internal/webhook"
)

type statusView struct {
	Now        time.Time
	Refresh    int
	LoggedIn   bool
	Error      string
	Runtimes   []admin.Status
	Deliveries []webhook.Seen
	// Rejected are the last requests refused before their signature was checked; RejectedTotal
	// counts them since start.
	Rejected      []webhook.Seen
	RejectedTotal int
	// Engines is true with several engines: each card names its engine.
	Engines bool
}

// runtimeView carries the page's clock into the runtime template.
type runtimeView struct {
	Now     time.Time
	S       admin.Status
	Engines bool
}

func rt(now time.Time, engines bool, s admin.Status) runtimeView {
	return runtimeView{Now: now, S: s, Engines: engines}
}

type loginView struct{ Message string }

type when struct {
	Rel, Abs, ISO string
}

// at describes t for a person: how long ago, and the UTC time it was.
func at(now, t time.Time) when {
	if t.IsZero() {
		return when{}
	}
	return when{Rel: ago(now.Sub(t)), Abs: t.UTC().Format("2006-01-02 15:04:05 UTC"), ISO: t.UTC().Format(time.RFC3339)}
}

func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "just now" // clocks of a few ms apart
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min ago", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}

func took(start, end time.Time) string {
	if start.IsZero() || end.IsZero() {
		return ""
	}
	d := end.Sub(start)
	if d < time.Minute {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%d min %d s", int(d/time.Minute), int(d%time.Minute/time.Second))
}

// short keeps a digest recognisable in little room: sha256:abcdef123456….
func short(digest string) string {
	if digest == "" {
		return "—"
	}
	if s := hookd.ShortDigest(digest); s != digest {
		return s + "…"
	}
	return digest
}

// outcomeText and outcomeClass serve job outcomes and delivery outcomes alike.
func outcomeText(v any) string {
	o := fmt.Sprint(v)
	switch hookd.Outcome(o) {
	case hookd.OutcomeSkipped:
		return "skipped: failed before"
	case hookd.OutcomeRefused:
		return "refused: signature"
	}
	return hookd.Outcome(o).Words()
}

func outcomeClass(v any) string {
	o := fmt.Sprint(v)
	switch {
	case hookd.Outcome(o).Good(), o == "queued", o == "pong":
		return "ok"
	case hookd.Outcome(o) == hookd.OutcomeRolledBack, hookd.Outcome(o) == hookd.OutcomeSkipped, o == "duplicate", o == "ignored":
		return "warn"
	}
	return "bad"
}

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"at": at, "took": took, "short": short, "outcomeText": outcomeText, "outcomeClass": outcomeClass,
	"join": strings.Join, "rt": rt,
}).Parse(pageTemplates))

const (
	statusTemplate = "status"
	loginTemplate  = "login"
)

const pageTemplates = `
{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
{{if .}}<meta http-equiv="refresh" content="{{.}}">{{end}}
<title>hookd status</title>
<style>
:root{color-scheme:light dark;--fg:#1d232a;--muted:#5b6672;--bg:#f5f6f8;--card:#fff;--line:#dde1e6;--ok:#17693a;--okbg:#dff3e6;--warn:#7a5300;--warnbg:#fdf0cf;--bad:#9b1c1c;--badbg:#fbe1e1}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ed;--muted:#a0aab5;--bg:#15181c;--card:#1e2228;--line:#343a42;--ok:#7fdca0;--okbg:#173824;--warn:#f2c66d;--warnbg:#3d300f;--bad:#f59a9a;--badbg:#431a1a}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:62rem;margin:0 auto;padding:.75rem}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.25rem 1rem;margin-bottom:.5rem}
h1{font-size:1.3rem;margin:0}
h2{font-size:1.1rem;margin:1.25rem 0 .5rem}
h3{font-size:1.05rem;margin:0;overflow-wrap:anywhere}
.muted,.abs{color:var(--muted);font-size:.85em}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.75rem;margin:0 0 .75rem}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:.25rem .6rem;margin-bottom:.4rem}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem .75rem;margin:0}
dt{color:var(--muted)}
dd{margin:0;min-width:0;overflow-wrap:anywhere}
code{font:.88em/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.85em;font-weight:600;white-space:nowrap}
.ok{color:var(--ok);background:var(--okbg)}.warn{color:var(--warn);background:var(--warnbg)}.bad{color:var(--bad);background:var(--badbg)}
ol{list-style:none;margin:0;padding:0}
.delivery .id{display:block;margin:.15rem 0}
.reason{margin:.35rem 0 0;overflow-wrap:anywhere}
ul.plain{margin:0;padding-left:1.1rem}
form.inline{display:inline;margin:0}
button{font:inherit;padding:.45rem .9rem;border-radius:6px;border:1px solid var(--line);background:var(--card);color:var(--fg);cursor:pointer}
label{display:block;margin:.5rem 0 .25rem;font-weight:600}
input[type=password]{width:100%;font:inherit;padding:.5rem;border-radius:6px;border:1px solid var(--line);background:var(--bg);color:var(--fg)}
.login{max-width:24rem;margin:3rem auto}
.error{border-color:var(--bad)}
</style>
</head>{{end}}

{{define "when"}}{{if .ISO}}<time datetime="{{.ISO}}">{{.Rel}}</time> <span class="abs">{{.Abs}}</span>{{else}}—{{end}}{{end}}

{{define "digest"}}{{if .}}<code title="{{.}}">{{short .}}</code>{{else}}—{{end}}{{end}}

{{define "login"}}{{template "head" 0}}
<body>
<main class="login" data-page="login">
<div class="card">
<h1>hookd status</h1>
<p class="muted">Enter the admin token to see the runtimes and deliveries.</p>
{{if .Message}}<p class="badge bad" role="alert">{{.Message}}</p>{{end}}
<form method="post" action="/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<p><button type="submit">Log in</button></p>
</form>
</div>
</main>
</body>
</html>{{end}}

{{define "status"}}{{template "head" .Refresh}}
<body>
<main data-page="status">
<header>
<h1>hookd status</h1>
<span class="muted">as of <time datetime="{{(at .Now .Now).ISO}}">{{(at .Now .Now).Abs}}</time> · reloads every {{.Refresh}} s</span>
{{if .LoggedIn}}<form class="inline" method="post" action="/logout"><button type="submit">Log out</button></form>{{end}}
</header>
{{if .Error}}<p class="card error" role="alert">{{.Error}}</p>{{end}}

<section id="runtimes">
<h2>Runtimes</h2>
{{range .Runtimes}}{{template "runtime" (rt $.Now $.Engines .)}}{{else}}<p class="card muted">No runtimes: none is configured and no running container is labelled hookd.enable=true.</p>{{end}}
</section>

<section id="deliveries">
<h2>Last deliveries</h2>
{{if .Deliveries}}<ol>
{{range .Deliveries}}<li class="card delivery">
<div class="top"><span class="badge {{outcomeClass .Outcome}}">{{.Outcome}}</span><span>{{.Code}}</span><span>{{if .Event}}{{.Event}}{{else}}no event{{end}}</span><span>{{template "when" (at $.Now .At)}}</span></div>
<code class="id">{{if .ID}}{{.ID}}{{else}}no delivery id{{end}}</code>
{{if .Runtimes}}<div><span class="muted">runtimes</span> {{join .Runtimes ", "}}</div>{{end}}
{{if .Detail}}<p class="reason">{{.Detail}}</p>{{end}}
</li>
{{end}}</ol>{{else}}<p class="card muted">No deliveries since hookd started; this list is kept in memory only.</p>{{end}}
</section>
{{if .RejectedTotal}}
<section id="rejected">
<h2>Rejected requests</h2>
<p class="muted">{{.RejectedTotal}} since hookd started: refused before a valid signature was seen (wrong secret, too large, intake busy). The last ones:</p>
<ol>
{{range .Rejected}}<li class="card delivery">
<div class="top"><span class="badge bad">{{.Outcome}}</span><span>{{.Code}}</span><span>{{if .Event}}{{.Event}}{{else}}no event{{end}}</span><span>{{template "when" (at $.Now .At)}}</span></div>
{{if .ID}}<code class="id">{{.ID}}</code>{{end}}
{{if .Detail}}<p class="reason">{{.Detail}}</p>{{end}}
</li>
{{end}}</ol>
</section>
{{end}}
</main>
</body>
</html>{{end}}

{{define "runtime"}}{{$s := .S}}<article class="card runtime" data-runtime="{{$s.Name}}" data-engine="{{$s.Engine}}">
<div class="top"><h3>{{$s.Name}}{{if .Engines}} <span class="muted">on {{$s.Engine}}</span>{{end}}</h3>
{{if $s.Behind}}<span class="badge warn">behind the registry</span>{{else if $s.DigestRunning}}<span class="badge ok">up to date</span>{{else}}<span class="badge warn">no digest known yet</span>{{end}}
{{if not $s.Recreate}}<span class="badge warn">pull only</span>{{end}}
</div>
<dl>
<dt>Image</dt><dd><code>{{$s.Image}}</code></dd>
<dt>At the registry</dt><dd>{{template "digest" $s.DigestSeen}}{{with $s.Record.SeenVia}} <span class="muted">via {{.}}</span>{{end}}{{if not $s.Record.SeenAt.IsZero}}<br>{{template "when" (at .Now $s.Record.SeenAt)}}{{end}}</dd>
<dt>Running</dt><dd>{{template "digest" $s.DigestRunning}}{{if not $s.Record.RunningAt.IsZero}}<br>{{template "when" (at .Now $s.Record.RunningAt)}}{{end}}</dd>
{{if $s.Record.FailedDigest}}<dt>Failed digest</dt><dd>{{template "digest" $s.Record.FailedDigest}} <span class="muted">not retried automatically</span>{{if $s.Record.FailedReason}}<p class="reason">{{$s.Record.FailedReason}}</p>{{end}}</dd>{{end}}
<dt>Last rollout</dt><dd>{{with $s.LastRollout}}<span class="badge {{outcomeClass .Outcome}}">{{outcomeText .Outcome}}</span>
{{template "when" (at $.Now .Finished)}}{{with took .Started .Finished}} · took {{.}}{{end}}
<br><span class="muted">job {{.JobID}} · {{.Trigger}}{{if gt .Requests 1}} · {{.Requests}} requests{{end}}</span>{{if .Digest}} · {{template "digest" .Digest}}{{end}}
{{if .Recreated}}<br>recreated {{join .Recreated ", "}}{{end}}
{{if .RolledBack}}<br>rolled back {{join .RolledBack ", "}}{{end}}
{{if .Services}}<br>services {{join .Services ", "}}{{end}}
{{if .Notes}}<ul class="plain">{{range .Notes}}<li class="muted">{{.}}</li>{{end}}</ul>{{end}}
{{if .Reason}}<p class="reason">{{.Reason}}</p>{{end}}
{{if .Failed}}<ul class="plain">{{range .Failed}}<li><code>{{.Ref}}</code>: {{.Reason}}</li>{{end}}</ul>{{end}}
{{else}}<span class="muted">none yet</span>{{end}}</dd>
{{if or $s.Containers $s.ContainersError}}<dt>Containers</dt><dd>{{with $s.ContainersError}}<p class="reason">{{.}}</p>{{end}}{{if $s.Containers}}<ul class="plain">{{range $s.Containers}}<li><code>{{.Name}}</code> · {{.State}} · {{template "digest" .Digest}}{{if .Dependents}}<br><span class="muted">shared by</span> {{join .Dependents ", "}}{{end}}</li>{{end}}</ul>{{end}}</dd>{{end}}
{{if or $s.Services $s.ServicesError}}<dt>Services</dt><dd>{{with $s.ServicesError}}<p class="reason">{{.}}</p>{{end}}{{if $s.Services}}<ul class="plain">{{range $s.Services}}<li><code>{{.Name}}</code> · {{template "digest" .Digest}} · {{.TasksOn}} of {{.Tasks}} tasks on it{{with .UpdateState}} · {{.}}{{end}}</li>{{end}}</ul>{{end}}</dd>{{end}}
<dt>Pending</dt><dd>{{with $s.Pending}}job {{.ID}} · {{.Trigger}} · queued {{template "when" (at $.Now .QueuedAt)}}
{{if gt .Requests 1}}<br>{{.Requests}} requests merged{{end}}
{{if .Hint}}<br>named {{template "digest" .Hint}}{{end}}
{{if .Force}}<br><span class="muted">retries a failed digest</span>{{end}}{{if .PullOnly}}<br><span class="muted">pull only</span>{{end}}
{{if .Deliveries}}<br><span class="muted">deliveries</span> {{range $i, $d := .Deliveries}}{{if $i}}, {{end}}<code>{{$d}}</code>{{end}}{{end}}
{{else}}<span class="muted">nothing queued</span>{{end}}</dd>
</dl>
</article>
{{end}}
`
