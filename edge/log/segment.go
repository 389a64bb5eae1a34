package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Byte layout: see FORMAT.md. Every constant here is named there.
const (
	segmentMagic      = "OUTPSTLG"
	formatVersion     = 1
	segmentHeaderSize = 32

	// frameMagic starts a frame written by this version: its header carries
	// the segment's durable position when it was written (FORMAT.md,
	// "Torn unsynced regions"). frameMagicV1 frames (no durable position)
	// are still read.
	frameMagic        = 0x4F504232 // "OPB2"
	frameMagicV1      = 0x4F504231 // "OPB1"
	frameHeaderSize   = 20         // OPB2: magic, length, crc32c, durable position
	frameHeaderSizeV1 = 12
	// frameMinHeader is what a reader needs to tell a frame's version and
	// length.
	frameMinHeader = frameHeaderSizeV1
	// durableUnknown is the durable position of a frame that does not record
	// one (OPB1): recovery treats it as proof that whatever precedes it was
	// durable, as it did before positions were recorded.
	durableUnknown = int64(1<<63 - 1)
	// frameMaxLen bounds a frame's announced length independent of the
	// current config, so recovery never allocates what a torn length says.
	frameMaxLen = 64 << 20

	indexMagic      = "OPIX"
	indexHeaderSize = 8
	indexEntrySize  = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segmentName(base int64) string { return fmt.Sprintf(segmentFormat+logSuffix, base) }
func indexName(base int64) string   { return fmt.Sprintf(segmentFormat+indexSuffix, base) }

func encodeSegmentHeader(base int64) []byte {
	b := make([]byte, segmentHeaderSize)
	copy(b[0:8], segmentMagic)
	binary.BigEndian.PutUint16(b[8:10], formatVersion)
	binary.BigEndian.PutUint64(b[16:24], uint64(base))
	binary.BigEndian.PutUint32(b[28:32], crc32.Checksum(b[0:28], castagnoli))
	return b
}

func checkSegmentHeader(b []byte, base int64) error {
	if len(b) < segmentHeaderSize {
		return ErrShortFrame
	}
	if string(b[0:8]) != segmentMagic {
		return ErrBadMagic
	}
	if crc32.Checksum(b[0:28], castagnoli) != binary.BigEndian.Uint32(b[28:32]) {
		return ErrChecksum
	}
	if v := binary.BigEndian.Uint16(b[8:10]); v != formatVersion {
		return fmt.Errorf("%w %d (this build reads %d)", ErrBadVersion, v, formatVersion)
	}
	if got := int64(binary.BigEndian.Uint64(b[16:24])); got != base {
		return fmt.Errorf("%w: header says base offset %d, file name says %d", ErrBadOffset, got, base)
	}
	return nil
}

// appendFrame appends one frame holding batch to dst. durable is the
// segment's position up to which every byte was fdatasynced before this
// frame was written: recovery compares it with the position of damage to
// tell a torn unsynced region from damage to durable data.
func appendFrame(dst []byte, b *Batch, durable int64) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeaderSize)...)
	dst, err := b.MarshalMsg(dst)
	if err != nil {
		return dst[:start], fmt.Errorf("log: encode batch: %w", err)
	}
	sealFrame(dst[start:], durable)
	return dst, nil
}

// appendRawFrame appends a frame holding payload, a batch as ParseBatch
// checked it: a replica stores its owner's batches as they came.
func appendRawFrame(dst, payload []byte, durable int64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeaderSize)...)
	dst = append(dst, payload...)
	sealFrame(dst[start:], durable)
	return dst
}

// sealFrame fills the header of frame, whose payload follows it.
func sealFrame(frame []byte, durable int64) {
	binary.BigEndian.PutUint32(frame, frameMagic)
	binary.BigEndian.PutUint32(frame[4:], uint32(len(frame)-frameHeaderSize))
	binary.BigEndian.PutUint64(frame[12:], uint64(durable))
	binary.BigEndian.PutUint32(frame[8:], crc32.Checksum(frame[12:], castagnoli))
}

// EncodeBatch returns one frame holding b, as it is stored in a segment
// (with no durable position: 0).
func EncodeBatch(b *Batch) ([]byte, error) { return appendFrame(nil, b, 0) }

// DecodeFrame decodes the first frame of buf. It returns the batch and the
// frame's total length. The records' byte slices alias buf. It never panics
// on arbitrary input.
func DecodeFrame(buf []byte) (*Batch, int, error) {
	b, n, _, err := decodeFrame(buf)
	return b, n, err
}

