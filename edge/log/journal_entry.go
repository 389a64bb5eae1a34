package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Journal entry layout (FORMAT.md, "The journal"). All integers big-endian.
//
//	magic    u32  "OPJ1"
//	length   u32  bytes after the crc
//	crc      u32  CRC-32C of everything after it
//	gen      u64  the pass over the file this entry was written in
//	durable  u64  the file's position up to which it was fdatasynced when
//	              this entry's commit was written
//	tlen     u16  topic name length; 0 for padding
//	topic    tlen bytes
//	part     u32  partition
//	frames        segment frames, exactly as written to the segment
//
// gen and durable are known only when the committer writes the entry, so
// submitters leave them zero and the committer patches them and the crc.
const (
	journalMagic     = 0x4F504A31 // "OPJ1"
	journalFixedSize = 4 + 4 + 4 + 8 + 8 + 2 + 4
	journalPage      = 4096
)

// appendJournalEntry encodes one entry with gen, durable and crc left zero.
func appendJournalEntry(dst []byte, topic string, part int32, frames []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, journalFixedSize-4)...)
	binary.BigEndian.PutUint32(dst[start:], journalMagic)
	binary.BigEndian.PutUint32(dst[start+4:], uint32(journalFixedSize-12+len(topic)+len(frames)))
	binary.BigEndian.PutUint16(dst[start+28:], uint16(len(topic)))
	dst = append(dst, topic...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(part))
	return append(dst, frames...)
}

// appendJournalPad appends a padding entry that ends exactly at a multiple
// of journalPage, counting file positions from base (the file position of
// dst[0]), so that the next commit starts on a fresh page: flash never
// rewrites a page a previous commit made durable, and recovery finds every
// commit's first entry on a page boundary.
func appendJournalPad(dst []byte, base int64) []byte {
	end := base + int64(len(dst))
	n := (journalPage - end%journalPage) % journalPage
	if n == 0 {
		return dst
	}
	if n < journalFixedSize {
		n += journalPage
	}
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	binary.BigEndian.PutUint32(dst[start:], journalMagic)
	binary.BigEndian.PutUint32(dst[start+4:], uint32(n-12))
	return dst
}

// sealJournalEntries sets gen and durable in every entry of buf and
// computes their crcs.
func sealJournalEntries(buf []byte, gen uint64, durable int64) {
	for pos := 0; pos+journalFixedSize <= len(buf); {
		n := 12 + int(binary.BigEndian.Uint32(buf[pos+4:]))
		e := buf[pos : pos+n]
		binary.BigEndian.PutUint64(e[12:], gen)
		binary.BigEndian.PutUint64(e[20:], uint64(durable))
		binary.BigEndian.PutUint32(e[8:], crc32.Checksum(e[12:], castagnoli))
		pos += n
	}
}

// journalEntry is one decoded entry; frames aliases the file's bytes.
type journalEntry struct {
	gen     uint64
	durable int64
	topic   string
	part    int32
	frames  []byte
	pad     bool
}

// parseJournalEntry decodes the entry at the start of b and returns its
// length. It never panics on arbitrary bytes.
func parseJournalEntry(b []byte) (journalEntry, int, error) {
	var e journalEntry
	if len(b) < journalFixedSize {
		return e, 0, ErrShortFrame
	}
	if binary.BigEndian.Uint32(b) != journalMagic {
		return e, 0, ErrBadMagic
	}
	n := 12 + int64(binary.BigEndian.Uint32(b[4:]))
	if n < journalFixedSize || n > int64(len(b)) {
		return e, 0, fmt.Errorf("%w: journal entry of %d bytes", ErrShortFrame, n)
	}
	if crc32.Checksum(b[12:n], castagnoli) != binary.BigEndian.Uint32(b[8:]) {
		return e, 0, ErrChecksum
	}
	e.gen = binary.BigEndian.Uint64(b[12:])
	e.durable = int64(binary.BigEndian.Uint64(b[20:]))
	tlen := int64(binary.BigEndian.Uint16(b[28:]))
	if tlen == 0 {
		e.pad = true
		return e, int(n), nil
	}
	if 30+tlen+4 > n {
		return e, 0, fmt.Errorf("%w: journal entry topic of %d bytes in %d", ErrDecode, tlen, n)
	}
	e.topic = string(b[30 : 30+tlen])
	e.part = int32(binary.BigEndian.Uint32(b[30+tlen:]))
	e.frames = b[34+tlen : n]
	return e, int(n), nil
}
