#!/usr/bin/env bash
# The whole Outpost pipeline on one machine, with embedded defaults:
#   core (embedded NATS JetStream)  <-- edge node (MQTT in, durable log, forwarder)  <-- firmware-sim fleet
# Data goes to ./demo-data; Ctrl-C stops everything. Run `make run`.
#
# Watch records arrive in the centre, in another terminal:
#   go run ./core tail
#   curl -s 127.0.0.1:8081/v1/sites
#   curl -s 127.0.0.1:8080/v1/topics
#   curl -s 127.0.0.1:8080/metrics | grep outpost_schema_violations
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

DEVICES=${DEVICES:-20}
RATE=${RATE:-2}
VIOLATIONS=${VIOLATIONS:-0.05}
DATA=${DATA:-./demo-data}
mkdir -p bin "$DATA"

echo "building core, edge, firmware-sim ..."
go build -o bin/core ./core
go build -o bin/edge ./edge
go build -o bin/firmware-sim ./firmware-sim

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping ..."
  # Newest first: the fleet, then the edge (it finishes forwarding what is
  # acknowledged), then core, so nothing reports its uplink lost on the way.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "logs: $DATA/core.log $DATA/edge.log; data kept in $DATA (delete it to start afresh)"
}
trap cleanup INT TERM EXIT

wait_ready() { # name url
  for _ in $(seq 1 100); do
    if curl -fsS "$2" >/dev/null 2>&1; then echo "$1 ready ($2)"; return 0; fi
    sleep 0.1
  done
  echo "$1 did not become ready; see $DATA/$1.log:" >&2
  tail -20 "$DATA/$1.log" >&2
  exit 1
}

bin/core -data "$DATA/core" >"$DATA/core.log" 2>&1 &
pids+=($!)
wait_ready core http://127.0.0.1:8081/readyz

# The demo's readings must match firmware-sim's own JSON Schema: register it
# in core's registry as telemetry-value and have the edge check the default
# route (telemetry) against it.
bin/firmware-sim -print-schema |
  curl -fsS -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' --data-binary @- \
    http://127.0.0.1:8081/subjects/telemetry-value/versions >/dev/null
echo "schema telemetry-value registered in core"

OUTPOST_ROUTES_DEFAULT_SCHEMA_SUBJECT=telemetry-value \
  bin/edge -data "$DATA/edge" -upstream nats://127.0.0.1:4222 -site demo -node pi-1 >"$DATA/edge.log" 2>&1 &
pids+=($!)
wait_ready edge http://127.0.0.1:8080/readyz

cat <<TXT

Outpost is running:
  MQTT        tcp://127.0.0.1:1883   (try: mosquitto_sub -t 'sensors/#' -v)
  dashboard   http://127.0.0.1:8080/          (the edge node: ingest, uplink, partitions)
  dashboard   http://127.0.0.1:8081/          (core: sites and nodes)
  edge API    http://127.0.0.1:8080/v1/topics
  core API    http://127.0.0.1:8081/v1/sites
  watch       go run ./core tail
$DEVICES simulated devices publish $RATE readings/s each (QoS 1, MQTT 5), plus
deliberate schema violations (${VIOLATIONS} of readings): the edge refuses them with
PUBACK 0x99 (curl -s 127.0.0.1:8080/metrics | grep outpost_schema_violations).
The devices also take commands on cmd/<client id>/# and answer each one. Send one
and follow it:
  bin/core command send -site demo -device demo-sensor-00001 -topic cmd/demo-sensor-00001/rate -payload '{"rate":5}' -wait
  curl -s 127.0.0.1:8081/v1/sites/demo/devices/demo-sensor-00001/commands
Ctrl-C stops.

TXT
bin/firmware-sim -broker tcp://127.0.0.1:1883 -site demo -commands 'cmd/{client}/#' -devices "$DEVICES" -rate "$RATE" -qos 1 -schema-violations "$VIOLATIONS" -duration "${DURATION:-24h}" -progress 5s &
pids+=($!)
wait "${pids[-1]}"
