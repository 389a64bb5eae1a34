#!/usr/bin/env bash
# bench-baseline.sh: the MQTT ingest baseline every Outpost figure is
# compared with. firmware-sim drives an in-memory mochi broker (real mochi
# over TCP, firmware-sim/internal/mochibench) and Debian's mosquitto, both on
# loopback, with QoS 0 and QoS 1 at 1, 10 and 100 clients, 100 messages in
# flight per client, 100-byte payloads, as fast as acknowledgements allow.
# Each cell runs BENCH_SECONDS (default 3) and is repeated BENCH_REPEATS
# (default 3) times; the table shows medians.
#
# Usage: scripts/bench-baseline.sh [--generator-check]
#   --generator-check  also compare one firmware-sim instance with two in
#                      parallel (same total clients), to show whether the
#                      generator or the broker is the bottleneck.
# Environment: BENCH_SECONDS, BENCH_REPEATS, BENCH_CLIENTS ("1 10 100"),
#              BENCH_BROKERS ("mochi mosquitto"), MOSQUITTO (/usr/sbin/mosquitto).
# Needs: go, jq, mosquitto (apt-get install mosquitto jq).
set -euo pipefail

SECONDS_PER_CELL=${BENCH_SECONDS:-3}
REPEATS=${BENCH_REPEATS:-3}
CLIENTS=${BENCH_CLIENTS:-"1 10 100"}
BROKERS=${BENCH_BROKERS:-"mochi mosquitto"}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
GENCHECK=0
[[ "${1:-}" == "--generator-check" ]] && GENCHECK=1

cd "$(dirname "$0")/.."
command -v jq >/dev/null || { echo "bench: jq is needed (apt-get install jq)" >&2; exit 2; }
WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "building firmware-sim and mochibench..." >&2
CGO_ENABLED=0 go build -o "$WORK/firmware-sim" ./firmware-sim
CGO_ENABLED=0 go build -o "$WORK/mochibench" ./firmware-sim/internal/mochibench

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral port range
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench: nothing listens on port $1" >&2
	return 1
}

declare -A URL
for b in $BROKERS; do
	case $b in
	mochi)
		"$WORK/mochibench" -addr 127.0.0.1:0 >"$WORK/mochi.url" &
		PIDS+=($!)
		for _ in $(seq 100); do [[ -s "$WORK/mochi.url" ]] && break; sleep 0.05; done
		URL[mochi]=$(cat "$WORK/mochi.url")
		;;
	mosquitto)
		[[ -x "$MOSQUITTO" ]] || { echo "bench: $MOSQUITTO not found (apt-get install mosquitto)" >&2; exit 2; }
		# A free port can be taken between the check and the bind; retry.
		for attempt in 1 2 3 4 5; do
			port=$(free_port)
			# No limits that would throttle a pipelining client: unlimited
			# in-flight and queued messages, no persistence, no logging, and
			# TCP_NODELAY like mochi (Go sets it by default); without it
			# Nagle holds PUBACKs back until our delayed ACK, ~40 ms a window.
			cat >"$WORK/mosquitto.conf" <<-EOF
				listener $port 127.0.0.1
				allow_anonymous true
				persistence false
				max_inflight_messages 0
				max_queued_messages 0
				set_tcp_nodelay true
				log_dest none
			EOF
			"$MOSQUITTO" -c "$WORK/mosquitto.conf" &
			mpid=$!
			if wait_port "$port" 2>/dev/null; then
				PIDS+=("$mpid")
				break
			fi
			kill "$mpid" 2>/dev/null || true
			[[ $attempt == 5 ]] && { echo "bench: mosquitto did not start" >&2; exit 1; }
		done
		URL[mosquitto]="tcp://127.0.0.1:$port"
		;;
	*) echo "bench: unknown broker $b" >&2; exit 2 ;;
	esac
done

# run_sim BROKER_URL QOS CLIENTS OUT_JSON: one firmware-sim run; its CPU
# time (user+sys seconds) goes to OUT_JSON.cpu.
run_sim() {
	/usr/bin/time -f "%U %S %e" -o "$4.time" \
		"$WORK/firmware-sim" -broker "$1" -qos "$2" -devices "$3" -inflight 100 -rate 0 \
		-duration "${SECONDS_PER_CELL}s" -drain-timeout 10s -size 100 -format raw -clean \
		-site "b$RANDOM" -json -progress 0 >"$4" 2>"$4.err" || {
		echo "bench: firmware-sim failed ($(tail -1 "$4.err"))" >&2
	}
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }

