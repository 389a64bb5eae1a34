package mqttc

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Control packet types, already shifted into the high nibble.
const (
	pktConnect     byte = 0x10
	pktConnack     byte = 0x20
	pktPublish     byte = 0x30
	pktPuback      byte = 0x40
	pktPubrec      byte = 0x50
	pktPubrel      byte = 0x60
	pktPubcomp     byte = 0x70
	pktSubscribe   byte = 0x80
	pktSuback      byte = 0x90
	pktUnsubscribe byte = 0xA0
	pktUnsuback    byte = 0xB0
	pktPingreq     byte = 0xC0
	pktPingresp    byte = 0xD0
	pktDisconnect  byte = 0xE0
	pktAuth        byte = 0xF0
)

// MQTT 5 property identifiers used here.
const (
	propSessionExpiry    byte = 0x11
	propAssignedClientID byte = 0x12
	propServerKeepAlive  byte = 0x13
	propReasonString     byte = 0x1F
	propReceiveMaximum   byte = 0x21
	propMaximumQoS       byte = 0x24
	propMaximumPacket    byte = 0x27
	propMessageExpiry    byte = 0x02
	propResponseTopic    byte = 0x08
	propCorrelationData  byte = 0x09
)

// propKind is the wire type of each MQTT 5 property, so unknown ones can be
// skipped safely [MQTT-2.2.2].
func propKind(id byte) (kind byte, ok bool) {
	switch id {
	case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A:
		return 'b', true // byte
	case 0x13, 0x21, 0x22, 0x23:
		return 'h', true // two byte integer
	case 0x02, 0x11, 0x18, 0x27:
		return 'w', true // four byte integer
	case 0x0B:
		return 'v', true // variable byte integer
	case 0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F, 0x09, 0x16:
		return 's', true // UTF-8 string or binary data: both u16-prefixed
	case 0x26:
		return 'p', true // string pair
	}
	return 0, false
}

func appendVarint(b []byte, n int) []byte {
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, s []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// decoder walks a packet body; the first failure sticks so callers check
// err once at the end, and nothing indexes past the end of the body.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: short %s", ErrProtocol, what)
	}
	d.b = nil
}

func (d *decoder) byte1() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u16() uint16 {
	if len(d.b) < 2 {
		d.fail("uint16")
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *decoder) u32() uint32 {
	if len(d.b) < 4 {
		d.fail("uint32")
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) varint() int {
	n, shift := 0, 0
	for i := 0; i < 4; i++ {
		c := d.byte1()
		if d.err != nil {
			return 0
		}
		n |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			return n
		}
		shift += 7
	}
	d.fail("varint")
	return 0
}

func (d *decoder) bytesN(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail("field")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytesN(int(d.u16()))) }

// props is the subset of MQTT 5 properties this client acts on.
type props struct {
	receiveMaximum   uint16
	maximumQoS       byte
	hasMaximumQoS    bool
	maximumPacket    uint32
	serverKeepAlive  uint16
	hasKeepAlive     bool
	assignedClientID string
	reasonString     string
	// PUBLISH properties the downlink uses.
	messageExpiry    uint32
	hasMessageExpiry bool
	responseTopic    string
	correlationData  []byte
}

func (d *decoder) properties() props {
	var p props
	n := d.varint()
	pd := decoder{b: d.bytesN(n)}
	for d.err == nil && pd.err == nil && len(pd.b) > 0 {
		id := byte(pd.varint())
		kind, ok := propKind(id)
		if !ok {
			d.err = fmt.Errorf("%w: unknown property 0x%02x", ErrProtocol, id)
			return p
		}
		switch kind {
		case 'b':
			v := pd.byte1()
			if id == propMaximumQoS {
				p.maximumQoS, p.hasMaximumQoS = v, true
			}
		case 'h':
			v := pd.u16()
			switch id {
			case propReceiveMaximum:
				p.receiveMaximum = v
			case propServerKeepAlive:
				p.serverKeepAlive, p.hasKeepAlive = v, true
			}
		case 'w':
			v := pd.u32()
			switch id {
			case propMaximumPacket:
				p.maximumPacket = v
			case propMessageExpiry:
				p.messageExpiry, p.hasMessageExpiry = v, true
			}
		case 'v':
			pd.varint()
		case 's':
			v := pd.str()
			switch id {
			case propAssignedClientID:
				p.assignedClientID = v
			case propReasonString:
				p.reasonString = v
			case propResponseTopic:
				p.responseTopic = v
			case propCorrelationData:
				p.correlationData = []byte(v)
			}
		case 'p':
			pd.str()
			pd.str()
		}
	}
	if d.err == nil {
		d.err = pd.err
	}
	return p
}

// readPacket reads one control packet. buf is reused for small packets;
// PUBLISH bodies are always freshly allocated because callers keep them.
func readPacket(r *bufio.Reader, buf []byte, max int) (header byte, body []byte, err error) {
	header, err = r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrProtocol)
		}
		c, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			break
		}
		shift += 7
	}
	if n > max {
		return 0, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrPacketTooLarge, n, max)
	}
	if header&0xf0 == pktPublish || n > cap(buf) {
		body = make([]byte, n)
	} else {
		body = buf[:n]
	}
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return header, body, nil
}
