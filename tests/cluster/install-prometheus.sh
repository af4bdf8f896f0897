#!/usr/bin/env bash
# Installs the real Prometheus server from Debian's package. The test harness starts its own
# instances (generated config, free loopback port, temp data dir); the package's own service,
# if its postinst started one, is stopped so nothing keeps running behind our back.
set -euo pipefail
command -v prometheus >/dev/null && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
$sudo pkill -x prometheus 2>/dev/null || true
$sudo service prometheus stop >/dev/null 2>&1 || true
prometheus --version | head -n1
