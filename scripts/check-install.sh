#!/usr/bin/env bash
# Checks what the README's Raspberry Pi install section installs: the
# systemd unit passes `systemd-analyze verify`, and the node accepts the
# unit's exact command line with configs/edge-pi.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
go build -o "$work/edge" ./edge
unit=configs/systemd/outpost-edge.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
# The unit names /usr/local/bin/edge and /etc/outpost/edge.yaml; point both
# at this checkout's build and config.
cmd=${exec_start//\/usr\/local\/bin\/edge/$work/edge}
cmd=${cmd//\/etc\/outpost\/edge.yaml/configs/edge-pi.yaml}
cmd=${cmd//\/var\/lib\/outpost/$work/data}
echo "unit command: $cmd -check-config"
$cmd -check-config
if command -v systemd-analyze >/dev/null; then
  sed "s#/usr/local/bin/edge#$work/edge#" "$unit" > "$work/outpost-edge.service"
  out=$(systemd-analyze verify "$work/outpost-edge.service" 2>&1 || true)
  if [ -n "$out" ]; then echo "systemd-analyze verify: $out"; exit 1; fi
  echo "systemd-analyze verify: ok"
else
  echo "systemd-analyze not installed; unit syntax not checked" >&2
  exit 1
fi
