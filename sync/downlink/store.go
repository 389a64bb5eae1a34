package downlink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// metaStore is what the Store keeps in the node's metadata store (its
// cursor and the final statuses above it); *meta.Store satisfies it.
type metaStore interface {
	SetCursor(ctx context.Context, name, topic string, partition int32, offset int64) error
	Cursor(ctx context.Context, name, topic string, partition int32) (int64, bool, error)
	Put(ctx context.Context, bucket, key string, value []byte) error
	Get(ctx context.Context, bucket, key string) ([]byte, bool, error)
	Delete(ctx context.Context, bucket, key string) error
}

// entry is one command at the edge that is not final yet.
type entry struct {
	offset int64 // in the command log
	cmd    wire.Command
}

// maxSeen bounds the ids remembered to drop redeliveries from the centre.
const maxSeen = 100000

// Store is the edge's durable command queue: commands taken from the
// centre are appended to the log topic wire.CommandLogTopic (and are
// durable there) before the centre is told; every status change is
// appended to wire.CommandStatusTopic, which the forwarder sends upstream
// exactly once. Per device the commands are kept in log order.
//
// Lock order: mu only; no log or metadata I/O while holding it.
type Store struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	meta   metaStore
	cmds   *log.Partition
	status *log.Partition
	hold   *log.Hold
	now    func() time.Time

	mu       sync.Mutex
	devices  map[string][]*entry // pending commands per device, in offset order
	pending  int
	done     map[int64]string    // offset → id of final commands above the cursor
	seen     map[string]struct{} // ids taken (dedup of redeliveries)
	seenFIFO []string
	cursor   int64 // lowest offset of a command not final (or end)
	end      int64 // one past the last command in devices or done: a Take between its append and its insert is above it
	changed  chan struct{}
}

// Open recovers the queue from the node's log and metadata store: every
// command above the cursor that has no final status there is pending
// again. The node creates both log topics (one partition each) first.
func Open(ctx context.Context, cfg Config, lg *log.Log, meta metaStore) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: logger, m: m, meta: meta, now: time.Now,
		devices: map[string][]*entry{}, done: map[int64]string{}, seen: map[string]struct{}{}, changed: make(chan struct{})}
	if s.cmds, err = lg.Partition(wire.CommandLogTopic, 0); err != nil {
		return nil, fmt.Errorf("downlink: %w", err)
	}
	if s.status, err = lg.Partition(wire.CommandStatusTopic, 0); err != nil {
		return nil, fmt.Errorf("downlink: %w", err)
	}
	if s.hold, err = s.cmds.Hold(HolderName); err != nil {
		return nil, fmt.Errorf("downlink: %w", err)
	}
	cursor, _, err := meta.Cursor(ctx, HolderName, wire.CommandLogTopic, 0)
	if err != nil {
		return nil, fmt.Errorf("downlink: cursor: %w", err)
	}
	s.hold.Set(cursor)
	s.cursor = cursor
	atEdge, err := s.replay(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.restateAtEdge(ctx, atEdge); err != nil {
		return nil, err
	}
	s.m.queued.Set(float64(s.pending))
	logger.Info("downlink: open", "pending", s.pending, "cursor", s.cursor, "site", cfg.Site)
	return s, nil
}

