// Package ui is the edge node's dashboard: GET / on the node's HTTP
// listener, a page a technician reads at a glance (is the site healthy, is
// data flowing, how far behind is the centre, what will break next).
//
// Guarantees:
//   - It never blocks ingest. Everything it shows comes from the node's
//     Prometheus registry (the metric names of docs/metrics.md are its
//     contract) and a few static facts, gathered once per Interval by one
//     goroutine (Run) off every ingest path; every viewer gets that same
//     snapshot, so ten open dashboards cost what one does.
//   - Live by server-sent events (GET /ui/events, text/event-stream, one
//     event per Interval); a viewer slower than that skips snapshots (a
//     one-slot mailbox), it never makes the sampler wait.
//   - Bounded: a history of HistoryPoints samples (5 minutes at 1 s) for
//     the ingest chart and the disk forecast; per viewer one mailbox.
//   - Self-contained: HTML, CSS and JavaScript are embedded in the binary
//     (assets/, no build step, no CDN, no external fonts), so the page works
//     with the uplink down and on a phone in a field.
//   - The same authentication as the API: the page and its static assets
//     carry no data and are served to anyone who reaches the listener; the
//     data (/ui/snapshot, /ui/events, and the records API the partition view
//     calls) needs the node's http.token when one is set. The page asks for
//     it, keeps it in the tab's sessionStorage and sends it as a bearer
//     header (the event stream is read with fetch, not EventSource, so no
//     token ever travels in a URL).
//
// Files: dashboard.go (Dashboard, the sampler and its viewers), snapshot.go
// (what a sample holds and how it is computed from metric families),
// http.go (routes), assets/ (the page).
package ui
