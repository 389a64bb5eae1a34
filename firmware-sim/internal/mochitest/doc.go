// Package mochitest starts a real, in-memory mochi-mqtt broker on loopback
// for firmware-sim's tests: TCP on 127.0.0.1:0, every client allowed.
package mochitest