printf '\nMQTT ingest baseline: %ss per cell, median of %s runs, 100 in flight per client, 100-byte raw payloads\n' "$SECONDS_PER_CELL" "$REPEATS"
printf 'machine: %s cores, %s\n\n' "$(nproc)" "$(uname -m)"
printf '%-10s %-4s %7s %12s %10s %10s %10s %9s %11s\n' broker qos clients msgs/s p50_ms p99_ms p999_ms sim_cpu% sim_us/msg
for b in $BROKERS; do
	for q in 0 1; do
		for c in $CLIENTS; do
			for r in $(seq "$REPEATS"); do
				run_sim "${URL[$b]}" "$q" "$c" "$WORK/$b-$q-$c-$r.json"
			done
			rate=$(for r in $(seq "$REPEATS"); do jq -r '.msgs_per_s' "$WORK/$b-$q-$c-$r.json" 2>/dev/null; done | median)
			p50=$(for r in $(seq "$REPEATS"); do jq -r '.latency_ms.p50' "$WORK/$b-$q-$c-$r.json" 2>/dev/null; done | median)
			p99=$(for r in $(seq "$REPEATS"); do jq -r '.latency_ms.p99' "$WORK/$b-$q-$c-$r.json" 2>/dev/null; done | median)
			p999=$(for r in $(seq "$REPEATS"); do jq -r '.latency_ms.p999' "$WORK/$b-$q-$c-$r.json" 2>/dev/null; done | median)
			cpu=$(for r in $(seq "$REPEATS"); do awk '{ if ($3 > 0) printf "%.0f\n", 100*($1+$2)/$3 }' "$WORK/$b-$q-$c-$r.json.time"; done | median)
			usmsg=$(for r in $(seq "$REPEATS"); do
				awk -v n="$(jq -r '.sent' "$WORK/$b-$q-$c-$r.json" 2>/dev/null)" '{ if (n > 0) printf "%.2f\n", 1e6*($1+$2)/n }' "$WORK/$b-$q-$c-$r.json.time"
			done | median)
			if [[ $q == 0 ]]; then p50=-; p99=-; p999=-; fi
			printf '%-10s %-4s %7s %12.0f %10s %10s %10s %9s %11s\n' "$b" "$q" "$c" "$rate" "$p50" "$p99" "$p999" "$cpu" "$usmsg"
		done
	done
done
cat <<'EOF'

msgs/s: acknowledged messages per second for QoS 1; for QoS 0, messages per
second until a PINGREQ/PINGRESP fence on every connection confirmed the
broker had read them all. Latency: PUBLISH written to PUBACK read.
sim_cpu%: firmware-sim's user+sys CPU over wall time (200% = both cores).
sim_us/msg: firmware-sim's CPU time per message sent, the generator's cost
independent of how busy the machine is: 1e6 / sim_us/msg is what one
generator core could drive if the broker kept up.
EOF

if [[ $GENCHECK == 1 ]]; then
	printf '\nGenerator check (mochi unless only mosquitto runs): 100 clients in one instance vs 2 x 50 in parallel\n'
	b=${BROKERS%% *}
	printf '%-4s %14s %14s\n' qos one_instance two_instances
	for q in 0 1; do
		one=$(for r in $(seq "$REPEATS"); do
			run_sim "${URL[$b]}" "$q" 100 "$WORK/g1-$q-$r.json"
			jq -r '.msgs_per_s' "$WORK/g1-$q-$r.json"
		done | median)
		two=$(for r in $(seq "$REPEATS"); do
			run_sim "${URL[$b]}" "$q" 50 "$WORK/g2a-$q-$r.json" &
			pa=$!
			run_sim "${URL[$b]}" "$q" 50 "$WORK/g2b-$q-$r.json" &
			pb=$!
			wait "$pa" "$pb"
			awk -v a="$(jq -r '.msgs_per_s' "$WORK/g2a-$q-$r.json")" -v b="$(jq -r '.msgs_per_s' "$WORK/g2b-$q-$r.json")" 'BEGIN{print a+b}'
		done | median)
		printf '%-4s %14.0f %14.0f\n' "$q" "$one" "$two"
	done
	echo "If two instances together do not beat one, the broker (sharing the same cores) is the limit, not the generator."
fi
