package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/avro"

	"github.com/outpost-edge/outpost/core/wire"
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
// references, transitively.
const maxReferences = 100

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
	deps, err := collectRefs(refs, resolve)
	if err != nil {
		return nil, err
	}
	p := &parsed{typ: typ, text: text, refs: refs}
	switch typ {
	case wire.SchemaTypeAvro:
		var cache avro.SchemaCache
		for _, d := range deps {
			if d.rec.Type != wire.SchemaTypeAvro {
				return nil, errorf(ErrInvalidSchema, "Invalid schema: reference %q (subject %q version %d) is a %s schema, not AVRO", d.ref.Name, d.ref.Subject, d.ref.Version, d.rec.Type)
			}
			if _, err := cache.Parse(d.rec.Schema); err != nil {
				return nil, errorf(ErrInvalidSchema, "Invalid schema: reference %q (subject %q version %d): %v", d.ref.Name, d.ref.Subject, d.ref.Version, err)
			}
		}
		s, err := cache.Parse(text)
		if err != nil {
			return nil, errorf(ErrInvalidSchema, "Invalid schema: %v", err)
		}
		p.avro = s
	case wire.SchemaTypeJSON:
		s, err := compileJSON(text, deps)
		if err != nil {
			return nil, err
		}
		p.json = s
	default:
		return nil, errorf(ErrInvalidSchema, "schemaType %s is not supported", typ)
	}
	return p, nil
}

type resolvedRef struct {
	ref wire.SchemaReference
	rec wire.SchemaRecord
}

// collectRefs resolves refs and their references, depth first, so that
// every schema comes after the ones it references (Avro needs named types
// defined before use). A cycle or more than maxReferences schemas is
// refused.
func collectRefs(refs []wire.SchemaReference, resolve refResolver) ([]resolvedRef, error) {
	var out []resolvedRef
	done := map[wire.SchemaReference]bool{}
	onPath := map[wire.SchemaReference]bool{}
	var visit func(r wire.SchemaReference) error
	visit = func(r wire.SchemaReference) error {
		key := wire.SchemaReference{Subject: r.Subject, Version: r.Version}
		if done[key] {
			return nil
		}
		if onPath[key] {
			return errorf(ErrInvalidSchema, "Invalid schema: references form a cycle through subject %q version %d", r.Subject, r.Version)
		}
		if len(done) >= maxReferences {
			return errorf(ErrInvalidSchema, "Invalid schema: more than %d referenced schemas", maxReferences)
		}
		onPath[key] = true
		rec, err := resolve(r)
		if err != nil {
			return err
		}
		for _, sub := range rec.References {
			if err := visit(sub); err != nil {
				return err
			}
		}
		onPath[key] = false
		done[key] = true
		out = append(out, resolvedRef{ref: r, rec: rec})
		return nil
	}
	for _, r := range refs {
		if err := visit(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// jsonBase is the URL the schema being compiled is known by; relative
// $refs resolve against it (or against the schema's own $id).
const jsonBase = "https://schema-registry.outpost.invalid/schema.json"

// compileJSON compiles a JSON Schema (drafts 4, 6, 7, 2019-09, 2020-12 by
// its $schema; 7 without one, as Confluent does). References are served
// from deps by name; nothing is ever loaded from the network or disk.
func compileJSON(text string, deps []resolvedRef) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return nil, errorf(ErrInvalidSchema, "Invalid schema: not JSON: %v", err)
	}
	ld := refLoader{}
	for _, d := range deps {
		if d.rec.Type != wire.SchemaTypeJSON {
			return nil, errorf(ErrInvalidSchema, "Invalid schema: reference %q (subject %q version %d) is a %s schema, not JSON", d.ref.Name, d.ref.Subject, d.ref.Version, d.rec.Type)
		}
		rdoc, err := jsonschema.UnmarshalJSON(strings.NewReader(d.rec.Schema))
		if err != nil {
			return nil, errorf(ErrInvalidSchema, "Invalid schema: reference %q: %v", d.ref.Name, err)
		}
		ld[d.ref.Name] = rdoc
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.UseLoader(ld)
	if err := c.AddResource(jsonBase, doc); err != nil {
		return nil, errorf(ErrInvalidSchema, "Invalid schema: %v", err)
	}
	s, err := c.Compile(jsonBase)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), jsonBase, "schema")
		return nil, errorf(ErrInvalidSchema, "Invalid schema: %s", msg)
	}
	return s, nil
}

// refLoader serves referenced JSON schemas by their reference name: a $ref
// matches a name equal to the resolved URL, or a relative name the URL
// ends with ("address.json" serves https://example.com/address.json).
type refLoader map[string]any

func (l refLoader) Load(u string) (any, error) {
	if doc, ok := l[u]; ok {
		return doc, nil
	}
	pu, err := url.Parse(u)
	if err == nil {
		for name, doc := range l {
			if nu, err := url.Parse(name); err == nil && !nu.IsAbs() && name != "" &&
				(strings.HasSuffix(pu.Path, "/"+strings.TrimPrefix(nu.Path, "/"))) {
				return doc, nil
			}
		}
	}
	return nil, fmt.Errorf("$ref %s is not one of the schema's references; register it and list it in \"references\"", u)
}
