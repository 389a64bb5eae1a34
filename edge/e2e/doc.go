// Package e2e tests the built edge binary and its interoperability with
// third-party MQTT clients. Tests here are skipped under -short.
//
//   - TestCrashKillRestart builds ./edge, publishes QoS 1 or 2 messages
//     with sequence numbers, SIGKILLs the node at random moments, restarts it,
//     and checks through the HTTP API that every acknowledged message is in
//     the log exactly once, with contiguous offsets. 10 rounds by default,
//     50 with OUTPOST_LONG=1 (or OUTPOST_KILL_ROUNDS=N); the seed is printed,
//     and OUTPOST_KILL_SEED=N replays one.
//   - TestForwardKillRestart runs the node forwarding to an embedded
//     JetStream server, SIGKILLs it while it publishes and while it drains a
//     backlog, restarts it, and checks that every partition's stream holds
//     each offset exactly once, in offset order, with the log's values (8
//     rounds, 40 with OUTPOST_LONG=1; OUTPOST_SEED replays).
//   - TestReplicaKillOwnerAndFollower runs two binaries replicating each
//     other (acks: all, policy refuse), SIGKILLs the owner or its follower
//     at random moments while a device publishes QoS 1 to the owner and
//     restarts it; then the owner dies for good and its data directory is
//     deleted: the follower's replica holds every acknowledged message
//     exactly once, and the owner, started on an empty directory, restores
//     them all from it (6 rounds, 30 with OUTPOST_LONG=1; OUTPOST_SEED
//     replays).
//   - TestCheckAndRepair damages a segment of a stopped node and runs
//     `edge check` and `edge repair` on it; the node then serves exactly the
//     records before the damage.
//   - TestMosquittoInterop drives the node with Debian's mosquitto_pub and
//     mosquitto_sub (MQTT 3.1.1 and 5). It is skipped only when the binaries
//     are missing and CI is not set.
package e2e
