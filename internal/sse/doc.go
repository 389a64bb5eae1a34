// Package sse serves one feed of snapshots to any number of viewers as
// server-sent events (text/event-stream). Both dashboards use it.
//
// Guarantee: publishing never waits for a viewer. Each viewer has a
// one-slot mailbox that always holds the newest snapshot it has not read;
// a slow viewer skips snapshots, and a viewer whose connection stops
// taking writes is dropped after WriteTimeout. Memory is one snapshot per
// viewer at most.
package sse
