package peer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Version is the peer protocol version this code speaks (PROTOCOL.md
// "Versions"). A peer announcing another is refused with an Error naming
// both.
const Version uint16 = 2

// maxFrameBytes caps one frame [PROTOCOL-2.1]: a reader never allocates
// more for a frame, whatever its length field says.
const maxFrameBytes = 16 << 20

// Message types [PROTOCOL-2.2].
const (
	typeChallenge byte = 1
	typeHello     byte = 2
	typeWelcome   byte = 3
	typeFetch     byte = 4
	typeFetchResp byte = 5
	typeError     byte = 6
)

// Protocol errors.
var (
	// ErrProtocol: a peer sent bytes that are not a valid message.
	ErrProtocol = errors.New("peer: protocol error")
	// ErrAuth: the shared secret does not match (either side).
	ErrAuth = errors.New("peer: authentication failed")
	// ErrVersion: the peer speaks another protocol version.
	ErrVersion = errors.New("peer: protocol version mismatch")
	// ErrRemote: the other side sent an Error message.
	ErrRemote = errors.New("peer: refused by the other side")
)

const nonceLen = 32
const macLen = 32

// challenge opens a connection, owner to follower [PROTOCOL-3.1].
type challenge struct {
	Version uint16
	Nonce   [nonceLen]byte
}

// hello answers the challenge [PROTOCOL-3.2].
type hello struct {
	Version  uint16
	Site     string
	Follower string
	Nonce    [nonceLen]byte
	MAC      [macLen]byte
	Mode     byte // modeFollow or modeRestore [PROTOCOL-3.2, 6]
}

// Hello modes.
const (
	modeFollow  byte = 0 // copy the owner's own partitions
	modeRestore byte = 1 // copy the replica the owner keeps of the caller's partitions
)

// topicInfo names one of the owner's topics and its partition count.
type topicInfo struct {
	Name       string
	Partitions uint32
}

// welcome accepts the follower [PROTOCOL-3.3].
type welcome struct {
	Owner  string
	Epoch  uint64
	MAC    [macLen]byte
	Topics []topicInfo
}

// fetchPart is one partition of a fetch [PROTOCOL-4.1].
type fetchPart struct {
	Topic     string
	Partition uint32
	Offset    int64  // the follower's durable end: where records are wanted from
	LastEpoch uint64 // epoch of the follower's record at Offset-1; 0 when Offset is 0
}

// fetch asks for records [PROTOCOL-4.1].
type fetch struct {
	Epoch     uint64 // the owner epoch the follower was welcomed under
	MaxBytes  uint32
	MaxWaitMs uint32
	Parts     []fetchPart
}

// epochEntry says that the owner's epoch Epoch wrote a partition from
// offset Start on [PROTOCOL-5].
type epochEntry struct {
	Epoch uint64
	Start int64
}

// respPart is one partition of a fetch response [PROTOCOL-4.2].
type respPart struct {
	Topic      string
	Partition  uint32
	Status     byte  // statusOK, statusTruncate, statusOutOfRange, statusUnknownEpoch
	HW         int64 // the owner's high watermark
	End        int64 // the owner's log end
	Start      int64 // the owner's log start
	TruncateTo int64 // statusTruncate: the follower must cut its log here before fetching on
	History    []epochEntry
	Base       int64    // offset of the first record of Batches[0]
	Batches    [][]byte // edge/log batch payloads (msgp Batch), as the owner's log stores them
	records    int      // records in Batches, counted by the owner (not sent)
}

// Partition statuses of a fetch response [PROTOCOL-4.2].
const (
	statusOK           byte = 0 // Batches follow from Base (possibly none)
	statusTruncate     byte = 1 // the follower's log diverged: cut at TruncateTo, then fetch
	statusOutOfRange   byte = 2 // the fetch offset is below the owner's start or past its end
	statusUnknownEpoch byte = 3 // the owner's history cannot place the follower's last epoch
)

// fetchResp answers a fetch [PROTOCOL-4.2].
type fetchResp struct {
	Epoch uint64
	Parts []respPart
}

// errorMsg ends a conversation [PROTOCOL-2.3].
type errorMsg struct {
	Code    uint16
	Message string
}

// Error codes [PROTOCOL-2.3].
const (
	codeAuth       uint16 = 1
	codeVersion    uint16 = 2
	codeEpoch      uint16 = 3
	codeBadRequest uint16 = 4
	codeInternal   uint16 = 5
	codeNoReplica  uint16 = 6
)

// RemoteError is an Error message received from the other side
// [PROTOCOL-2.3]; it matches ErrRemote with errors.Is.
type RemoteError struct {
	Code    uint16
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%v: code %d: %s", ErrRemote, e.Code, e.Message)
}

// Is makes errors.Is(err, ErrRemote) true.
func (e *RemoteError) Is(target error) bool { return target == ErrRemote }

// enc appends big-endian fields to a buffer.
type enc struct{ b []byte }

func (e *enc) u8(v byte)      { e.b = append(e.b, v) }
func (e *enc) u16(v uint16)   { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) u32(v uint32)   { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64)   { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) i64(v int64)    { e.u64(uint64(v)) }
func (e *enc) raw(v []byte)   { e.b = append(e.b, v...) }
func (e *enc) str(v string)   { e.u16(uint16(len(v))); e.b = append(e.b, v...) }
func (e *enc) bytes(v []byte) { e.u32(uint32(len(v))); e.b = append(e.b, v...) }

// dec reads big-endian fields; the first short read sets err and every
// later read returns zero, so a decoder checks err once at the end.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%w: message truncated", ErrProtocol)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) u8() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *dec) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *dec) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *dec) i64() int64 { return int64(d.u64()) }

func (d *dec) str() string { return string(d.take(int(d.u16()))) }

func (d *dec) bytes() []byte {
	n := d.u32()
	if n > maxFrameBytes {
		d.err = fmt.Errorf("%w: field of %d bytes", ErrProtocol, n)
		return nil
	}
	return d.take(int(n))
}

// count reads a u16 element count and checks that at least min bytes per
// element remain, so a lying count cannot make the decoder allocate.
func (d *dec) count(minEach int) int {
	n := int(d.u16())
	if d.err == nil && n*minEach > len(d.b) {
		d.err = fmt.Errorf("%w: %d elements cannot fit in %d bytes", ErrProtocol, n, len(d.b))
		return 0
	}
	return n
}

func (d *dec) fixed(dst []byte) { copy(dst, d.take(len(dst))) }

func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d bytes after the message", ErrProtocol, len(d.b))
	}
	return d.err
}

