// Package schema is core's schema registry: the Confluent Schema Registry
// REST API over one JetStream KV bucket, so producers, consumers and their
// serializers agree on what a topic carries, and incompatible changes are
// refused before they break a consumer. core serves it on its HTTP
// listener at the API's root paths; that address is a schema.registry.url.
//
// # Guarantees
//
//   - Schema IDs are global and stable forever: the same schema (type,
//     text without insignificant whitespace, references) gets the same ID
//     under every subject, and an ID is never reused, not after a
//     permanent delete either. Versions of a subject are never reused.
//   - Several registries (core instances) may share the bucket: IDs come
//     from a counter advanced by KV compare-and-set, a schema's ID is fixed
//     by creating its fingerprint key (the first creator wins, the others
//     adopt its ID), and a subject is one KV value updated at the revision
//     read, so concurrent registrations never hand out an ID or a version
//     twice. A conflicting write is retried from a fresh read.
//   - A schema that does not parse is refused (42201) with the parser's
//     message; one incompatible under the subject's level is refused (409)
//     with every reason.
//
// # Storage
//
// All state is in bucket wire.SchemaBucket(prefix) (OUTPOST-SCHEMAS); the
// key layout and value formats are the contract in core/wire/schema.go,
// which edges watch to validate offline. The registry keeps nothing else.
// Reads are served from an in-memory copy built by watching the whole
// bucket (see state.go for the cost per schema, about the value bytes plus
// a few hundred bytes per schema and subject, bounded by
// schema_registry.max_bytes); writes go to the bucket and are applied to
// the copy at their revision. A registry answers the writes it made on
// the next request; another instance sees them when its watch delivers
// them, usually within milliseconds.
//
// # Lifecycle
//
// New starts nothing. Run opens or creates the bucket (retrying while
// NATS is away), loads it, and follows it until its context ends; Ready
// turns true once loaded, and until then the API answers 50001. Handler
// may be served before Run.
//
// # Schema types
//
// JSON Schema (drafts 4, 6, 7, 2019-09, 2020-12 by $schema, 7 without,
// as Confluent does; santhosh-tekuri/jsonschema/v6, which validates the
// schema against its metaschema and never loads a URL: $refs to other
// schemas resolve only through declared references) and Avro
// (twmb/avro). Protobuf is refused: parsing would fit
// (bufbuild/protocompile), but its compatibility rules are a third rule
// set this package does not have yet.
//
// # Compatibility
//
// checkCompat is a pure function over parsed schemas. Avro follows the
// specification's schema resolution rules (compat_avro.go); JSON Schema
// the rules Confluent documents, ported from Karapace with the fixes
// listed in compat_json.go. Levels: NONE, BACKWARD (default), FORWARD,
// FULL and their _TRANSITIVE forms; a level not set on a subject is a nil
// *Level and falls back to the global one.
//
// # API coverage
//
// Served, with Confluent's JSON shapes, content type
// (application/vnd.schemaregistry.v1+json) and error codes (errors.go):
//
//	GET    /schemas/types
//	GET    /schemas                         ?subjectPrefix ?deleted ?latestOnly
//	GET    /schemas/ids/{id}                ?fetchMaxId
//	GET    /schemas/ids/{id}/schema
//	GET    /schemas/ids/{id}/subjects       ?deleted
//	GET    /schemas/ids/{id}/versions       ?deleted
//	GET    /subjects                        ?subjectPrefix ?deleted ?deletedOnly
//	POST   /subjects/{s}                    lookup; ?normalize ?deleted
//	DELETE /subjects/{s}                    ?permanent
//	GET    /subjects/{s}/versions           ?deleted ?deletedOnly
//	POST   /subjects/{s}/versions           register; ?normalize; id+version in IMPORT mode
//	GET    /subjects/{s}/versions/{v}       v = 1.., latest, -1; ?deleted
//	GET    /subjects/{s}/versions/{v}/schema
//	DELETE /subjects/{s}/versions/{v}       ?permanent
//	GET    /subjects/{s}/versions/{v}/referencedby
//	POST   /compatibility/subjects/{s}/versions/{v}   ?verbose
//	POST   /compatibility/subjects/{s}/versions       ?verbose (the versions the level names)
//	GET PUT DELETE /config, /config/{s}     ?defaultToGlobal
//	GET PUT DELETE /mode, /mode/{s}         READWRITE READONLY READONLY_OVERRIDE IMPORT; ?force
//	GET    /contexts                        only the default context "."
//
// Not served: schema contexts beyond the default (/contexts/{c}/...),
// GUIDs (/schemas/guids), data contracts (metadata and ruleSet are
// accepted and ignored), exporters, /keks and /deks, compatibility
// groups, the ?format= and ?page/?limit parameters (ignored), and basic
// auth (core's API takes a bearer token; clients send it with e.g.
// franz-go's sr.BearerToken or Confluent's bearer.auth.token).
//
// Where franz-go and Confluent's docs disagree, the client wins:
// DELETE /config answers both "compatibilityLevel" (docs) and
// "compatibility" (what franz-go reads).
//
// # Bounds
//
// Request bodies are capped at twice schema_registry.max_schema_bytes
// plus 64 KiB (413), schemas at max_schema_bytes (42209), JSON nesting at
// 128 levels, 10000 objects and arrays per schema and 100 referenced
// schemas (42201), a subject at max_versions versions, a compatibility
// comparison at 200000 steps (it then fails closed), a request's work at
// 10 s (50002). A transitive check parses every live version of the
// subject, so its cost grows with them up to that timeout.
package schema
