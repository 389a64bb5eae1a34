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
//     fdatasync (group commit). SyncInterval and SyncNone state what they lose.
//   - Recovery: Open cuts a torn tail back to the last valid batch, fsyncs,
//     logs and counts what it dropped and keeps the cut bytes as a .broken
//     file (capped). Damage followed by valid data is refused with a
//     *CorruptionError unless Config.Recovery asks for truncation.
//   - Sticky failure: after a failed write or fsync a partition refuses
//     appends until the log is reopened; an fsync is never retried.
//   - Bounded resources: reads use pread, never mmap; memory per partition
//     is a fixed few KiB plus the pending batch, independent of its size.
//
// Indexes are caches: a missing or invalid .idx is rebuilt from its segment.
//
// Lock order: Log.mu, then Partition.mu. The committer goroutine of a
// partition takes Partition.mu only to swap the pending queue and to publish
// a new end; file I/O happens outside it.
package log