func (m *challenge) encode(e *enc) { e.u16(m.Version); e.raw(m.Nonce[:]) }
func (m *challenge) decode(d *dec) { m.Version = d.u16(); d.fixed(m.Nonce[:]) }

func (m *hello) encode(e *enc) {
	e.u16(m.Version)
	e.str(m.Site)
	e.str(m.Follower)
	e.raw(m.Nonce[:])
	e.raw(m.MAC[:])
	e.u8(m.Mode)
}

func (m *hello) decode(d *dec) {
	m.Version = d.u16()
	m.Site = d.str()
	m.Follower = d.str()
	d.fixed(m.Nonce[:])
	d.fixed(m.MAC[:])
	m.Mode = d.u8()
}

func (m *welcome) encode(e *enc) {
	e.str(m.Owner)
	e.u64(m.Epoch)
	e.raw(m.MAC[:])
	e.u16(uint16(len(m.Topics)))
	for _, t := range m.Topics {
		e.str(t.Name)
		e.u32(t.Partitions)
	}
}

func (m *welcome) decode(d *dec) {
	m.Owner = d.str()
	m.Epoch = d.u64()
	d.fixed(m.MAC[:])
	n := d.count(6)
	m.Topics = make([]topicInfo, 0, n)
	for range n {
		m.Topics = append(m.Topics, topicInfo{Name: d.str(), Partitions: d.u32()})
	}
}

func (m *fetch) encode(e *enc) {
	e.u64(m.Epoch)
	e.u32(m.MaxBytes)
	e.u32(m.MaxWaitMs)
	e.u16(uint16(len(m.Parts)))
	for _, p := range m.Parts {
		e.str(p.Topic)
		e.u32(p.Partition)
		e.i64(p.Offset)
		e.u64(p.LastEpoch)
	}
}

func (m *fetch) decode(d *dec) {
	m.Epoch = d.u64()
	m.MaxBytes = d.u32()
	m.MaxWaitMs = d.u32()
	n := d.count(22)
	m.Parts = make([]fetchPart, 0, n)
	for range n {
		m.Parts = append(m.Parts, fetchPart{Topic: d.str(), Partition: d.u32(), Offset: d.i64(), LastEpoch: d.u64()})
	}
}

func (m *fetchResp) encode(e *enc) {
	e.u64(m.Epoch)
	e.u16(uint16(len(m.Parts)))
	for _, p := range m.Parts {
		e.str(p.Topic)
		e.u32(p.Partition)
		e.u8(p.Status)
		e.i64(p.HW)
		e.i64(p.End)
		e.i64(p.Start)
		e.i64(p.TruncateTo)
		e.u16(uint16(len(p.History)))
		for _, h := range p.History {
			e.u64(h.Epoch)
			e.i64(h.Start)
		}
		e.i64(p.Base)
		e.u32(uint32(len(p.Batches)))
		for _, r := range p.Batches {
			e.bytes(r)
		}
	}
}

