// Package tail prints upstream records as they arrive in JetStream, one
// line each, decoding both the record-per-message and the batch format
// with wire.Parse. It backs `core tail`.
//
// Each topic's stream is read with an ordered consumer (ephemeral, no
// server-side state left behind, flow-controlled, recreated by the client
// after a gap or reconnect). Without a topic, Run follows every stream of
// the prefix and picks up streams created later.
//
// Line format (Format):
//
//	<site>/<node> <topic>/<partition>@<offset> <timestamp> key=<key> [mqtt=<topic>] [schema=<id>] [h:<k>=<v>]... value=<value>
//
// Bytes are shown as text when they are printable UTF-8, quoted Go-style
// when they are UTF-8 with control characters (or, except in the value,
// spaces), and as b64:<base64> otherwise. The value comes last and is
// shown raw if printable, so JSON payloads stay readable.
package tail
