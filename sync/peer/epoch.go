package peer

import (
	"encoding/binary"
	"fmt"
)

// history is one partition's epoch history [PROTOCOL-5]: entries ascending
// by epoch and by start, each saying that from Start on the partition was
// written by the owner in that epoch (Kafka's leader-epoch cache, KIP-101).
// The owner keeps its own in edge/meta; a follower keeps a copy of its
// owner's, and both use it to find where a follower's log stops agreeing
// with its owner's — never a bare high watermark (Liftbridge's mistake).
type history []epochEntry

// maxHistory caps a partition's history: one entry per owner start that
// wrote to the partition. Beyond it the oldest entries go; a follower whose
// last epoch is older than every kept entry gets no truncation point and
// stops, which is safe (it keeps its data) and needs an operator.
const maxHistory = 512

// epochAt returns the epoch that wrote offset off, and 0 if no entry
// covers it (off below the first entry, or off negative).
func (h history) epochAt(off int64) uint64 {
	var e uint64
	for _, x := range h {
		if x.Start > off {
			break
		}
		e = x.Epoch
	}
	return e
}

// endFor returns where epoch e ends in h: the start of the first entry of
// a later epoch, or end (the owner's log end) if e is the latest. ok is
// false when h has no entry of epoch e or earlier: then h cannot say where
// a follower of that epoch diverges (the owner lost its history).
func (h history) endFor(e uint64, end int64) (int64, bool) {
	ok := false
	for _, x := range h {
		if x.Epoch > e {
			return min(x.Start, end), ok
		}
		ok = true
	}
	return end, ok
}

// begin returns the history after an owner starts epoch e with its
// partition ending at end: entries that start past the recovered end are
// dropped (log first, metadata second), an entry that wrote nothing
// (starts at end) is replaced, and (e, end) is added. A partition with no
// history yet (replication newly configured) gives its existing records
// to e: (e, 0).
func (h history) begin(e uint64, end int64) history {
	if len(h) == 0 {
		return history{{Epoch: e, Start: 0}}
	}
	out := make(history, 0, len(h)+1)
	for _, x := range h {
		if x.Start < end {
			out = append(out, x)
		}
	}
	out = append(out, epochEntry{Epoch: e, Start: end})
	if len(out) > maxHistory {
		out = out[len(out)-maxHistory:]
	}
	return out
}

func (h history) equal(o history) bool {
	if len(h) != len(o) {
		return false
	}
	for i := range h {
		if h[i] != o[i] {
			return false
		}
	}
	return true
}

// validate checks what a peer or the store sent: epochs strictly
// ascending, starts ascending and not negative.
func (h history) validate() error {
	for i, x := range h {
		if x.Start < 0 || x.Epoch == 0 {
			return fmt.Errorf("%w: epoch history entry %d: epoch %d start %d", ErrProtocol, i, x.Epoch, x.Start)
		}
		if i > 0 && (x.Epoch <= h[i-1].Epoch || x.Start < h[i-1].Start) {
			return fmt.Errorf("%w: epoch history not ascending at entry %d", ErrProtocol, i)
		}
	}
	return nil
}

// historyVersion is the first byte of a stored history.
const historyVersion = 1

// marshal encodes h for the store: version byte, then (epoch u64, start
// i64) per entry, big-endian.
func (h history) marshal() []byte {
	b := make([]byte, 1, 1+16*len(h))
	b[0] = historyVersion
	for _, x := range h {
		b = binary.BigEndian.AppendUint64(b, x.Epoch)
		b = binary.BigEndian.AppendUint64(b, uint64(x.Start))
	}
	return b
}

func unmarshalHistory(b []byte) (history, error) {
	if len(b) < 1 || b[0] != historyVersion || (len(b)-1)%16 != 0 {
		return nil, fmt.Errorf("peer: stored epoch history: unknown version or length %d", len(b))
	}
	h := make(history, 0, (len(b)-1)/16)
	for p := b[1:]; len(p) > 0; p = p[16:] {
		h = append(h, epochEntry{Epoch: binary.BigEndian.Uint64(p), Start: int64(binary.BigEndian.Uint64(p[8:]))})
	}
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("peer: stored epoch history: %w", err)
	}
	return h, nil
}

// fetchDecision is what the owner does with one partition of a fetch.
type fetchDecision int

const (
	serve      fetchDecision = iota // send records from the fetch offset
	truncate                        // tell the follower to cut its log at the returned offset first
	outOfRange                      // the follower is below the owner's start (retention) or past its end
	unknown                         // the owner's history cannot place the follower's epoch
)

// decideFetch is the owner's pure decision for one partition [PROTOCOL-5.2]:
// given its history, log start and end, the follower's end (offset) and the
// epoch of the follower's last record, serve from offset, or name the
// offset the follower must truncate to. A follower is only ever told to
// truncate where its epoch ends in the owner's history.
func decideFetch(h history, start, end, offset int64, lastEpoch uint64) (fetchDecision, int64) {
	if offset < 0 {
		return outOfRange, 0
	}
	if offset > 0 {
		epochEnd, ok := h.endFor(lastEpoch, end)
		if lastEpoch == 0 || !ok {
			return unknown, 0
		}
		if offset > epochEnd {
			return truncate, epochEnd
		}
	}
	if offset > end || offset < start {
		return outOfRange, 0
	}
	return serve, offset
}
