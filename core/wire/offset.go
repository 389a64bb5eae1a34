package wire

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// LastMsgGetter is the part of jetstream.Stream LastOffset needs.
type LastMsgGetter interface {
	GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error)
}

// LastOffset returns the highest origin offset the stream holds on subject
// (one origin partition's Subject), and found=false when it holds nothing
// there. For a batch message that is the batch's last offset. A forwarder
// resumes at last+1 on start and after every reconnect: this, not the
// duplicate window, is what makes delivery exactly-once after an outage of
// any length (G3).
//
// last+1 below the forwarder's own cursor means the stream no longer holds
// records it once acknowledged: expired by max_age, purged, or lost in a
// power cut of a centre running without sync_interval: always. Which of
// those it was is not visible here; the forwarder should keep its cursor
// and log the gap loudly rather than re-send.
//
// Get s from a stream whose config has AllowDirect off (as core provisions
// them): direct gets may be answered by a lagging replica, and a stale
// answer here means resending records outside the dedup window.
//
// If the last message on subject carries no readable origin offset, someone
// else published there; LastOffset returns an error instead of guessing.
func LastOffset(ctx context.Context, s LastMsgGetter, subject string) (last int64, found bool, err error) {
	last, _, found, err = LastPosition(ctx, s, subject)
	return last, found, err
}

// LastPosition is LastOffset plus the stream sequence of that message (0
// when there is none). A forwarder sends its first message after resuming
// with Nats-Expected-Last-Subject-Sequence set to it, so that a message of a
// previous connection (or process) that the server stores only after this
// answer makes the server refuse the resumed send instead of storing the
// same offsets twice once the duplicate window has passed.
func LastPosition(ctx context.Context, s LastMsgGetter, subject string) (last int64, seq uint64, found bool, err error) {
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return -1, 0, false, nil
	}
	if err != nil {
		return -1, 0, false, fmt.Errorf("wire: last message on %s: %w", subject, err)
	}
	name := HeaderOffset
	if m.Header.Get(HeaderBatch) != "" {
		name = HeaderLastOffset
	}
	off, err := headerInt(m.Header, name, true)
	if err != nil {
		return -1, 0, false, fmt.Errorf("wire: last message on %s (stream seq %d): %w", subject, m.Sequence, err)
	}
	return off, m.Sequence, true, nil
}
