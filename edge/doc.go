// Command edge runs an Outpost edge node: an MQTT broker whose every
// publish lands in a durable local log, plus an HTTP API to read it.
//
//	go run ./edge                       # loopback only, anonymous, data in ./data
//	edge -config /etc/outpost/edge.yaml # see configs/edge*.yaml
package main
