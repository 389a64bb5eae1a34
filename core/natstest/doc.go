// Package natstest runs a real, embedded nats-server with JetStream for
// tests: 127.0.0.1 on a random port, store in t.TempDir() (or a directory
// the test names, so it can restart on the same store), no logging, no
// signal handlers, shut down at cleanup.
//
// Outage tests use Stop and Start (or Restart): the server comes back on
// the same port and store directory, so clients reconnect to the same URL
// and find the streams and their deduplication state as they were.
//
// Streams are created with CreateTopicStream, which uses the exact config
// core provisions (wire.StreamConfig), so a test shortening the
// duplicate window tests the production stream shape.
package natstest
