// Package bridge is how data enters an edge node: the embedded MQTT broker
// (mochi-mqtt) and its hooks, in subpackages mqtt (ingest with durable
// acknowledgements), route (topic routing rules) and auth (users and ACLs).
package bridge
