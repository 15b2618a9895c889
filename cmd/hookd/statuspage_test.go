package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/hookd/hookd/internal/testkit"
)

const statuspageWidth = 390 // an iPhone 12-15 viewport, in CSS pixels

// TestStatusPageInChromium rolls a runtime out for real, then logs in to the status page in
// headless Chromium on a phone-sized viewport and reads what a person would see.
func TestStatusPageInChromium(t *testing.T) {
	chromium := statuspageChromium(t)
	f := newFleet(t, "storefront")
	v1d := f.push(testkit.App{Version: "v1"})
	f.install(v1d)
	f.start("a", true, nil)
	h := startHookd(t, f.config(""), t.TempDir(), nil)

	v2d := f.push(testkit.App{Version: "v2"})
	deliveryID := "statuspage-" + f.id
	if code, answer := h.deliver(f.delivery(v2d), deliveryID); code != http.StatusAccepted {
		t.Fatalf("delivery: %d %v", code, answer)
	}
	if st := h.waitJob("storefront", 0); st.LastRollout.Result != "rolled_out" || st.DigestRunning != v2d {
		t.Fatalf("rollout: %+v running %s", st.LastRollout, st.DigestRunning)
	}

	b := statuspageBrowse(t, chromium)
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": statuspageWidth, "height": 844, "deviceScaleFactor": 2, "mobile": true}, nil)
	b.call("Page.navigate", map[string]any{"url": h.url + "/"}, nil)
	b.waitFor(`document.readyState === "complete" && document.querySelector('main[data-page="login"] input#token') !== null`)
	b.eval(`document.getElementById("token").focus()`)
	b.call("Input.insertText", map[string]any{"text": testToken}, nil)
	b.eval(`document.querySelector('form[action="/login"] button[type="submit"]').click()`)
	b.waitFor(`document.readyState === "complete" && document.querySelector('main[data-page="status"]') !== null`)

	var seen struct {
		Body        string   `json:"body"`
		Runtimes    []string `json:"runtimes"`
		Deliveries  []string `json:"deliveries"`
		ScrollWidth int      `json:"scrollWidth"`
		ClientWidth int      `json:"clientWidth"`
		Cookie      string   `json:"cookie"`
		Location    string   `json:"location"`
	}
	raw := b.eval(`JSON.stringify({
		body: document.body.innerText,
		runtimes: Array.from(document.querySelectorAll("article.runtime"), e => e.innerText),
		deliveries: Array.from(document.querySelectorAll("li.delivery"), e => e.innerText),
		scrollWidth: document.documentElement.scrollWidth,
		clientWidth: document.documentElement.clientWidth,
		cookie: document.cookie,
		location: location.href,
	})`)
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		t.Fatalf("page state %s: %v", raw, err)
	}
	if err := json.Unmarshal([]byte(text), &seen); err != nil {
		t.Fatalf("page state %s: %v", text, err)
	}
	shot := statuspageScreenshot(t, b)
	t.Logf("status page as seen at %d px:\n%s", statuspageWidth, seen.Body)

	if seen.Location != h.url+"/" {
		t.Errorf("after login the browser is at %s, want %s/ (no token in the URL)", seen.Location, h.url)
	}
	if len(seen.Runtimes) != 1 {
		t.Fatalf("runtimes shown: %q", seen.Runtimes)
	}
	card := seen.Runtimes[0]
	// The card lists the container too, with its state (and fits the narrow viewport with it).
	for _, want := range []string{"storefront", "rolled out", v2d[:len("sha256:")+12], "up to date", f.repo + ":latest", f.id + "-a · running"} {
		if !strings.Contains(card, want) {
			t.Errorf("runtime card lacks %q:\n%s", want, card)
		}
	}
	if strings.Contains(card, "behind") {
		t.Errorf("runtime card says behind:\n%s", card)
	}
	var entry string
	for _, d := range seen.Deliveries {
		if strings.Contains(d, deliveryID) {
			entry = d
		}
	}
	if !strings.Contains(entry, "queued") || !strings.Contains(entry, "storefront") {
		t.Errorf("delivery %s not shown as queued for storefront: %q", deliveryID, seen.Deliveries)
	}
	if seen.ClientWidth != statuspageWidth || seen.ScrollWidth > statuspageWidth {
		t.Errorf("page is %d px wide in a %d px viewport, want at most %d", seen.ScrollWidth, seen.ClientWidth, statuspageWidth)
	}
	if seen.Cookie != "" {
		t.Errorf("the session cookie is readable by scripts: %q", seen.Cookie)
	}
	if strings.Contains(seen.Body, testToken) {
		t.Error("the page shows the admin token")
	}
	if shot.Bounds().Dx() != 2*statuspageWidth {
		t.Errorf("screenshot is %d px wide, want %d (390 CSS px at 2x)", shot.Bounds().Dx(), 2*statuspageWidth)
	}
}

// statuspageChromium returns Chromium's path; without it the test skips, unless CI demands it.
func statuspageChromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("HOOKD_REQUIRE_DOCKER") == "1" {
			t.Fatalf("chromium required (HOOKD_REQUIRE_DOCKER=1): %v", err)
		}
		t.Skipf("no chromium: %v", err)
	}
	return path
}

var statuspageDevTools = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// statuspageBrowser is one headless Chromium page driven over the DevTools protocol.
type statuspageBrowser struct {
	t    *testing.T
	ws   *websocket.Conn
	next int
	logs *logBuffer
}

