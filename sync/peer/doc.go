// Package peer replicates partitions between the edge nodes of a site (G6).
//
// Each node is the only writer of its own partitions (the ones its devices
// publish into) and serves them to its peers as their Owner; each peer runs
// a Follower per owner that copies those partitions into a replica log of
// its own (edge/node opens DATA/replicas/<owner>). Ingest never needs
// agreement between nodes, so a split site cannot make two copies of one
// log diverge; that is what makes a two-node site safe without a third
// vote. PROTOCOL.md gives the wire format; comments cite its clauses as
// [PROTOCOL-x.y].
//
// # Guarantees
//
//   - Prefix: a replica partition is always a prefix of its owner's, record
//     for record in the log's encoding and at the same offsets. The follower
//     appends only at its own end (edge/log AppendAt) the records the owner
//     read at that offset.
//   - Durable replicas: edge/node opens replica logs with SyncAlways
//     whatever log.sync says (an fdatasync per response, before the
//     follower's next fetch), and the next fetch carries the follower's
//     end, which is its acknowledgement. A replica only in memory is no
//     replica.
//   - Epochs: an owner bumps and persists its epoch (edge/meta) at every
//     start, before it takes publishes, and records it in each partition's
//     epoch history. Every fetch and response carries it. A follower never
//     cuts its replica to a bare high watermark: the owner compares the
//     epoch of the follower's last record with its history [PROTOCOL-5.2].
//     An owner whose epoch went backwards (its metadata was replaced) is
//     refused and the replica is kept untouched [PROTOCOL-5.3].
//   - Retention keeps what a follower still needs: the owner holds each
//     partition for each configured follower (edge/log holds named
//     HoldName), from the log's open on (Config.Holders in edge/node).
//   - Bounded memory: one fetch in flight per link, its response capped at
//     MaxFetchBytes (plus one record if a single record is larger); buffers
//     grown by a large response are dropped after it.
//   - Authentication both ways by a shared secret (HMAC challenge–response
//     over fresh nonces); TLS (mutual with a CA) when configured.
//   - Reconnects use jittered exponential backoff.
//   - Bandwidth: fetch responses wait for OwnerConfig.Budget (below).
//   - acks: all: Owner.Await holds a QoS 1/2 acknowledgement (bridge/mqtt's
//     AckGate) until the high watermark — the lowest durable end among the
//     in-sync followers — reaches the record, while at least MinInSync
//     followers are in sync; with fewer, the policy decides (degrade: ack on
//     local durability; refuse: ErrNotReplicated). A follower is in sync
//     while, within LagMax, it fetched everything the owner had at its
//     previous fetch (Kafka's lastCaughtUpTime).
//   - Restore: a node that starts with no epoch (new data directory) copies
//     its partitions back from the peer that keeps the newest replica of it,
//     at the same offsets and with its epoch, before it serves or ingests
//     (Restore, [PROTOCOL-6]); so a replaced disk never reuses an offset the
//     peers or the centre hold. Unreachable peers are reported, not waited
//     for.
//
// # Divergence
//
// edge/node runs replication only under log.sync: always, where a follower
// copies only records durable on its owner, so a power cut cannot leave a
// replica ahead of its owner, and an owner never has a lost tail to take
// back from its replicas. A replica that disagrees anyway (a disk that
// lied about fsync, edge repair cutting an owner's damaged tail, replaced
// metadata) is not truncated: the follower stops copying that partition,
// keeps its records (a restore may need them) and says so in the log and
// in outpost_replica_stalled_partitions. Forwarding a dead owner's
// partitions to the centre is sync/upstream's Takeover (a lease per origin
// node in the centre), wired by edge/node with each Follower as the
// owner's liveness.
//
// # Bandwidth
//
// OwnerConfig.Budget, if set, is a byte budget every fetch response waits
// for (internal/ratelimit): a cap of the peer links' own, or a share of
// the uplink's budget, half each while both send (edge/node
// replication.share_uplink_bandwidth).
//
// # Not built yet
//
// A follower that starts later than the owner's retention (owner start > 0
// on an empty replica) stalls as out of range, since edge/log cannot start
// an empty partition at an offset.
//
// # Files
//
//	wire.go      frames and messages [PROTOCOL-2..4]
//	auth.go      the shared-secret challenge [PROTOCOL-3]
//	epoch.go     epoch histories and the owner's fetch decision (pure) [PROTOCOL-5]
//	store.go     where epochs and histories persist (edge/meta's key/value area)
//	restore.go   Restore: a node without an epoch copies its partitions back from a peer
//	acks.go      Await: acknowledgements held for acks: all, Policy
//	owner.go     Owner: accepts followers, serves fetches, in-sync set, high watermark, holds
//	follower.go  Follower: dials, fences stale owners, appends at the owner's offsets
//	config.go    Config, OwnerConfig, FollowerConfig, HoldName
//	metrics.go   outpost_replica_* (docs/metrics.md)
//
// # Lifecycle and locks
//
// NewOwner persists the new epoch and returns; Run accepts until its
// context ends, then closes the listener and every connection and waits for
// its goroutines (one per follower connection and a metrics refresher).
// NewFollower checks its config; Run owns one goroutine per owner link and
// returns when its context ends. Neither closes the logs it was given.
//
// Locks are leaves: Owner.mu (connections), ownedPart.mu (follower state and
// held acknowledgements of one partition) and Follower.mu (replica
// partitions) are never held together or across I/O; Follower.mu is
// dropped before each append, and an acknowledgement's completion runs
// after ownedPart.mu is released.
package peer
