package upstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/edge/log"
)

// pump is one run of publishing for a partition, from a resume point to
// the first error. It reads ahead from the log and publishes in order
// through its window, moving the partition's acked along the contiguous
// prefix of acknowledgements. Nothing is skipped and nothing is sent out
// of order: on any error it stops sending, collects the outcome of what is
// in flight (abort) and returns, and the partition resolves the resume
// point again from the stream.
//
// The first message after a resume goes alone and carries
// Nats-Expected-Last-Subject-Sequence = lastSeq: if anything landed on the
// subject since resolve read it (messages an earlier connection or process
// sent that the server stored only afterwards), the server refuses it and
// the pump returns errStreamMoved instead of sending the same offsets
// again, which the duplicate window would drop only if it is still open.
// Its acknowledgement opens the window.
type pump struct {
	p     *partition
	cfg   *Config
	conn  *Conn
	epoch uint64 // the connection's epoch the window started on
	w     window

	buf         []log.Record // read ahead, not yet published
	sent        int64        // next offset to publish
	cuts        []span       // batch bounds to repeat (a resend in batch mode)
	lastSeq     uint64       // the subject's last sequence resolve saw
	conditional bool         // the next message is the first after the resume
	maxPayload  int

	live       bool // the partition's lag is at most Config.LiveLagRecords
	inLive     bool // counted by the scheduler as a live partition publishing
	woke       bool // an ack or a read woke the loop: harvest whatever else is in
	progressed bool // the stream acknowledged a message
}

// pump publishes from next on until an error; progressed reports whether
// the stream acknowledged anything.
func (p *partition) pump(ctx context.Context, c *Conn, epoch uint64, next int64, cuts []span, lastSeq uint64) (progressed bool, err error) {
	s := &pump{p: p, cfg: &p.f.cfg, conn: c, epoch: epoch, w: newWindow(p.f.sched, p.f.cfg.Window),
		sent: next, cuts: cuts, lastSeq: lastSeq, conditional: true, maxPayload: int(c.nc.MaxPayload())}
	defer s.stop()
	err = s.run(ctx)
	return s.progressed, err
}

func (s *pump) run(ctx context.Context) error {
	for {
		if err := s.harvest(ctx); err != nil {
			return err
		}
		end := s.p.visibleEnd()
		live := s.noteLive(end)
		if !s.w.full() {
			if err := s.fill(ctx, end); err != nil {
				return err
			}
			if len(s.buf) > 0 {
				if err := s.send(ctx, live); err != nil {
					return err
				}
				continue
			}
		} else if read, err := s.readAhead(ctx, end); err != nil || read {
			if err != nil {
				return err
			}
			continue
		}
		// Nothing to send now: wait for an ack, for the log to grow (if
		// there is room), or for the connection to change.
		if err := s.wait(ctx, !s.w.full() && s.sent >= end); err != nil {
			return err
		}
	}
}

// stop gives back what the pump holds of the shared scheduler.
func (s *pump) stop() {
	// Whatever is still in the window is acknowledged, failed or abandoned now.
	s.w.release()
	s.setInLive(false)
}

// harvest takes the acknowledgements that are in, oldest first. Checking a
// future takes nats.go's publisher lock, so with room in the window it is
// done only every few messages.
func (s *pump) harvest(ctx context.Context) error {
	defer func() { s.woke = false }()
	for s.w.len() > 0 && (s.w.len() >= s.w.limit || s.sent%16 == 0 || s.woke) {
		ok, failed := s.w.head()
		select {
		case pa := <-ok:
			s.ack(ctx, s.w.pop(), pa)
		case err := <-failed:
			return s.abort(ctx, true, err)
		default:
			return nil
		}
	}
	return nil
}

// ack moves the partition past an acknowledged message; the first one
// opens the window (unless fenced: one batch at a time) and ends a pause.
func (s *pump) ack(ctx context.Context, h inflight, pa *jetstream.PubAck) {
	p := s.p
	if pa != nil {
		// What the next fenced batch expects the subject to end on.
		s.lastSeq = pa.Sequence
	}
	p.setAcked(h.last + 1)
	if p.redoSaved && h.last >= p.redoUntil {
		p.clearRedo(ctx)
	}
	p.countForwarded(h)
	if !s.progressed {
		s.progressed = true
		if !s.cfg.Fenced {
			s.w.open()
		}
		p.setError(nil)
	}
}

func (s *pump) abort(ctx context.Context, headFailed bool, err error) error {
	return s.p.abort(ctx, s.w.q, headFailed, err)
}

// noteLive tells whether the partition counts as live (caught up) and
// publishes a change for Lag.
func (s *pump) noteLive(end int64) bool {
	live := end-s.sent <= s.cfg.LiveLagRecords
	if live != s.live {
		s.p.mu.Lock()
		s.p.live = live
		s.p.mu.Unlock()
		s.live = live
	}
	return live
}

// setInLive registers the pump with the scheduler as a live partition
// publishing, or not: backlogged partitions hold off while any is.
func (s *pump) setInLive(live bool) {
	if live == s.inLive {
		return
	}
	if live {
		s.p.f.sched.enterLive()
	} else {
		s.p.f.sched.exitLive()
	}
	s.inLive = live
}

