package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/firmware-sim/fleet"
	"github.com/outpost-edge/outpost/firmware-sim/internal/mochitest"
	"github.com/outpost-edge/outpost/firmware-sim/payload"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if len(args) > 0 && args[0] == "verify" {
		code = runVerify(context.Background(), args[1:], strings.NewReader(""), &out, &errb)
	} else {
		code = runFleet(context.Background(), args, &out, &errb)
	}
	return code, out.String(), errb.String()
}

func TestFleetJSONSummary(t *testing.T) {
	b := mochitest.Start(t)
	code, out, errs := run(t, "-broker", b.URL, "-devices", "3", "-count", "200", "-rate", "0",
		"-qos", "1", "-inflight", "10", "-size", "100", "-format", "raw", "-json", "-progress", "0")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var sum fleet.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if sum.Acked != 600 || sum.Missing != 0 || sum.Bytes != 600*100 || sum.Latency.P99 <= 0 || sum.AckReasons["0x00 success"] != 600 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestScenarioWithOverrides(t *testing.T) {
	b := mochitest.Start(t)
	code, out, errs := run(t, "-scenario", "../configs/fleet-quick.yaml", "-broker", b.URL,
		"-duration", "300ms", "-rate", "50", "-progress", "0")
	if code != exitOK || !strings.Contains(out, "missing 0") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

func TestNoBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens here now
	code, out, errs := run(t, "-broker", "tcp://"+addr, "-devices", "2", "-duration", "200ms",
		"-drain-timeout", "200ms", "-progress", "0")
	if code != exitError || !strings.Contains(errs, "no device could connect") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-qos", "3"},
		{"-broker", "127.0.0.1:1883"},
		{"-scenario", "does-not-exist.yaml"},
		{"extra"},
		{"verify"},
		{"verify", "-file", "x", "-broker", "tcp://x:1"},
	} {
		if code, _, errs := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errs)
		}
	}
}

func TestVerifyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, skip, dup int64) string {
		var buf bytes.Buffer
		for seq := range int64(50) {
			if seq == skip {
				continue
			}
			r := payload.Reading{Device: "d1", Seq: seq, TS: 1, Temperature: 20, Humidity: 40, Vibration: 0, Battery: 50}
			n := 1
			if seq == dup {
				n = 2
			}
			for range n {
				buf.Write(payload.Append(nil, payload.JSON, &r, 0))
				buf.WriteByte('\n')
			}
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if code, out, errs := run(t, "verify", "-file", write("clean.jsonl", -1, -1), "-expect-count", "50"); code != exitOK {
		t.Fatalf("clean: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ := run(t, "verify", "-file", write("bad.jsonl", 10, 20), "-json")
	if code != exitVerified || !strings.Contains(out, `"missing": 1`) || !strings.Contains(out, `"duplicates": 1`) {
		t.Fatalf("gap+dup: exit %d\n%s", code, out)
	}
	if code, out, _ := run(t, "verify", "-file", write("short.jsonl", -1, -1), "-expect-count", "60"); code != exitVerified {
		t.Fatalf("tail gap: exit %d\n%s", code, out)
	}
}

// TestVerifyBrokerEndToEnd runs the verify subcommand as a subscriber and
// a fleet against the same broker, as a later e2e test would.
func TestVerifyBrokerEndToEnd(t *testing.T) {
	b := mochitest.Start(t)
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	var out, errb syncBuffer
	go func() {
		code := runVerify(context.Background(), []string{"-broker", b.URL, "-topic", "sensors/#", "-qos", "1", "-expect", "300"}, nil, &out, &errb)
		done <- result{code, out.String(), errb.String()}
	}()
	waitFor(t, func() error {
		if !strings.Contains(errb.String(), "subscribed") {
			return fmt.Errorf("verify not subscribed yet: %q", errb.String())
		}
		return nil
	})
	if code, o, e := run(t, "-broker", b.URL, "-devices", "3", "-count", "100", "-rate", "0", "-inflight", "20", "-progress", "0"); code != exitOK {
		t.Fatalf("fleet exit %d\n%s%s", code, o, e)
	}
	r := <-done
	if r.code != exitOK || !strings.Contains(r.out, "distinct 300") {
		t.Fatalf("verify exit %d\n%s%s", r.code, r.out, r.err)
	}
}

// swallow is a broker hook that takes every PUBLISH and never acknowledges
// it, as an overloaded or broken ingest would.
type swallow struct{ mqtt.HookBase }

func (swallow) ID() string           { return "swallow" }
func (swallow) Provides(b byte) bool { return b == mqtt.OnPublish }
func (swallow) OnPublish(_ *mqtt.Client, _ packets.Packet) (packets.Packet, error) {
	return packets.Packet{}, packets.ErrRejectPacket
}

func TestMissingAcksExitNonZero(t *testing.T) {
	b := mochitest.Start(t, &swallow{})
	code, out, errs := run(t, "-broker", b.URL, "-devices", "2", "-count", "5", "-rate", "0", "-inflight", "5",
		"-drain-timeout", "300ms", "-progress", "0", "-json")
	if code != exitMissing || !strings.Contains(errs, "acknowledgements missing") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var sum fleet.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Missing != 10 {
		t.Fatalf("summary %+v (%v)", sum, err)
	}
}

// -print-schema prints a registry request carrying payload.JSONSchema.
func TestPrintSchema(t *testing.T) {
	code, out, errs := run(t, "-print-schema")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var req struct {
		SchemaType string `json:"schemaType"`
		Schema     string `json:"schema"`
	}
	if err := json.Unmarshal([]byte(out), &req); err != nil || req.SchemaType != "JSON" || req.Schema != payload.JSONSchema {
		t.Fatalf("%v: %s", err, out)
	}
}