// decodeFrame is DecodeFrame that also returns the frame's durable position
// (durableUnknown for an OPB1 frame).
func decodeFrame(buf []byte) (*Batch, int, int64, error) {
	payload, n, err := framePayload(buf)
	if err != nil {
		return nil, 0, 0, err
	}
	b, err := decodePayload(payload)
	if err != nil {
		return nil, 0, 0, err
	}
	if binary.BigEndian.Uint32(buf[0:4]) == frameMagicV1 {
		return b, n, durableUnknown, nil
	}
	return b, n, int64(binary.BigEndian.Uint64(buf[12:20])), nil
}

// framePayload checks the checksum of the first frame of buf and returns
// its payload (aliasing buf) and the frame's length, without decoding it.
func framePayload(buf []byte) ([]byte, int, error) {
	n, err := frameLen(buf)
	if err != nil {
		return nil, 0, err
	}
	if len(buf) < n {
		return nil, 0, ErrShortFrame
	}
	// OPB2's checksum covers the durable position and the payload; OPB1's
	// the payload (frameLen checked that n covers the header).
	covered, payload := buf[12:n], buf[frameHeaderSizeV1:n]
	if binary.BigEndian.Uint32(buf[0:4]) == frameMagic {
		payload = buf[frameHeaderSize:n]
	}
	if crc32.Checksum(covered, castagnoli) != binary.BigEndian.Uint32(buf[8:12]) {
		return nil, 0, ErrChecksum
	}
	return payload, n, nil
}

// frameLen validates a frame header (at least frameMinHeader bytes) and
// returns the whole frame's length.
func frameLen(hdr []byte) (int, error) {
	if len(hdr) < frameMinHeader {
		return 0, ErrShortFrame
	}
	hsize := frameHeaderSize
	switch binary.BigEndian.Uint32(hdr[0:4]) {
	case frameMagic:
	case frameMagicV1:
		hsize = frameHeaderSizeV1
	default:
		return 0, ErrBadMagic
	}
	n := binary.BigEndian.Uint32(hdr[4:8])
	if n == 0 || n > frameMaxLen {
		return 0, fmt.Errorf("%w: frame length %d", ErrShortFrame, n)
	}
	return hsize + int(n), nil
}

// decodePayload decodes a batch payload whose checksum was checked, and
// numbers its records.
func decodePayload(payload []byte) (*Batch, error) {
	b, rest, err := decodeBatch(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if len(rest) != 0 || len(b.Records) == 0 || b.BaseOffset < 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes, %d records, base %d", ErrDecode, len(rest), len(b.Records), b.BaseOffset)
	}
	for i := range b.Records {
		b.Records[i].Offset = b.BaseOffset + int64(i)
	}
	return b, nil
}

// indexEntry points at the frame holding base+relOffset at byte pos.
// maxTsBefore is the largest record timestamp in the segment before pos, so
// that a time lookup may start its scan at the last entry whose maxTsBefore
// is below the target.
type indexEntry struct {
	relOffset   uint32
	pos         uint32
	maxTsBefore int64
}

func (e indexEntry) encode(b []byte) {
	binary.BigEndian.PutUint32(b[0:4], e.relOffset)
	binary.BigEndian.PutUint32(b[4:8], e.pos)
	binary.BigEndian.PutUint64(b[8:16], uint64(e.maxTsBefore))
}

func decodeIndexEntry(b []byte) indexEntry {
	return indexEntry{
		relOffset:   binary.BigEndian.Uint32(b[0:4]),
		pos:         binary.BigEndian.Uint32(b[4:8]),
		maxTsBefore: int64(binary.BigEndian.Uint64(b[8:16])),
	}
}

func indexHeader() []byte {
	b := make([]byte, indexHeaderSize)
	copy(b, indexMagic)
	binary.BigEndian.PutUint16(b[4:6], formatVersion)
	return b
}

// segment is one .log file and its .idx. Fields that the committer changes
// while readers run are atomics; the rest are fixed once the segment is
// sealed or guarded by Partition.mu as noted.
type segment struct {
	base    int64
	logPath string
	idxPath string

	// size is the number of readable bytes: for the active segment, what
	// the committer has published (under SyncAlways: synced); for a sealed
	// one, the file's length.
	size atomic.Int64
	// end is the offset after the last record (the next segment's base).
	end atomic.Int64
	// maxTs is the largest record timestamp, or minTs when unknown (a sealed
	// segment found at open computes it lazily).
	maxTs atomic.Int64

	// refs counts users of the open files: the partition's list holds one,
	// each reader holds one for the duration of a read.
	refs    atomic.Int32
	deleted atomic.Bool

	fmu      sync.Mutex // guards f, idx, lastUse
	f        File
	idx      File
	lastUse  int64
	openFile OpenFileFunc

	// idxEntries is the number of entries in the .idx file; the committer
	// adds to it after writing an entry.
	idxEntries atomic.Int64

	// idxPending holds the entries whose frames no fdatasync covers yet:
	// they reach the .idx only after one does (flushIndex), and readers
	// see them at once. Copy-on-write: the committer replaces the slice.
	idxPending atomic.Pointer[[]indexEntry]
	// syncedPos is the position up to which a journal checkpoint
	// fdatasynced the segment; the committer folds it into its durable
	// position at its next round.
	syncedPos atomic.Int64

	// Committer-owned (active segment only).
	lastIdxPos  int64 // byte pos of the last indexed frame
	maxTsBefore int64 // largest timestamp before the write position
}

