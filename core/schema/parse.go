package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/avro"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/internal/schemacompile"
)

// maxDepth bounds JSON nesting in a schema text. Parsers and the
// compatibility checks recurse over the schema; a hostile schema nested a
// million deep is refused before any of them sees it. 128 JSON levels are
// 40+ levels of records or objects, more than any real schema has.
const maxDepth = 128

// maxNodes bounds the JSON objects and arrays in a schema text. The
// JSON Schema compiler's cost grows with the square of the subschemas
// (about 0.6 s for 10000 on a 2-core test machine), so this bounds the CPU
// one request can take.
const maxNodes = 10000

// maxReferences bounds the schemas one schema may pull in through
// references, transitively (the compiler's bound, shared with the edge).
const maxReferences = schemacompile.MaxReferences

// parsed is a schema that parsed, with its references resolved.
type parsed struct {
	typ  string // wire.SchemaTypeAvro or wire.SchemaTypeJSON
	text string // as stored: compacted JSON
	refs []wire.SchemaReference
	avro *avro.Schema
	json *jsonschema.Schema
}

// refResolver returns the schema a reference points at.
type refResolver func(wire.SchemaReference) (wire.SchemaRecord, error)

// canonicalType maps the API's schemaType (empty means Avro) to the
// record's, refusing types this registry does not serve.
func canonicalType(t string) (string, error) {
	switch strings.ToUpper(t) {
	case "", wire.SchemaTypeAvro:
		return wire.SchemaTypeAvro, nil
	case wire.SchemaTypeJSON:
		return wire.SchemaTypeJSON, nil
	case wire.SchemaTypeProtobuf:
		return "", errorf(ErrInvalidSchema, "schemaType PROTOBUF is not supported by this registry (AVRO and JSON are)")
	}
	return "", errorf(ErrInvalidSchema, "unknown schemaType %q; this registry serves AVRO and JSON", t)
}

// compactText checks that text is one JSON value nested at most maxDepth
// deep and returns it without insignificant whitespace; with normalize,
// object keys are also sorted.
func compactText(text string, normalize bool) (string, error) {
	if err := checkDepth(text); err != nil {
		return "", err
	}
	if normalize {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
		if err != nil {
			return "", errorf(ErrInvalidSchema, "Invalid schema: not JSON: %v", err)
		}
		b, err := json.Marshal(doc) // map keys come out sorted
		if err != nil {
			return "", errorf(ErrInvalidSchema, "Invalid schema: %v", err)
		}
		return string(b), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(text)); err != nil {
		return "", errorf(ErrInvalidSchema, "Invalid schema: not JSON: %v", err)
	}
	return buf.String(), nil
}

// checkDepth refuses text that is not one JSON value, nests deeper than
// maxDepth or holds more than maxNodes objects and arrays, reading tokens
// without building the document.
func checkDepth(text string) error {
	dec := json.NewDecoder(strings.NewReader(text))
	depth, nodes := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return errorf(ErrInvalidSchema, "Invalid schema: not JSON: %v", err)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
				nodes++
				if depth > maxDepth {
					return errorf(ErrInvalidSchema, "Invalid schema: nested more than %d levels deep", maxDepth)
				}
				if nodes > maxNodes {
					return errorf(ErrInvalidSchema, "Invalid schema: more than %d JSON objects and arrays", maxNodes)
				}
			} else {
				depth--
			}
		}
		if depth == 0 && dec.More() {
			return errorf(ErrInvalidSchema, "Invalid schema: more than one JSON value")
		}
	}
	return nil
}

// parse parses a schema of type typ (already canonical) whose text is
// already compacted, resolving its references (and theirs) with resolve.
// A schema that does not parse is ErrInvalidSchema with the parser's
// message.
func parse(typ, text string, refs []wire.SchemaReference, resolve refResolver) (*parsed, error) {
	deps, err := schemacompile.CollectRefs(refs, schemacompile.Resolver(resolve))
	if err != nil {
		return nil, invalidSchema(err)
	}
	p := &parsed{typ: typ, text: text, refs: refs}
	switch typ {
	case wire.SchemaTypeAvro:
		p.avro, err = schemacompile.Avro(text, deps)
	case wire.SchemaTypeJSON:
		p.json, err = schemacompile.JSON(text, deps)
	default:
		return nil, errorf(ErrInvalidSchema, "schemaType %s is not supported", typ)
	}
	if err != nil {
		return nil, invalidSchema(err)
	}
	return p, nil
}

// invalidSchema answers a schema the compiler refused as 42201 with the
// parser's message; the resolver's own errors (a missing reference is
// 40402 …) pass unchanged.
func invalidSchema(err error) error {
	var ie *schemacompile.InvalidError
	if errors.As(err, &ie) {
		return errorf(ErrInvalidSchema, "Invalid schema: %s", ie.Msg)
	}
	return err
}
