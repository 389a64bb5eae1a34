// Package probe is the container health check of the edge and core
// binaries: GET /readyz on the local HTTP API, for images that have no curl.
package probe
