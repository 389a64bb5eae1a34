// Package node wires an edge node together and runs it: the log
// (DataDir/log), the metadata store (DataDir/meta.db), the embedded MQTT
// broker with the auth and ingest hooks, and the HTTP API.
//
// Lifecycle: Open recovers the log, opens the metadata store, clamps
// cursors to the recovered log ends, creates the routed topics, and binds
// every listener, so that configuration and port errors surface before
// Run. Run serves until its context ends, then shuts down gracefully: the
// MQTT listeners stop accepting, publishes already received are committed
// and acknowledged (bounded by ShutdownTimeout), clients are disconnected,
// the HTTP API stops, Options.Services (such as the upstream forwarder) are
// cancelled and awaited, and the log and metadata store are closed. Close
// releases everything and is idempotent; it is safe without Run.
//
// Topic configuration has one owner, the config: routes name the log
// topics and their partition counts (bridge/route's TopicSpec), log.* their
// retention, and Open derives each edge/log TopicConfig from both and
// creates or updates the topic. Neither the log nor edge/meta keeps a copy
// of its own to reconcile; a topic's partition count is fixed once its
// directories exist, and Open refuses a config that changes it, naming
// routes.
//
// Retention holds: with upstream configured, Open declares the forwarder
// as a holder of every log partition (log.Config.Holders, under its cursor
// name), so retention and the disk budget treat everything as unforwarded
// until the forwarder sets its holds from its cursors, then keep what the
// central stream has not acknowledged.
//
// Schema checks: routes may name a registry subject (schema_subject). Open
// builds the check (bridge/schemacheck) for those topics, creates each one's
// dead-letter topic <topic>.dead with the same partition count, loads the
// node's stored copy of the registry (sync/schema) and says at start which
// topics' schemas it does not know and which on_unknown_schema applies. The
// check is the ingest pipeline's check stage; the sync runs beside the
// forwarder on one shared uplink connection (upstream.Link), which outlives
// both.
//
// Configuration comes from a YAML file (unknown fields are errors) over
// DefaultConfig, then OUTPOST_* environment variables (see EnvPrefix), then
// command-line flags (edge/main.go); Validate names the offending field.
//
// Security default: with no config the node listens on loopback only and
// accepts anonymous MQTT clients there, like mosquitto 2's local-only mode.
// A non-loopback listener needs auth.users, client certificates or an
// explicit auth.allow_anonymous: true, and the node logs which it is.
//
// Offline maintenance: CheckData verifies a stopped node's data (every log
// frame, the metadata store) and RepairData cuts damaged log partitions at
// their first damage (log.Repair); `edge check` and `edge repair` run them.
// Both refuse while a node holds the data (the log's lock).
package node
