package mqtt

import "errors"

// ErrNotReplicated: replication.acks is all, too few replicas are in sync
// and the policy is to refuse. The record is stored locally (and will be
// replicated once a peer returns), but the client is not told it is safe:
// MQTT 5 gets PUBACK/PUBREC 0x97, MQTT 3.1.1 a disconnect without an ack,
// so the device keeps its data and resends (the resend is a duplicate the
// centre's exactly-once resume does not remove: refuse trades duplicates
// for never acknowledging an unreplicated record).
var ErrNotReplicated = errors.New("mqtt: too few replicas in sync")

// reasonNotReplicated is the outpost_mqtt_acks_total reason of
// ErrNotReplicated.
const reasonNotReplicated = "not_replicated"

// AckGate, when set in Config, holds a QoS 1/2 acknowledgement after the
// record is durable locally until the gate says so (site replication,
// replication.acks: all): it is called on the log's committer goroutine
// with the record's topic, partition and the end it must reach (its offset
// plus one), must not block, and must call done exactly once, from any
// goroutine: nil acknowledges, ErrNotReplicated (or another error) refuses.
type AckGate func(topic string, partition int32, end int64, done func(error))
