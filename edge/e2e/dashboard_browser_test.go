package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-edge/outpost/core/service"
	"github.com/outpost-edge/outpost/edge/node"
)

// chromium finds Debian's chromium. In CI (CI set) a missing browser is a
// failure, not a skip: the dashboard's tests must run there.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH: .ci/run installs Debian's chromium (scripts/setup-test-deps.sh)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium); the dashboard's browser tests need it")
	return ""
}

// browser starts headless chromium and collects console errors and
// uncaught exceptions of every page it opens.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		acancel()
		t.Fatalf("start chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errors = append(b.errors, m.String())
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); acancel(); <-done })
	return b
}

func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// text returns an element's text content.
func (b *browser) text(t *testing.T, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent("#"+id))
	if err != nil {
		t.Fatalf("read #%s: %v", id, err)
	}
	return s
}

// waitText polls an element until ok accepts its text.
func (b *browser) waitText(t *testing.T, id string, within time.Duration, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(within)
	var s string
	for time.Now().Before(deadline) {
		if s = b.text(t, id); ok(s) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("#%s is %q after %v", id, s, within)
	return ""
}

// screenshot saves the page at a width, into OUTPOST_ARTIFACTS (or the
// test's temporary directory) and, with OUTPOST_UPDATE_SCREENSHOTS=1, into
// docs/img for the README.
func (b *browser) screenshot(t *testing.T, name string, width, height int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(width, height),
		chromedp.Sleep(1200*time.Millisecond), // one more event, laid out
	); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("OUTPOST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(png))
	if os.Getenv("OUTPOST_UPDATE_SCREENSHOTS") != "" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "img", name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// rate parses the ingest card ("123 msg/s", "1.5 k msg/s").
func rate(s string) float64 {
	f := strings.Fields(s)
	if len(f) < 2 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	if f[1] == "k" {
		v *= 1000
	}
	return v
}

// TestDashboardInBrowser: the edge node's dashboard in headless chromium,
// against a node that forwards to a real JetStream while a device
// publishes at a rate that grows every half second. The ingest rate shown
// becomes non-zero and changes within 2 s (server-sent events); cutting
// the uplink shows it down with records waiting, and its return clears
// that; the page logs no console error. Screenshots at desktop and phone
// width are kept as artifacts.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	b := newBrowser(t)
	r := newDownlinkRig(t, nil)
	addr := r.edge.n.MQTTAddrs()[0]
	base := "http://" + r.edge.n.HTTPAddr()

	// A device publishing QoS 0, 20 msg/s more every half second, so that
	// no two samples of the rate are alike.
	dev := connectDevice(t, addr, "dash-sensor-1", true, 0, "")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		for i := 0; ctx.Err() == nil; i++ {
			perSec := 20 + 40*int(time.Since(start)/time.Second)
			_, _ = dev.c.Publish(ctx, &paho.Publish{Topic: "sensors/dash-sensor-1", QoS: 0, Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))})
			time.Sleep(time.Second / time.Duration(min(perSec, 2000)))
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	nav, ncancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer ncancel()
	if err := chromedp.Do(nav, chromedp.Navigate(base+"/"), chromedp.WaitVisible("#dash")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	if s := b.waitText(t, "status", 10*time.Second, func(s string) bool { return s == "HEALTHY" }); s != "HEALTHY" {
		t.Fatalf("status %q", s)
	}
	first := b.waitText(t, "rate", 10*time.Second, func(s string) bool { return rate(s) > 0 })
	changedAt := time.Now()
	next := b.waitText(t, "rate", 2*time.Second, func(s string) bool { return s != first })
	t.Logf("ingest rate shown %q, then %q %v later", first, next, time.Since(changedAt).Round(10*time.Millisecond))
	b.waitText(t, "uplink", 10*time.Second, func(s string) bool { return s == "connected" })
	// The durability card says what an fsync carries and what a record costs the disk.
	dur := b.waitText(t, "sync-sub", 10*time.Second, func(s string) bool {
		return strings.Contains(s, "records each") && strings.Contains(s, "written per record")
	})
	t.Logf("durability card: %q", dur)
	// The devices list names the publishing device, connected, counting.
	dctx, dcancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer dcancel()
	row, err := chromedp.Run(dctx, chromedp.TextContent(`#devices tbody tr`))
	if err != nil || !strings.Contains(row, "dash-sensor-1") || !strings.Contains(row, "connected") {
		t.Fatalf("devices list: %q %v", row, err)
	}
	b.screenshot(t, "dashboard-edge-desktop.png", 1280, 900)
	b.screenshot(t, "dashboard-edge-phone.png", 390, 844)

	// Cut the uplink: the page says so and records wait.
	r.nats.Stop()
	b.waitText(t, "uplink", 20*time.Second, func(s string) bool { return s == "DOWN" })
	lag := b.waitText(t, "lag", 20*time.Second, func(s string) bool { return rate(s) > 0 })
	if s := b.text(t, "status"); s != "ATTENTION" {
		t.Errorf("status with the uplink down: %q, want ATTENTION", s)
	}
	t.Logf("uplink down: waiting %q, %q", lag, b.text(t, "uplink-sub"))
	// It returns: the backlog drains and the page clears.
	r.nats.Start()
	b.waitText(t, "uplink", 30*time.Second, func(s string) bool { return s == "connected" })
	cancel() // stop publishing so the lag can reach zero
	wg.Wait()
	b.waitText(t, "lag", 30*time.Second, func(s string) bool { return s == "0 records" })
	deadline := time.Now().Add(15 * time.Second)
	for b.text(t, "status") != "HEALTHY" {
		if time.Now().After(deadline) {
			t.Fatalf("status %q after the uplink returned and the backlog drained; warnings: %q", b.text(t, "status"), b.text(t, "warnings"))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The partition view reads records through the records API.
	click, ccancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer ccancel()
	if err := chromedp.Do(click, chromedp.Click(`#parts tbody tr[data-topic="telemetry"]`), chromedp.WaitVisible("#records-table tbody tr")); err != nil {
		t.Fatalf("partition view: %v", err)
	}
	cells, err := chromedp.Run(click, chromedp.Evaluate[int](`document.querySelectorAll("#records-table tbody tr").length`))
	if err != nil {
		t.Fatalf("partition view: %v", err)
	}
	if cells == 0 {
		t.Fatal("the partition view shows no records")
	}
	if errs := b.consoleErrors(); len(errs) != 0 {
		t.Fatalf("console errors: %v", errs)
	}
}

// TestCoreDashboardInBrowser: core's dashboard in headless chromium lists
// the site and node an edge reports, with the node's partitions on a tap;
// stopping the edge marks the node stale (red, a warning) and its return
// clears that; no console errors.
func TestCoreDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	b := newBrowser(t)
	r := newRig(t, func(c *service.Config) { c.Sites.StaleAfter = 8 * time.Second }, nil)
	nav, ncancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer ncancel()
	if err := chromedp.Do(nav, chromedp.Navigate(r.coreURL+"/"), chromedp.WaitVisible("#dash")); err != nil {
		t.Fatalf("open core's dashboard: %v", err)
	}
	b.waitText(t, "sites", 10*time.Second, func(s string) bool { return s == "1" })
	b.waitText(t, "status", 10*time.Second, func(s string) bool { return s == "HEALTHY" })
	row := `#nodes-table tbody tr[data-node="pi-a"]`
	if err := chromedp.Do(nav, chromedp.Click(row), chromedp.WaitVisible("#detail-table tbody tr")); err != nil {
		t.Fatalf("node detail: %v", err)
	}
	if s := b.text(t, "detail-title"); s != "Partitions of farm-1 / pi-a" {
		t.Errorf("detail title %q", s)
	}
	// A command sent now shows in the recent commands, with its status.
	_, rep := r.send("farm-1", "valve-9", map[string]any{"topic": "cmd/valve-9", "payload_text": "open"})
	b.waitText(t, "commands", 10*time.Second, func(s string) bool {
		return strings.Contains(s, "farm-1 / valve-9") && strings.Contains(s, rep.ID) && (strings.Contains(s, "queued") || strings.Contains(s, "at_edge"))
	})
	b.screenshot(t, "dashboard-core-desktop.png", 1280, 800)

	r.stopEdge()
	b.waitText(t, "status", 30*time.Second, func(s string) bool { return s == "ATTENTION" })
	if s := b.text(t, "nodes"); !strings.Contains(s, "1 stale") {
		t.Errorf("nodes card with the edge stopped: %q", s)
	}
	r.startEdge()
	b.waitText(t, "status", 30*time.Second, func(s string) bool { return s == "HEALTHY" })
	if errs := b.consoleErrors(); len(errs) != 0 {
		t.Fatalf("console errors: %v", errs)
	}
}

// TestDashboardToken: with http.token set the page loads, asks for the
// token, says so when a wrong one is given, and shows the node with the
// right one (kept for the tab: a reload does not ask again).
func TestDashboardToken(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	b := newBrowser(t)
	r := newDownlinkRig(t, func(c *node.Config) { c.HTTP.Token = "s3cret-token" })
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+r.edge.n.HTTPAddr()+"/"), chromedp.WaitVisible("#login")); err != nil {
		t.Fatalf("the page does not ask for the token: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys("#token", "wrong"), chromedp.Click("#login-form button")); err != nil {
		t.Fatal(err)
	}
	b.waitText(t, "login-error", 10*time.Second, func(s string) bool { return strings.Contains(s, "refused") })
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("token").value = ""; true`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys("#token", "s3cret-token"), chromedp.Click("#login-form button"), chromedp.WaitVisible("#dash")); err != nil {
		t.Fatalf("the right token does not open the dashboard: %v", err)
	}
	b.waitText(t, "status", 10*time.Second, func(s string) bool { return s == "HEALTHY" })
	if err := chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible("#dash")); err != nil {
		t.Fatalf("after a reload: %v", err)
	}
	// The browser logs the two refused event streams (no token, the wrong
	// one) as failed loads; anything else is a fault of the page.
	for _, e := range b.consoleErrors() {
		if !strings.Contains(e, "401 (Unauthorized)") {
			t.Errorf("console error: %s", e)
		}
	}
}
