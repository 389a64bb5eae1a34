package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// timestampLayout is RFC 3339 with all nine fractional digits, so that
// timestamps compare as strings and keep their nanoseconds.
const timestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// readHint guesses encoded bytes per record when asking the log for a page
// smaller than max_bytes: the log reads up to its byte limit, so asking for
// a megabyte to answer limit=1 would decode thousands of records for
// nothing. The loop asks again if records are larger.
const readHint = 256

type recordsQuery struct {
	offset   int64
	limit    int
	wait     time.Duration
	maxBytes int
}

type recordsJSON struct {
	Records     []recordJSON `json:"records"`
	NextOffset  int64        `json:"next_offset"`
	StartOffset int64        `json:"start_offset"`
	EndOffset   int64        `json:"end_offset"`
}

type recordJSON struct {
	Offset      int64             `json:"offset"`
	Timestamp   string            `json:"timestamp"`
	Key         string            `json:"key"`
	KeyText     *string           `json:"key_text,omitempty"`
	Headers     map[string]string `json:"headers"`
	HeadersText map[string]string `json:"headers_text,omitempty"`
	Value       string            `json:"value"`
	ValueText   *string           `json:"value_text,omitempty"`
}

func (h *handler) records(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	id, ok := parsePartition(w, r)
	if !ok {
		return
	}
	p, err := h.cfg.Log.Partition(topic, id)
	switch {
	case errors.Is(err, elog.ErrNoTopic):
		writeError(w, http.StatusNotFound, "no topic "+strconv.Quote(topic)+"; GET /v1/topics lists the topics")
		return
	case errors.Is(err, elog.ErrNoPartition):
		writeError(w, http.StatusNotFound, err.Error()+"; partitions are numbered from 0, GET /v1/topics/"+topic+" lists them")
		return
	case err != nil:
		h.serverError(w, r, err)
		return
	}
	q, ok := h.parseQuery(w, r, p)
	if !ok {
		return
	}
	start, end := p.StartOffset(), p.EndOffset()
	if q.offset < start || q.offset > end {
		h.outOfRange(w, q.offset, start, end)
		return
	}
	if q.offset == end && q.wait > 0 {
		if !h.wait(w, r, p, q) {
			return
		}
	}
	recs, err := readPage(r.Context(), p, q)
	if errors.Is(err, elog.ErrOffsetOutOfRange) {
		start, end := p.StartOffset(), p.EndOffset()
		if _, perr := h.cfg.Log.Partition(topic, id); perr != nil || (q.offset >= start && q.offset <= end) {
			// The log closed under the read: Partition.Read then reports
			// ErrOffsetOutOfRange for an offset in range (see
			// TestLogReadAfterCloseSaysClosed). A 416 would send a client
			// that trusts it to start_offset, skipping records.
			h.serverError(w, r, elog.ErrClosed)
			return
		}
		// Retention deleted the segment between the check and the read.
		h.outOfRange(w, q.offset, start, end)
		return
	}
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	next := q.offset
	if len(recs) > 0 {
		next = recs[len(recs)-1].Offset + 1
	}
	start, end = p.StartOffset(), p.EndOffset()
	if wantsMsgpack(r) {
		w.Header().Set("Content-Type", "application/msgpack")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(appendRecordsMsgpack(nil, recs, next, start, end))
		return
	}
	out := recordsJSON{Records: make([]recordJSON, 0, len(recs)), NextOffset: next, StartOffset: start, EndOffset: end}
	for i := range recs {
		out.Records = append(out.Records, toJSON(&recs[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// wait blocks until the partition has a record at q.offset, the wait ends
// or the client leaves. It returns false if it has answered the request.
func (h *handler) wait(w http.ResponseWriter, r *http.Request, p *elog.Partition, q recordsQuery) bool {
	if n := h.waiters.Add(1); n > int64(h.cfg.MaxWaiters) {
		h.waiters.Add(-1)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("%d long-polls are already waiting (the node's limit); retry shortly, or read without wait", h.cfg.MaxWaiters))
		return false
	}
	timer := time.NewTimer(q.wait)
	var closed, cut bool
	select {
	case <-p.Notify(q.offset):
		closed = p.EndOffset() <= q.offset // woken by the close, not by a record
	case <-timer.C: // an empty answer at the end of the wait
	case <-r.Context().Done():
		cut = true
	}
	timer.Stop()
	h.waiters.Add(-1)
	switch {
	case closed:
		writeError(w, http.StatusServiceUnavailable, "the log closed while waiting (the node is shutting down); retry once it is back")
		return false
	case cut:
		// The client left (the answer goes nowhere) or the server is
		// shutting down (http.Server.BaseContext canceled), and then the
		// client should hear why.
		writeError(w, http.StatusServiceUnavailable, "the wait was cut short (the node is shutting down); retry once it is back")
		return false
	}
	return true
}

// readPage reads up to q.limit records and about q.maxBytes of encoded
// records from q.offset, across segments. It returns at least one record
// if any is readable.
func readPage(ctx context.Context, p *elog.Partition, q recordsQuery) ([]elog.Record, error) {
	var out []elog.Record
	next, budget := q.offset, q.maxBytes
	for len(out) < q.limit && budget > 0 {
		ask := min(budget, max(4096, (q.limit-len(out))*readHint))
		recs, err := p.Read(ctx, next, ask)
		if err != nil {
			if len(out) > 0 {
				return out, nil // answer what we have; the next page reports it
			}
			return nil, err
		}
		if len(recs) == 0 {
			break
		}
		for i := range recs {
			size := recs[i].Msgsize()
			if len(out) == q.limit || (len(out) > 0 && size > budget) {
				return out, nil
			}
			out = append(out, recs[i])
			budget -= size
			next = recs[i].Offset + 1
		}
	}
	return out, nil
}

func (h *handler) outOfRange(w http.ResponseWriter, offset, start, end int64) {
	msg := fmt.Sprintf("offset %d is beyond end_offset %d (the next offset to be written); read from end_offset at most, with wait= to wait for new records", offset, end)
	if offset < start {
		msg = fmt.Sprintf("offset %d is below start_offset %d (older records were deleted by retention); read from start_offset", offset, start)
	}
	writeJSON(w, http.StatusRequestedRangeNotSatisfiable, errorBody{Error: msg, StartOffset: &start, EndOffset: &end})
}

// parseQuery reads the records parameters, or answers 400 naming the bad
// one. Unknown parameters are refused so that a typo ("ofset") does not
// silently read from the start.
func (h *handler) parseQuery(w http.ResponseWriter, r *http.Request, p *elog.Partition) (recordsQuery, bool) {
	vals := r.URL.Query()
	q := recordsQuery{offset: p.StartOffset(), limit: min(defaultLimit, h.cfg.MaxLimit), maxBytes: h.cfg.MaxBytes}
	bad := func(format string, args ...any) (recordsQuery, bool) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf(format, args...))
		return recordsQuery{}, false
	}
	for name, vs := range vals {
		if len(vs) != 1 {
			return bad("%s: given %d times; give it once", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "offset":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return bad("offset: %q is not an offset (an integer ≥ 0; see start_offset and end_offset in GET /v1/topics)", v)
			}
			q.offset = n
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return bad("limit: %q is not a record count (an integer ≥ 1, at most %d)", v, h.cfg.MaxLimit)
			}
			q.limit = min(n, h.cfg.MaxLimit)
		case "max_bytes":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return bad("max_bytes: %q is not a byte count (an integer ≥ 1, at most %d)", v, h.cfg.MaxBytes)
			}
			q.maxBytes = min(n, h.cfg.MaxBytes)
		case "wait":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return bad("wait: %q is not a duration (like 500ms or 10s, at most %v)", v, h.cfg.MaxWait)
			}
			q.wait = min(d, h.cfg.MaxWait)
		default:
			return bad("%s: unknown parameter; the parameters are offset, limit, max_bytes and wait", name)
		}
	}
	return q, true
}

