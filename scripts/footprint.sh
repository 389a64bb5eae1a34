#!/usr/bin/env bash
# Measures the edge node's footprint on this machine: binary sizes per
# architecture, RSS idle and with 1,000 connected devices, and bytes written
# to disk per 100-byte record under sync: always (SD-card wear).
#   scripts/footprint.sh            # needs ports 127.0.0.1:18830 and :18080 free
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
PLATFORMS=${PLATFORMS:-"linux/amd64 linux/arm64 linux/arm/7"} BINARIES="edge firmware-sim" bash scripts/release.sh >/dev/null
echo "== binary sizes (stripped, CGO off)"
ls -l dist/edge-* | awk '{printf "  %-28s %5.1f MB\n", $9, $5/1048576}'

rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
wbytes() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
src=$(df --output=source "$work" | tail -1)
dev=$(lsblk -no pkname "$src" 2>/dev/null || true)
[ -n "$dev" ] || dev=$(basename "$src")
[ -e "/sys/block/$dev/stat" ] || dev=
devsectors() { [ -n "$dev" ] && awk '{print $7}' "/sys/block/$dev/stat" || echo 0; }

./dist/edge-linux-amd64 -data "$work/data" -mqtt 127.0.0.1:18830 -http 127.0.0.1:18080 2>"$work/edge.log" &
pid=$!
for _ in $(seq 50); do curl -fsS 127.0.0.1:18080/readyz >/dev/null 2>&1 && break; sleep 0.1; done
sleep 2
echo "== RSS"
echo "  idle:                          $(rss $pid) MB"
./dist/firmware-sim-linux-amd64 -broker tcp://127.0.0.1:18830 -devices 1000 -rate 0.0001 -duration 12s -ramp-up 3s -progress 0 >/dev/null 2>&1 &
sleep 10
echo "  1,000 connected devices:       $(rss $pid) MB"
wait $! || true

n=20000
for inflight in 1 100; do
  w0=$(wbytes $pid); s0=$(devsectors)
  ./dist/firmware-sim-linux-amd64 -broker tcp://127.0.0.1:18830 -devices 20 -count $((n/20)) -rate 0 -inflight $inflight \
    -qos 1 -size 100 -format raw -progress 0 >/dev/null 2>&1
  w1=$(wbytes $pid); s1=$(devsectors)
  echo "== disk writes, $n records of 100 bytes, QoS 1, 20 devices x $inflight in flight (sync: always)"
  echo "  written by the node (write_bytes): $(( (w1-w0)/n )) bytes/record  ($(( (w1-w0)/100/n ))x the payload)"
  [ -n "$dev" ] && echo "  written to $dev, all processes, incl. journal: $(( (s1-s0)*512/n )) bytes/record"
done
kill $pid; wait $pid 2>/dev/null || true
