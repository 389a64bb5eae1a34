// Package route maps MQTT topics to log coordinates: which log topic a
// publish goes to, which partition, and under which key.
//
// Rules are tried in order; the first whose MQTT topic filter matches wins.
// A publish that matches no rule goes to the default route: log topic
// "telemetry" (DefaultTopic) with 8 partitions (DefaultPartitions), keyed by
// the publishing client's id. Keying by client id keeps one device's
// messages in one partition, and so in order.
//
// The partition is FNV-1a (32-bit) of the key, modulo the topic's partition
// count. It is stable across versions and machines: changing it would move
// devices to other partitions and break per-device order across an upgrade,
// so it is part of the contract. A rule whose key cannot be extracted (a
// missing topic level, a payload that is not JSON or lacks the field) falls
// back to the client id, so that no publish is refused for its key.
//
// The rules are where the node's log topics come from: Router.Topics lists
// each topic with its partition count, and edge/node creates the log's
// topics from it. Per-topic settings (the schema subject a topic's
// payloads must match, schema_subject and schema_version) sit on the rules
// that name the topic, so that the node's config stays the one owner of
// topic configuration (edge/log doc). A topic requires one schema: rules
// routing to the same topic must name the same subject and version. A
// topic with a schema has a dead-letter topic T.dead (DeadLetterSuffix)
// with the same partition count, which edge/node creates.
//
// A Router is immutable after New and safe for concurrent use.
package route
