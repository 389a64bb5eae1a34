// Package uikit is what both dashboards' pages share: the stylesheet
// (kit.css) and the script helpers (kit.js: number and duration formats,
// table cells, and reading a server-sent event stream with fetch so a
// bearer token travels in a header). Served at /ui/kit.css and /ui/kit.js,
// embedded, no build step.
package uikit
