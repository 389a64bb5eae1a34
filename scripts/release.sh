#!/usr/bin/env bash
# Builds static, stripped release binaries of edge, core and firmware-sim for
# linux/amd64, linux/arm64 and linux/arm/v7 into dist/, stamped with VERSION
# (default: git describe) and the commit (embedded by the Go toolchain).
#
#   scripts/release.sh            # all platforms
#   PLATFORMS=linux/arm/7 scripts/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
PLATFORMS=${PLATFORMS:-"linux/amd64 linux/arm64 linux/arm/7"}
BINARIES=${BINARIES:-"edge core firmware-sim"}
ldflags="-s -w -X github.com/outpost-edge/outpost/internal/buildinfo.version=${VERSION}"
mkdir -p dist
for platform in $PLATFORMS; do
  IFS=/ read -r os arch arm <<<"$platform"
  suffix="${os}-${arch}${arm:+v$arm}"
  for bin in $BINARIES; do
    out="dist/${bin}-${suffix}"
    CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=${arm:-} \
      go build -trimpath -buildvcs=auto -ldflags "$ldflags" -o "$out" "./$bin"
    printf '%-34s %6.1f MB\n' "$out" "$(echo "scale=1; $(stat -c %s "$out") / 1048576" | bc 2>/dev/null || stat -c %s "$out")"
  done
done
