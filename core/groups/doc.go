// Package groups gives central applications Kafka-style consumer groups
// over the topic streams edges fill (issue 13), coordinated through
// JetStream alone: no state outside it.
//
// A topic's stream is divided into buckets (core/wire TopicConfig.Buckets;
// every record of one origin partition falls in one bucket). Members of a
// group share the buckets; each holds some and reads them in stream order.
//
// # Guarantees
//
//   - At most one member holds a bucket at a time, as JetStream's KV store
//     sees it: a member takes a bucket by creating its claim key (which
//     fails while another member's claim exists) and renews the claim with
//     its heartbeat, compare-and-set on the claim's revision; a member
//     whose renewal fails stops reading the bucket at once. A member that
//     stops heartbeating (it died, or lost the centre) loses its claims
//     within the session timeout, when their keys expire.
//   - Order: a bucket is read in stream order, so each origin partition's
//     records reach the handler in offset order.
//   - At least once: positions are committed after the handler returned
//     (Member.Commit, or every Config.CommitInterval, and when a bucket is
//     released or the member leaves). A member that takes a bucket starts
//     after its committed position: records a dead or revoked member had
//     handled but not committed are delivered again. Nothing is skipped.
//   - Balanced and sticky: every member computes the same plan from the
//     live members and the current claims (plan.go): each gets buckets/n
//     or one more, keeps what it holds up to that, releases the rest, and
//     takes free buckets; a join or leave moves as few buckets as needed.
//   - Committed positions survive restarts of members and of core: they
//     are in a KV bucket (PositionsBucket) without expiry.
//
// # State in JetStream
//
//	KV outpost_group_<name>   MaxAge = session timeout (a key not renewed expires)
//	  m.<member>              {"member","topic","since"}: heartbeat
//	  c.<bucket>              {"member"}: the claim on a bucket
//	KV outpost_group_positions
//	  <name>.<bucket>         {"topic","seq"}: every message of the bucket up to
//	                          stream sequence seq is handled
//
// A stream without buckets (made before them) is read as one bucket.
//
// # Files
//
//	config.go   Config, Start, Record, validation
//	state.go    bucket names, keys and values
//	plan.go     the assignment plan (pure)
//	member.go   Member: join, heartbeat, claims, rebalance, leave
//	reader.go   reading one bucket: ordered consumer, handler, positions
package groups
