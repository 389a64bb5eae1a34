package upstream

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors a partition pauses with. Each is wrapped with what to do next; the
// kind (errKind) is what metrics and the status report carry.
var (
	// ErrStreamMissing: no stream captures the partition's subject.
	ErrStreamMissing = errors.New("upstream: stream missing")
	// ErrStreamFull: the stream refuses new messages (max_bytes, max_msgs or
	// account limits with discard: new).
	ErrStreamFull = errors.New("upstream: stream full")
	// ErrPermission: the server refused a publish or API request for lack of
	// permission.
	ErrPermission = errors.New("upstream: permission denied")
	// ErrNotConnected: the uplink is down (or came back and the partition
	// must resolve its resume point again before sending).
	ErrNotConnected = errors.New("upstream: not connected")
	// ErrRecordTooLarge: one record does not fit in a NATS message of the
	// server's max_payload. Forwarding of the partition stops at that record
	// (it is never skipped) until max_payload is raised.
	ErrRecordTooLarge = errors.New("upstream: record larger than the server's max_payload")
)

// ErrOriginChanged: New found the forwarding cursors made under another
// Site or Node than configured. Forwarding under new names would send
// every record again; the node refuses to start instead.
var ErrOriginChanged = errors.New("upstream: Site/Node changed")

// Errors the package handles itself; they never reach its callers.
var (
	// errStreamMoved: the conditional first message after a resume was
	// refused because the subject's last message is no longer the one
	// resolve read.
	errStreamMoved = errors.New("upstream: the stream moved since the resume point was read")
	// errDialBusy is what the gate's dialer returns when a publish is
	// between its fence and nats.go's write; nats.go counts it as a failed
	// connect attempt and dials again after its reconnect delay.
	errDialBusy = errors.New("upstream: dial deferred: a publish is in progress")
)

// errKind classifies errors for metrics, the status report and "log once
// per state change".
type errKind string

const (
	kindNone          errKind = ""
	kindTimeout       errKind = "timeout"
	kindStreamMissing errKind = "stream_missing"
	kindStreamFull    errKind = "stream_full"
	kindPermission    errKind = "permission"
	kindDisconnected  errKind = "disconnected"
	kindOther         errKind = "other"
)

// errKinds lists every kind a publish error counter carries, so the series
// exist (at 0) before the first error.
var errKinds = []errKind{kindTimeout, kindStreamMissing, kindStreamFull, kindPermission, kindDisconnected, kindOther}

// JetStream API error codes the classification needs that jetstream does
// not name.
const (
	codeStreamStoreFailed        = 10077 // "maximum messages/bytes exceeded" with discard new
	codeAccountResourcesExceeded = 10002
	codeInsufficientResources    = 10023
	codeStorageResourcesExceeded = 10047
)

func classify(err error) errKind {
	if err == nil {
		return kindNone
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, ErrStreamMissing), errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return kindStreamMissing
	case errors.Is(err, ErrStreamFull):
		return kindStreamFull
	case errors.Is(err, ErrPermission), errors.Is(err, nats.ErrPermissionViolation):
		return kindPermission
	case errors.Is(err, ErrNotConnected), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrConnectionReconnecting):
		return kindDisconnected
	case errors.As(err, &apiErr):
		switch apiErr.ErrorCode {
		case codeStreamStoreFailed, codeAccountResourcesExceeded, codeInsufficientResources, codeStorageResourcesExceeded:
			return kindStreamFull
		case jetstream.JSErrCodeStreamNotFound:
			return kindStreamMissing
		}
		if strings.Contains(apiErr.Description, "maximum") && strings.Contains(apiErr.Description, "exceeded") {
			return kindStreamFull
		}
		return kindOther
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded):
		return kindTimeout
	}
	return kindOther
}

// advice is what the log line tells the operator to do about a kind.
func advice(k errKind) string {
	switch k {
	case kindStreamMissing:
		return "run core (it provisions streams), or set create_streams; forwarding resumes once the stream exists"
	case kindStreamFull:
		return "the stream refuses new messages (max_bytes/max_msgs with discard new); raise its limits or make room; records wait at the edge"
	case kindPermission:
		return "the NATS user may not publish to this subject or use the JetStream API; fix its permissions; records wait at the edge"
	case kindTimeout:
		return "the stream did not acknowledge in time; retrying from what the stream holds"
	case kindDisconnected:
		return "uplink down; records wait at the edge and go once it is back"
	}
	return "retrying with backoff; records wait at the edge"
}
