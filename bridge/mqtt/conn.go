package mqtt

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/gorilla/websocket"
)

// errFirstPacket: the first packet is not a CONNECT or announces more
// bytes than Limits.MaxConnectBytes.
var errFirstPacket = errors.New("mqtt: first packet is not an acceptable CONNECT")

// conn checks the fixed header of the first MQTT packet as the
// bytes pass, before mochi allocates the announced length.
type clientConn struct {
	net.Conn
	g      *Gate
	max    int
	done   bool
	pos    int // bytes of the fixed header seen
	length int
	mult   int
	// burst holds the connection's QoS 0 publishes not yet appended; the
	// ingest hook sets it on the first, from the reader goroutine, the
	// only one that reads.
	burst *burst

	// Read-ahead, used while the connection is busy (see readAheadBytes).
	pool     *sync.Pool // of *[]byte of readAheadBytes; nil: no read-ahead
	ahead    *[]byte    // from pool while busy, else nil
	off, end int        // unread bytes of *ahead
	aheadErr error      // the error of the read that filled ahead, after its bytes
	full     bool       // the last network read filled its buffer: more is waiting
}

// readAheadBytes is what a busy connection reads from the network at
// once. mochi reads through a 2 KiB buffer: for a device streaming small
// publishes that is one system call, and one QoS 0 burst, per 15 or so
// messages. A connection whose last read filled its buffer (more bytes are
// waiting) reads 16 KiB into a buffer from the listener's pool instead, and
// gives it back once a read comes back short, so idle connections hold
// none (but for one that went quiet right after a full read: it holds the
// buffer until its next read returns).
const readAheadBytes = 16 << 10

func (f *clientConn) Read(p []byte) (int, error) {
	if f.off < f.end {
		n := copy(p, (*f.ahead)[f.off:f.end])
		f.off += n
		if f.off == f.end && (!f.full || f.aheadErr != nil) {
			f.release()
		}
		return f.pass(p[:n], nil)
	}
	if err := f.aheadErr; err != nil {
		f.aheadErr = nil
		f.release()
		return 0, err
	}
	// mochi's reader comes back for more bytes once it has processed what
	// it had: the end of a burst, appended before the read blocks.
	f.burst.flush()
	if f.full && f.pool != nil && len(p) < readAheadBytes {
		if f.ahead == nil {
			f.ahead = f.pool.Get().(*[]byte)
		}
		n, err := f.Conn.Read(*f.ahead)
		f.full = n == len(*f.ahead)
		m := copy(p, (*f.ahead)[:n])
		f.off, f.end = m, n
		if m < n {
			f.aheadErr, err = err, nil // after the bytes
		}
		if f.off == f.end && (!f.full || err != nil) {
			f.release()
		}
		return f.pass(p[:m], err)
	}
	f.release() // drained; a big read goes straight into p
	n, err := f.Conn.Read(p)
	f.full = n == len(p)
	return f.pass(p[:n], err)
}

// release gives the read-ahead buffer back; its bytes are all read.
func (f *clientConn) release() {
	if f.ahead != nil {
		f.pool.Put(f.ahead)
		f.ahead, f.off, f.end = nil, 0, 0
	}
}

// pass checks the bytes handed to mochi while the first packet's header
// goes by.
func (f *clientConn) pass(b []byte, err error) (int, error) {
	n := len(b)
	if !f.done && n > 0 {
		if e := f.scan(b); e != nil {
			f.g.refused.WithLabelValues("first_packet").Inc()
			f.Conn.Close()
			return 0, e
		}
	}
	return n, err
}

func (f *clientConn) scan(b []byte) error {
	for _, c := range b {
		if f.done {
			return nil
		}
		if f.pos == 0 {
			if c>>4 != 1 { // CONNECT
				return errFirstPacket
			}
			f.pos, f.mult = 1, 1
			continue
		}
		f.length += int(c&0x7f) * f.mult
		f.mult *= 128
		f.pos++
		if f.length > f.max {
			return fmt.Errorf("%w: announces %d bytes, limit %d", errFirstPacket, f.length, f.max)
		}
		if c&0x80 == 0 {
			f.done = true
		} else if f.pos > 4 {
			return errFirstPacket
		}
	}
	return nil
}

// ConnectionState exposes the TLS state of a TLS connection to the auth hook.
func (f *clientConn) ConnectionState() tls.ConnectionState {
	if t, ok := f.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return t.ConnectionState()
	}
	return tls.ConnectionState{}
}

// wsConn carries MQTT over binary WebSocket messages; one MQTT packet may
// span messages and one message may hold several packets.
type wsConn struct {
	net.Conn
	c *websocket.Conn
	r io.Reader
	w sync.Mutex
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("mqtt: websocket message is not binary")
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	ws.w.Lock()
	defer ws.w.Unlock()
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.c.Close() }
