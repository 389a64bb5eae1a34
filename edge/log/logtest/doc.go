// Package logtest is the test kit of edge/log: a file layer that injects
// faults (failed or held-back fsyncs, short writes) and remembers each file's
// length at its last successful fsync, so that a test can simulate a power cut
// by truncating every file to that length (PowerLoss), or one that tears the
// unsynced pages independently: kept, zeroed or stale (PowerLossTorn).
package logtest
