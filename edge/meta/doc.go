// Package meta is the edge node's metadata store: one bbolt file holding
// cursors (consumer and forwarder positions), the node's identity and small
// key/value buckets for their owners (the forwarder's armed resends and
// origin pin; the schema cache of sync/schema, written with Apply so a
// change lands whole).
//
// It holds no topic configuration. The node's config file owns that (see
// edge/node): the routes name the topics and their partition counts, the
// log section their retention, and edge/node derives edge/log's
// TopicConfig from them at every start. A copy here would be one more place
// to disagree; the topics bucket an earlier layout kept (written at every
// start, read by nothing) is deleted by Open.
//
// The log (edge/log) is the source of truth for records; meta only points
// into it. At node open, after the log has recovered, ClampCursors moves
// every cursor that points past a recovered log end back to that end, and
// reports cursors of partitions that no longer exist (they are kept).
//
// # Guarantees
//
//   - Durability: every write commits a bbolt transaction, which fsyncs
//     before it returns; nothing in Config can turn that off. SetCursor goes
//     through db.Batch, so frequent commits from many goroutines share one
//     transaction and one fsync; its function is idempotent, as Batch needs.
//   - Values are copied out of transactions: a returned slice or struct is
//     the caller's, valid after the transaction and independent of the store.
//   - One process at a time: the file is locked (flock); a second Open waits
//     Config.Timeout and fails with ErrLocked naming the file.
//   - Damage is reported, not obeyed: Open checks the file (meta pages,
//     size against the recorded high-water mark, a full page walk with
//     tx.Check) and returns ErrCorrupt naming the file and what to do, so
//     corrupted bytes never reach a page walk that could crash the process.
//
// # Layout
//
// Buckets (bbolt names):
//
//	outpost     "format" → 1 byte: layout version (1); "identity" → identity value
//	cursors     cursor name → nested bucket: topic "\x00" partition (uint32 BE) → cursor value
//	kv          bucket name → nested bucket: key → the caller's bytes, as given
//
// # Value format
//
// Every value meta writes (not the kv bucket's, which are the caller's)
// starts with one version byte, so a later release can change a value's
// shape and still read old ones; a version this code does not know is
// refused with ErrFormat instead of being misread.
//
//	cursor   v1: 0x01 | offset int64 big-endian              (9 bytes)
//	identity v1: 0x01 | JSON {"node_id":"…","site":"…","created":"RFC 3339"}
//
// JSON carries the identity because fields will be added; cursors are
// fixed-size binary because they are written thousands of times a second.
//
// Retention holds (edge/log) are not stored here: each reader persists its
// own position (the forwarder's is its cursor) and sets its hold from it
// when it starts.
//
// # Lifecycle
//
// Open creates or opens the file; Close is idempotent. Methods are safe for
// concurrent use and fail with ErrClosed after Close. Open starts no
// goroutines that outlive it (bbolt's Batch timer runs only while a batch
// waits).
//
// Lock order: Store.identityMu, then bbolt's writer lock (taken by a write
// transaction). Callbacks that run inside a transaction (Clamp's end) must
// not call the Store.
package meta
