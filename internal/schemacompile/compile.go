package schemacompile

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/avro"

	"github.com/outpost-edge/outpost/core/wire"
)

// MaxReferences bounds the schemas one schema may pull in through
// references, transitively.
const MaxReferences = 100

// Resolver returns the schema a reference points at. Its errors are
// returned by CollectRefs unchanged, so a caller keeps its own error kinds.
type Resolver func(wire.SchemaReference) (wire.SchemaRecord, error)

// Ref is a resolved reference.
type Ref struct {
	Ref wire.SchemaReference
	Rec wire.SchemaRecord
}

// InvalidError is a schema that does not compile, with the parser's
// message; the registry answers it as 42201.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

func invalid(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// CollectRefs resolves refs and their references, depth first, so that
// every schema comes after the ones it references (Avro needs named types
// defined before use). A cycle or more than MaxReferences schemas is an
// InvalidError.
func CollectRefs(refs []wire.SchemaReference, resolve Resolver) ([]Ref, error) {
	var out []Ref
	done := map[wire.SchemaReference]bool{}
	onPath := map[wire.SchemaReference]bool{}
	var visit func(r wire.SchemaReference) error
	visit = func(r wire.SchemaReference) error {
		key := wire.SchemaReference{Subject: r.Subject, Version: r.Version}
		if done[key] {
			return nil
		}
		if onPath[key] {
			return invalid("references form a cycle through subject %q version %d", r.Subject, r.Version)
		}
		if len(done) >= MaxReferences {
			return invalid("more than %d referenced schemas", MaxReferences)
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
		out = append(out, Ref{Ref: r, Rec: rec})
		return nil
	}
	for _, r := range refs {
		if err := visit(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Avro parses an Avro schema after its references (deps from CollectRefs).
func Avro(text string, deps []Ref) (*avro.Schema, error) {
	var cache avro.SchemaCache
	for _, d := range deps {
		if d.Rec.Type != wire.SchemaTypeAvro {
			return nil, invalid("reference %q (subject %q version %d) is a %s schema, not AVRO", d.Ref.Name, d.Ref.Subject, d.Ref.Version, d.Rec.Type)
		}
		if _, err := cache.Parse(d.Rec.Schema); err != nil {
			return nil, invalid("reference %q (subject %q version %d): %v", d.Ref.Name, d.Ref.Subject, d.Ref.Version, err)
		}
	}
	s, err := cache.Parse(text)
	if err != nil {
		return nil, invalid("%v", err)
	}
	return s, nil
}

// jsonBase is the URL the schema being compiled is known by; relative
// $refs resolve against it (or against the schema's own $id).
const jsonBase = "https://schema-registry.outpost.invalid/schema.json"

// JSON compiles a JSON Schema (drafts 4, 6, 7, 2019-09, 2020-12 by its
// $schema; 7 without one, as Confluent does). References are served from
// deps by name.
func JSON(text string, deps []Ref) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return nil, invalid("not JSON: %v", err)
	}
	ld := refLoader{}
	for _, d := range deps {
		if d.Rec.Type != wire.SchemaTypeJSON {
			return nil, invalid("reference %q (subject %q version %d) is a %s schema, not JSON", d.Ref.Name, d.Ref.Subject, d.Ref.Version, d.Rec.Type)
		}
		rdoc, err := jsonschema.UnmarshalJSON(strings.NewReader(d.Rec.Schema))
		if err != nil {
			return nil, invalid("reference %q: %v", d.Ref.Name, err)
		}
		ld[d.Ref.Name] = rdoc
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.UseLoader(ld)
	if err := c.AddResource(jsonBase, doc); err != nil {
		return nil, invalid("%v", err)
	}
	s, err := c.Compile(jsonBase)
	if err != nil {
		return nil, invalid("%s", strings.ReplaceAll(err.Error(), jsonBase, "schema"))
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
	if pu, err := url.Parse(u); err == nil {
		for name, doc := range l {
			if nu, err := url.Parse(name); err == nil && !nu.IsAbs() && name != "" &&
				strings.HasSuffix(pu.Path, "/"+strings.TrimPrefix(nu.Path, "/")) {
				return doc, nil
			}
		}
	}
	return nil, errors.New("$ref " + u + " is not one of the schema's references; register it and list it in \"references\"")
}
