#!/usr/bin/env bash
# Installs what the b24watch test suite needs, only when it is missing (Debian/Ubuntu).
#   promtool and prometheus (package prometheus; also the remote-write receiver), Alertmanager and
#   amtool (package prometheus-alertmanager: the paging test pages a webhook through it),
#   victoria-metrics (remote-write receiver), logrotate, mariadbd (package mariadb-server), systemd-analyze
#   (package systemd), chromium (report and status page checked in a headless browser), rpm and
#   binutils (the packages are inspected), a C compiler for the bundled SQLite. scripts/package.sh
#   installs the packaging tools itself (cargo-zigbuild and zig from PyPI, cargo-deb and
#   cargo-generate-rpm from crates.io). The suite starts its own MariaDB;
#   none needs to be running.
set -euo pipefail

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ -x /usr/bin/chromium ] || [ -x /usr/bin/chromium-browser ] || missing+=(chromium)
command -v rpm >/dev/null 2>&1 || missing+=(rpm)
command -v objdump >/dev/null 2>&1 || missing+=(binutils)
command -v curl >/dev/null 2>&1 || missing+=(curl)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust 1.95 or newer (https://rustup.rs), then run make test again" >&2
    exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
    echo "test dependencies present"
    exit 0
fi

echo "installing test dependencies: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# policy-rc.d keeps package scripts from starting services (prometheus, alertmanager, mariadb) on install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    created_policy=1
fi
status=0
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
if [ $created_policy -eq 1 ]; then
    $sudo rm -f "$policy"
fi
exit $status
