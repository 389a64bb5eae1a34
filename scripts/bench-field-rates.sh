#!/usr/bin/env bash
# bench-field-rates.sh: what durability costs at field-site rates. The edge
# node (sync: always, real disk, no uplink) with its journal (edge, the
# default), without it (edge-nojournal: one fdatasync per partition and
# commit, as before the journal) and in-memory mochi
# (firmware-sim/internal/mochibench) take the same firmware-sim fleet at
# fixed total rates: 100 QoS 1 devices, 10 in flight each, 100-byte raw
# payloads, RATE/100 readings per device per second. For each broker and
# rate it reports, from /proc of the broker process only:
#   CPU µs per message (user, system), bytes written per record
#   (write_bytes: what the process made the kernel write, filesystem
#   journal not counted), ack latency p50/p99 as the devices saw it, and
#   for the edge records per fdatasync (from its /metrics); and, from the
#   block device holding the data (/sys/class/block/DEV/stat), everything
#   written to it per record during the run: the filesystem's journal and
#   writeback included, other processes' writes too (so: an upper bound,
#   noisy on a shared machine).
# Brokers alternate within each rate; each cell is the median of
# BENCH_REPEATS runs of BENCH_SECONDS.
#
# Usage: scripts/bench-field-rates.sh
# Environment: BENCH_RATES ("100 1000 5000"), BENCH_SECONDS (20),
#              BENCH_REPEATS (3), BENCH_BROKERS ("edge edge-nojournal mochi"),
#              EDGE_ARGS (extra edge flags, e.g. "-config my.yaml").
# Needs: go, jq, curl.
set -euo pipefail

