package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
)

// The crash test re-executes the test binary as a helper process that
// appends to a log and forwards it, and SIGKILLs it.
const (
	envHelper    = "OUTPOST_UPSTREAM_HELPER"
	envHelperDir = "OUTPOST_UPSTREAM_HELPER_DIR"
	envHelperURL = "OUTPOST_UPSTREAM_HELPER_URL"
	crashParts   = 3
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "1" {
		os.Exit(crashHelper())
	}
	code := m.Run()
	if code == 0 {
		if leaks := waitNoLeaks(5 * time.Second); leaks != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind after the tests:\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// waitNoLeaks waits until no goroutine of this package or of a nats.go
// client is left, and returns the stacks of those that stay (goleak is not
// a dependency of the module; this is its core idea).
func waitNoLeaks(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaks []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "outpost/sync/upstream.(*") || strings.Contains(g, "nats-io/nats.go.(*Conn)") {
				leaks = append(leaks, g)
			}
		}
		if len(leaks) == 0 || time.Now().After(deadline) {
			return strings.Join(leaks, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// crashHelper appends to every partition of topic "t" and forwards it
// until it is killed.
func crashHelper() int {
	dir, url := os.Getenv(envHelperDir), os.Getenv(envHelperURL)
	lcfg := log.DefaultConfig()
	lcfg.Sync = log.SyncInterval
	lcfg.SyncInterval = 50 * time.Millisecond
	lcfg.SegmentMaxBytes = 4 << 20
	l, err := log.Open(dir, lcfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: open log:", err)
		return 2
	}
	if err := l.CreateTopic("t", log.TopicConfig{Partitions: crashParts}); err != nil {
		fmt.Fprintln(os.Stderr, "helper: create topic:", err)
		return 2
	}
	mcfg := meta.DefaultConfig()
	mcfg.Timeout = 10 * time.Second
	st, err := meta.Open(metaPath(dir), mcfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: open meta:", err)
		return 2
	}
	cfg := testConfig(url, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	cfg.Window = 64
	f, err := New(context.Background(), cfg, l, st)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			for part := range int32(crashParts) {
				p, err := l.Partition("t", part)
				if err != nil {
					fmt.Fprintln(os.Stderr, "helper:", err)
					os.Exit(2)
				}
				first := p.EndOffset()
				recs := make([]log.Record, 20)
				for i := range recs {
					recs[i] = testRecord("t", part, first+int64(i), 100)
				}
				if _, err := p.Append(ctx, recs); err != nil && ctx.Err() == nil {
					fmt.Fprintln(os.Stderr, "helper: append:", err)
					os.Exit(2)
				}
			}
			time.Sleep(2 * time.Millisecond) // producer pace
		}
	}()
	fmt.Println("ready")
	if err := f.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	return 0
}

func TestCrashForwarder(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: not in -short")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d (the kill moments are random)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	rounds := 4
	if longTests() {
		rounds = 25
	}
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	createStream(t, js, "t", wire.TopicConfig{})
	dir := t.TempDir()
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envHelper+"=1", envHelperDir+"="+dir, envHelperURL+"="+srv.URL())
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: helper did not start: %q %v\n%s", round, line, err, stderr.String())
		}
		go io.Copy(io.Discard, out)
		// The kill moment: scenario time, chosen at random.
		time.Sleep(time.Duration(150+rng.IntN(600)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		n, _ := streamMsgs(context.Background(), js, "t")
		t.Logf("round %d: killed; stream holds %d records", round, n)
		if s := stderr.String(); strings.Contains(s, "level=ERROR") {
			t.Errorf("round %d: helper logged errors:\n%s", round, s)
		}
	}
	// Restart in-process and let it finish.
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	lg, logs := newLogger(t)
	f, err := New(t.Context(), testConfig(srv.URL(), lg), l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitForwarded(t, f, 60*time.Second, crashParts)
	want := map[int32]int64{}
	for part := range int32(crashParts) {
		p, _ := l.Partition("t", part)
		want[part] = p.EndOffset()
	}
	t.Logf("log ends %v", want)
	checkExactlyOnce(t, js, "t", want)
	if n := logs.Count("level=ERROR"); n != 0 {
		t.Errorf("%d error lines:\n%s", n, logs.String())
	}
}