// fill reads the next records if nothing is read ahead; when repeating a
// batch, its records must all be at hand, so the resend has the same bounds
// and Nats-Msg-Id as the first send.
func (s *pump) fill(ctx context.Context, end int64) error {
	if len(s.buf) == 0 && s.sent < end {
		recs, err := s.read(ctx, s.sent)
		if err != nil {
			return err
		}
		s.buf = below(recs, end)
	}
	for len(s.buf) > 0 && len(s.cuts) > 0 && s.cuts[0].Last < s.buf[0].Offset {
		s.cuts = s.cuts[1:]
	}
	for len(s.buf) > 0 && len(s.cuts) > 0 && s.cuts[0].First == s.buf[0].Offset && s.buf[len(s.buf)-1].Offset < s.cuts[0].Last {
		more, err := s.read(ctx, s.buf[len(s.buf)-1].Offset+1)
		if err != nil {
			return err
		}
		s.buf = append(s.buf, more...)
	}
	return nil
}

// readAhead reads more while the window is full and the read-ahead runs
// low, while the acks are on their way, so the window does not drain while
// the next read runs (one read per MaxReadBytes would otherwise stall the
// pipeline every time).
func (s *pump) readAhead(ctx context.Context, end int64) (bool, error) {
	at := s.sent + int64(len(s.buf))
	if len(s.buf) >= s.w.limit || at >= end || len(s.cuts) > 0 {
		return false, nil
	}
	more, err := s.read(ctx, at)
	if err != nil {
		return false, err
	}
	s.buf = append(s.buf, below(more, end)...)
	s.woke = true
	return true, nil
}

// below returns the records of recs before offset end (the high
// watermark can be below what a read returns).
func below(recs []log.Record, end int64) []log.Record {
	for i := range recs {
		if recs[i].Offset >= end {
			return recs[:i]
		}
	}
	return recs
}

// read reads from the log at from; a failed read, or one that does not
// start at from, aborts.
func (s *pump) read(ctx context.Context, from int64) ([]log.Record, error) {
	recs, err := s.p.src.Read(ctx, from, s.cfg.MaxReadBytes)
	if err == nil && (len(recs) == 0 || recs[0].Offset != from) {
		err = errors.New("returned no record or the wrong one")
	}
	if err != nil {
		return nil, s.abort(ctx, false, fmt.Errorf("upstream: read %s/%d at %d: %w", s.p.origin.Topic, s.p.origin.Partition, from, err))
	}
	return recs, nil
}

// send publishes the next message from the read-ahead.
func (s *pump) send(ctx context.Context, live bool) error {
	if s.cfg.Fenced {
		return s.sendFenced(ctx, live)
	}
	s.setInLive(live)
	msg, n, err := s.p.message(s.buf, &s.cuts, s.maxPayload)
	if err != nil {
		return s.abort(ctx, false, err)
	}
	if s.conditional {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(s.lastSeq, 10))
		msg.Header.Set(hdrExpectedSubject, s.p.expect)
		s.conditional = false
	}
	size := len(msg.Data) + headerBytes(msg.Header)
	if err := s.p.f.sched.acquire(ctx, size, live); err != nil {
		return s.abort(ctx, false, err)
	}
	fut, err := s.conn.publishAsync(s.epoch, msg)
	if err != nil {
		s.p.f.sched.release(size)
		if errors.Is(err, nats.ErrMaxPayload) {
			err = fmt.Errorf("%w: %s/%d offset %d (%d bytes, max_payload %d); raise max_payload on the server",
				ErrRecordTooLarge, s.p.origin.Topic, s.p.origin.Partition, s.buf[0].Offset, size, s.maxPayload)
		}
		return s.abort(ctx, false, err)
	}
	h := inflight{first: s.buf[0].Offset, last: s.buf[n-1].Offset, records: n, bytes: len(msg.Data), size: size, fut: fut, at: time.Now()}
	s.w.add(h)
	s.sent = h.last + 1
	s.buf = s.buf[n:]
	return nil
}

// wait blocks until the oldest message's outcome, the log passing sent (if
// grow), a change of the connection, or the end of ctx.
func (s *pump) wait(ctx context.Context, grow bool) error {
	s.setInLive(false)
	ok, failed := s.w.head()
	var grown, hw <-chan struct{}
	if grow {
		if wm := s.cfg.Watermark; wm != nil && s.sent < s.p.src.EndOffset() {
			// Held below the log's end by the high watermark: wait for it
			// to move, not for the log (which has the records already).
			hw = wm.HighWatermarkChanged()
		} else {
			grown = s.p.src.Notify(s.sent)
		}
	}
	changed := s.p.f.link.Changed()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case pa := <-ok:
		s.ack(ctx, s.w.pop(), pa)
		// Acks come in bursts: take every one that is in before publishing
		// again, so one wake-up refills the window by many.
		s.woke = true
	case err := <-failed:
		return s.abort(ctx, true, err)
	case <-grown:
	case <-hw:
	case <-changed:
		if s.conn.Epoch() != s.epoch || !s.conn.Up() {
			return s.abort(ctx, false, ErrNotConnected)
		}
	}
	return nil
}

// countForwarded counts an acknowledged message.
func (p *partition) countForwarded(h inflight) {
	p.f.m.forwardedRecords.WithLabelValues(p.origin.Topic, p.pkey).Add(float64(h.records))
	p.f.m.forwardedBytes.WithLabelValues(p.origin.Topic, p.pkey).Add(float64(h.bytes))
}
