package meta

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// Value versions (doc.go, "Value format").
const (
	cursorV1   = 1
	identityV1 = 1
)

const cursorValueSize = 9

func encodeCursor(offset int64) []byte {
	b := make([]byte, cursorValueSize)
	b[0] = cursorV1
	binary.BigEndian.PutUint64(b[1:], uint64(offset))
	return b
}

func decodeCursor(v []byte) (int64, error) {
	if len(v) == 0 {
		return 0, fmt.Errorf("%w: empty cursor value", ErrCorrupt)
	}
	if v[0] != cursorV1 {
		return 0, fmt.Errorf("%w: cursor value version %d (this build knows %d)", ErrFormat, v[0], cursorV1)
	}
	if len(v) != cursorValueSize {
		return 0, fmt.Errorf("%w: cursor value has %d bytes, want %d", ErrCorrupt, len(v), cursorValueSize)
	}
	off := int64(binary.BigEndian.Uint64(v[1:]))
	if off < 0 {
		return 0, fmt.Errorf("%w: negative cursor offset %d", ErrCorrupt, off)
	}
	return off, nil
}

// cursorKey is topic "\x00" partition (uint32 big-endian): keys sort by
// topic, then partition, and topic names cannot hold a NUL.
func cursorKey(topic string, partition int32) []byte {
	k := make([]byte, 0, len(topic)+5)
	k = append(k, topic...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(partition))
}

func decodeCursorKey(k []byte) (PartitionKey, error) {
	n := len(k) - 5
	if n < 1 || k[n] != 0 {
		return PartitionKey{}, fmt.Errorf("%w: bad cursor key %q", ErrCorrupt, k)
	}
	p := binary.BigEndian.Uint32(k[n+1:])
	if p > 1<<31-1 {
		return PartitionKey{}, fmt.Errorf("%w: bad cursor key %q", ErrCorrupt, k)
	}
	return PartitionKey{Topic: string(k[:n]), Partition: int32(p)}, nil
}

// versionedJSON encodes v as a version byte followed by JSON.
func versionedJSON(version byte, v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{version}, j...), nil
}

// decodeVersionedJSON decodes a version byte and JSON into v; what names
// the value in errors.
func decodeVersionedJSON(b []byte, version byte, what string, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty %s value", ErrCorrupt, what)
	}
	if b[0] != version {
		return fmt.Errorf("%w: %s value version %d (this build knows %d)", ErrFormat, what, b[0], version)
	}
	if err := json.Unmarshal(b[1:], v); err != nil {
		return fmt.Errorf("%w: %s value: %v", ErrCorrupt, what, err)
	}
	return nil
}

type identityValue struct {
	NodeID  string    `json:"node_id"`
	Site    string    `json:"site,omitempty"`
	Created time.Time `json:"created"`
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9._:/@+=-]{1,200}$`)
	siteRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// maxKeyBytes caps a kv key; bbolt's own limit is 32 KiB, a schema cache
// needs far less.
const maxKeyBytes = 1024

func checkTopic(topic string) error {
	if !elog.ValidTopicName(topic) {
		return fmt.Errorf("%w: topic %q: want 1–200 of [A-Za-z0-9._-], not \".\" or \"..\"", ErrBadName, topic)
	}
	return nil
}

func checkName(what, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %s %q: want 1–200 of [A-Za-z0-9._:/@+=-]", ErrBadName, what, name)
	}
	return nil
}

func checkPartition(partition int32) error {
	if partition < 0 {
		return fmt.Errorf("%w: partition %d is negative", ErrBadValue, partition)
	}
	return nil
}
