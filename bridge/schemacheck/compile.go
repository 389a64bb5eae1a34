package schemacheck

import (
	"fmt"
	"strconv"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/avro"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/schemacompile"
)

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

// record is resolve in the compiler's terms.
func (l lookup) record(r wire.SchemaReference) (wire.SchemaRecord, error) {
	rec, err := l.resolve(r)
	if err != nil {
		return wire.SchemaRecord{}, err
	}
	return *rec, nil
}

// compile compiles rec with its references. It never fails: a schema that
// does not compile keeps its error, so one bad schema cannot stop the
// node's other checks.
func compile(rec *wire.SchemaRecord, l lookup) *compiled {
	c := &compiled{id: rec.ID, typ: rec.Type,
		idHeader: []log.Header{{Key: wire.RecordHeaderSchemaID, Value: []byte(strconv.Itoa(rec.ID))}}}
	deps, err := schemacompile.CollectRefs(rec.References, l.record)
	if err != nil {
		c.err = err
		return c
	}
	switch rec.Type {
	case wire.SchemaTypeJSON:
		c.json, c.err = schemacompile.JSON(rec.Schema, deps)
		if c.err == nil && len(deps) == 0 {
			c.fast = compileFast(rec.Schema)
		}
	case wire.SchemaTypeAvro:
		c.avro, c.err = schemacompile.Avro(rec.Schema, deps)
	default:
		c.err = fmt.Errorf("schema type %s cannot be checked at the edge (JSON and AVRO can)", rec.Type)
	}
	return c
}
