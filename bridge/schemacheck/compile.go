package schemacheck

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/avro"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// maxReferences bounds the schemas one schema may pull in through
// references, transitively (the registry's own bound, core/schema).
const maxReferences = 100

// compiled is one registry schema, compiled once for validation. It is
// immutable: IDs are never reused and a schema never changes (core/wire
// schema.go), so a compiled schema is kept by ID across updates.
type compiled struct {
	id   int
	typ  string
	json *jsonschema.Schema
	// fast, if set, accepts most valid payloads of a flat JSON schema
	// without decoding them (fast.go); anything else goes to json.
	fast *fastObject
	avro *avro.Schema
	// err is why the schema could not be compiled at the edge; a payload
	// checked against it is treated as checked against an unknown schema.
	err error
	// idHeader is the record header every accepted record checked against
	// this schema carries; shared and read-only.
	idHeader []log.Header
}

// lookup is what compiling needs of a registry copy: a subject's record and
// a schema by ID.
type lookup struct {
	subjects map[string]*wire.SubjectRecord
	schemas  map[int]*wire.SchemaRecord
}

func (l lookup) resolve(r wire.SchemaReference) (*wire.SchemaRecord, error) {
	sr, ok := l.subjects[r.Subject]
	if !ok {
		return nil, fmt.Errorf("reference %q: subject %q is not in the node's copy of the registry", r.Name, r.Subject)
	}
	for _, v := range sr.Versions {
		if v.Version == r.Version {
			rec, ok := l.schemas[v.ID]
			if !ok {
				return nil, fmt.Errorf("reference %q: schema %d (subject %q version %d) is not in the node's copy of the registry", r.Name, v.ID, r.Subject, r.Version)
			}
			return rec, nil
		}
	}
	return nil, fmt.Errorf("reference %q: subject %q has no version %d", r.Name, r.Subject, r.Version)
}

// compile compiles rec with its references. It never fails: a schema that
// does not compile keeps its error, so one bad schema cannot stop the
// node's other checks.
func compile(rec *wire.SchemaRecord, l lookup) *compiled {
	c := &compiled{id: rec.ID, typ: rec.Type,
		idHeader: []log.Header{{Key: wire.RecordHeaderSchemaID, Value: []byte(strconv.Itoa(rec.ID))}}}
	deps, err := collectRefs(rec.References, l)
	if err != nil {
		c.err = err
		return c
	}
	switch rec.Type {
	case wire.SchemaTypeJSON:
		c.json, c.err = compileJSON(rec.Schema, deps)
		if c.err == nil && len(deps) == 0 {
			c.fast = compileFast(rec.Schema)
		}
	case wire.SchemaTypeAvro:
		c.avro, c.err = compileAvro(rec.Schema, deps)
	default:
		c.err = fmt.Errorf("schema type %s cannot be checked at the edge (JSON and AVRO can)", rec.Type)
	}
	return c
}

type resolvedRef struct {
	ref wire.SchemaReference
	rec *wire.SchemaRecord
}

// collectRefs resolves refs and theirs, depth first, so that every schema
// comes after the ones it references (Avro needs named types defined before
// use); cycles and more than maxReferences schemas are refused.
func collectRefs(refs []wire.SchemaReference, l lookup) ([]resolvedRef, error) {
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
			return fmt.Errorf("references form a cycle through subject %q version %d", r.Subject, r.Version)
		}
		if len(done) >= maxReferences {
			return fmt.Errorf("more than %d referenced schemas", maxReferences)
		}
		onPath[key] = true
		rec, err := l.resolve(r)
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

func compileAvro(text string, deps []resolvedRef) (*avro.Schema, error) {
	var cache avro.SchemaCache
	for _, d := range deps {
		if d.rec.Type != wire.SchemaTypeAvro {
			return nil, fmt.Errorf("reference %q is a %s schema, not AVRO", d.ref.Name, d.rec.Type)
		}
		if _, err := cache.Parse(d.rec.Schema); err != nil {
			return nil, fmt.Errorf("reference %q: %w", d.ref.Name, err)
		}
	}
	return cache.Parse(text)
}

// jsonBase is the URL the compiled schema is known by (as in core/schema),
// so relative $refs resolve the same way at the edge as in the registry.
const jsonBase = "https://schema-registry.outpost.invalid/schema.json"

// compileJSON compiles a JSON Schema (draft by its $schema, draft 7
// without one, as Confluent and core/schema do). References are served from
// deps by name; nothing is loaded from the network or disk.
func compileJSON(text string, deps []resolvedRef) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	ld := refLoader{}
	for _, d := range deps {
		if d.rec.Type != wire.SchemaTypeJSON {
			return nil, fmt.Errorf("reference %q is a %s schema, not JSON", d.ref.Name, d.rec.Type)
		}
		rdoc, err := jsonschema.UnmarshalJSON(strings.NewReader(d.rec.Schema))
		if err != nil {
			return nil, fmt.Errorf("reference %q: %w", d.ref.Name, err)
		}
		ld[d.ref.Name] = rdoc
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.UseLoader(ld)
	if err := c.AddResource(jsonBase, doc); err != nil {
		return nil, err
	}
	s, err := c.Compile(jsonBase)
	if err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), jsonBase, "schema"))
	}
	return s, nil
}

// refLoader serves referenced JSON schemas by reference name: a $ref
// matches a name equal to the resolved URL, or a relative name the URL's
// path ends with (core/schema's rule).
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
	return nil, fmt.Errorf("$ref %s is not one of the schema's references", u)
}
