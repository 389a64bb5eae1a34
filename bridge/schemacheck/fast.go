package schemacheck

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// The fast path. Decoding a payload into Go values for jsonschema costs
// most of a check (a hundred allocations for a 150-byte reading, several
// µs), more than the rest of ingest. Most device schemas are flat: an
// object of typed properties with bounds and required names. For those,
// compileFast builds a validator that reads the payload bytes once without
// allocating and answers only "valid for sure" or "not sure". "Not sure"
// (a violation, or anything it does not handle: escapes, numbers near a
// bound, unknown keywords) always falls back to the full jsonschema
// validation, which decides and names the violation. So the fast path
// can only make a valid payload cheaper; it never accepts what the full
// validator would refuse (FuzzFastPathSound checks that).

// fastObject is a compiled object schema of the supported subset.
type fastObject struct {
	props    map[string]*fastValue
	required map[string]int // name -> bit
	nreq     int
	closed   bool // additionalProperties: false
}

// fastValue is a compiled property schema.
type fastValue struct {
	types              uint8 // bit set of fastType*; 0 means any type
	min, max           float64
	hasMin, hasMax     bool
	exclMin, exclMax   bool
	minLen, maxLen     int
	hasMinLen, hasMaxL bool
	object             *fastObject // for type object with properties
}

const (
	fastString uint8 = 1 << iota
	fastNumber
	fastInteger
	fastBool
	fastNull
	fastObj
	fastArray
)

// annotations are keywords that never change validity.
var annotations = map[string]bool{"title": true, "description": true, "$comment": true, "examples": true,
	"default": true, "readOnly": true, "writeOnly": true, "deprecated": true}

// compileFast compiles schema text to the fast subset, or returns nil if
// the schema uses anything outside it.
func compileFast(text string) *fastObject {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil
	}
	if s, ok := doc["$schema"]; ok {
		switch s {
		case "http://json-schema.org/draft-06/schema#", "http://json-schema.org/draft-07/schema#",
			"https://json-schema.org/draft/2019-09/schema", "https://json-schema.org/draft/2020-12/schema",
			"http://json-schema.org/draft-06/schema", "http://json-schema.org/draft-07/schema":
		default:
			return nil // draft 4 (boolean exclusive bounds, integer rules) and unknown drafts: full path
		}
		delete(doc, "$schema")
	}
	if t, ok := doc["type"]; !ok || t != "object" {
		return nil
	}
	v := compileFastValue(doc, 0)
	if v == nil || v.object == nil {
		return nil
	}
	return v.object
}

func compileFastValue(m map[string]any, depth int) *fastValue {
	if depth > 8 {
		return nil
	}
	v := &fastValue{}
	for k, raw := range m {
		if annotations[k] {
			continue
		}
		var ok bool
		switch k {
		case "type":
			ok = v.setTypes(raw)
		case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
			var f float64
			if f, ok = number(raw); ok {
				switch k {
				case "minimum":
					v.setMin(f, false)
				case "maximum":
					v.setMax(f, false)
				case "exclusiveMinimum":
					v.setMin(f, true)
				case "exclusiveMaximum":
					v.setMax(f, true)
				}
			}
		case "minLength", "maxLength":
			var f float64
			if f, ok = number(raw); ok && f >= 0 && f == math.Trunc(f) && f < 1<<31 {
				if k == "minLength" {
					v.minLen, v.hasMinLen = int(f), true
				} else {
					v.maxLen, v.hasMaxL = int(f), true
				}
			} else {
				ok = false
			}
		case "properties", "required", "additionalProperties":
			ok = true // handled below, with type object
		}
		if !ok {
			return nil
		}
	}
	_, hasProps := m["properties"]
	_, hasReq := m["required"]
	_, hasAdd := m["additionalProperties"]
	if hasProps || hasReq || hasAdd {
		if v.types != fastObj {
			return nil // object keywords on a value that may be something else: full path
		}
		o := compileFastObject(m, depth)
		if o == nil {
			return nil
		}
		v.object = o
	}
	return v
}

