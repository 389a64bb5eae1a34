// Package service wires the core binary: it starts (or connects to) NATS,
// provisions streams, subscribes to edge status reports and provision
// requests, runs the schema registry (core/schema) and serves the HTTP
// API, the registry's Confluent REST API included at its root paths.
//
// Lifecycle: New validates and starts nothing; Run blocks until its
// context ends and owns every goroutine it starts (HTTP server, the
// provisioning retry loop, NATS callbacks), stopping them before it
// returns. Started is closed when the listeners are bound.
//
// State: none outside JetStream. The embedded server's store (DataDir) is
// the only thing on disk. The sites view is served from memory and
// restored at start from the status stream (see package sites), which
// core creates next to the topic streams; core is ready once that restore
// is done and the schema registry has loaded its KV bucket. If core
// cannot have the status stream, it logs what to allow, serves the view
// from live reports only, and keeps trying.
//
// Availability: a NATS cluster that is down at start or goes away later
// does not stop core; the client reconnects forever, subscriptions are
// restored, configured streams are provisioned once NATS is reachable, and
// /readyz answers 503 with the reason meanwhile.
//
// Config: Config mirrors configs/core*.yaml; DecodeConfig rejects unknown
// fields and Validate names the offending field by its YAML path.
package service