// pendingIndex returns the entries not yet in the .idx file.
func (s *segment) pendingIndex() []indexEntry {
	if p := s.idxPending.Load(); p != nil {
		return *p
	}
	return nil
}

// syncTo fdatasyncs the segment for a journal checkpoint and records that
// everything before end is durable. A segment deleted or closed since was
// sealed, and so synced, at roll.
func (s *segment) syncTo(end int64) error {
	if !s.acquire() {
		return nil
	}
	defer s.release()
	// fmu is held across the fdatasync so that closeIdle cannot close the
	// file under it (readers opening a sealed segment wait that long).
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.f == nil {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("log: checkpoint fdatasync %s: %w", s.logPath, err)
	}
	for {
		cur := s.syncedPos.Load()
		if end <= cur || s.syncedPos.CompareAndSwap(cur, end) {
			return nil
		}
	}
}

const minTs = -1 << 63

func newSegment(dir string, base int64, open OpenFileFunc) *segment {
	s := &segment{
		base:     base,
		logPath:  filepath.Join(dir, segmentName(base)),
		idxPath:  filepath.Join(dir, indexName(base)),
		openFile: open,
	}
	s.maxTs.Store(minTs)
	s.maxTsBefore = minTs
	s.refs.Store(1)
	return s
}

// acquire takes a reference for reading; false if the segment is gone.
func (s *segment) acquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.closeFiles()
	}
}

// logFile returns the open .log file, opening a sealed one read-only on
// first use.
func (s *segment) logFile(tick int64) (File, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.lastUse = tick
	if s.f != nil {
		return s.f, nil
	}
	f, err := s.openFile(s.logPath, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("log: open segment: %w", err)
	}
	s.f = f
	return f, nil
}

func (s *segment) idxFile() (File, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.idx != nil {
		return s.idx, nil
	}
	f, err := s.openFile(s.idxPath, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("log: open index: %w", err)
	}
	s.idx = f
	return f, nil
}

func (s *segment) isOpen() bool {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.f != nil || s.idx != nil
}

// closeIdle closes a sealed segment's files if no reader holds them.
func (s *segment) closeIdle() {
	if s.refs.Load() == 1 {
		s.closeFiles()
	}
}

func (s *segment) closeFiles() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	var errs []error
	if s.f != nil {
		errs = append(errs, s.f.Close())
		s.f = nil
	}
	if s.idx != nil {
		errs = append(errs, s.idx.Close())
		s.idx = nil
	}
	return errors.Join(errs...)
}

// readAt reads len(p) bytes at off from the .log, or fewer at EOF.
func readFull(f File, p []byte, off int64) (int, error) {
	n, err := f.ReadAt(p, off)
	if err == io.EOF && n > 0 {
		err = nil
	}
	if err == nil && n < len(p) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// lookupIndex returns the last index entry at or below target (by offset
// when byTime is false, by maxTsBefore < ts when true), or the segment's
// first frame. It binary-searches the index file with pread: memory does
// not grow with the index.
func (s *segment) lookupIndex(n int64, pred func(indexEntry) bool) (indexEntry, error) {
	best := indexEntry{relOffset: 0, pos: segmentHeaderSize, maxTsBefore: minTs}
	// Entries not yet in the file come after every entry in it; only
	// those pointing at published bytes may start a scan.
	limit := s.size.Load()
	found := false
	for _, e := range s.pendingIndex() {
		if int64(e.pos) >= limit || !pred(e) {
			break
		}
		best, found = e, true
	}
	if found || n == 0 {
		return best, nil
	}
	f, err := s.idxFile()
	if err != nil {
		return best, err
	}
	buf := make([]byte, indexEntrySize)
	lo, hi := int64(0), n-1
	for lo <= hi {
		mid := (lo + hi) / 2
		if _, err := readFull(f, buf, indexHeaderSize+mid*indexEntrySize); err != nil {
			return best, fmt.Errorf("log: read index %s: %w", s.idxPath, err)
		}
		e := decodeIndexEntry(buf)
		if pred(e) {
			best = e
			lo = mid + 1
		} else {
			hi = mid - 1
		}
	}
	return best, nil
}