func compileFastObject(m map[string]any, depth int) *fastObject {
	o := &fastObject{props: map[string]*fastValue{}, required: map[string]int{}}
	if p, ok := m["properties"]; ok {
		pm, ok := p.(map[string]any)
		if !ok {
			return nil
		}
		for name, ps := range pm {
			switch s := ps.(type) {
			case bool:
				if !s {
					return nil
				}
				o.props[name] = &fastValue{}
			case map[string]any:
				fv := compileFastValue(s, depth+1)
				if fv == nil {
					return nil
				}
				o.props[name] = fv
			default:
				return nil
			}
		}
	}
	if r, ok := m["required"]; ok {
		rl, ok := r.([]any)
		if !ok || len(rl) > 64 {
			return nil
		}
		for _, x := range rl {
			name, ok := x.(string)
			if !ok {
				return nil
			}
			if _, dup := o.required[name]; !dup {
				o.required[name] = o.nreq
				o.nreq++
			}
		}
	}
	if a, ok := m["additionalProperties"]; ok {
		b, ok := a.(bool)
		if !ok {
			return nil
		}
		o.closed = !b
	}
	return o
}

func (v *fastValue) setTypes(raw any) bool {
	one := func(s any) bool {
		switch s {
		case "string":
			v.types |= fastString
		case "number":
			v.types |= fastNumber
		case "integer":
			v.types |= fastInteger
		case "boolean":
			v.types |= fastBool
		case "null":
			v.types |= fastNull
		case "object":
			v.types |= fastObj
		case "array":
			v.types |= fastArray
		default:
			return false
		}
		return true
	}
	if l, ok := raw.([]any); ok {
		if len(l) == 0 {
			return false
		}
		for _, s := range l {
			if !one(s) {
				return false
			}
		}
		return true
	}
	return one(raw)
}

func (v *fastValue) setMin(f float64, excl bool) {
	if !v.hasMin || f > v.min || (f == v.min && excl) {
		v.min, v.hasMin, v.exclMin = f, true, excl
	}
}

func (v *fastValue) setMax(f float64, excl bool) {
	if !v.hasMax || f < v.max || (f == v.max && excl) {
		v.max, v.hasMax, v.exclMax = f, true, excl
	}
}

func number(raw any) (float64, bool) {
	n, ok := raw.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	return f, err == nil && !math.IsInf(f, 0)
}

// fastScanner reads one payload. Any error means "not sure".
type fastScanner struct {
	b []byte
	i int
}

// valid reports whether payload is surely valid for o: one JSON object,
// nothing but whitespace after it.
func (o *fastObject) valid(payload []byte) bool {
	s := fastScanner{b: payload}
	s.ws()
	if !s.object(o, 0) {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

func (s *fastScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *fastScanner) object(o *fastObject, depth int) bool {
	if depth > 32 || s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	var seen uint64
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return o.nreq == 0
	}
	for {
		s.ws()
		key, ok := s.plainString()
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if v, known := o.props[string(key)]; known {
			if !s.value(v, depth) {
				return false
			}
		} else if o.closed {
			return false
		} else if !s.skip(depth) {
			return false
		}
		if bit, req := o.required[string(key)]; req {
			seen |= 1 << bit
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return seen == (uint64(1)<<o.nreq)-1 || (o.nreq == 64 && seen == math.MaxUint64)
		default:
			return false
		}
	}
}

// plainString reads a string without escapes and returns its bytes; a
// string with an escape or invalid UTF-8 is "not sure".
func (s *fastScanner) plainString() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			str := s.b[start:j]
			if !utf8.Valid(str) {
				return nil, false
			}
			return str, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func (s *fastScanner) value(v *fastValue, depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	c := s.b[s.i]
	switch {
	case c == '"':
		str, ok := s.plainString()
		if !ok || (v.types != 0 && v.types&fastString == 0) {
			return false
		}
		if v.hasMinLen || v.hasMaxL {
			n := utf8.RuneCount(str)
			if (v.hasMinLen && n < v.minLen) || (v.hasMaxL && n > v.maxLen) {
				return false
			}
		}
		return true
	case c == '-' || c >= '0' && c <= '9':
		return s.number(v)
	case c == 't' || c == 'f':
		if v.types != 0 && v.types&fastBool == 0 {
			return false
		}
		return s.literal("true") || s.literal("false")
	case c == 'n':
		if v.types != 0 && v.types&fastNull == 0 {
			return false
		}
		return s.literal("null")
	case c == '{':
		if v.types != 0 && v.types&fastObj == 0 {
			return false
		}
		if v.object != nil {
			return s.object(v.object, depth+1)
		}
		return s.skip(depth)
	case c == '[':
		if v.types != 0 && v.types&fastArray == 0 {
			return false
		}
		return s.skip(depth)
	}
	return false
}

func (s *fastScanner) literal(lit string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		s.i += len(lit)
		return true
	}
	return false
}