func (m *fetchResp) decode(d *dec) {
	m.Epoch = d.u64()
	n := d.count(53)
	m.Parts = make([]respPart, 0, n)
	for range n {
		var p respPart
		p.Topic = d.str()
		p.Partition = d.u32()
		p.Status = d.u8()
		p.HW = d.i64()
		p.End = d.i64()
		p.Start = d.i64()
		p.TruncateTo = d.i64()
		h := d.count(16)
		p.History = make([]epochEntry, 0, h)
		for range h {
			p.History = append(p.History, epochEntry{Epoch: d.u64(), Start: d.i64()})
		}
		p.Base = d.i64()
		rc := d.u32()
		if d.err == nil && uint64(rc)*4 > uint64(len(d.b)) {
			d.err = fmt.Errorf("%w: %d batches cannot fit in %d bytes", ErrProtocol, rc, len(d.b))
		}
		r := int(rc) // at most len(d.b)/4: fits an int on 32-bit ARM too
		if d.err != nil {
			break
		}
		p.Batches = make([][]byte, 0, r)
		for range r {
			p.Batches = append(p.Batches, d.bytes())
		}
		m.Parts = append(m.Parts, p)
	}
}

func (m *errorMsg) encode(e *enc) { e.u16(m.Code); e.str(m.Message) }
func (m *errorMsg) decode(d *dec) { m.Code = d.u16(); m.Message = d.str() }

// message is what travels in a frame.
type message interface {
	encode(*enc)
	decode(*dec)
}

func typeOf(m message) byte {
	switch m.(type) {
	case *challenge:
		return typeChallenge
	case *hello:
		return typeHello
	case *welcome:
		return typeWelcome
	case *fetch:
		return typeFetch
	case *fetchResp:
		return typeFetchResp
	case *errorMsg:
		return typeError
	}
	panic(fmt.Sprintf("peer: unknown message type %T", m)) // a programming error, never data
}

func newMessage(t byte) (message, error) {
	switch t {
	case typeChallenge:
		return &challenge{}, nil
	case typeHello:
		return &hello{}, nil
	case typeWelcome:
		return &welcome{}, nil
	case typeFetch:
		return &fetch{}, nil
	case typeFetchResp:
		return &fetchResp{}, nil
	case typeError:
		return &errorMsg{}, nil
	}
	return nil, fmt.Errorf("%w: unknown message type %d", ErrProtocol, t)
}

// appendFrame encodes m as one frame [PROTOCOL-2.1]: length u32 (of what
// follows), type u8, payload.
func appendFrame(dst []byte, m message) ([]byte, error) {
	start := len(dst)
	e := enc{b: append(dst, 0, 0, 0, 0, typeOf(m))}
	m.encode(&e)
	n := len(e.b) - start - 4
	if n > maxFrameBytes {
		return dst, fmt.Errorf("peer: message of %d bytes exceeds the frame limit %d", n, maxFrameBytes)
	}
	binary.BigEndian.PutUint32(e.b[start:], uint32(n))
	return e.b, nil
}

// frameReader reads frames into one reused buffer: a message's byte
// slices are valid until the next read.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// read returns the next message; an Error message is returned as an error
// wrapping ErrRemote.
func (fr *frameReader) read() (message, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > maxFrameBytes {
		return nil, fmt.Errorf("%w: frame length %d", ErrProtocol, n)
	}
	m, err := newMessage(hdr[4])
	if err != nil {
		return nil, err
	}
	size := int(n) - 1
	if cap(fr.buf) < size {
		fr.buf = make([]byte, size, max(size, 2*cap(fr.buf)))
	}
	fr.buf = fr.buf[:size]
	if _, err := io.ReadFull(fr.r, fr.buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if err := decodeMessage(m, fr.buf); err != nil {
		return nil, err
	}
	if em, ok := m.(*errorMsg); ok {
		return nil, &RemoteError{Code: em.Code, Message: em.Message}
	}
	return m, nil
}

// shrink drops a buffer grown by one large frame, so that a follower's
// memory returns to its steady size.
func (fr *frameReader) shrink() {
	if cap(fr.buf) > 1<<20 {
		fr.buf = nil
	}
}

func decodeMessage(m message, payload []byte) error {
	d := dec{b: payload}
	m.decode(&d)
	return d.done()
}

// clampU32 converts a positive int to a u32 field.
func clampU32(v int) uint32 {
	if v <= 0 {
		return 0
	}
	if uint64(v) > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}
