// Package config reads hookd's YAML file and environment into one validated Config.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"go.yaml.in/yaml/v3"

	"github.com/hookd/hookd"
)

// Config is the whole configuration after file, environment and defaults are applied.
type Config struct {
	Listen       string        `yaml:"listen"`
	StateDir     string        `yaml:"state_dir"`
	RegistryHost string        `yaml:"registry_host"`
	Webhook      Webhook       `yaml:"webhook"`
	Admin        Admin         `yaml:"admin"`
	Poll         Poll          `yaml:"poll"`
	Log          Log           `yaml:"log"`
	Rollouts     Rollouts      `yaml:"rollouts"`
	RuntimeSpecs []RuntimeSpec `yaml:"runtimes"`
	Notify       []Notify      `yaml:"notify"`
	Verify       *VerifySpec   `yaml:"verify"`  // signature policy of every runtime without its own
	Engines      []Engine      `yaml:"engines"` // none: one engine named local, from DOCKER_HOST

	// Runtimes are the configured runtimes with their defaults applied, in file order.
	Runtimes []hookd.Runtime `yaml:"-"`

	// Secrets are the webhook secrets read from the environment and secret files.
	Secrets [][]byte `yaml:"-"`
	// AdminToken is empty when the admin API is off.
	AdminToken string `yaml:"-"`
}

type Webhook struct {
	Path         string   `yaml:"path"`
	SecretFiles  []string `yaml:"secret_files"`
	MaxBodyBytes int64    `yaml:"max_body_bytes"`
}

type Admin struct {
	TokenFile string `yaml:"token_file"`
	// HTTPS says hookd is reached over https (a TLS-terminating proxy): session cookies are
	// Secure whatever X-Forwarded-Proto says.
	HTTPS bool `yaml:"https"`
}

type Poll struct {
	Interval Duration `yaml:"interval"`
	// Pace is the least time between two requests to one registry host, for polls and rollouts.
	Pace Duration `yaml:"pace"`
}

// Rollouts bounds the work of all runtimes together.
type Rollouts struct {
	// Parallel is how many runtimes are rolled out at once; the others wait their turn.
	Parallel int `yaml:"parallel"`
}

type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Duration is a time.Duration written in YAML as Go writes durations ("90s", "1h"); a bare 0
// is accepted too, since "interval: 0" is how people turn a period off.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write it with a unit: 500ms, 30s, 5m, 1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// RuntimeSpec is a runtime as written in the file; Load turns each into a hookd.Runtime.
type RuntimeSpec struct {
	Name          string      `yaml:"name"`
	Image         string      `yaml:"image"`
	Recreate      *bool       `yaml:"recreate"`
	MinUptime     *Duration   `yaml:"min_uptime"`     // nil: DefaultMinUptime; 0 is allowed (no wait)
	HealthTimeout *Duration   `yaml:"health_timeout"` // nil: DefaultHealthTimeout
	Parallel      int         `yaml:"parallel"`
	Cleanup       bool        `yaml:"cleanup"`
	Order         string      `yaml:"order"` // "": hookd.OrderStopFirst
	Verify        *VerifySpec `yaml:"verify"`
	Engines       []string    `yaml:"engines"` // none: every engine
}

// Notify is an endpoint told of rollout results.
type Notify struct {
	Name string `yaml:"name"`
	// URL may itself be a secret (a Slack webhook's is): it never goes into a log, error or metric.
	URL        string          `yaml:"url"`
	URLFile    string          `yaml:"url_file"`
	Format     string          `yaml:"format"` // json (default) or slack
	SecretFile string          `yaml:"secret_file"`
	Results    []hookd.Outcome `yaml:"results"`

	// Secret signs the body when set (first line of SecretFile).
	Secret []byte `yaml:"-"`
}

// Notification formats.
const (
	NotifyJSON  = "json"
	NotifySlack = "slack"
)

// DefaultNotifyResults are the results an endpoint hears of unless it says otherwise.
func DefaultNotifyResults() []hookd.Outcome {
	return []hookd.Outcome{hookd.OutcomeRolledOut, hookd.OutcomeRolledBack, hookd.OutcomeFailed, hookd.OutcomeRefused}
}

