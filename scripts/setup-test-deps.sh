#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine: Debian
# packages (mosquitto clients and broker for interoperability tests) and Go
# tools at pinned versions from the Go module proxy. Safe to run again.
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin:$HOME/go/bin
STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2

need_apt=()
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v make >/dev/null || need_apt+=(make)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v curl >/dev/null || need_apt+=(curl)
command -v chromium >/dev/null || need_apt+=(chromium) # the dashboards' browser tests (edge/e2e)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
if ! staticcheck -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
  go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi
go mod download
