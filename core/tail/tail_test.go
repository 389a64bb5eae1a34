package tail_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/tail"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/internal/buftest"
)

func TestFormat(t *testing.T) {
	o := wire.Origin{Site: "farm-1", Node: "pi-a", Topic: "plant.temps", Partition: 2}
	ts := time.Date(2026, 11, 23, 1, 2, 3, 500_000_000, time.UTC).UnixNano()
	cases := []struct {
		name string
		rec  wire.Record
		want string
	}{
		{"json_value", wire.Record{Offset: 41, Timestamp: ts, Key: []byte("dev-7"), Value: []byte(`{"t": 21.5}`)},
			`farm-1/pi-a plant.temps/2@41 2026-11-23T01:02:03.5Z key=dev-7 value={"t": 21.5}`},
		{"binary", wire.Record{Offset: 0, Timestamp: ts, Key: []byte{0xff}, Value: []byte{0, 1, 0xfe}},
			`farm-1/pi-a plant.temps/2@0 2026-11-23T01:02:03.5Z key=b64:/w== value=b64:AAH+`},
		{"control_chars", wire.Record{Offset: 1, Timestamp: ts, Key: []byte("a b"), Value: []byte("line1\nline2")},
			`farm-1/pi-a plant.temps/2@1 2026-11-23T01:02:03.5Z key="a b" value="line1\nline2"`},
		{"empty_and_meta", wire.Record{Offset: 2, Timestamp: ts, MQTTTopic: "farm/dev-7/temp", SchemaID: 3,
			Headers: []wire.Header{{Key: "unit", Value: []byte("C")}, {Key: "raw", Value: []byte{0x80}}}},
			`farm-1/pi-a plant.temps/2@2 2026-11-23T01:02:03.5Z key="" mqtt=farm/dev-7/temp schema=3 h:unit=C h:raw=b64:gA== value=""`},
		{"looks_encoded", wire.Record{Offset: 3, Timestamp: ts, Value: []byte("b64:AAAA")},
			`farm-1/pi-a plant.temps/2@3 2026-11-23T01:02:03.5Z key="" value="b64:AAAA"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := tail.Format(o, c.rec); got != c.want {
				t.Fatalf("\ngot  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestRunBothFormats(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	natstest.CreateTopicStream(t, js, "outpost", "telemetry", wire.TopicConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := wire.Origin{Site: "s", Node: "n", Topic: "telemetry", Partition: 0}
	pub := func(m *nats.Msg, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	pub(wire.NewMsg("outpost", o, wire.Record{Offset: 0, Value: []byte("before")}))

	var out, errOut syncBuffer
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- tail.Run(runCtx, js, tail.Options{FromStart: true, Rescan: 50 * time.Millisecond}, &out, &errOut)
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	waitLines := func(n int) []string {
		t.Helper()
		var lines []string
		natstest.WaitFor(t, 10*time.Second, func() error {
			lines = strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) < n || lines[0] == "" {
				return fmt.Errorf("%d lines so far: %q (errors: %q)", len(lines), out.String(), errOut.String())
			}
			return nil
		})
		return lines
	}
	waitLines(1)
	pub(wire.NewMsg("outpost", o, wire.Record{Offset: 1, Value: []byte("single")}))
	pub(wire.NewBatchMsg("outpost", o, []wire.Record{{Offset: 2, Value: []byte("b1")}, {Offset: 3, Value: []byte{0xff}}}))
	// A stream created after Run started is picked up.
	natstest.CreateTopicStream(t, js, "outpost", "late.topic", wire.TopicConfig{})
	pub(wire.NewMsg("outpost", wire.Origin{Site: "s", Node: "n", Topic: "late.topic"}, wire.Record{Offset: 0, Value: []byte("late")}))
	// A foreign message is reported, not printed.
	if _, err := js.Publish(ctx, "outpost.telemetry.s.n.9", []byte("junk")); err != nil {
		t.Fatal(err)
	}

	lines := waitLines(5)
	wantSuffix := []string{"@0 1970-01-01T00:00:00Z key=\"\" value=before", "@1 1970-01-01T00:00:00Z key=\"\" value=single",
		"@2 1970-01-01T00:00:00Z key=\"\" value=b1", "@3 1970-01-01T00:00:00Z key=\"\" value=b64:/w=="}
	for i, w := range wantSuffix {
		if !strings.HasPrefix(lines[i], "s/n telemetry/0@") || !strings.HasSuffix(lines[i], w) {
			t.Fatalf("line %d = %q, want suffix %q", i, lines[i], w)
		}
	}
	if lines[4] != `s/n late.topic/0@0 1970-01-01T00:00:00Z key="" value=late` {
		t.Fatalf("line 4 = %q", lines[4])
	}
	natstest.WaitFor(t, 5*time.Second, func() error {
		if !strings.Contains(errOut.String(), "seq 4 subject outpost.telemetry.7.s.n.9") { // stored under its bucket
			return fmt.Errorf("no error line for the foreign message: %q", errOut.String())
		}
		return nil
	})
}

func TestRunMissingTopic(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := tail.Run(ctx, js, tail.Options{Topics: []string{"nope"}}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "OUTPOST_nope") {
		t.Fatalf("err = %v", err)
	}
}

// TestRunPrintsOnlyNewRecords: without FromStart, records stored before Run
// are skipped, and records stored after it are printed even when their
// stream appears between two rescans.
func TestRunPrintsOnlyNewRecords(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	natstest.CreateTopicStream(t, js, "outpost", "old", wire.TopicConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := func(topic string, off int64, v string) {
		t.Helper()
		m, err := wire.NewMsg("outpost", wire.Origin{Site: "s", Node: "n", Topic: topic}, wire.Record{Offset: off, Value: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	pub("old", 0, "before-start")

	var out, errOut syncBuffer
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- tail.Run(runCtx, js, tail.Options{Rescan: 200 * time.Millisecond}, &out, &errOut)
	}()
	defer func() {
		stop()
		<-done
	}()
	// Run may not have taken its start time yet when the first publish
	// happens; publish new offsets (same ones would be deduplicated) until
	// one is printed.
	off := int64(0)
	natstest.WaitFor(t, 5*time.Second, func() error {
		off++
		pub("old", off, "after-start")
		if !strings.Contains(out.String(), "after-start") {
			return fmt.Errorf("not printed yet: %q", out.String())
		}
		return nil
	})
	if strings.Contains(out.String(), "before-start") {
		t.Fatalf("printed a record stored before Run:\n%s", out.String())
	}
	// Stream and record appear between rescans (rescans are 200 ms apart).
	natstest.CreateTopicStream(t, js, "outpost", "late", wire.TopicConfig{})
	pub("late", 0, "in-late-stream")
	natstest.WaitFor(t, 5*time.Second, func() error {
		if !strings.Contains(out.String(), "in-late-stream") {
			return fmt.Errorf("record of late stream not printed: %q", out.String())
		}
		return nil
	})
}

// syncBuffer is written by goroutines while the test reads it.
type syncBuffer = buftest.Buffer
