// Command testapp is the program inside the images that hookd's tests push and
// deploy. It is static and stdlib-only so the image needs nothing but this
// binary; its subcommands stand in for the tools (curl, cat, …) the image lacks.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve()
	case "probe":
		if len(args) != 1 {
			return errors.New("usage: probe URL")
		}
		return probe(args[0])
	case "lookup":
		if len(args) != 1 {
			return errors.New("usage: lookup HOST")
		}
		addrs, err := net.LookupHost(args[0])
		if err != nil {
			return err
		}
		slices.Sort(addrs)
		_, err = fmt.Println(strings.Join(addrs, " "))
		return err
	case "health":
		return get(healthURL(), io.Discard)
	case "get":
		if len(args) != 1 {
			return errors.New("usage: get URL")
		}
		return get(args[0], os.Stdout)
	case "write":
		if len(args) != 2 {
			return errors.New("usage: write FILE CONTENT")
		}
		if err := os.MkdirAll(filepath.Dir(args[0]), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", args[0], err)
		}
		return os.WriteFile(args[0], []byte(args[1]), 0o644)
	case "read":
		if len(args) != 1 {
			return errors.New("usage: read FILE")
		}
		b, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(b)
		return err
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func healthURL() string {
	port := "8080"
	if _, p, err := net.SplitHostPort(envOr("APP_ADDR", ":8080")); err == nil && p != "" {
		port = p
	}
	return "http://127.0.0.1:" + port + "/healthz"
}

func get(url string, out io.Writer) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: status %d", url, resp.StatusCode)
	}
	return nil
}

func serve() error {
	mode := envOr("APP_MODE", "ok")
	if mode == "exit" {
		return errors.New("APP_MODE=exit")
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv("APP_VERSION"))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if mode == "unhealthy" {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.URL.Query().Get("k")))
	})
	srv := &http.Server{Addr: envOr("APP_ADDR", ":8080"), Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	// As PID 1 in a container we get no default SIGTERM handling; without
	// this, `docker stop` would wait its full timeout before SIGKILL.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	var exitAfter <-chan time.Time
	if mode == "exit-after" {
		d, err := time.ParseDuration(envOr("APP_EXIT_AFTER", "3s"))
		if err != nil {
			return fmt.Errorf("APP_EXIT_AFTER: %w", err)
		}
		exitAfter = time.After(d)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-exitAfter:
		return errors.New("APP_MODE=exit-after: exiting")
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	}
}

// probe requests url every 20 ms, each on a new connection (so each request resolves the name
// afresh, as a client without keep-alive does), and answers GET /counts on APP_ADDR (default
// :8090) with "requests failures slow last-error": what a client of a service sees during a
// rollout. It is a client that gives a request 10 s and a connect 5 s in all, split between the
// addresses the name resolves to (Go's dialer then gives each of two addresses 2.5 s before it
// tries the next). A request fails on an error, a status other than 200 or its timeout; one that
// succeeds after more than half a second is slow. Each slow or failed one is logged with its
// trace (addresses resolved, dials).
func probe(url string) error {
	var mu sync.Mutex
	var requests, failures, slow int
	var lastErr string
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
	go func() {
		for range time.Tick(20 * time.Millisecond) {
			began := time.Now()
			trace, err := probeOnce(client, url)
			mu.Lock()
			requests++
			switch {
			case err != nil:
				failures++
				lastErr = err.Error()
				fmt.Printf("%s failed after %s: %v [%s]\n", began.Format(time.RFC3339Nano), time.Since(began), err, trace)
			case time.Since(began) > 500*time.Millisecond:
				slow++
				fmt.Printf("%s slow: %s [%s]\n", began.Format(time.RFC3339Nano), time.Since(began), trace)
			}
			mu.Unlock()
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%d %d %d %s", requests, failures, slow, lastErr)
	})
	srv := &http.Server{Addr: envOr("APP_ADDR", ":8090"), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

func probeOnce(c *http.Client, url string) (trace string, err error) {
	var mu sync.Mutex
	var steps []string
	began := time.Now()
	note := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, fmt.Sprintf("+%s ", time.Since(began).Round(time.Millisecond))+fmt.Sprintf(format, args...))
	}
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		DNSDone:              func(i httptrace.DNSDoneInfo) { note("dns %v %v", i.Addrs, i.Err) },
		ConnectStart:         func(_, addr string) { note("dial %s", addr) },
		ConnectDone:          func(_, addr string, err error) { note("dialed %s %v", addr, err) },
		WroteRequest:         func(i httptrace.WroteRequestInfo) { note("wrote %v", i.Err) },
		GotFirstResponseByte: func() { note("first byte") },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		trace = strings.Join(steps, "; ")
	}()
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return "", nil
}
