package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"

	"github.com/hookd/hookd"
)

// Engine is one Docker engine hookd drives.
type Engine struct {
	Name string `yaml:"name"`
	// Host is what DOCKER_HOST accepts: unix://, tcp:// (with tls) or ssh://user@host (through
	// the docker CLI on this machine); empty: DOCKER_HOST and its companions.
	Host string     `yaml:"host"`
	TLS  *EngineTLS `yaml:"tls"`
}

// EngineTLS are the files of a tcp:// engine's mutual TLS, as `docker --tlsverify` takes them.
type EngineTLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// engineName keeps engine names fit for a metric label and a URL.
var engineName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// applyEngineDefaults gives a config without engines the one engine DOCKER_HOST names.
func (c *Config) applyEngineDefaults() {
	if len(c.Engines) == 0 {
		c.Engines = []Engine{{Name: hookd.DefaultEngine}}
	}
}

func (c *Config) validateEngines() []error {
	var problems []error
	bad := func(format string, a ...any) { problems = append(problems, fmt.Errorf(format, a...)) }
	names := map[string]bool{}
	for i, e := range c.Engines {
		where := fmt.Sprintf("engines[%d]", i)
		switch {
		case e.Name == "":
			bad("%s: name is required", where)
		case !engineName.MatchString(e.Name):
			bad("%s: name %q: letters, digits, '.', '_' and '-' only, at most 63", where, e.Name)
		case names[e.Name]:
			bad("%s: name %q used twice", where, e.Name)
		default:
			where = fmt.Sprintf("engine %q", e.Name)
		}
		names[e.Name] = true
		if e.Host == "" {
			if len(c.Engines) > 1 {
				bad("%s: host is required when there are several engines", where)
			}
		} else if u, err := url.Parse(e.Host); err != nil || u.Scheme == "" {
			bad("%s: host %q: want unix:///path, tcp://host:port or ssh://user@host", where, e.Host)
		} else {
			switch u.Scheme {
			case "unix":
			case "tcp", "ssh":
				if u.Host == "" {
					bad("%s: host %q names no machine", where, e.Host)
				}
			default:
				bad("%s: host %q: scheme %s: want unix, tcp or ssh", where, e.Host, u.Scheme)
			}
			if e.TLS != nil && u.Scheme != "tcp" {
				bad("%s: tls is for tcp:// hosts only", where)
			}
		}
		if t := e.TLS; t != nil {
			for _, f := range []struct{ key, path string }{{"ca", t.CA}, {"cert", t.Cert}, {"key", t.Key}} {
				if f.path == "" {
					bad("%s: tls.%s is required", where, f.key)
				} else if _, err := os.Stat(f.path); err != nil {
					bad("%s: tls.%s: %v", where, f.key, err)
				}
			}
		}
	}
	for i, r := range c.Runtimes {
		for _, e := range r.Engines {
			if !names[e] {
				bad("runtime %q: engine %q is not in engines", c.RuntimeSpecs[i].Name, e)
			}
		}
	}
	return problems
}

// EngineNames lists the engines in file order.
func (c *Config) EngineNames() []string {
	out := make([]string, len(c.Engines))
	for i, e := range c.Engines {
		out[i] = e.Name
	}
	return out
}

// RuntimesOn returns the runtimes that live on the named engine.
func (c *Config) RuntimesOn(engine string) []hookd.Runtime {
	var out []hookd.Runtime
	for _, r := range c.Runtimes {
		if r.On(engine) {
			out = append(out, r)
		}
	}
	return out
}
