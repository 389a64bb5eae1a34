// Package wire is the upstream contract between edge nodes and the central
// cluster: subjects, header names, the Nats-Msg-Id scheme and the batch
// codec. Edge code imports it; it imports nothing of the edge side.
package wire
