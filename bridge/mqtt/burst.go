package mqtt

import (
	"errors"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/edge/log"
)

// maxSpare bounds the records slice a connection keeps for its next burst,
// so that an idle connection holds little (a burst is rarely more than a
// read buffer's worth of publishes).
const maxSpare = 64

// maxBurst bounds the QoS 0 publishes a connection collects into one
// append; a read buffer's worth (2 KiB in mochi) is usually far fewer.
const maxBurst = 256

// burst collects a connection's QoS 0 publishes that need no fan-out, read
// from the bytes of one network read, into one append: one AppendAsync,
// one completion, one time stamp and one slice of records and of headers
// for all of them instead of one each. Only the connection's reader
// goroutine touches it. It is flushed before that goroutine goes back to
// the network (conn.Read), so a burst never waits for more input;
// before any other publish, so that the log keeps a connection's arrival
// order; and when the connection ends (OnDisconnect).
type burst struct {
	sess *session // the connection's session (see sessionFor)

	s    *session
	cl   *mochi.Client
	h    *Hook
	p    *log.Partition
	at   time.Time
	recs []log.Record
	hdrs []log.Header   // headers of recs, then free room for more
	hint int            // size of the previous burst, to size the next
	last *log.Partition // the partition of the connection's last publish
	// spare takes back a burst's records once the log is done with them,
	// for the next burst: allocating them was most of what the hook
	// allocated per publish.
	spare chan []log.Record
}

// burstOf returns the burst of a connection accepted by a Listener, or nil
// for other connections, whose QoS 0 publishes are appended one by one.
func burstOf(cl *mochi.Client) *burst {
	fc, ok := cl.Net.Conn.(*clientConn)
	if !ok {
		return nil
	}
	if fc.burst == nil {
		fc.burst = &burst{spare: make(chan []log.Record, 1)}
	}
	return fc.burst
}

// add places a routed and checked QoS 0 publish in the burst.
func (b *burst) add(h *Hook, s *session, cl *mochi.Client, pk *packets.Packet, pl placement) {
	t := pl.target
	p, err := b.last, error(nil)
	if p == nil || p.ID() != t.Partition || p.Topic() != t.Topic {
		// Partitions live as long as the log: the last one is kept.
		if p, err = h.cfg.Log.Partition(t.Topic, t.Partition); err == nil {
			b.last = p
		}
	}
	if len(b.recs) > 0 && (err != nil || p != b.p || s != b.s || cl != b.cl || len(b.recs) >= maxBurst) {
		b.flush()
	}
	if err != nil {
		h.countIngest(0)
		h.track(1)
		h.failQoS0(s, cl, pk.TopicName, 1, err)
		return
	}
	if len(b.recs) == 0 {
		// Counted as one until the flush, so that Drain waits for it.
		h.track(1)
		b.s, b.cl, b.h, b.p = s, cl, h, p
		b.at = h.cfg.Now()
		select {
		case b.recs = <-b.spare:
		default:
			b.recs = make([]log.Record, 0, max(b.hint, 4))
		}
	}
	if len(pk.Properties.User) == 0 && pk.Properties.ContentType == "" && len(pl.extra) == 0 {
		b.recs = append(b.recs, h.record(s, pk, pl, b.at, nil)) // shared headers
		return
	}
	need := headerCount(pk, pl)
	if cap(b.hdrs)-len(b.hdrs) < need {
		b.hdrs = make([]log.Header, 0, max(need, 3*max(b.hint, 4)))
	}
	n := len(b.hdrs)
	b.hdrs = b.hdrs[:n+need]
	b.recs = append(b.recs, h.record(s, pk, pl, b.at, b.hdrs[n:n:n+need]))
}

// flush appends the burst; a nil burst has nothing to flush.
func (b *burst) flush() {
	if b == nil || len(b.recs) == 0 {
		return
	}
	h, recs := b.h, b.recs
	n := len(recs)
	b.hint = n
	h.m.ingestQoS[0].Add(float64(n))
	h.track(n - 1)
	b.recs = nil
	h.appendQoS0(b.s, b.cl, b.p, recs, b.spare)
	b.s, b.cl, b.p = nil, nil, nil
}

// appendQoS0 appends QoS 0 publishes (already counted in pending) that no
// local subscriber and no retained store wants. With no ack and no fan-out
// they need no place in the session's ordered queue and no copy of the
// packet: only the count that Drain waits for, and a refusal if the append
// fails. Once the log is done with recs, they go back to spare, if not nil.
func (h *Hook) appendQoS0(s *session, cl *mochi.Client, p *log.Partition, recs []log.Record, spare chan []log.Record) {
	n := len(recs)
	done := func(_ int64, err error) {
		if err != nil {
			// The committer never writes to the network: the refusal runs
			// on a goroutine of the hook's.
			topic := string(recs[0].Headers[0].Value)
			h.spawn(func() { h.failQoS0(s, cl, topic, n, err) })
			return
		}
		h.m.ackSuccess.Add(float64(n))
		h.completed(n)
		if spare != nil && cap(recs) <= maxSpare {
			clear(recs) // holds payloads
			select {
			case spare <- recs[:0]:
			default:
			}
		}
	}
	err := h.appendBounded(p, cl, recs, done)
	if errors.Is(err, log.ErrBatchTooLarge) && n > 1 {
		// A burst the log takes in two appends, not one.
		h.appendQoS0(s, cl, p, recs[:n/2:n/2], nil)
		h.appendQoS0(s, cl, p, recs[n/2:], nil)
		return
	}
	if err != nil {
		h.failQoS0(s, cl, string(recs[0].Headers[0].Value), n, err)
	}
}

// failQoS0 refuses n QoS 0 publishes of appendQoS0 that failed.
func (h *Hook) failQoS0(s *session, from *mochi.Client, topic string, n int, err error) {
	s.mu.Lock()
	cl := s.cl
	s.mu.Unlock()
	h.refused(cl, &entry{pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic}, cl: from, err: err})
	if n > 1 {
		reason, _ := classify(err)
		h.m.ackReason[reason].Add(float64(n - 1))
	}
	h.completed(n)
}
