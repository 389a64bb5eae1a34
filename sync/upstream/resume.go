package upstream

import "time"

// The resume decision (step 1 and 2 of "How a partition is forwarded" in
// doc.go) is a pure function: resolve gathers its inputs (one stream
// lookup, one cursor read, a resend armed in memory or saved by a
// predecessor), decideResume says where to resume and what to report, and
// resolve does the reporting and persists the result. Everything that
// makes forwarding exact after restarts, outages and restored disks is in
// decideResume and table-tested in resume_test.go, one row per branch.

// streamEnd is what the stream holds on a partition's subject.
type streamEnd struct {
	found   bool   // the stream holds a message on the subject
	last    int64  // origin offset of its last message (the batch's last record)
	lastSeq uint64 // stream sequence of that message, 0 if none
}

// resumeInput is everything the decision depends on.
type resumeInput struct {
	stream streamEnd
	// cursor is the cursor store's offset, -1 if it holds none.
	cursor int64
	// acked is the next offset this process saw acknowledged, -1 before
	// the partition's first resolve.
	acked int64
	// resend is a resend armed by abort (or saved before a restart), nil
	// if none.
	resend *redo
	// start and end are the log's readable range.
	start, end int64
	// dupWindow is the stream's duplicate window.
	dupWindow time.Duration
	now       time.Time
}

// resumeSource is where a resume point came from; the values are the
// source label of outpost_upstream_resumes_total.
type resumeSource string

const (
	fromStream   resumeSource = "stream"    // after the stream's last message
	fromCursor   resumeSource = "cursor"    // what this node knows was acknowledged
	fromLogStart resumeSource = "log_start" // nothing known: the whole log
	fromResend   resumeSource = "resend"    // a resend from the first unacknowledged record
)

// resendOutcome says what became of an armed resend.
type resendOutcome int

const (
	resendNone  resendOutcome = iota // none was armed
	resendExact                      // the stream ends right below it: nothing duplicated or reordered
	resendHole                       // the stream may hold later records: the duplicate window drops them
	resendLate                       // as resendHole, but older than the window can be trusted to cover
	resendMoot                       // the stream ends below it: it lost records; resume from the stream
)

// resume is the decision: where to resume, and the why that resolve logs
// and counts.
type resume struct {
	next   int64        // the first offset to publish
	cuts   []span       // batch bounds to repeat (resend in batch mode)
	source resumeSource // where next came from
	resend resendOutcome
	// known is the furthest offset this node knows acknowledged:
	// max(cursor, acked), -1 if none.
	known int64
	// Records never forwarded, by the reason label of
	// outpost_upstream_gap_records_total; 0 if none.
	streamBehind int64 // [stream's last+1, known): the stream lost them; not resent
	retention    int64 // [start-retention, start) deleted at the edge before being forwarded
	streamAhead  int64 // [end, next): the stream holds other records at these offsets; skipped
}

// decideResume decides where a partition resumes:
//
//   - after the stream's last message on the subject, which is exact
//     after an outage of any length;
//   - if the stream holds less than this node knows was acknowledged
//     (expired, purged, lost at the centre), from what it knows: resending
//     could undo a purge (stream_behind);
//   - if the stream holds nothing, from the cursor; with no cursor, from
//     the log start;
//   - with a resend armed, from its first record, unless the stream now
//     ends below it (moot); how far to trust the duplicate window to drop
//     what the stream already has depends on whether a later record was
//     stored (Suspect) and on the resend's age;
//   - never below the log start (records deleted at the edge, retention);
//   - and beyond the log end (a disk restored from an older copy) only
//     once reported: the records written there later are skipped
//     (stream_ahead), since the stream holds others at those offsets.
func decideResume(in resumeInput) resume {
	d := resume{known: in.acked}
	if in.cursor >= 0 {
		d.known = max(d.known, in.cursor)
	}
	s, r := in.stream, in.resend
	switch {
	case r != nil && (!s.found || s.last >= r.From-1):
		d.next, d.cuts, d.source = r.From, r.Cuts, fromResend
		switch {
		case !r.Suspect || !s.found || s.last < r.From:
			// The server refused From and holds nothing after it.
			d.resend = resendExact
		case in.now.Sub(r.At) < in.dupWindow/2:
			d.resend = resendHole
		default:
			// Resuming after the stream's last record would lose the
			// missing records for good; resending may duplicate records
			// after them. A duplicate carries its origin offset and can be
			// dropped downstream; a lost record cannot be recovered.
			d.resend = resendLate
		}
	case s.found:
		if r != nil {
			d.resend = resendMoot
		}
		d.next, d.source = s.last+1, fromStream
		if d.known > d.next {
			d.streamBehind = d.known - d.next
			d.next, d.source = d.known, fromCursor
		}
	case d.known >= 0:
		d.next, d.source = d.known, fromCursor
	default:
		d.next, d.source = in.start, fromLogStart
	}
	if d.next < in.start {
		d.retention = in.start - d.next
		d.next, d.cuts = in.start, nil
	}
	if d.next > in.end && in.acked < d.next {
		// Reported once: the next resolve finds acked at next.
		d.streamAhead = d.next - in.end
	}
	return d
}