// statuspageBrowse starts headless Chromium with a fresh profile on loopback and connects to
// its page. Chromium, its helper processes and the profile go at the test's end.
func statuspageBrowse(t *testing.T, chromium string) *statuspageBrowser {
	t.Helper()
	profile, err := os.MkdirTemp("", "hookd-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	const origin = "http://127.0.0.1"
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--no-default-browser-check", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--disable-domain-reliability", "--metrics-recording-only",
		"--user-data-dir="+profile, fmt.Sprintf("--window-size=%d,844", statuspageWidth),
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins="+origin, "about:blank")
	cmd.Stdout, cmd.Stderr = w, w
	// Its own process group, so the renderer and GPU helpers end with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b := &statuspageBrowser{t: t, logs: newLogBuffer()}
	t.Cleanup(func() {
		if b.ws != nil {
			b.ws.Close()
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		r.Close()
		// Helpers of the killed group may still be writing for a moment.
		deadline := time.Now().Add(10 * time.Second)
		for err := os.RemoveAll(profile); err != nil; err = os.RemoveAll(profile) {
			if time.Now().After(deadline) {
				t.Errorf("remove chromium profile: %v", err)
				return
			}
			time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
		}
	})

	browserURL := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fmt.Fprintln(b.logs, sc.Text())
			if m := statuspageDevTools.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case browserURL <- m[1]:
				default:
				}
			}
		}
	}()
	var wsURL string
	select {
	case wsURL = <-browserURL:
	case <-time.After(60 * time.Second):
		t.Fatalf("chromium did not open DevTools:\n%s", b.logs)
	}

	// The browser's own endpoint lists its targets; the page opened at start is the one to drive.
	host := strings.SplitN(strings.TrimPrefix(wsURL, "ws://"), "/", 2)[0]
	var pageURL string
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + host + "/json/list")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var targets []struct {
			Type string `json:"type"`
			WS   string `json:"webSocketDebuggerUrl"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
			return false, err.Error()
		}
		for _, tg := range targets {
			if tg.Type == "page" && tg.WS != "" {
				pageURL = tg.WS
				return true, ""
			}
		}
		return false, fmt.Sprintf("no page target among %+v", targets)
	})
	cfg, err := websocket.NewConfig(pageURL, origin)
	if err != nil {
		t.Fatal(err)
	}
	if b.ws, err = websocket.DialConfig(cfg); err != nil {
		t.Fatalf("connect to chromium page: %v\n%s", err, b.logs)
	}
	return b
}

// call sends one DevTools command and decodes its result into out (when not nil). Events that
// arrive meanwhile are not needed and are dropped.
func (b *statuspageBrowser) call(method string, params any, out any) {
	b.t.Helper()
	if err := b.try(method, params, out); err != nil {
		b.t.Fatalf("%s: %v\n%s", method, err, b.logs)
	}
}

func (b *statuspageBrowser) try(method string, params any, out any) error {
	b.next++
	id := b.next
	if err := b.ws.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		return err
	}
	if err := websocket.JSON.Send(b.ws, map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return err
	}
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(b.ws, &msg); err != nil {
			return err
		}
		if msg.ID != id {
			continue
		}
		if msg.Error != nil {
			return fmt.Errorf("chromium: %s", msg.Error.Message)
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(msg.Result, out)
	}
}

// evaluate runs expression in the page and returns its value as JSON.
func (b *statuspageBrowser) evaluate(expression string) (json.RawMessage, error) {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.try("Runtime.evaluate", map[string]any{"expression": expression, "returnByValue": true}, &res); err != nil {
		return nil, err
	}
	if res.Exception != nil {
		return nil, fmt.Errorf("%s: %s", expression, res.Exception.Text)
	}
	return res.Result.Value, nil
}

func (b *statuspageBrowser) eval(expression string) json.RawMessage {
	b.t.Helper()
	v, err := b.evaluate(expression)
	if err != nil {
		b.t.Fatal(err)
	}
	return v
}

// waitFor polls a condition in the page; while it navigates an evaluation may fail, which is
// only "not yet".
func (b *statuspageBrowser) waitFor(condition string) {
	b.t.Helper()
	testkit.Eventually(b.t, 60*time.Second, func() (bool, string) {
		v, err := b.evaluate(condition)
		if err != nil {
			return false, err.Error()
		}
		return string(v) == "true", condition + " is " + string(v)
	})
}

// statuspageScreenshot captures the whole page, keeps it in the test's temp dir and at
// /tmp/hookd-statuspage.png for people to look at, and returns it decoded.
func statuspageScreenshot(t *testing.T, b *statuspageBrowser) image.Image {
	t.Helper()
	var metrics struct {
		Content struct {
			Width  float64 `json:"width"`
			Height float64 `json:"height"`
		} `json:"cssContentSize"`
	}
	b.call("Page.getLayoutMetrics", nil, &metrics)
	var shot struct {
		Data string `json:"data"`
	}
	b.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": statuspageWidth, "height": metrics.Content.Height, "scale": 1}}, &shot)
	data, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot is no PNG: %v", err)
	}
	path := filepath.Join(t.TempDir(), "statuspage.png")
	for _, p := range []string{path, "/tmp/hookd-statuspage.png"} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshot %dx%d: %s (copied to /tmp/hookd-statuspage.png)", img.Bounds().Dx(), img.Bounds().Dy(), path)
	return img
}
