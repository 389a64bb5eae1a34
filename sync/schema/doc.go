// Package schema keeps the edge node's copy of the central schema registry
// (core/schema), so that schema checks (bridge/schemacheck) work offline
// and after a restart with no uplink (G7).
//
// What is kept: the subject records of the subjects the node's routes name,
// the subjects their schemas reference (transitively), and every schema
// those subjects' versions name — soft-deleted versions included, since a
// device may still name one. Keys and values are the registry bucket's
// own (core/wire schema.go: subjects.<subject>, ids.<id>), stored as given
// in the metadata store's kv bucket "schemas" (edge/meta), so a later build
// re-reads them; a value in a format this build does not know is left out
// and logged, never misread.
//
// How it syncs: Run uses the node's uplink (sync/upstream Link; no second
// connection) and, whenever it is connected, watches subjects.> of the
// registry bucket (a JetStream KV watch: the server pushes changes, nothing
// polls). The watch first replays the current value of every subject, so a
// session that starts after an outage catches up at once, deletions
// included; after the replay each change is applied as it arrives. Schemas
// are fetched by ID when a version first names them and kept: IDs are
// never reused and a schema never changes. Every change is written to the
// metadata store in one transaction (meta.Store.Apply) before it is handed
// to Config.OnUpdate, so what the checks use is what a restart finds. The
// session ends when the link goes down or is replaced (the next one
// watches again on the new connection) or on an error (retried with
// jittered backoff, 1 s to 30 s).
//
// Memory: during a session the node holds every subject record of the
// registry (small: versions and IDs, no schema text) to resolve
// references; it keeps only the subjects it needs and their schemas.
//
// Lifecycle: Open loads the stored copy and calls OnUpdate with it (before
// the broker serves, so checks never start empty when a copy exists); Run
// blocks until its context ends and owns its one goroutine's work (the KV
// watcher is stopped before it returns). OnUpdate is called from Open and
// then only from Run's goroutine, in order.
//
// Metrics: outpost_schema_sync_watching, _subjects, _schemas,
// _updates_total, _errors_total (docs/metrics.md).
package schema
