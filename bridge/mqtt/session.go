package mqtt

import (
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// recentAcks is how many acknowledged QoS 1 (packet id, payload) pairs a
// session remembers to recognise a resend whose PUBACK was lost.
const recentAcks = 64

// session is the ingest state of one MQTT session (client id), which
// outlives a connection when the session persists: the queue of its
// publishes in arrival order, completed by one drainer at a time.
type session struct {
	h       *Hook
	id      string
	idBytes []byte // id as a header value, shared by the session's records

	// topic caches what the session's last topic costs to look up; it is
	// replaced, never changed, so that the connections of a session being
	// taken over can share it (headers.go).
	topic atomic.Pointer[topicCache]

	// published and lastPublish (Unix ns) count what the device sent, for
	// the dashboard's devices list (DeviceStats).
	published   atomic.Int64
	lastPublish atomic.Int64

	mu       sync.Mutex
	cl       *mochi.Client     // mu; the current connection
	queue    []*entry          // mu; arrival order, not yet completed
	ids      map[uint16]*entry // mu; QoS>0 entries in queue by packet id
	draining bool              // mu; a drain goroutine runs
	space    chan struct{}     // mu; closed when the queue shrinks
	recent   []recentAck       // mu; ring of acknowledged QoS 1 publishes
	next     int               // mu; next slot of recent
	stuck    *mochi.Client     // mu; connection already disconnected for a timeout
	rerec    map[uint16]bool   // mu; QoS 2 ids retransmitted after their PUBREC
}

type recentAck struct {
	id   uint16
	hash uint32
}

// entry is one publish on its way to completion.
type entry struct {
	pk       packets.Packet
	cl       *mochi.Client // connection it arrived on
	at       time.Time
	hash     uint32 // of topic and payload, QoS 1 only
	answer   bool   // a recognised resend: ack without append or fan-out
	noFanout bool   // redirected by the check stage: not delivered locally
	done     bool   // session.mu
	err      error  // session.mu
}

func newSession(h *Hook, cl *mochi.Client) *session {
	return &session{h: h, id: cl.ID, idBytes: []byte(cl.ID), cl: cl, space: make(chan struct{})}
}

func hashPublish(pk packets.Packet) uint32 {
	f := fnv.New32a()
	f.Write([]byte(pk.TopicName))
	f.Write([]byte{0})
	f.Write(pk.Payload)
	return f.Sum32()
}

// acked reports whether (id, hash) was acknowledged recently. mu held.
func (s *session) acked(id uint16, hash uint32) bool {
	for _, r := range s.recent {
		if r.id == id && r.hash == hash {
			return true
		}
	}
	return false
}

func (s *session) rememberLocked(id uint16, hash uint32) {
	n := min(recentAcks, s.h.cfg.MaxInflight)
	if len(s.recent) < n {
		s.recent = append(s.recent, recentAck{id, hash})
		return
	}
	s.recent[s.next] = recentAck{id, hash}
	s.next = (s.next + 1) % n
}

// waitRoomLocked waits until the queue has room or d passes. mu held; it
// is released while waiting.
func (s *session) waitRoomLocked(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for len(s.queue) >= s.h.cfg.MaxInflight {
		ch := s.space
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-t.C:
			s.mu.Lock()
			return len(s.queue) < s.h.cfg.MaxInflight
		}
	}
	return true
}

func (s *session) addLocked(e *entry) {
	s.queue = append(s.queue, e)
	if e.pk.FixedHeader.Qos > 0 && !e.answer {
		if s.ids == nil {
			s.ids = make(map[uint16]*entry)
		}
		s.ids[e.pk.PacketID] = e
	}
	s.h.track(1)
}

// refuse queues an entry that has already failed, so that its refusal goes
// out in arrival order after the acks before it.
func (s *session) refuse(e *entry, err error) {
	s.mu.Lock()
	s.queue = append(s.queue, e)
	s.h.track(1)
	s.mu.Unlock()
	s.finish(e, err)
}

// finish records an entry's outcome. It runs on the log's committer
// goroutine, so it only marks and, if the queue head is ready, starts a
// drainer (owned by the hook: Close waits for it); it never writes to the
// network.
func (s *session) finish(e *entry, err error) {
	s.mu.Lock()
	e.done, e.err = true, err
	start := !s.draining && len(s.queue) > 0 && s.queue[0].done
	if start {
		s.draining = true
	}
	s.mu.Unlock()
	if start {
		s.h.spawn(s.drain)
	}
}

// drain completes the ready prefix of the queue, in order, until none is
// ready. At most one drain runs per session.
func (s *session) drain() {
	for {
		s.mu.Lock()
		n := 0
		for n < len(s.queue) && s.queue[n].done {
			n++
		}
		if n == 0 {
			s.draining = false
			s.mu.Unlock()
			return
		}
		batch := make([]*entry, n)
		copy(batch, s.queue)
		rest := copy(s.queue, s.queue[n:])
		clear(s.queue[rest:])
		s.queue = s.queue[:rest]
		cl := s.cl
		for _, e := range batch {
			if e.answer && e.err == nil && e.pk.FixedHeader.Qos == 2 {
				// A retransmission answered again: the id goes back to
				// mochi's inflight map until PUBREL.
				holdPubrec(s.h.cfg.Server, cl, e.pk.PacketID, e.at)
			}
			if e.pk.FixedHeader.Qos == 0 || e.answer {
				continue
			}
			if s.ids[e.pk.PacketID] == e {
				delete(s.ids, e.pk.PacketID)
			}
			if e.err != nil {
				continue
			}
			if e.pk.FixedHeader.Qos == 1 {
				s.rememberLocked(e.pk.PacketID, e.hash)
			} else {
				// Before the id leaves s.ids, mochi's inflight map takes
				// it over: a retransmission is then answered by mochi and
				// PUBREL by processPubrel, never appended again.
				holdPubrec(s.h.cfg.Server, cl, e.pk.PacketID, e.at)
			}
		}
		if len(s.ids) == 0 {
			s.ids = nil
		}
		if len(s.queue) == 0 {
			s.queue = nil
		}
		close(s.space)
		s.space = make(chan struct{})
		s.mu.Unlock()

		s.h.completeBatch(s, cl, batch)
		s.h.completed(n)
	}
}
