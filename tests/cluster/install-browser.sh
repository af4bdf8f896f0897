#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver for the dashboard's browser tests. Nothing is
# downloaded besides the distribution's own packages: the tests drive /usr/bin/chromium through
# /usr/bin/chromedriver with Selenium, never a browser build fetched at run time.
set -euo pipefail
command -v chromium >/dev/null && command -v chromedriver >/dev/null && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# Another apt run (Prometheus' install, a parallel job) may hold the lock for a while.
apt_get() { $sudo apt-get -o DPkg::Lock::Timeout=300 "$@"; }
apt_get update -qq
apt_get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
chromium --version
