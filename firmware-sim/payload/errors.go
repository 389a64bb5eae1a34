package payload

import "errors"

// Decode errors. Callers tell "not a reading at all" from "a reading that
// breaks the schema" with errors.Is.
var (
	// ErrMalformed means the bytes are not a reading in any known encoding.
	ErrMalformed = errors.New("payload: malformed")
	// ErrSchema means the encoding parsed but a field is missing, has the
	// wrong type or is out of range.
	ErrSchema = errors.New("payload: schema violation")
)