// replay reads the command log from its start: every id is remembered (a
// redelivery of one is dropped), and commands at or above the cursor
// without a final status are pending. It returns the pending commands'
// at_edge status records, as Take wrote them (restateAtEdge).
func (s *Store) replay(ctx context.Context) ([]log.Record, error) {
	from := s.cmds.StartOffset()
	end := s.cmds.EndOffset()
	var atEdge []log.Record
	for from < end {
		recs, err := s.cmds.Read(ctx, from, 1<<20)
		if err != nil {
			return nil, fmt.Errorf("downlink: replay %s: %w", wire.CommandLogTopic, err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			from = r.Offset + 1
			c, err := wire.DecodeCommand(r.Value)
			if err != nil {
				s.log.Warn("downlink: skipping an undecodable command record", "offset", r.Offset, "err", err)
				continue
			}
			c.Payload = slices.Clone(c.Payload)
			s.remember(c.ID)
			if r.Offset < s.cursor {
				continue
			}
			if _, final, err := s.meta.Get(ctx, doneBucket, c.ID); err != nil {
				return nil, fmt.Errorf("downlink: replay: %w", err)
			} else if final {
				s.done[r.Offset] = c.ID
				continue
			}
			s.devices[c.Device] = append(s.devices[c.Device], &entry{offset: r.Offset, cmd: c})
			s.pending++
			rec, err := s.statusRecord(c, wire.StatusAtEdge, "", nil, time.Unix(0, r.Timestamp))
			if err != nil {
				return nil, err
			}
			atEdge = append(atEdge, rec)
		}
	}
	s.end = end
	s.advanceLocked(ctx)
	return atEdge, nil
}

// restateAtEdge appends again the at_edge status of every pending command.
// Take appends a command and then its at_edge status: a crash between the
// two leaves a command whose status never reaches the centre, and the
// centre's redelivery is dropped as a duplicate. The centre folds a status
// it already has as a no-op, and places this one by its time, the time the
// command was taken, so the history reads as if nothing had happened.
// Bounded by the queue's limits.
func (s *Store) restateAtEdge(ctx context.Context, recs []log.Record) error {
	for len(recs) > 0 {
		n := min(len(recs), 256)
		if _, err := s.status.Append(ctx, recs[:n]); err != nil {
			return fmt.Errorf("downlink: append status: %w", err)
		}
		recs = recs[n:]
	}
	return nil
}

// remember adds id to the dedup set, forgetting the oldest past maxSeen.
// mu must be held (or the Store not yet shared).
func (s *Store) remember(id string) {
	if _, ok := s.seen[id]; ok {
		return
	}
	s.seen[id] = struct{}{}
	s.seenFIFO = append(s.seenFIFO, id)
	if len(s.seenFIFO) > maxSeen {
		delete(s.seen, s.seenFIFO[0])
		s.seenFIFO = s.seenFIFO[1:]
	}
}

// Changed returns a channel closed at the next change of the queue (a
// command taken or finished).
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Store) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Take makes a command from the centre durable at the edge. It returns
// once the command (or its rejection or expiry) is durable in the log:
// the caller then acknowledges it to the centre. A command already taken
// is dropped (the centre redelivered it). Take is called by one goroutine.
func (s *Store) Take(ctx context.Context, c wire.Command) error {
	s.mu.Lock()
	_, dup := s.seen[c.ID]
	full := len(s.devices[c.Device]) >= s.cfg.MaxPerDevice || s.pending >= s.cfg.MaxQueued
	s.mu.Unlock()
	switch {
	case dup:
		s.m.taken.WithLabelValues("duplicate").Inc()
		return nil
	case c.Site != s.cfg.Site:
		return s.finalOnly(ctx, c, wire.StatusRejected, wire.ReasonUnknownSite)
	case !s.now().Before(c.Expires):
		return s.finalOnly(ctx, c, wire.StatusExpired, wire.ReasonTTL)
	case full:
		return s.finalOnly(ctx, c, wire.StatusRejected, wire.ReasonQueueFull)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	off, err := s.cmds.Append(ctx, []log.Record{{Timestamp: s.now().UnixNano(), Key: []byte(c.Device), Value: b}})
	if err != nil {
		return fmt.Errorf("downlink: append command: %w", err)
	}
	if err := s.appendStatus(ctx, c, wire.StatusAtEdge, "", nil); err != nil {
		return err
	}
	s.mu.Lock()
	s.remember(c.ID)
	s.devices[c.Device] = append(s.devices[c.Device], &entry{offset: off, cmd: c})
	s.pending++
	s.end = max(s.end, off+1)
	s.m.queued.Set(float64(s.pending))
	s.broadcastLocked()
	s.mu.Unlock()
	s.m.taken.WithLabelValues("queued").Inc()
	return nil
}

// finalOnly records a command that ends as soon as it arrives.
func (s *Store) finalOnly(ctx context.Context, c wire.Command, st wire.CommandStatus, reason string) error {
	if err := s.appendStatus(ctx, c, st, reason, nil); err != nil {
		return err
	}
	s.mu.Lock()
	s.remember(c.ID)
	s.mu.Unlock()
	s.m.finished.WithLabelValues(string(st), reason).Inc()
	s.m.taken.WithLabelValues(string(st)).Inc()
	return nil
}

func (s *Store) appendStatus(ctx context.Context, c wire.Command, st wire.CommandStatus, reason string, result []byte) error {
	rec, err := s.statusRecord(c, st, reason, result, s.now())
	if err != nil {
		return err
	}
	if _, err := s.status.Append(ctx, []log.Record{rec}); err != nil {
		return fmt.Errorf("downlink: append status: %w", err)
	}
	return nil
}

// statusRecord is the status log record of c reaching st at t.
func (s *Store) statusRecord(c wire.Command, st wire.CommandStatus, reason string, result []byte, t time.Time) (log.Record, error) {
	r := wire.CommandStatusRecord{Version: wire.CommandVersion, ID: c.ID, Site: c.Site, Device: c.Device,
		Status: st, Time: t.UTC(), Reason: reason, Result: result, Node: s.cfg.Node}
	b, err := json.Marshal(r)
	if err != nil {
		return log.Record{}, err
	}
	return log.Record{Timestamp: t.UnixNano(), Key: []byte(c.Device), Value: b}, nil
}

// Devices lists the devices with commands pending, sorted.
func (s *Store) Devices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.devices))
	for d := range s.devices {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// Next returns the device's first pending command (in the order taken).
// A command whose time to live has passed is never returned: Next ends it
// as expired and looks at the next one.
func (s *Store) Next(ctx context.Context, device string) (wire.Command, bool, error) {
	for {
		s.mu.Lock()
		q := s.devices[device]
		if len(q) == 0 {
			s.mu.Unlock()
			return wire.Command{}, false, nil
		}
		c := q[0].cmd
		s.mu.Unlock()
		if s.now().Before(c.Expires) {
			return c, true, nil
		}
		if err := s.Finish(ctx, c, wire.StatusExpired, wire.ReasonTTL, nil); err != nil {
			return wire.Command{}, false, err
		}
	}
}

// Finish ends a pending command with a final (or delivered) status: the
// status record is durable before the command leaves the queue. Finishing
// a command that is not pending does nothing.
func (s *Store) Finish(ctx context.Context, c wire.Command, st wire.CommandStatus, reason string, result []byte) error {
	s.mu.Lock()
	q := s.devices[c.Device]
	i := slices.IndexFunc(q, func(e *entry) bool { return e.cmd.ID == c.ID })
	s.mu.Unlock()
	if i < 0 {
		return nil
	}
	if err := s.appendStatus(ctx, c, st, reason, result); err != nil {
		return err
	}
	if err := s.meta.Put(ctx, doneBucket, c.ID, []byte(st)); err != nil {
		return fmt.Errorf("downlink: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q = s.devices[c.Device]
	i = slices.IndexFunc(q, func(e *entry) bool { return e.cmd.ID == c.ID })
	if i < 0 {
		return nil
	}
	s.done[q[i].offset] = c.ID
	q = slices.Delete(q, i, i+1)
	if len(q) == 0 {
		delete(s.devices, c.Device)
	} else {
		s.devices[c.Device] = q
	}
	s.pending--
	s.m.queued.Set(float64(s.pending))
	s.m.finished.WithLabelValues(string(st), reason).Inc()
	s.advanceLocked(ctx)
	s.broadcastLocked()
	return nil
}

// Answer records a device's answer to a command (succeeded or failed).
// The command may have left the queue already (delivered): the answer is
// still sent upstream, where it becomes the command's result.
func (s *Store) Answer(ctx context.Context, site, device, id string, st wire.CommandStatus, result []byte) error {
	if len(result) > wire.MaxCommandResultBytes {
		result = result[:wire.MaxCommandResultBytes]
	}
	c := wire.Command{ID: id, Site: site, Device: device}
	s.mu.Lock()
	for _, e := range s.devices[device] {
		if e.cmd.ID == id {
			c = e.cmd
		}
	}
	s.mu.Unlock()
	if c.Expires.IsZero() {
		s.m.finished.WithLabelValues(string(st), "").Inc()
		return s.appendStatus(ctx, c, st, "", result)
	}
	// An answer can overtake the PUBACK (a device may publish it before
	// acknowledging): the device has the command, so it is delivered too,
	// and the PUBACK that follows finds it finished.
	if err := s.appendStatus(ctx, c, wire.StatusDelivered, "", nil); err != nil {
		return err
	}
	s.m.finished.WithLabelValues(string(wire.StatusDelivered), "").Inc()
	return s.Finish(ctx, c, st, "", result)
}

// advanceLocked moves the cursor (and the retention hold) to the lowest
// pending offset, or s.end when nothing is pending, and forgets the final
// statuses below it. The metadata write happens under mu: it is one small
// bbolt update, and the cursor must not move backwards between two
// finishes. mu must be held.
func (s *Store) advanceLocked(ctx context.Context) {
	low := s.end
	for _, q := range s.devices {
		if len(q) > 0 && q[0].offset < low {
			low = q[0].offset
		}
	}
	if low <= s.cursor {
		return
	}
	if err := s.meta.SetCursor(ctx, HolderName, wire.CommandLogTopic, 0, low); err != nil {
		s.log.Warn("downlink: cannot save the cursor; it stays behind (commands finished since are skipped by their status)", "err", err)
		return
	}
	s.cursor = low
	s.hold.Set(low)
	for off, id := range s.done {
		if off < low {
			if err := s.meta.Delete(ctx, doneBucket, id); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("downlink: cannot forget a final status", "id", id, "err", err)
				continue
			}
			delete(s.done, off)
		}
	}
}

// Pending is one device's queue at this node, for GET /v1/commands.
type Pending struct {
	Device   string           `json:"device"`
	Commands []PendingCommand `json:"commands"`
}

// PendingCommand is one command waiting at this node.
type PendingCommand struct {
	ID      string    `json:"id"`
	Topic   string    `json:"topic"`
	QoS     byte      `json:"qos"`
	Expires time.Time `json:"expires"`
	Offset  int64     `json:"offset"`
}

// Snapshot lists the pending commands per device, devices sorted.
func (s *Store) Snapshot() []Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Pending, 0, len(s.devices))
	for d, q := range s.devices {
		p := Pending{Device: d}
		for _, e := range q {
			p.Commands = append(p.Commands, PendingCommand{ID: e.cmd.ID, Topic: e.cmd.Topic, QoS: e.cmd.QoS, Expires: e.cmd.Expires, Offset: e.offset})
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Pending) int {
		if a.Device < b.Device {
			return -1
		}
		if a.Device > b.Device {
			return 1
		}
		return 0
	})
	return out
}
