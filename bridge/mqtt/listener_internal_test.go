package mqtt

import (
	"bufio"
	"bytes"
	"io"
	"math/rand"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// FuzzFirstPacket: the first-packet check never panics, accepts only a
// CONNECT whose announced length is within the limit, and agrees with
// mochi's own length decoder on what the length is.
func FuzzFirstPacket(f *testing.F) {
	f.Add([]byte{0x10, 0x0c}, 64)
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}, 1<<16)
	f.Add([]byte{0x30, 0x02, 0, 0}, 64)
	f.Add([]byte{0x10, 0x80, 0x80, 0x80, 0x80, 0x01}, 1<<30)
	f.Add([]byte{0x10}, 10)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		if max < 0 {
			max = -max
		}
		fp := &clientConn{max: max}
		err := fp.scan(b)
		if err != nil || !fp.done {
			return
		}
		if b[0]>>4 != 1 {
			t.Fatalf("accepted a first packet of type %d", b[0]>>4)
		}
		n, _, derr := packets.DecodeLength(bytes.NewReader(b[1:]))
		if derr != nil || n != fp.length || n > max {
			t.Fatalf("accepted length %d (mochi reads %d, %v), limit %d", fp.length, n, derr, max)
		}
	})
}

// scriptedConn returns its data in reads of the sizes a random source
// picks (at most what the caller asks for), then io.EOF.
type scriptedConn struct {
	net.Conn
	data        []byte
	rnd         *rand.Rand
	eofWithData bool // the last bytes come with io.EOF
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data))
	if c.rnd.Intn(3) > 0 {
		n = 1 + c.rnd.Intn(n) // short read: the network had less
	}
	copy(p, c.data[:n])
	c.data = c.data[n:]
	if len(c.data) == 0 && c.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

// Read-ahead hands mochi's reader every byte once, in order, whatever the
// network's read sizes, returns the network's error after the bytes, and
// gives its buffer back when the reads come back short.
func TestReadAhead(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewSource(seed))
	var pool sync.Pool
	gets := 0
	pool.New = func() any {
		gets++
		b := make([]byte, readAheadBytes)
		return &b
	}
	for round := 0; round < 50; round++ {
		want := make([]byte, rnd.Intn(300<<10))
		rnd.Read(want)
		conn := &scriptedConn{data: want, rnd: rnd, eofWithData: round%2 == 0}
		fp := &clientConn{Conn: conn, done: true, pool: &pool}
		br := bufio.NewReaderSize(fp, 2048) // as mochi reads
		var got []byte
		for {
			if rnd.Intn(2) == 0 {
				b, err := br.ReadByte()
				if err != nil {
					if err != io.EOF {
						t.Fatal(err)
					}
					break
				}
				got = append(got, b)
				continue
			}
			buf := make([]byte, 1+rnd.Intn(40<<10)) // small packets and big payloads
			n, err := io.ReadFull(br, buf)
			got = append(got, buf[:n]...)
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatal(err)
				}
				break
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: got %d bytes, want %d (first difference at %d)", round, len(got), len(want), firstDiff(got, want))
		}
		if fp.ahead != nil {
			t.Fatalf("round %d: read-ahead buffer kept after the connection's last read", round)
		}
	}
	if gets == 0 {
		t.Fatal("read-ahead never used")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
