package upstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Fenced forwarding (Config.Fenced): every record goes out in a batch
// whose first message carries Nats-Expected-Last-Subject-Sequence, and
// only one batch is in flight, so each batch expects exactly the sequence
// the previous one ended on. JetStream stores an atomic batch whole or not
// at all, and checks the expectation at the commit: a batch built on a
// view of the stream that anything else changed since (another forwarder
// of the same origin partition, messages of a dead connection) is refused
// whole, which the pump handles as errStreamMoved (resolve again). Unlike
// the duplicate window this holds for outages of any length, which is what
// makes it safe for a takeover forwarder whose lease lapsed while it was
// cut off. The price is one round trip per batch instead of a pipelined
// window.

// Server limits on atomic batches (nats-server 2.12+: max 1000 messages a
// batch, and it stages each message until the commit).
const (
	fencedBatchMessages = 1000
	fencedBatchBytes    = 1 << 20
)

// JetStream's atomic batch headers (ADR-50).
const (
	hdrBatchID         = "Nats-Batch-Id"
	hdrBatchSeq        = "Nats-Batch-Sequence"
	hdrBatchCommit     = "Nats-Batch-Commit"
	hdrExpectedSubject = "Nats-Expected-Last-Subject-Sequence-Subject"
)

// sendFenced publishes the next batch from the read-ahead: up to
// fencedBatchMessages messages (one when the stream does not allow atomic
// publishing), the first conditional on lastSeq, the last committing. The
// window holds the batch as one entry whose future is the commit's.
func (s *pump) sendFenced(ctx context.Context, live bool) error {
	s.setInLive(live)
	limit := 1
	if s.p.atomicOK {
		limit = min(s.cfg.Window, fencedBatchMessages)
	}
	h := inflight{first: s.buf[0].Offset, at: time.Now()}
	var msgs []*nats.Msg
	buf := s.buf
	for len(buf) > 0 && len(msgs) < limit && h.size < fencedBatchBytes {
		msg, n, err := s.p.message(buf, &s.cuts, s.maxPayload)
		if err != nil {
			return s.abort(ctx, false, err)
		}
		msgs = append(msgs, msg)
		h.last = buf[n-1].Offset
		h.records += n
		h.bytes += len(msg.Data)
		buf = buf[n:]
	}
	first, commit := msgs[0], msgs[len(msgs)-1]
	first.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(s.lastSeq, 10))
	// Named explicitly: in a stream with buckets stored subjects carry a
	// bucket token, and the expectation is on the wildcard subject.
	first.Header.Set(hdrExpectedSubject, s.p.expect)
	if len(msgs) > 1 {
		id := nuid.Next()
		for i, m := range msgs {
			m.Header.Set(hdrBatchID, id)
			m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		}
		commit.Header.Set(hdrBatchCommit, "1")
	}
	for _, m := range msgs {
		h.size += len(m.Data) + headerBytes(m.Header)
	}
	if err := s.p.f.sched.acquire(ctx, h.size, live); err != nil {
		return s.abort(ctx, false, err)
	}
	// The batch's messages before the commit go out without a reply
	// subject (the server answers only the commit then), on the window's
	// connection or not at all: a batch cut by a reconnect is never
	// committed, and the server drops it.
	for _, m := range msgs[:len(msgs)-1] {
		if err := s.conn.publish(s.epoch, m); err != nil {
			s.p.f.sched.release(h.size)
			return s.abort(ctx, false, err)
		}
	}
	fut, err := s.conn.publishAsync(s.epoch, commit)
	if err != nil {
		s.p.f.sched.release(h.size)
		if errors.Is(err, nats.ErrMaxPayload) {
			err = fmt.Errorf("%w: %s/%d offset %d (max_payload %d); raise max_payload on the server",
				ErrRecordTooLarge, s.p.origin.Topic, s.p.origin.Partition, h.first, s.maxPayload)
		}
		return s.abort(ctx, false, err)
	}
	h.fut = fut
	s.w.add(h)
	s.sent = h.last + 1
	s.buf = buf
	return nil
}
