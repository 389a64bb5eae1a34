// Package schemacheck is the schema check of the ingest pipeline (G7): a
// payload routed to a log topic whose route names a registry subject
// (schema_subject, optionally schema_version) is validated before it is
// appended, against the node's copy of the central registry, offline.
//
// What the check decides (Check returns a Verdict; bridge/mqtt's check
// stage obeys it):
//
//   - The payload conforms: append it, with the record header schema.id
//     (wire.RecordHeaderSchemaID) naming the schema it was checked against;
//     the forwarder carries it upstream as Outpost-Schema-Id.
//   - It does not, and the publish is MQTT 5 QoS 1 or 2: refuse it with
//     PUBACK/PUBREC 0x99 (payload format invalid) and a reason string naming
//     the first violation ("schema readings-value v2: at '/temp': got
//     string, want number"); nothing is appended.
//   - It does not, and the publish is MQTT 3.1.1 or QoS 0 (no negative ack:
//     a refused 3.1.1 device resends forever): append it to the dead-letter
//     topic <topic>.dead (same partition and key), with headers schema.error
//     (the reason), schema.subject and, when a schema was known,
//     schema.version and schema.id; the device gets its normal ack.
//
// Which schema: the version the publish names (MQTT 5 user property
// schema-id, or a content type parameter schema-id / schemaId, e.g.
// "application/json; schema-id=7"), which must be a version of the topic's
// subject; else the pinned schema_version; else the subject's latest
// version that is not soft-deleted. A schema the node does not know (the
// subject never synced, a pinned version or a named ID newer than the
// node's copy, a schema that does not compile here) is handled by
// on_unknown_schema: refuse (the default) treats the payload as a
// violation (reason unknown_schema); accept appends it unchecked, without
// schema.id.
//
// Types: JSON Schema (drafts by $schema, draft 7 without one, as core's
// registry) via santhosh-tekuri/jsonschema/v6, and Avro (the payload is one
// datum in Avro binary, wholly consumed) via twmb/avro, with references
// resolved from the node's copy. Protobuf subjects count as unknown.
//
// Schemas are compiled once, when Update hands over a new copy of the
// registry (edge/node wires sync/schema to it), and kept by ID: IDs are
// never reused and schemas never change. Check reads one immutable snapshot
// (an atomic pointer), so it takes no lock and an Update never stalls
// ingest. A publish to a topic without a schema costs one map lookup.
//
// Reasons are cut to 256 bytes. Metrics: outpost_schema_checked_total,
// outpost_schema_unchecked_total and outpost_schema_violations_total
// (subject, reason, action), documented in docs/metrics.md; the subject
// label's values are the subjects the node's routes name.
package schemacheck