// runtime applies the defaults to what the file says.
func (r RuntimeSpec) runtime() hookd.Runtime {
	rt := hookd.NewRuntime(r.Name, r.Image)
	if img, err := NormalizeImage(r.Image); err == nil {
		rt.Image = img
	}
	if r.Recreate != nil {
		rt.Recreate = *r.Recreate
	}
	if r.MinUptime != nil {
		rt.MinUptime = r.MinUptime.D()
	}
	if r.HealthTimeout != nil {
		rt.HealthTimeout = r.HealthTimeout.D()
	}
	if r.Parallel > 0 {
		rt.Parallel = r.Parallel
	}
	rt.Cleanup = r.Cleanup
	rt.Engines = r.Engines
	if r.Order != "" {
		rt.Order = hookd.Order(r.Order)
	}
	return rt
}

const (
	DefaultListen       = ":8080"
	DefaultStateDir     = "./data"
	DefaultRegistryHost = "ghcr.io"
	DefaultWebhookPath  = "/hooks/ghcr"
	DefaultMaxBodyBytes = 1 << 20
	DefaultPollInterval = Duration(time.Hour)
	DefaultPollPace     = Duration(50 * time.Millisecond)
	MinAdminTokenLength = 16
)

// Load reads the file at path (none when empty), applies the environment through getenv and
// the defaults, and validates. Every problem found is reported in the one returned error.
func Load(path string, getenv func(string) string) (*Config, error) {
	// Zero is meaningful for the poll interval (off), so its default is set before the file and env.
	c := &Config{Poll: Poll{Interval: DefaultPollInterval, Pace: DefaultPollPace}}
	var problems []error
	if path != "" {
		if err := decodeFile(path, c); err != nil {
			return nil, err
		}
	}
	problems = append(problems, c.applyEnv(getenv)...)
	c.applyDefaults()
	problems = append(problems, c.loadSecrets(getenv)...)
	problems = append(problems, c.validate()...)
	problems = append(problems, c.validateVerify()...)
	problems = append(problems, c.validateEngines()...)
	problems = append(problems, c.loadNotify()...)
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return c, nil
}

func decodeFile(path string, c *Config) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	// A secret file given as the config by mistake must not reach the terminal or a log: yaml
	// quotes the values it cannot use, so the file's kind is checked first, and quoted values
	// are cut from its errors.
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("config %s: %s", path, withheld(err))
	}
	if len(doc.Content) > 0 && doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: not a YAML mapping of settings (is it a secret file?)", path)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %s", path, withheld(err))
	}
	return nil
}

// yamlQuoted is how yaml quotes a value of the file in an error: "cannot unmarshal !!str `…`".
var yamlQuoted = regexp.MustCompile("`[^`]*`")

func withheld(err error) string {
	return yamlQuoted.ReplaceAllString(err.Error(), "(value withheld)")
}

func (c *Config) applyEnv(getenv func(string) string) []error {
	var problems []error
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	set(&c.Listen, "HOOKD_LISTEN")
	set(&c.StateDir, "HOOKD_STATE_DIR")
	set(&c.RegistryHost, "HOOKD_REGISTRY_HOST")
	set(&c.Log.Level, "HOOKD_LOG_LEVEL")
	set(&c.Log.Format, "HOOKD_LOG_FORMAT")
	set(&c.Admin.TokenFile, "HOOKD_ADMIN_TOKEN_FILE")
	if f := getenv("HOOKD_WEBHOOK_SECRET_FILE"); f != "" {
		c.Webhook.SecretFiles = []string{f}
	}
	if v := getenv("HOOKD_POLL_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("HOOKD_POLL_INTERVAL: %w", err))
		}
		c.Poll.Interval = Duration(d)
	}
	return problems
}