RATES=${BENCH_RATES:-"100 1000 5000"}
SECS=${BENCH_SECONDS:-20}
REPEATS=${BENCH_REPEATS:-3}
BROKERS=${BENCH_BROKERS:-"edge edge-nojournal mochi"}
DEVICES=100
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
command -v jq >/dev/null || { echo "bench: jq is needed (apt-get install jq)" >&2; exit 2; }
WORK=$(mktemp -d)
BPID=
cleanup() {
	[ -n "$BPID" ] && { kill "$BPID" 2>/dev/null || true; wait "$BPID" 2>/dev/null || true; }
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "building edge, firmware-sim and mochibench..." >&2
CGO_ENABLED=0 go build -o "$WORK/edge" ./edge
CGO_ENABLED=0 go build -o "$WORK/firmware-sim" ./firmware-sim
CGO_ENABLED=0 go build -o "$WORK/mochibench" ./firmware-sim/internal/mochibench

CLK=$(getconf CLK_TCK)
cpu() { awk -v c="$CLK" '{printf "%d %d\n", $14*1e6/c, $15*1e6/c}' "/proc/$1/stat"; } # user, system µs
wbytes() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
DEV=$(basename "$(df --output=source "$WORK" | tail -1)")
devbytes() { if [ -r "/sys/class/block/$DEV/stat" ]; then awk '{printf "%.0f", $7*512}' "/sys/class/block/$DEV/stat"; else echo 0; fi; }
metric() { curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v m="$1" '$1==m {s+=$2} END {printf "%d", s}'; }

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

start_broker() { # $1 = edge|edge-nojournal|mochi; sets BPID, MQTT_PORT, HTTP_PORT
	MQTT_PORT=$(free_port)
	if [ "$1" != mochi ]; then
		HTTP_PORT=$(free_port)
		rm -rf "$WORK/data"
		local journal=true
		[ "$1" = edge-nojournal ] && journal=false
		OUTPOST_LOG_JOURNAL=$journal "$WORK/edge" -data "$WORK/data" -mqtt "127.0.0.1:$MQTT_PORT" -http "127.0.0.1:$HTTP_PORT" ${EDGE_ARGS:-} 2>"$WORK/edge.log" &
		BPID=$!
		for _ in $(seq 100); do curl -fsS "127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
		echo "bench: the edge did not become ready:" >&2; tail -5 "$WORK/edge.log" >&2; exit 1
	fi
	"$WORK/mochibench" -addr "127.0.0.1:$MQTT_PORT" >/dev/null 2>&1 &
	BPID=$!
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && return; sleep 0.05; done
	echo "bench: mochibench did not listen" >&2; exit 1
}

stop_broker() { kill "$BPID" 2>/dev/null || true; wait "$BPID" 2>/dev/null || true; BPID=; }

median() { awk NF | sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "-"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m}'; }

declare -A R
for rate in $RATES; do
	per=$(awk -v r="$rate" -v d="$DEVICES" 'BEGIN {printf "%g", r/d}')
	for rep in $(seq "$REPEATS"); do
		for b in $BROKERS; do
			start_broker "$b"
			sleep 1
			sync; read -r u0 s0 < <(cpu "$BPID"); w0=$(wbytes "$BPID"); d0=$(devbytes)
			[ "$b" != mochi ] && { f0=$(metric outpost_log_fsync_seconds_count); a0=$(metric outpost_log_appended_records_total); }
			"$WORK/firmware-sim" -broker "tcp://127.0.0.1:$MQTT_PORT" -devices $DEVICES -rate "$per" -qos 1 -inflight 10 \
				-size 100 -format raw -duration "${SECS}s" -ramp-up 1s -progress 0 -json >"$WORK/out.json" 2>/dev/null || true
			read -r u1 s1 < <(cpu "$BPID"); w1=$(wbytes "$BPID"); sync; d1=$(devbytes) # sync: what is still dirty is written now, counted here
			acked=$(jq -r .acked "$WORK/out.json")
			p50=$(jq -r .latency_ms.p50 "$WORK/out.json"); p99=$(jq -r .latency_ms.p99 "$WORK/out.json")
			if [ "$acked" -gt 0 ]; then
				R[$b,$rate,user]+="$(awk -v a="$u0" -v b="$u1" -v n="$acked" 'BEGIN {printf "%.2f", (b-a)/n}') "
				R[$b,$rate,sys]+="$(awk -v a="$s0" -v b="$s1" -v n="$acked" 'BEGIN {printf "%.2f", (b-a)/n}') "
				R[$b,$rate,wb]+="$(( (w1 - w0) / acked )) "
				R[$b,$rate,db]+="$(( (d1 - d0) / acked )) "
				R[$b,$rate,p50]+="$p50 "; R[$b,$rate,p99]+="$p99 "
				R[$b,$rate,rate]+="$(jq -r .msgs_per_s "$WORK/out.json") "
				if [ "$b" != mochi ]; then
					f1=$(metric outpost_log_fsync_seconds_count); a1=$(metric outpost_log_appended_records_total)
					R[$b,$rate,rpf]+="$(awk -v f=$((f1 - f0)) -v a=$((a1 - a0)) 'BEGIN {printf "%.2f", f ? a/f : 0}') "
				fi
			fi
			echo "  $b at $rate msg/s, run $rep: acked $acked, p50 ${p50} ms, p99 ${p99} ms" >&2
			stop_broker
		done
	done
done

printf "\n%-14s %6s %8s | %7s %7s %7s | %9s %9s | %7s %7s | %9s\n" broker "msg/s" achieved "cpu µs" user system "bytes/rec" "dev B/rec" "p50 ms" "p99 ms" "recs/sync"
for rate in $RATES; do
	for b in $BROKERS; do
		u=$(echo ${R[$b,$rate,user]:-} | tr ' ' '\n' | median); s=$(echo ${R[$b,$rate,sys]:-} | tr ' ' '\n' | median)
		t=$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.1f", u+s}')
		printf "%-14s %6s %8s | %7s %7s %7s | %9s %9s | %7s %7s | %9s\n" "$b" "$rate" \
			"$(echo ${R[$b,$rate,rate]:-} | tr ' ' '\n' | median)" "$t" "$u" "$s" \
			"$(echo ${R[$b,$rate,wb]:-} | tr ' ' '\n' | median)" "$(echo ${R[$b,$rate,db]:-} | tr ' ' '\n' | median)" \
			"$(echo ${R[$b,$rate,p50]:-} | tr ' ' '\n' | median)" "$(echo ${R[$b,$rate,p99]:-} | tr ' ' '\n' | median)" \
			"$(echo ${R[$b,$rate,rpf]:-} | tr ' ' '\n' | median)"
	done
done