func toJSON(rec *elog.Record) recordJSON {
	out := recordJSON{
		Offset:    rec.Offset,
		Timestamp: time.Unix(0, rec.Timestamp).UTC().Format(timestampLayout),
		Key:       base64.StdEncoding.EncodeToString(rec.Key),
		KeyText:   text(rec.Key),
		Headers:   make(map[string]string, len(rec.Headers)),
		Value:     base64.StdEncoding.EncodeToString(rec.Value),
		ValueText: text(rec.Value),
	}
	for _, hd := range rec.Headers {
		if _, dup := out.Headers[hd.Key]; dup {
			continue // the first wins, as in Record.Header
		}
		out.Headers[hd.Key] = base64.StdEncoding.EncodeToString(hd.Value)
		if t := text(hd.Value); t != nil {
			if out.HeadersText == nil {
				out.HeadersText = make(map[string]string, len(rec.Headers))
			}
			out.HeadersText[hd.Key] = *t
		}
	}
	return out
}

// text returns b as a string if it is valid UTF-8.
func text(b []byte) *string {
	if !utf8.Valid(b) {
		return nil
	}
	s := string(b)
	return &s
}

// wantsMsgpack reports whether the Accept header asks for msgpack.
func wantsMsgpack(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == "application/msgpack" || mt == "application/x-msgpack" || mt == "application/vnd.msgpack" {
			if q, err := strconv.ParseFloat(params["q"], 64); err == nil && q == 0 {
				continue
			}
			return true
		}
	}
	return false
}