func (c *Config) applyDefaults() {
	def := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	def(&c.Listen, DefaultListen)
	def(&c.StateDir, DefaultStateDir)
	def(&c.RegistryHost, DefaultRegistryHost)
	def(&c.Webhook.Path, DefaultWebhookPath)
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "json")
	c.RegistryHost = strings.ToLower(c.RegistryHost)
	c.Log.Level, c.Log.Format = strings.ToLower(c.Log.Level), strings.ToLower(c.Log.Format)
	if c.Rollouts.Parallel == 0 {
		c.Rollouts.Parallel = hookd.DefaultRolloutsParallel
	}
	if c.Webhook.MaxBodyBytes == 0 {
		c.Webhook.MaxBodyBytes = DefaultMaxBodyBytes
	}
	c.applyEngineDefaults()
	c.Runtimes = make([]hookd.Runtime, len(c.RuntimeSpecs))
	for i, r := range c.RuntimeSpecs {
		c.Runtimes[i] = r.runtime()
		c.Runtimes[i].Verify = c.verifyFor(r)
	}
}

func (c *Config) loadSecrets(getenv func(string) string) []error {
	var problems []error
	if s := getenv("HOOKD_WEBHOOK_SECRET"); s != "" {
		c.Secrets = append(c.Secrets, []byte(s))
	}
	for _, f := range c.Webhook.SecretFiles {
		lines, err := readLines(f)
		if err != nil {
			problems = append(problems, fmt.Errorf("webhook secret file: %w", err))
			continue
		}
		for _, l := range lines {
			c.Secrets = append(c.Secrets, []byte(l))
		}
	}
	if len(c.Secrets) == 0 && len(problems) == 0 {
		problems = append(problems, errors.New("no webhook secret: set HOOKD_WEBHOOK_SECRET, HOOKD_WEBHOOK_SECRET_FILE or webhook.secret_files"))
	}
	c.AdminToken = getenv("HOOKD_ADMIN_TOKEN")
	if c.AdminToken == "" && c.Admin.TokenFile != "" {
		lines, err := readLines(c.Admin.TokenFile)
		switch {
		case err != nil:
			problems = append(problems, fmt.Errorf("admin token file: %w", err))
		case len(lines) == 0:
			problems = append(problems, fmt.Errorf("admin token file %s is empty", c.Admin.TokenFile))
		default:
			c.AdminToken = lines[0]
		}
	}
	// The token opens the admin API and the status page; a short one is guessed even throttled.
	if c.AdminToken != "" && len(c.AdminToken) < MinAdminTokenLength {
		problems = append(problems, fmt.Errorf("admin token is too short: at least %d characters (e.g. openssl rand -hex 32)", MinAdminTokenLength))
	}
	return problems
}

