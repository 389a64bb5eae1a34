package upstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
)

// publishConditionalBatch publishes values to subject as one JetStream
// atomic batch whose first message expects the subject's last stream
// sequence to be last. It returns the batch's last sequence, or the
// server's refusal: all of the batch is stored, or none of it.
func publishConditionalBatch(t *testing.T, nc *nats.Conn, subject string, last uint64, values []string) (uint64, error) {
	t.Helper()
	id := fmt.Sprintf("b%d-%d", last, time.Now().UnixNano())
	for i, v := range values {
		m := nats.NewMsg(subject)
		m.Data = []byte(v)
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i == len(values)-1 {
			m.Header.Set("Nats-Batch-Commit", "1")
		}
		if i == 0 {
			m.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(last, 10))
			m.Header.Set("Nats-Expected-Last-Subject-Sequence-Subject", subject)
		}
		if i != 0 && i != len(values)-1 {
			if err := nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
			continue
		}
		reply, err := nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(reply.Data) == 0 {
			continue // the batch's first message, accepted so far
		}
		var ack struct {
			Seq   uint64 `json:"seq"`
			Error *struct {
				Code        int    `json:"code"`
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(reply.Data, &ack); err != nil {
			t.Fatal(err)
		}
		if ack.Error != nil {
			return 0, fmt.Errorf("refused: %s (%d)", ack.Error.Description, ack.Error.ErrCode)
		}
		if i != len(values)-1 {
			t.Fatalf("batch message %d answered %s before the commit", i+1, reply.Data)
		}
		return ack.Seq, nil
	}
	return 0, fmt.Errorf("no commit answer")
}

// TestConditionalBatchFencesALapsedForwarder records the mechanism issue
// 14's takeover needs beyond the lease (and that the embedded server
// supports it): forwarding an origin partition in JetStream atomic batches,
// each conditional on the subject's last sequence the forwarder last saw,
// fences a forwarder whose lease lapsed without its knowing. Its stale
// batch is refused whole, even long after the duplicate window, so the
// stream holds every offset once and in order. Plain pipelined publishes
// cannot be made conditional this way (the sequence a message should
// expect is not known until the one before it is acknowledged).
func TestConditionalBatchFencesALapsedForwarder(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := srv.Connect()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage,
		Duplicates: 100 * time.Millisecond, AllowAtomicPublish: true,
	}); err != nil {
		t.Fatal(err)
	}
	subject := "t.farm-1.pi-a.0"
	batch := func(from, n int) []string {
		var vs []string
		for o := from; o < from+n; o++ {
			vs = append(vs, strconv.Itoa(o))
		}
		return vs
	}
	// pi-a forwards offsets 0..9 under its lease.
	lastA, err := publishConditionalBatch(t, nc, subject, 0, batch(0, 10))
	if err != nil {
		t.Fatal(err)
	}
	// pi-a's lease lapses; pi-b takes over, reads the stream's last
	// message on the subject and forwards 10..19 from its replica.
	lm, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := lm.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publishConditionalBatch(t, nc, subject, raw.Sequence, batch(10, 10)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // past the duplicate window
	// pi-a, unaware, forwards 10..19 again from where it left off.
	if _, err := publishConditionalBatch(t, nc, subject, lastA, batch(10, 10)); err == nil {
		t.Fatal("the lapsed forwarder's batch was stored: duplicates beyond the duplicate window")
	} else {
		t.Logf("lapsed forwarder: %v", err)
	}
	// A batch that would reorder (offsets 20..29 expecting pi-a's stale
	// view) is refused as well.
	if _, err := publishConditionalBatch(t, nc, subject, lastA, batch(20, 10)); err == nil {
		t.Fatal("a batch on a stale view was stored")
	}
	info, err := lm.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 20 {
		t.Fatalf("stream holds %d messages, want 20 (offsets 0..19 once each)", info.State.Msgs)
	}
	for seq := uint64(1); seq <= 20; seq++ {
		m, err := lm.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != strconv.Itoa(int(seq-1)) {
			t.Fatalf("sequence %d holds offset %s, want %d", seq, m.Data, seq-1)
		}
	}
}
