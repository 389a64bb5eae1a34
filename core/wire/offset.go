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
// resumes at last+1 (or at its own cursor, if that is further) on start and
// after every reconnect: this, not the duplicate window, is what makes
// delivery exactly-once after an outage of any length (G3).
//
// Get s from a stream whose config has AllowDirect off (as core provisions
// them): direct gets may be answered by a lagging replica, and a stale
// answer here means resending records outside the dedup window.
//
// If the last message on subject carries no readable origin offset, someone
// else published there; LastOffset returns an error instead of guessing.
func LastOffset(ctx context.Context, s LastMsgGetter, subject string) (last int64, found bool, err error) {
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return -1, false, nil
	}
	if err != nil {
		return -1, false, fmt.Errorf("wire: last message on %s: %w", subject, err)
	}
	name := HeaderOffset
	if m.Header.Get(HeaderBatch) != "" {
		name = HeaderLastOffset
	}
	off, err := headerInt(m.Header, name, true)
	if err != nil {
		return -1, false, fmt.Errorf("wire: last message on %s (stream seq %d): %w", subject, m.Sequence, err)
	}
	return off, true, nil
}
