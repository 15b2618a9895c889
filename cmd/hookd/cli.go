package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/store"
	"github.com/hookd/hookd/internal/verify"
)

func checkConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", stderr)
	cfgFile := fs.String("config", "", "config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return errReported
	}
	path := configPath(*cfgFile, getenv)
	if path == "" {
		fmt.Fprintln(stderr, "hookd check-config: --config FILE is required")
		return errReported
	}
	cfg, err := config.Load(path, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "%s is not valid:\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(stderr, "  -", line)
		}
		return errReported
	}
	zero := ""
	if len(cfg.Runtimes) == 0 {
		zero = " (zero-config: containers labelled hookd.enable=true)"
	}
	fmt.Fprintf(stdout, "%s is valid: %d runtime(s)%s, webhook %s, %d secret(s), poll %s\n", path, len(cfg.Runtimes),
		zero, cfg.Webhook.Path, len(cfg.Secrets), cfg.Poll.Interval)
	return nil
}

// readSecret returns the first secret in a secret file (the one a sender signs with).
func readSecret(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return []byte(l), nil
		}
	}
	return nil, fmt.Errorf("secret file %s is empty", path)
}

func sign(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("sign", stderr)
	secretFile := fs.String("secret-file", "", "file holding the webhook secret")
	if err := fs.Parse(args); err != nil {
		return errReported
	}
	if *secretFile == "" || fs.NArg() > 1 {
		fmt.Fprintln(stderr, "usage: hookd sign --secret-file F [FILE]")
		return errReported
	}
	secret, err := readSecret(*secretFile)
	if err != nil {
		return err
	}
	var body []byte
	if fs.NArg() == 1 {
		body, err = os.ReadFile(fs.Arg(0))
	} else {
		body, err = io.ReadAll(stdin)
	}
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	fmt.Fprintln(stdout, verify.Sign(secret, body))
	return nil
}

func send(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("send", stderr)
	target := fs.String("url", "", "hookd's webhook URL, e.g. http://127.0.0.1:8080/hooks/ghcr")
	secretFile := fs.String("secret-file", "", "file holding the webhook secret")
	event := fs.String("event", "package", "X-GitHub-Event")
	delivery := fs.String("delivery", "", "X-GitHub-Delivery (a random id when empty)")
	if err := fs.Parse(args); err != nil {
		return errReported
	}
	if *target == "" || *secretFile == "" || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: hookd send --url URL --secret-file F [--event package] [--delivery ID] FILE")
		return errReported
	}
	secret, err := readSecret(*secretFile)
	if err != nil {
		return err
	}
	body, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("read payload: %w", err)
	}
	if *delivery == "" {
		*delivery = randomID()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/hookd-send")
	req.Header.Set("X-GitHub-Event", *event)
	req.Header.Set("X-GitHub-Delivery", *delivery)
	req.Header.Set("X-Hub-Signature-256", verify.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(stdout, "%s\n%s\n", resp.Status, bytes.TrimSpace(answer))
	if resp.StatusCode >= 300 {
		return errReported
	}
	return nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// refreshCmd runs one rollout through the same queue as the daemon. When a hookd serve holds the
// state file, the request goes to its admin API instead, so the two never run side by side.
func refreshCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("refresh", stderr)
	cfgFile := fs.String("config", "", "config file (YAML)")
	pullOnly := fs.Bool("pull-only", false, "pull the new digest without recreating containers")
	if err := fs.Parse(args); err != nil {
		return errReported
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: hookd refresh [--config FILE] [--pull-only] RUNTIME")
		return errReported
	}
	runtime := fs.Arg(0)
	cfg, err := config.Load(configPath(*cfgFile, getenv), getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := newLogger(cfg, stderr)
	d, err := open(cfg, getenv, log)
	if errors.Is(err, store.ErrLocked) {
		return refreshRemote(ctx, cfg, runtime, *pullOnly, stdout)
	}
	if err != nil {
		return err
	}
	defer d.close()

	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopService := context.WithCancel(gctx)
	// As in serve, notifications outlive the service, then drain for a bounded time.
	notifyCtx, stopNotify := context.WithCancel(context.WithoutCancel(gctx))
	g.Go(func() error { return d.notifier.Run(notifyCtx) })
	g.Go(func() error {
		defer stopNotify()
		return d.service.Run(runCtx)
	})
	var res hookd.Result
	g.Go(func() error {
		defer stopService()
		var err error
		res, err = d.service.Refresh(gctx, runtime, *pullOnly)
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return printResult(stdout, res)
}

func refreshRemote(ctx context.Context, cfg *config.Config, runtime string, pullOnly bool, stdout io.Writer) error {
	if cfg.AdminToken == "" {
		return errors.New("hookd serve holds the state file and has no admin token: set HOOKD_ADMIN_TOKEN(_FILE) to refresh through it")
	}
	q := url.Values{"runtime": {runtime}}
	if pullOnly {
		q.Set("recreate", "false")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, localURL(cfg.Listen)+"/admin/refresh?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("refresh through hookd serve: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("refresh through hookd serve: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("refresh through hookd serve: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	_, err = stdout.Write(append(bytes.TrimSpace(body), '\n'))
	return err
}

func printResult(w io.Writer, res hookd.Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return err
	}
	if res.Outcome == "failed" || res.Outcome == "rolled_back" || res.Outcome == hookd.OutcomeRefused {
		return errReported
	}
	return nil
}

// health asks a running hookd's /healthz; a scratch image has no curl for its HEALTHCHECK.
func health(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlags("health", stderr)
	target := fs.String("url", "", "health URL (default: /healthz on HOOKD_LISTEN, else :8080)")
	if err := fs.Parse(args); err != nil {
		return errReported
	}
	if *target == "" {
		listen := getenv("HOOKD_LISTEN")
		if listen == "" {
			listen = config.DefaultListen
		}
		*target = localURL(listen) + "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %s", *target, resp.Status)
	}
	return nil
}

// localURL is the base URL of a hookd listening on addr, reached from the same host.
func localURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
