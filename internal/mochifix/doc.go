// Package mochifix works around defects of the pinned mochi-mqtt server
// (github.com/mochi-mqtt/server/v2 v2.7.9) until a release fixes them.
//
// Guarantee: closing a listener wrapped by Listener disconnects its
// clients without taking the server's client map lock twice, so a server
// Close that races with a client leaving cannot deadlock
// (mochi-mqtt/server#488; the fix, #489, is not released). Remove the
// package when a mochi release contains #489.
package mochifix
