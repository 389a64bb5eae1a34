// Package log is the edge node's durable, partitioned, append-only log.
//
// A Log is a directory of topics; a topic is a fixed number of partitions; a
// partition is a directory of segment files named by base offset
// (%020d.log) with a sparse offset and time index beside each (%020d.idx).
// Records are written in batches, one frame per batch: magic, length,
// CRC-32C, then the msgp-encoded Batch. FORMAT.md gives the bytes.
//
// Guarantees:
//   - Order (G2): a partition's offsets are 0, 1, 2, … with no gaps and no
//     reordering, across crashes and reopen.
//   - Durability (G1): under SyncAlways, Append returns nil only after an
//     fdatasync that covers its records; concurrent appends share that
//     fdatasync (group commit). With Config.Journal that fdatasync is the
//     node-wide journal's, shared by every partition's appends of one
//     commit window; segments are fdatasynced at checkpoints, and Open
//     replays the journal into them. SyncInterval and SyncNone state what
//     they lose.
//     Readers (Read, Notify) see a record only once Append may return it.
//   - Recovery: Open cuts a torn tail back to the last valid batch, fsyncs,
//     logs and counts what it dropped and keeps the cut bytes as a .broken
//     file (capped). So is a torn unsynced region: damage followed by valid
//     frames that all record (in their header) a durable position at or
//     before it, which a power cut leaves when it writes back some unsynced
//     pages and not others. Damage to bytes that were synced, followed by
//     valid data, is refused with a *CorruptionError unless Config.Recovery
//     asks for truncation. Index entries reach disk only after the
//     fdatasync covering their frames; directories are synced after files
//     are created, renamed or removed in them.
//   - Sticky failure: after a failed write or fsync a partition refuses
//     appends until the log is reopened; an fsync is never retried.
//   - Retention keeps what readers hold: it never deletes a record at or
//     above a partition's lowest Hold. Only the disk budget's delete-oldest
//     policy goes below a hold, last, counted and logged per holder.
//   - Bounded resources: reads use pread, never mmap; memory per partition
//     is a fixed few KiB plus the pending batch, independent of its size;
//     a hold costs one small struct per holder and partition.
//
// Indexes are caches: a missing or invalid .idx is rebuilt from its segment.
//
// # Readers
//
// Any number of readers read a partition with Read (pread, never blocking
// on appends) and wait for new records by selecting on Notify(offset)
// beside their own timers and shutdown: the channel is the one the
// committer closes and replaces at every commit, so waiting costs no
// goroutine. A reader that needs records kept registers a Hold (name, per
// partition: the lowest offset it still needs) and moves it with Set. The
// forwarder holds as "upstream"; site replicas, downlink and local consumers
// are meant to hold under their own names (a replica under one name per
// replica node, since the owner's high watermark and retention both follow
// the slowest in-sync replica).
//
// Holds are not persisted by the log. Every reader already persists its
// own position where its truth lives (the forwarder's cursor in edge/meta,
// checked against the central stream; a replica's own log end; a consumer's
// committed offset), and sets its hold from it when it starts. A second
// copy here would need its own fsyncs on every move, on SD cards, and could
// disagree with the owner's. Config.Holders closes the gap at start: a
// declared holder holds every partition whole from Open until its owner
// sets its holds, so nothing it needs is deleted before it runs.
//
// # Topic configuration
//
// The node's config file owns topic configuration; the log keeps none of
// its own beyond what its directories are. bridge/route derives the topics
// and their partition counts from the routes (TopicSpec), edge/node derives
// each TopicConfig from those and the log section (retention) and calls
// CreateTopic at every start. A topic's partition count is fixed once its
// directories exist: CreateTopic refuses another (ErrTopicExists); topics
// found on disk and not created again keep their partitions and no
// retention. Per-topic settings to come (a schema subject, per-topic
// retention) belong in the config next to the routes, not here and not in
// edge/meta; the central stream's shape (core/wire TopicConfig) is core's.
//
// # Files
//
//	log.go        Log: open, topics, close, housekeeping (retention, interval syncs)
//	partition.go  Partition: appends, the committer (group commit), roll, close
//	journal.go    the node-wide write-ahead journal: commit window, checkpoints
//	journal_entry.go  journal entry layout
//	journal_replay.go recovery from the journal at open
//	reader.go     Read, Notify, OffsetForTime, Check
//	replica.go    AppendAt: appends at a given offset (site replicas)
//	raw.go        RawBatch, ReadBatches, AppendBatchesAt: batches copied as stored
//	hold.go       Hold: retention holds per reader and partition
//	retention.go  retention by bytes and age, the disk budget's delete-oldest
//	segment.go    segment files, frames, the sparse index
//	recover.go    recovery at open (torn tails, index rebuilds)
//	repair.go     offline repair (cut at the first damage, keep evidence)
//	config.go     Config, TopicConfig, SyncPolicy, BudgetPolicy, Recovery
//	file.go       the File seam (fault injection), fdatasync, directory syncs
//	record.go     Record, Header, Batch (msgp, record_gen.go)
//	decode.go     batch decoding without copying (the read hot path), scanning
//	metrics.go    outpost_log_* metrics (docs/metrics.md)
//	errors.go     sentinels and CorruptionError
//
// # Locks
//
// Lock order: Partition.roundMu (the committer's round, which may apply
// the disk budget), then Log.budgetMu (segment deletion), then Log.mu, then
// Partition.mu, then segment.fmu; journal.mu is a leaf, never held while
// taking another. With the journal, its committer and syncer goroutines
// take each partition's roundMu in turn to prepare and to publish rounds
// (the partitions' own committers then only fail queued appends after a
// failure); neither holds one while waiting for the other. The committer
// takes Partition.mu only to swap the pending queue and to publish a new
// end; file I/O happens outside it. A partition's holds are a copy-on-write list: changed under
// Partition.mu, read by retention without it.
package log
