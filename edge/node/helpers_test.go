package node_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/bridge/auth"
	"github.com/outpost-edge/outpost/edge/node"
	"github.com/outpost-edge/outpost/internal/polltest"
)

func waitFor(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	polltest.Until(tb, timeout, f)
}

func testLogger() *slog.Logger {
	if os.Getenv("OUTPOST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig is the default config on free loopback ports in a temp dir.
func testConfig(tb testing.TB) node.Config {
	cfg := node.DefaultConfig()
	cfg.DataDir = tb.TempDir()
	cfg.MQTT.Address = "127.0.0.1:0"
	cfg.HTTP.Address = "127.0.0.1:0"
	return cfg
}

type running struct {
	*node.Node
	cancel context.CancelFunc
	done   chan error
}

// start opens and runs a node; cleanup stops it and checks Run's result.
func start(tb testing.TB, cfg node.Config, opts node.Options) *running {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	n, err := node.Open(context.Background(), cfg, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Node: n, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- n.Run(ctx) }()
	waitFor(tb, 5*time.Second, func() error {
		req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+"/readyz", nil)
		if cfg.HTTP.Token != "" {
			req.Header.Set("Authorization", "Bearer "+cfg.HTTP.Token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	tb.Cleanup(func() { r.stop(tb) })
	return r
}

func (r *running) stop(tb testing.TB) {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if !ok {
			return // the test already collected Run's result
		}
		if err != nil {
			tb.Errorf("run: %v", err)
		}
		close(r.done)
	case <-time.After(15 * time.Second):
		tb.Errorf("node did not stop")
	}
}

type recordsPage struct {
	Records []struct {
		Offset    int64             `json:"offset"`
		Timestamp string            `json:"timestamp"`
		Key       string            `json:"key"`
		KeyText   *string           `json:"key_text"`
		Headers   map[string]string `json:"headers"`
		Value     string            `json:"value"`
		ValueText *string           `json:"value_text"`
	} `json:"records"`
	NextOffset int64 `json:"next_offset"`
}

func getJSON(tb testing.TB, url string, v any) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		tb.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

func b64(s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "!" + err.Error()
	}
	return string(b)
}

// connectBytes is an MQTT 3.1.1 CONNECT with a clean session.
func connectBytes(id string) []byte { return connectFlags(id, 0x02) }

// connectFlags is an MQTT 3.1.1 CONNECT with the given connect flags
// (0x00: persistent session).
func connectFlags(id string, flags byte) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 60, byte(len(id) >> 8), byte(len(id))}
	body = append(body, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// rawConnect dials and completes a 3.1.1 CONNECT.
func rawConnect(tb testing.TB, addr, id string) (net.Conn, *bufio.Reader) {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Write(connectBytes(id)); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(c)
	ack := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(br, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		tb.Fatalf("connack %x: %v", ack, err)
	}
	c.SetReadDeadline(time.Time{})
	return c, br
}

// closedByPeer reports whether the peer closes c within d.
func closedByPeer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
}

func authUserCN(cn string) auth.User { return auth.User{Username: cn} }
