// Package schemacompile compiles registry schemas (JSON Schema and Avro)
// with their references, the same way in the central registry
// (core/schema) and at the edge (bridge/schemacheck): a schema the registry
// accepted compiles to the same validator on every node. It never loads
// anything from the network or the disk: a $ref is served only from the
// schema's declared references.
package schemacompile
