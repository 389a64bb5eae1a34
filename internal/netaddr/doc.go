// Package netaddr holds the address helpers the edge and core binaries
// share, so both judge "is this listener reachable from elsewhere" and "is
// this URL safe to log" the same way: Loopback decides whether a listener
// needs authentication, RedactURL hides credentials before a URL is logged.
// It keeps no state.
package netaddr
