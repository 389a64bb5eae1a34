// Command core is Outpost's central side.
//
//	core [flags]                    run the service
//	core tail [flags] [topic ...]   print records as they arrive
//
// By default core embeds a single-node NATS server with JetStream: clients
// on 127.0.0.1:4222, store in ./core-data, JetStream sync_interval
// "always" (every write fsynced before its PubAck; -sync-interval 2m
// trades the last two minutes of acknowledged data on a power cut for
// speed). HTTP on 127.0.0.1:8081 serves /healthz, /readyz, /metrics and
// /v1/sites. With -nats URL (and -nats-creds, -nats-tls-*) core joins an
// existing NATS cluster and keeps no state outside JetStream.
//
// core provisions one stream per log topic (core/provision), listed in
// the config or requested by edges on <prefix>.$provision.<site>.<node>,
// and builds the sites view from edges' reports on
// <prefix>.$status.<site>.<node> (core/sites). The upstream contract
// edges follow is core/wire. The wiring is core/service; this package
// only maps flags onto its Config.
//
// Files on disk: only the embedded server's JetStream store (-data).
package main
