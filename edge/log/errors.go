package log

import (
	"errors"
	"fmt"
)

// Errors of opening and recovery.
var (
	// ErrChecksum: a frame's CRC-32C does not match its payload.
	ErrChecksum = errors.New("log: checksum mismatch")
	// ErrShortFrame: a frame runs past the end of its file.
	ErrShortFrame = errors.New("log: frame runs past end of file")
	// ErrBadMagic: a frame or segment header does not start with its magic.
	ErrBadMagic = errors.New("log: bad magic")
	// ErrBadVersion: a segment was written by an unknown format version.
	ErrBadVersion = errors.New("log: unknown format version")
	// ErrBadOffset: a frame decodes but does not hold the offsets expected
	// at its position.
	ErrBadOffset = errors.New("log: batch offset out of sequence")
	// ErrDecode: a frame's CRC matches but its payload does not decode.
	ErrDecode = errors.New("log: batch does not decode")
	// ErrLocked: another process holds the log directory.
	ErrLocked = errors.New("log: directory is locked by another process")
)

// Errors of appending.
var (
	// ErrDiskBudget: the node-wide disk budget is reached and the policy is
	// to refuse. Nothing of the append was written; retrying later may work.
	ErrDiskBudget = errors.New("log: disk budget reached")
	// ErrPartitionFailed: an earlier write or fsync failed, so the partition
	// refuses appends until it is reopened (an fsync is never retried: after
	// a failed fsync the page cache may already have dropped the dirty pages).
	ErrPartitionFailed = errors.New("log: partition failed; reopen the log to recover")
	// ErrBatchTooLarge: one Append's records exceed Config.MaxBatchBytes.
	ErrBatchTooLarge = errors.New("log: batch too large")
	// ErrEmptyBatch: Append was called with no records.
	ErrEmptyBatch = errors.New("log: empty append")
)

// Errors of reading and lookup.
var (
	// ErrOffsetOutOfRange: the offset is below the partition's start (deleted
	// by retention) or beyond its end.
	ErrOffsetOutOfRange = errors.New("log: offset out of range")
	// ErrNoTopic: the topic does not exist.
	ErrNoTopic = errors.New("log: no such topic")
	// ErrNoPartition: the partition number is out of the topic's range.
	ErrNoPartition = errors.New("log: no such partition")
	// ErrTopicExists: CreateTopic with a partition count that differs from
	// the existing topic's.
	ErrTopicExists = errors.New("log: topic exists with another partition count")
	// ErrBadTopicName: topic names are 1–200 of [A-Za-z0-9._-], not "." or "..".
	ErrBadTopicName = errors.New("log: bad topic name")
	// ErrBadHoldName: holder names are 1–128 of [A-Za-z0-9._:/-].
	ErrBadHoldName = errors.New("log: bad holder name")
	// ErrClosed: the log or partition is closed.
	ErrClosed = errors.New("log: closed")
)

// CorruptionError reports a frame that failed validation with valid data
// after it, so it cannot be a torn tail.
type CorruptionError struct {
	Segment string // file path of the segment
	Pos     int64  // byte position of the bad frame
	Err     error  // ErrChecksum, ErrShortFrame, ErrBadMagic, ...
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("log: corruption in %s at byte %d: %v (valid data follows, so this is not a torn tail; "+
		"with the node stopped, `edge check` shows all damage and `edge repair -yes` cuts the log here (Recovery=RecoveryTruncate), keeping the rest as evidence)",
		e.Segment, e.Pos, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }
