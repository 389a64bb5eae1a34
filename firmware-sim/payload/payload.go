package payload

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tinylib/msgp/msgp"
)

// Format is a payload encoding.
type Format int

// Payload encodings.
const (
	// JSON is human-readable and what most field devices send.
	JSON Format = iota
	// MsgPack is a compact self-describing binary map with the JSON keys.
	MsgPack
	// Raw is a fixed binary layout, the cheapest to produce; it lets a
	// benchmark hit an exact payload size.
	Raw
)

// String returns the name ParseFormat accepts.
func (f Format) String() string {
	switch f {
	case JSON:
		return "json"
	case MsgPack:
		return "msgpack"
	case Raw:
		return "raw"
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// ParseFormat parses "json", "msgpack" or "raw".
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "json", "":
		return JSON, nil
	case "msgpack", "msgp":
		return MsgPack, nil
	case "raw", "binary":
		return Raw, nil
	}
	return 0, fmt.Errorf("payload: unknown format %q (want json, msgpack or raw)", s)
}

// Reading is one sample of a device.
type Reading struct {
	// Device is the device id; it is also in the topic, but carrying it in
	// the payload lets verify work on records whose topic is gone.
	Device string `json:"device"`
	// Seq is the per-device sequence number, 0, 1, 2, ... without gaps.
	Seq int64 `json:"seq"`
	// TS is the device clock (which may be skewed) in Unix milliseconds.
	TS int64 `json:"ts"`
	// Temperature in degrees Celsius, [-60, 100].
	Temperature float64 `json:"temperature"`
	// Humidity in percent relative humidity, [0, 100].
	Humidity float64 `json:"humidity"`
	// Vibration in g RMS, [0, 50].
	Vibration float64 `json:"vibration"`
	// Battery charge in percent, [0, 100].
	Battery float64 `json:"battery"`
}

// JSONSchema describes the JSON encoding as a JSON Schema (draft 2020-12),
// so a schema registry can be loaded with exactly what the simulator sends.
const JSONSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "firmware-sim reading",
  "type": "object",
  "required": ["device", "seq", "ts", "temperature", "humidity", "vibration", "battery"],
  "properties": {
    "device": {"type": "string", "minLength": 1},
    "seq": {"type": "integer", "minimum": 0},
    "ts": {"type": "integer"},
    "temperature": {"type": "number", "minimum": -60, "maximum": 100},
    "humidity": {"type": "number", "minimum": 0, "maximum": 100},
    "vibration": {"type": "number", "minimum": 0, "maximum": 50},
    "battery": {"type": "number", "minimum": 0, "maximum": 100},
    "pad": {"type": "string"}
  }
}`

const (
	rawMagic    = "FSR1"
	rawFixedLen = 4 + 8 + 8 + 4*4 + 1
	// maxDeviceLen bounds the device id so the raw length byte suffices.
	maxDeviceLen = 255
)

// Append appends r encoded as f to dst, padded to size bytes when the
// natural encoding is shorter.
func Append(dst []byte, f Format, r *Reading, size int) []byte {
	switch f {
	case MsgPack:
		return appendMsgPack(dst, r, size)
	case Raw:
		return appendRaw(dst, r, size)
	default:
		return appendJSON(dst, r, size)
	}
}

func appendJSON(dst []byte, r *Reading, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"device":`...)
	dst = strconv.AppendQuote(dst, r.Device)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, r.Seq, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, r.TS, 10)
	dst = append(dst, `,"temperature":`...)
	dst = strconv.AppendFloat(dst, r.Temperature, 'f', 2, 64)
	dst = append(dst, `,"humidity":`...)
	dst = strconv.AppendFloat(dst, r.Humidity, 'f', 1, 64)
	dst = append(dst, `,"vibration":`...)
	dst = strconv.AppendFloat(dst, r.Vibration, 'f', 3, 64)
	dst = append(dst, `,"battery":`...)
	dst = strconv.AppendFloat(dst, r.Battery, 'f', 1, 64)
	const padOverhead = len(`,"pad":""}`)
	if n := size - (len(dst) - start) - padOverhead; n > 0 {
		dst = append(dst, `,"pad":"`...)
		for range n {
			dst = append(dst, 'x')
		}
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

func appendMsgPack(dst []byte, r *Reading, size int) []byte {
	start := len(dst)
	dst = msgp.AppendMapHeader(dst, 8)
	dst = msgp.AppendString(dst, "device")
	dst = msgp.AppendString(dst, r.Device)
	dst = msgp.AppendString(dst, "seq")
	dst = msgp.AppendInt64(dst, r.Seq)
	dst = msgp.AppendString(dst, "ts")
	dst = msgp.AppendInt64(dst, r.TS)
	dst = msgp.AppendString(dst, "temperature")
	dst = msgp.AppendFloat64(dst, r.Temperature)
	dst = msgp.AppendString(dst, "humidity")
	dst = msgp.AppendFloat64(dst, r.Humidity)
	dst = msgp.AppendString(dst, "vibration")
	dst = msgp.AppendFloat64(dst, r.Vibration)
	dst = msgp.AppendString(dst, "battery")
	dst = msgp.AppendFloat64(dst, r.Battery)
	dst = msgp.AppendString(dst, "pad")
	// The pad's string header grows with its length (fixstr 1 byte, str8 2,
	// str16 3, str32 5); one size (rem == 33) cannot be hit exactly.
	n := 0
	switch rem := size - (len(dst) - start); {
	case rem <= 1:
	case rem-1 <= 31:
		n = rem - 1
	case rem-2 <= math.MaxUint8:
		n = rem - 2
	case rem-3 <= math.MaxUint16:
		n = rem - 3
	default:
		n = rem - 5
	}
	return msgp.AppendString(dst, strings.Repeat("x", n))
}

func appendRaw(dst []byte, r *Reading, size int) []byte {
	start := len(dst)
	dev := r.Device
	if len(dev) > maxDeviceLen {
		dev = dev[:maxDeviceLen]
	}
	dst = append(dst, rawMagic...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Seq))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.TS))
	for _, v := range [...]float64{r.Temperature, r.Humidity, r.Vibration, r.Battery} {
		dst = binary.BigEndian.AppendUint32(dst, math.Float32bits(float32(v)))
	}
	dst = append(dst, byte(len(dev)))
	dst = append(dst, dev...)
	for len(dst)-start < size {
		dst = append(dst, 0)
	}
	return dst
}

// AppendSchemaViolation appends a payload that parses in format f but
// breaks the schema: seq is not a number and temperature is a string. It
// carries no usable Seq, so the device's sequence is not consumed. For Raw,
// which has no schema beyond its layout, it appends a truncated record.
func AppendSchemaViolation(dst []byte, f Format, r *Reading, size int) []byte {
	switch f {
	case Raw:
		return AppendMalformed(dst, f, r, size)
	case MsgPack:
		dst = msgp.AppendMapHeader(dst, 4)
		dst = msgp.AppendString(dst, "device")
		dst = msgp.AppendString(dst, r.Device)
		dst = msgp.AppendString(dst, "seq")
		dst = msgp.AppendString(dst, "n/a")
		dst = msgp.AppendString(dst, "ts")
		dst = msgp.AppendInt64(dst, r.TS)
		dst = msgp.AppendString(dst, "temperature")
		return msgp.AppendString(dst, "hot")
	default:
		dst = append(dst, `{"device":`...)
		dst = strconv.AppendQuote(dst, r.Device)
		dst = append(dst, `,"seq":"n/a","ts":`...)
		dst = strconv.AppendInt(dst, r.TS, 10)
		return append(dst, `,"temperature":"hot","humidity":-5}`...)
	}
}

// AppendMalformed appends bytes that are not a reading in any encoding: a
// valid encoding cut in half with junk appended. Decode returns ErrMalformed.
func AppendMalformed(dst []byte, f Format, r *Reading, size int) []byte {
	start := len(dst)
	dst = Append(dst, f, r, size)
	dst = dst[:start+(len(dst)-start)/2]
	if f == Raw {
		dst[start] = '#' // breaks the magic
	}
	return append(dst, 0x00, 0xc1, 0xff) // 0xc1 is never used in msgpack
}

// Decode parses a payload in any of the three encodings and checks it
// against the schema. It returns an error wrapping ErrMalformed or
// ErrSchema; it never panics on arbitrary input.
func Decode(b []byte) (Reading, error) {
	if len(b) == 0 {
		return Reading{}, fmt.Errorf("%w: empty", ErrMalformed)
	}
	switch {
	case bytes.HasPrefix(b, []byte(rawMagic)):
		return decodeRaw(b)
	case b[0] == '{' || b[0] == ' ' || b[0] == '\n' || b[0] == '\t' || b[0] == '\r':
		return decodeJSON(b)
	case b[0]&0xf0 == 0x80 || b[0] == 0xde || b[0] == 0xdf:
		return decodeMsgPack(b)
	}
	return Reading{}, fmt.Errorf("%w: unknown encoding (first byte 0x%02x)", ErrMalformed, b[0])
}

type jsonReading struct {
	Device      *string  `json:"device"`
	Seq         any      `json:"seq"`
	TS          any      `json:"ts"`
	Temperature *float64 `json:"temperature"`
	Humidity    *float64 `json:"humidity"`
	Vibration   *float64 `json:"vibration"`
	Battery     *float64 `json:"battery"`
}

func decodeJSON(b []byte) (Reading, error) {
	var j jsonReading
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&j); err != nil {
		var te *json.UnmarshalTypeError
		if asTypeError(err, &te) {
			return Reading{}, fmt.Errorf("%w: field %s: %v", ErrSchema, te.Field, err)
		}
		return Reading{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if d.More() {
		return Reading{}, fmt.Errorf("%w: trailing data after the object", ErrMalformed)
	}
	var r Reading
	if j.Device == nil {
		return Reading{}, fmt.Errorf("%w: device missing", ErrSchema)
	}
	r.Device = *j.Device
	var err error
	if r.Seq, err = jsonInt("seq", j.Seq); err != nil {
		return Reading{}, err
	}
	if r.TS, err = jsonInt("ts", j.TS); err != nil {
		return Reading{}, err
	}
	for _, f := range [...]struct {
		name string
		src  *float64
		dst  *float64
	}{
		{"temperature", j.Temperature, &r.Temperature},
		{"humidity", j.Humidity, &r.Humidity},
		{"vibration", j.Vibration, &r.Vibration},
		{"battery", j.Battery, &r.Battery},
	} {
		if f.src == nil {
			return Reading{}, fmt.Errorf("%w: %s missing", ErrSchema, f.name)
		}
		*f.dst = *f.src
	}
	return r, r.check()
}

func asTypeError(err error, te **json.UnmarshalTypeError) bool {
	t, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*te = t
	}
	return ok
}

func jsonInt(name string, v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		if v == nil {
			return 0, fmt.Errorf("%w: %s missing", ErrSchema, name)
		}
		return 0, fmt.Errorf("%w: %s is %T, want an integer", ErrSchema, name, v)
	}
	i, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%s is not an integer", ErrSchema, name, n)
	}
	return i, nil
}

