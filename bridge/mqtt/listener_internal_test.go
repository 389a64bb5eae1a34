package mqtt

import (
	"bytes"
	"testing"

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
		fp := &firstPacket{max: max}
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
