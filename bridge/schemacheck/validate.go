package schemacheck

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// maxReasonBytes bounds a violation's text: it travels in an MQTT 5
// reason string and a record header, and a payload must not be able to
// make either large.
const maxReasonBytes = 256

// printer renders jsonschema's error kinds; message.Printer is safe for
// concurrent use once built.
var printer = message.NewPrinter(language.English)

// validate checks payload against c and returns the first violation, or
// "" if the payload conforms. It never panics on any payload (fuzzed).
func (c *compiled) validate(payload []byte) string {
	switch {
	case c.json != nil:
		if c.fast != nil && c.fast.valid(payload) {
			return ""
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
		if err != nil {
			return clip("payload is not JSON: " + err.Error())
		}
		err = c.json.Validate(doc)
		if err == nil {
			return ""
		}
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return clip(firstViolation(ve))
		}
		return clip(err.Error())
	case c.avro != nil:
		var v any
		rest, err := c.avro.Decode(payload, &v)
		if err != nil {
			return clip("payload is not Avro binary of the schema: " + err.Error())
		}
		if len(rest) > 0 {
			return fmt.Sprintf("payload has %d bytes after the Avro record", len(rest))
		}
		return ""
	}
	return "schema was not compiled" // compile keeps err; callers check it first
}

// firstViolation walks to the first leaf of a validation error tree: the
// most specific reason ("at '/temp': got string, want number") rather
// than jsonschema's whole indented tree.
func firstViolation(ve *jsonschema.ValidationError) string {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := "/" + strings.Join(ve.InstanceLocation, "/")
	return fmt.Sprintf("at '%s': %s", loc, ve.ErrorKind.LocalizedString(printer))
}

// clip cuts s to maxReasonBytes on a rune boundary.
func clip(s string) string {
	if len(s) <= maxReasonBytes {
		return s
	}
	i := maxReasonBytes - 3
	for i > 0 && s[i]&0xc0 == 0x80 {
		i--
	}
	return s[:i] + "..."
}