// readLines returns the non-empty lines of a secret file, trimmed; the contents never reach an error.
func readLines(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

func (c *Config) validate() []error {
	var problems []error
	bad := func(format string, a ...any) { problems = append(problems, fmt.Errorf(format, a...)) }
	if !strings.HasPrefix(c.Webhook.Path, "/") {
		bad("webhook.path %q must start with /", c.Webhook.Path)
	}
	if c.Webhook.MaxBodyBytes < 0 {
		bad("webhook.max_body_bytes must be positive")
	}
	if c.Rollouts.Parallel < 0 {
		bad("rollouts.parallel must be at least 1")
	}
	if c.Poll.Interval < 0 || c.Poll.Pace < 0 {
		bad("poll.interval and poll.pace must not be negative")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log level %q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log format %q: want json or text", c.Log.Format)
	}
	names := map[string]bool{}
	images := map[string]string{}
	for i, spec := range c.RuntimeSpecs {
		r := c.Runtimes[i]
		where := fmt.Sprintf("runtimes[%d]", i)
		if r.Name != "" {
			where = fmt.Sprintf("runtime %q", r.Name)
		}
		switch {
		case r.Name == "":
			bad("%s: name is required", where)
		case names[r.Name]:
			bad("%s: name used twice", where)
		}
		names[r.Name] = true
		if spec.Image == "" {
			bad("%s: image is required", where)
		} else if _, err := NormalizeImage(spec.Image); err != nil {
			bad("%s: %v", where, err)
		} else if other, ok := images[r.Image]; ok {
			bad("%s: image %s is already followed by runtime %q", where, r.Image, other)
		} else {
			images[r.Image] = r.Name
		}
		if r.MinUptime < 0 || r.HealthTimeout < 0 {
			bad("%s: min_uptime and health_timeout must not be negative", where)
		}
		if spec.Parallel < 0 {
			bad("%s: parallel must be at least 1", where)
		}
		if o := hookd.Order(spec.Order); spec.Order != "" && !slices.Contains(hookd.Orders(), o) {
			bad("%s: order %q is not one of %s, %s", where, spec.Order, hookd.OrderStopFirst, hookd.OrderStartFirst)
		}
	}
	return problems
}

// NormalizeImage returns the canonical "host/repo:tag" form of an image reference: host and
// repository lowercased, the tag as spelled (OCI tags are case-sensitive: RC1 is not rc1), tag
// defaulting to latest. A reference pinned to a digest has nothing to follow and is refused.
func NormalizeImage(image string) (string, error) {
	repo, spelled := image, ""
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") && !strings.Contains(image, "@") {
		repo, spelled = image[:i], image[i:]
	}
	ref, err := name.ParseReference(strings.ToLower(repo)+spelled, name.WithDefaultTag("latest"))
	if err != nil {
		return "", fmt.Errorf("image %q: %w", image, err)
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		return "", fmt.Errorf("image %q is pinned to a digest; hookd follows tags", image)
	}
	return tag.Context().Name() + ":" + tag.TagStr(), nil
}

// loadNotify applies the notify endpoints' defaults, reads their files and validates them.
// A URL's value never reaches a problem: it may be the secret.
func (c *Config) loadNotify() []error {
	var problems []error
	names := map[string]bool{}
	for i := range c.Notify {
		n := &c.Notify[i]
		where := fmt.Sprintf("notify[%d]", i)
		bad := func(format string, a ...any) {
			problems = append(problems, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, a...)))
		}
		switch {
		case n.Name == "":
			bad("name is required")
		case names[n.Name]:
			bad("name %q used twice", n.Name)
		default:
			where = fmt.Sprintf("notify %q", n.Name)
		}
		names[n.Name] = true
		if n.Format == "" {
			n.Format = NotifyJSON
		}
		if n.Format != NotifyJSON && n.Format != NotifySlack {
			bad("format %q: want json or slack", n.Format)
		}
		if len(n.Results) == 0 {
			n.Results = DefaultNotifyResults()
		}
		for _, r := range n.Results {
			if !slices.Contains(hookd.Outcomes(), r) {
				bad("result %q: want some of %s", r, outcomeList())
			}
		}
		switch {
		case n.URL != "" && n.URLFile != "":
			bad("set url or url_file, not both")
		case n.URLFile != "":
			lines, err := readLines(n.URLFile)
			switch {
			case err != nil:
				bad("url_file: %v", err)
			case len(lines) == 0:
				bad("url_file %s is empty", n.URLFile)
			default:
				n.URL = lines[0]
			}
			if n.URL != "" {
				if err := checkNotifyURL(n.URL); err != nil {
					bad("url_file %s: %v", n.URLFile, err)
				}
			}
		case n.URL == "":
			bad("url or url_file is required")
		default:
			if err := checkNotifyURL(n.URL); err != nil {
				bad("url: %v", err)
			}
		}
		if n.SecretFile != "" {
			lines, err := readLines(n.SecretFile)
			switch {
			case err != nil:
				bad("secret_file: %v", err)
			case len(lines) == 0:
				bad("secret_file %s is empty", n.SecretFile)
			default:
				n.Secret = []byte(lines[0])
			}
		}
	}
	return problems
}

// checkNotifyURL says what is wrong with u without quoting it.
func checkNotifyURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if p.Host == "" {
		return errors.New("host is missing")
	}
	return nil
}

func outcomeList() string {
	var names []string
	for _, o := range hookd.Outcomes() {
		names = append(names, string(o))
	}
	return strings.Join(names, ", ")
}
