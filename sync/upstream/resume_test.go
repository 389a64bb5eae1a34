package upstream

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestDecideResume has one row per branch of the resume decision that
// doc.go describes ("How a partition is forwarded", steps 1 and 2, and the
// resend rules). Each row gives every input; -1 means "none" for cursor
// and acked. The log's range is [start, end).
func TestDecideResume(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const dupWindow = 2 * time.Minute
	none := streamEnd{}
	stream := func(last int64) streamEnd { return streamEnd{found: true, last: last, lastSeq: uint64(last) + 1000} }
	// refused: the server refused From; nothing after it was stored.
	refused := func(from, to int64, cuts ...span) *redo {
		return &redo{V: 1, From: from, To: to, At: now.Add(-time.Second), Cuts: cuts}
	}
	// suspect: a publish after From was acknowledged, age ago.
	suspect := func(from, to int64, age time.Duration) *redo {
		return &redo{V: 1, From: from, To: to, At: now.Add(-age), Suspect: true}
	}
	tests := []struct {
		name       string
		stream     streamEnd
		cursor     int64
		acked      int64
		resend     *redo
		start, end int64

		next         int64
		source       resumeSource
		outcome      resendOutcome
		cuts         []span
		streamBehind int64
		retention    int64
		streamAhead  int64
	}{
		// Step 1: after the stream's last message; the cursor when it holds
		// nothing; the log start when there is no cursor either.
		{name: "stream_last", stream: stream(41), cursor: 30, acked: -1, start: 0, end: 100,
			next: 42, source: fromStream},
		{name: "stream_last_no_cursor", stream: stream(41), cursor: -1, acked: -1, start: 0, end: 100,
			next: 42, source: fromStream},
		{name: "stream_equals_cursor", stream: stream(41), cursor: 42, acked: 42, start: 0, end: 100,
			next: 42, source: fromStream},
		{name: "empty_stream_cursor", stream: none, cursor: 30, acked: -1, start: 0, end: 100,
			next: 30, source: fromCursor},
		{name: "empty_stream_acked_in_memory", stream: none, cursor: -1, acked: 30, start: 0, end: 100,
			next: 30, source: fromCursor},
		{name: "empty_stream_cursor_zero", stream: none, cursor: 0, acked: -1, start: 0, end: 100,
			next: 0, source: fromCursor},
		{name: "empty_stream_no_cursor", stream: none, cursor: -1, acked: -1, start: 5, end: 100,
			next: 5, source: fromLogStart},
		{name: "empty_log", stream: none, cursor: -1, acked: -1, start: 0, end: 0,
			next: 0, source: fromLogStart},

		// The stream holds fewer records than this node saw acknowledged
		// (expired, purged, lost at the centre): the cursor wins.
		{name: "stream_behind_cursor", stream: stream(41), cursor: 50, acked: -1, start: 0, end: 100,
			next: 50, source: fromCursor, streamBehind: 8},
		{name: "stream_behind_acked", stream: stream(41), cursor: 45, acked: 50, start: 0, end: 100,
			next: 50, source: fromCursor, streamBehind: 8},

		// Step 2, below the log start: records deleted at the edge before
		// they were forwarded.
		{name: "below_log_start_from_stream", stream: stream(9), cursor: -1, acked: -1, start: 20, end: 100,
			next: 20, source: fromStream, retention: 10},
		{name: "below_log_start_from_cursor", stream: none, cursor: 12, acked: -1, start: 20, end: 100,
			next: 20, source: fromCursor, retention: 8},

		// Step 2, beyond the log end: a disk restored from an older copy.
		// Reported (and the offsets skipped) once; the next resolve finds
		// acked there.
		{name: "beyond_log_end", stream: stream(149), cursor: 90, acked: -1, start: 0, end: 100,
			next: 150, source: fromStream, streamAhead: 50},
		{name: "beyond_log_end_reported", stream: stream(149), cursor: 150, acked: 150, start: 0, end: 100,
			next: 150, source: fromStream},
		{name: "beyond_log_end_log_caught_up", stream: stream(149), cursor: 150, acked: -1, start: 0, end: 150,
			next: 150, source: fromStream},

		// Resends: exact where the stream holds nothing at or after From.
		{name: "resend_refused", stream: stream(41), cursor: 42, acked: 42, resend: refused(42, 50), start: 0, end: 100,
			next: 42, source: fromResend, outcome: resendExact},
		{name: "resend_refused_empty_stream", stream: none, cursor: 0, acked: 0, resend: refused(0, 9), start: 0, end: 100,
			next: 0, source: fromResend, outcome: resendExact},
		{name: "resend_refused_later_unknown", stream: stream(45), cursor: 42, acked: 42, resend: refused(42, 50), start: 0, end: 100,
			next: 42, source: fromResend, outcome: resendExact},
		{name: "resend_suspect_nothing_after", stream: stream(41), cursor: 42, acked: 42, resend: suspect(42, 50, time.Second), start: 0, end: 100,
			next: 42, source: fromResend, outcome: resendExact},
		{name: "resend_batch_keeps_cuts", stream: stream(41), cursor: 42, acked: 42, resend: refused(42, 60, span{42, 50}, span{51, 60}), start: 0, end: 100,
			next: 42, source: fromResend, outcome: resendExact, cuts: []span{{42, 50}, {51, 60}}},

		// A later record was stored: the duplicate window drops what the
		// stream has, while it can be trusted to (half its length);
		// beyond, the resend happens all the same (duplicates can be
		// dropped downstream, a lost record is lost).
		{name: "resend_hole_in_window", stream: stream(46), cursor: 42, acked: 42, resend: suspect(42, 50, 10*time.Second), start: 0, end: 100,
			next: 42, source: fromResend, outcome: resendHole},
		{name: "resend_hole_at_half_window", stream: stream(46), cursor: 42, acked: 42, resend: suspect(42, 50, dupWindow/2), start: 0, end: 100,
			next: 42, source: fromResend, outcome: resendLate},
		{name: "resend_hole_beyond_window", stream: stream(46), cursor: 42, acked: -1, resend: suspect(42, 50, time.Hour), start: 0, end: 100,
			next: 42, source: fromResend, outcome: resendLate},

		// The stream ends below the resend: it lost acknowledged records;
		// the resend is moot and the stream rules apply.
		{name: "resend_moot", stream: stream(30), cursor: -1, acked: -1, resend: refused(42, 50), start: 0, end: 100,
			next: 31, source: fromStream, outcome: resendMoot},
		{name: "resend_moot_stream_behind", stream: stream(30), cursor: 42, acked: 42, resend: refused(42, 50), start: 0, end: 100,
			next: 42, source: fromCursor, outcome: resendMoot, streamBehind: 11},

		// A resend below the log start moves up like any resume point and
		// forgets its batch bounds.
		{name: "resend_below_log_start", stream: stream(9), cursor: 10, acked: -1, resend: refused(10, 15, span{10, 12}, span{13, 15}), start: 14, end: 100,
			next: 14, source: fromResend, outcome: resendExact, retention: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := resumeInput{stream: tt.stream, cursor: tt.cursor, acked: tt.acked, resend: tt.resend,
				start: tt.start, end: tt.end, dupWindow: dupWindow, now: now}
			got := decideResume(in)
			want := resume{next: tt.next, cuts: tt.cuts, source: tt.source, resend: tt.outcome,
				known: max(tt.acked, tt.cursor), streamBehind: tt.streamBehind, retention: tt.retention, streamAhead: tt.streamAhead}
			if !equalResume(got, want) {
				t.Errorf("decideResume(%+v)\n got %s\nwant %s", in, describeResume(got), describeResume(want))
			}
		})
	}
}

func equalResume(a, b resume) bool {
	return a.next == b.next && a.source == b.source && a.resend == b.resend && a.known == b.known &&
		slices.Equal(a.cuts, b.cuts) && a.streamBehind == b.streamBehind && a.retention == b.retention && a.streamAhead == b.streamAhead
}

func describeResume(d resume) string {
	return fmt.Sprintf("next=%d source=%s resend=%d cuts=%v known=%d stream_behind=%d retention=%d stream_ahead=%d",
		d.next, d.source, d.resend, d.cuts, d.known, d.streamBehind, d.retention, d.streamAhead)
}
