package mqtt

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// A connection the Gate refuses (max_connections, connect_rate) is not just
// reset: its CONNECT is read and answered with a CONNACK that says why, so
// that a client backs off instead of retrying at once as after a network
// error — MQTT 5: 0x97 (quota exceeded) at max_connections, 0x9F
// (connection rate exceeded) at connect_rate; MQTT 3.1.1 and 3.1: 0x03
// (server unavailable). The answer costs little and is bounded, since a
// refusal is what a flood of connections gets: at most maxRefusing are
// answered at once (more are closed at accept, as before), each within
// refuseWait, its CONNECT read only up to the protocol level (the rest is
// discarded, at most Limits.MaxConnectBytes), never handed to mochi. The
// WebSocket listeners close refused connections without an answer: their
// CONNECT comes after an HTTP upgrade.

// maxRefusing bounds the refused connections answered at once.
const maxRefusing = 16

// refuseWait bounds how long a refused connection may take to send its
// CONNECT (and a TLS handshake) before it is closed unanswered.
const refuseWait = 2 * time.Second

// refuse takes a refused connection if a token is free, answers it on a
// goroutine the Listener waits for in Close, and reports whether it did.
func (l *Listener) refuse(c net.Conn, reason string) bool {
	g := l.cfg.Gate
	l.refMu.Lock()
	defer l.refMu.Unlock()
	if l.refClosed {
		return false
	}
	select {
	case g.refusing <- struct{}{}:
	default:
		return false
	}
	l.refusers.Add(1)
	go func() {
		defer l.refusers.Done()
		defer func() { <-g.refusing }()
		defer c.Close()
		if l.cfg.Type == TypeTLS {
			c = tls.Server(c, l.cfg.TLS)
		}
		wait := refuseWait
		if d := g.limits.ConnectTimeout; d > 0 {
			wait = min(wait, d)
		}
		_ = c.SetDeadline(time.Now().Add(wait))
		version, err := readConnectVersion(c, g.limits.MaxConnectBytes)
		if err != nil {
			l.log.Debug("mqtt: refused connection closed unanswered", "listener", l.cfg.ID, "reason", reason, "err", err)
			return
		}
		_, _ = c.Write(refusalConnack(version, reason))
	}()
	return true
}

// refusalConnack encodes the CONNACK refusing a connection at the gate.
func refusalConnack(version byte, reason string) []byte {
	if version != 5 {
		return []byte{0x20, 2, 0, 0x03} // server unavailable
	}
	code := byte(0x97) // quota exceeded
	if reason == "connect_rate" {
		code = 0x9F // connection rate exceeded
	}
	return []byte{0x20, 3, 0, code, 0} // no properties
}

var errNotConnect = errors.New("mqtt: refused connection: first packet is not a CONNECT")

// readConnectVersion reads a CONNECT and returns its protocol level, having
// read all of it (so that closing the connection sends FIN, not a reset
// that could overtake the CONNACK). max bounds its length; 0 is no bound.
func readConnectVersion(r io.Reader, max int) (byte, error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	if b[0]>>4 != 1 {
		return 0, errNotConnect
	}
	length, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, errNotConnect
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		length += int(b[0]&0x7f) * mult
		mult *= 128
		if b[0]&0x80 == 0 {
			break
		}
	}
	if max > 0 && length > max {
		return 0, fmt.Errorf("%w: announces %d bytes, limit %d", errNotConnect, length, max)
	}
	// Protocol name (2-byte length, "MQTT" or "MQIsdp"), then the level.
	head := make([]byte, min(length, 9))
	if _, err := io.ReadFull(r, head); err != nil {
		return 0, err
	}
	if len(head) < 2 {
		return 0, errNotConnect
	}
	n := int(head[0])<<8 | int(head[1])
	if n+3 > len(head) || n+3 > length {
		return 0, errNotConnect
	}
	version := head[2+n]
	if _, err := io.CopyN(io.Discard, r, int64(length-len(head))); err != nil {
		return 0, err
	}
	return version, nil
}
