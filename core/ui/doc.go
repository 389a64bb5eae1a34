// Package ui is core's dashboard: GET / on core's HTTP listener shows every
// site and node the edges report (last contact, stale, records and time
// waiting to be forwarded, per partition) and the schema subjects, live.
//
// Guarantees: one snapshot per Interval, computed by one goroutine (Run)
// from the sites view and the registry and shared by every viewer over
// server-sent events (internal/sse: a slow viewer skips snapshots, it
// never delays anything); assets embedded, no CDN; the page and its
// static files carry no data and load without core's token, which the page
// then asks for and sends as a bearer header.
package ui