func decodeMsgPack(b []byte) (Reading, error) {
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return Reading{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var r Reading
	var seen uint8
	for range n {
		var key []byte
		key, rest, err = msgp.ReadMapKeyZC(rest)
		if err != nil {
			return Reading{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		var bit uint8
		switch string(key) {
		case "device":
			bit = 1
			if msgp.NextType(rest) != msgp.StrType {
				return Reading{}, fmt.Errorf("%w: device is not a string", ErrSchema)
			}
			r.Device, rest, err = msgp.ReadStringBytes(rest)
		case "seq":
			bit = 2
			r.Seq, rest, err = msgpInt("seq", rest)
		case "ts":
			bit = 4
			r.TS, rest, err = msgpInt("ts", rest)
		case "temperature":
			bit = 8
			r.Temperature, rest, err = msgpFloat("temperature", rest)
		case "humidity":
			bit = 16
			r.Humidity, rest, err = msgpFloat("humidity", rest)
		case "vibration":
			bit = 32
			r.Vibration, rest, err = msgpFloat("vibration", rest)
		case "battery":
			bit = 64
			r.Battery, rest, err = msgpFloat("battery", rest)
		default:
			rest, err = msgp.Skip(rest)
		}
		if err != nil {
			if isSchema(err) {
				return Reading{}, err
			}
			return Reading{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		seen |= bit
	}
	if len(rest) != 0 {
		return Reading{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	if seen != 127 {
		return Reading{}, fmt.Errorf("%w: required field missing", ErrSchema)
	}
	return r, r.check()
}

func isSchema(err error) bool {
	for err != nil {
		if err == ErrSchema {
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func msgpInt(name string, b []byte) (int64, []byte, error) {
	switch msgp.NextType(b) {
	case msgp.IntType:
		return msgp.ReadInt64Bytes(b)
	case msgp.UintType:
		u, rest, err := msgp.ReadUint64Bytes(b)
		if err == nil && u > math.MaxInt64 {
			return 0, nil, fmt.Errorf("%w: %s out of range", ErrSchema, name)
		}
		return int64(u), rest, err
	}
	return 0, nil, fmt.Errorf("%w: %s is not an integer", ErrSchema, name)
}

func msgpFloat(name string, b []byte) (float64, []byte, error) {
	switch msgp.NextType(b) {
	case msgp.Float64Type:
		return msgp.ReadFloat64Bytes(b)
	case msgp.Float32Type:
		f, rest, err := msgp.ReadFloat32Bytes(b)
		return float64(f), rest, err
	case msgp.IntType, msgp.UintType:
		i, rest, err := msgpInt(name, b)
		return float64(i), rest, err
	}
	return 0, nil, fmt.Errorf("%w: %s is not a number", ErrSchema, name)
}

func decodeRaw(b []byte) (Reading, error) {
	if len(b) < rawFixedLen {
		return Reading{}, fmt.Errorf("%w: raw record of %d bytes, want at least %d", ErrMalformed, len(b), rawFixedLen)
	}
	var r Reading
	p := b[len(rawMagic):]
	r.Seq = int64(binary.BigEndian.Uint64(p))
	r.TS = int64(binary.BigEndian.Uint64(p[8:]))
	p = p[16:]
	for _, dst := range [...]*float64{&r.Temperature, &r.Humidity, &r.Vibration, &r.Battery} {
		*dst = float64(math.Float32frombits(binary.BigEndian.Uint32(p)))
		p = p[4:]
	}
	n := int(p[0])
	p = p[1:]
	if len(p) < n {
		return Reading{}, fmt.Errorf("%w: device id of %d bytes past the end", ErrMalformed, n)
	}
	r.Device = string(p[:n])
	return r, r.check()
}

// check applies the schema's ranges; NaN fails every comparison.
func (r *Reading) check() error {
	switch {
	case r.Device == "":
		return fmt.Errorf("%w: device is empty", ErrSchema)
	case r.Seq < 0:
		return fmt.Errorf("%w: seq %d is negative", ErrSchema, r.Seq)
	case !(r.Temperature >= -60 && r.Temperature <= 100):
		return fmt.Errorf("%w: temperature %v out of [-60, 100]", ErrSchema, r.Temperature)
	case !(r.Humidity >= 0 && r.Humidity <= 100):
		return fmt.Errorf("%w: humidity %v out of [0, 100]", ErrSchema, r.Humidity)
	case !(r.Vibration >= 0 && r.Vibration <= 50):
		return fmt.Errorf("%w: vibration %v out of [0, 50]", ErrSchema, r.Vibration)
	case !(r.Battery >= 0 && r.Battery <= 100):
		return fmt.Errorf("%w: battery %v out of [0, 100]", ErrSchema, r.Battery)
	}
	return nil
}
