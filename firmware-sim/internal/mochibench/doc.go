// Command mochibench runs a plain in-memory mochi-mqtt broker (every
// client allowed, no hooks, no persistence) on a TCP address, for
// scripts/bench-baseline.sh. It prints "tcp://HOST:PORT" on stdout once
// it listens and runs until SIGINT or SIGTERM.
//
//	go run ./firmware-sim/internal/mochibench -addr 127.0.0.1:0
package main
