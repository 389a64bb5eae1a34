#!/usr/bin/env bash
# Runs the storage and ingest test packages for linux/arm64 and linux/arm/v7
# under qemu user-mode emulation, so that 32-bit alignment and endianness bugs
# fail CI. -short: the kill tests re-exec the test binary, which needs binfmt
# registration that a CI container may not allow; they run natively.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:$HOME/go/bin
if ! command -v qemu-aarch64-static >/dev/null || ! command -v qemu-arm-static >/dev/null; then
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-user-static
fi
# The packages whose bugs would be architecture bugs: on-disk formats,
# atomics, metadata and ingest.
pkgs=${EMULATED_PKGS:-"./edge/log/... ./edge/meta/..."}
for target in arm64:qemu-aarch64-static arm:qemu-arm-static; do
  arch=${target%%:*}; emu=${target##*:}
  echo "--- linux/$arch under $emu: $pkgs"
  # shellcheck disable=SC2086
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=7 go test -short -count=1 -exec "$emu" $pkgs
done
