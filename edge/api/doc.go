// Package api is the edge node's HTTP API: health, readiness, Prometheus
// metrics, topics with their offsets, and reading records by offset (JSON
// for people, msgpack for programs). It is a thin http.Handler over
// edge/log and, optionally, edge/meta; it owns no state beyond a count of
// waiting long-polls.
//
// # Routes
//
//	GET /healthz    200 "ok": the process is alive. Never needs the token.
//	GET /readyz     200 "ok", or 503 {"error": "not ready: …", "reasons": […]}
//	                with the reasons from Config.Ready and Log.Health.
//	GET /metrics    Prometheus text from Config.Gatherer (404 when nil).
//	GET /v1/topics                                  {"topics":[topic…]}
//	GET /v1/topics/{topic}                          topic
//	GET /v1/topics/{topic}/partitions/{partition}   partition
//	GET /v1/topics/{topic}/partitions/{partition}/records
//	    ?offset=N&limit=M[&wait=DURATION][&max_bytes=B]
//
// A topic is {"name", "partitions": [partition…], "retention_bytes",
// "retention_age_seconds"}; a partition is {"partition", "start_offset",
// "end_offset", "bytes", "segments"}, plus "error" when the partition has
// failed and, with Config.Meta, "cursors": {"<name>": {"offset", "lag"}}.
// end_offset is the next offset to be written; records in [start_offset,
// end_offset) are readable.
//
// # Records
//
// The answer is {"records": [record…], "next_offset": N, "start_offset",
// "end_offset"}. A record is {"offset", "timestamp", "key", "headers",
// "value"} plus "key_text", "headers_text" and "value_text" holding the
// bytes as text where they are valid UTF-8 (a header missing from
// headers_text is binary). Bytes are standard base64; timestamp is RFC 3339
// in UTC with nine fractional digits. headers is an object: when a record
// has two headers with one name, the first wins (as in Record.Header).
// Read the next page from next_offset; it equals offset when nothing was
// returned.
//
// Parameters: offset defaults to start_offset; limit defaults to 100 and is
// capped at Config.MaxLimit; max_bytes (encoded record bytes) defaults to
// and is capped at Config.MaxBytes, and at least one record is returned if
// any is readable; wait (a Go duration, "5s") is capped at Config.MaxWait.
// With wait, a request at the end of the partition blocks until a record
// is committed (woken by the log's notification, not by polling) or the
// wait ends, then answers with what there is (possibly nothing).
//
// Status codes: 400 names the bad or unknown parameter; 404 for an unknown
// topic or partition; 416 when offset is below start_offset (deleted by
// retention) or beyond end_offset, with {"error", "start_offset",
// "end_offset"} so a client can resume at once; 429 when
// Config.MaxWaiters long-polls already wait; 503 while the log is closed.
// Errors are always JSON {"error": "…"} saying what to do.
//
// With "Accept: application/msgpack" the records answer is msgpack: a map
// with "records" (array of maps with "offset" int, "timestamp" int (Unix
// nanoseconds), "key" bin, "headers" map of str to bin, "value" bin),
// "next_offset", "start_offset" and "end_offset". Errors stay JSON.
//
// # Authentication
//
// With Config.Token set, every route but /healthz needs
// "Authorization: Bearer <token>"; tokens are compared in constant time
// (on their SHA-256, so the length does not leak either). Serve it over
// TLS, or on loopback only, or the token is readable on the wire.
//
// # Metrics
//
// With Config.Registerer: outpost_api_requests_total{route, code} (route is
// the mux pattern, or "unauthorized" / "unknown" for requests refused
// before routing) and outpost_api_long_polls_waiting.
//
// # Server settings
//
// The caller owns the http.Server: its WriteTimeout must exceed MaxWait (or
// be zero), or long-polls are cut off before they answer; and its
// BaseContext should return a context canceled at shutdown, so that
// Shutdown does not wait up to MaxWait for idle long-polls (they answer 503
// at once).
package api
