// Package auth authenticates MQTT clients and checks per-topic ACLs, as a
// mochi-mqtt hook.
//
// A client is identified, in this order, by:
//  1. a verified TLS client certificate: its subject common name must be
//     the Username of a configured user (no password needed);
//  2. a username and password: the password is checked against the user's
//     bcrypt PasswordHash. Successful checks are cached (as a SHA-256 of the
//     password, per user) so that a reconnecting fleet does not cost one
//     bcrypt per connection;
//  3. otherwise the client is anonymous, accepted only on listeners for
//     which Config.AllowAnonymous returns true, with access to every topic.
//
// ACLs: a user's Publish and Subscribe lists are MQTT topic filters; a topic
// is allowed if any filter matches it. An omitted (nil) list allows every
// topic; an empty list allows none. Denied publishes get mochi's standard
// answer (MQTT 5: PUBACK 0x87; 3.1.1: disconnect); denied subscriptions get
// SUBACK 0x87/0x80; messages are not delivered to subscribers that may not
// read their topic.
//
// The client id "inline" is refused: mochi reserves it for the broker's own
// client, which bypasses ACLs.
package auth