// number reads a JSON number and checks it against v. Integers are only
// judged from literals without fraction or exponent; a value within a
// relative 1e-9 of a bound is "not sure" (float parsing is not the exact
// comparison jsonschema makes).
func (s *fastScanner) number(v *fastValue) bool {
	start := s.i
	j := s.i
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	digits := func() int {
		n := 0
		for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
			j++
			n++
		}
		return n
	}
	intStart := j
	if n := digits(); n == 0 || (n > 1 && s.b[intStart] == '0') {
		return false
	}
	integral := true
	if j < len(s.b) && s.b[j] == '.' {
		j++
		integral = false
		if digits() == 0 {
			return false
		}
	}
	if j < len(s.b) && (s.b[j] == 'e' || s.b[j] == 'E') {
		j++
		integral = false
		if j < len(s.b) && (s.b[j] == '+' || s.b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return false
		}
	}
	s.i = j
	if v.types != 0 {
		ok := v.types&fastNumber != 0 || (v.types&fastInteger != 0 && integral)
		if !ok {
			return false
		}
	}
	if !v.hasMin && !v.hasMax {
		return true
	}
	f, err := strconv.ParseFloat(string(s.b[start:j]), 64)
	if err != nil || math.IsInf(f, 0) {
		return false
	}
	if v.hasMin && !beyond(f, v.min, v.exclMin) {
		return false
	}
	if v.hasMax && !beyond(-f, -v.max, v.exclMax) {
		return false
	}
	return true
}

// beyond reports whether f is surely above bound (or equal, when not
// exclusive): exact equality is trusted only for integers that floats
// hold exactly; anything within the margin is "not sure".
func beyond(f, bound float64, excl bool) bool {
	margin := 1e-9 * math.Max(1, math.Abs(bound))
	if f > bound+margin {
		return true
	}
	if !excl && f == bound && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return true
	}
	return false
}

// skip reads any one JSON value (checking its syntax) without judging it.
func (s *fastScanner) skip(depth int) bool {
	if depth > 32 || s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.plainString()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return s.number(&fastValue{})
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '{' || c == '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == end {
			s.i++
			return true
		}
		for {
			s.ws()
			if c == '{' {
				if _, ok := s.plainString(); !ok {
					return false
				}
				s.ws()
				if s.i >= len(s.b) || s.b[s.i] != ':' {
					return false
				}
				s.i++
				s.ws()
			}
			if !s.skip(depth + 1) {
				return false
			}
			s.ws()
			if s.i >= len(s.b) {
				return false
			}
			if s.b[s.i] == ',' {
				s.i++
				continue
			}
			if s.b[s.i] == end {
				s.i++
				return true
			}
			return false
		}
	}
	return false
}
