#!/usr/bin/env bash
# Debian packages the tests drive for real: mosquitto (the broker), systemd's analyzer for
# the unit file, shellcheck for our shell scripts, openssl for the TLS test certificates,
# python3-systemd (systemd-python, as install.sh puts it on the Pi) for the notify test, gcc
# (and libc6-dev) to build the fake Edge TPU delegates of the probe tests, chromium and
# chromium-driver for the browser tests, screenshots and load benchmark (with
# fonts-noto-color-emoji for the emotion glyphs), and util-linux-extra for fincore, which
# checks that setup leaves its files out of the page cache. Installs only what is missing.
set -euo pipefail
packages=(make ca-certificates mosquitto systemd shellcheck python3-venv openssl python3-systemd
    gcc libc6-dev chromium chromium-driver fonts-noto-color-emoji util-linux-extra)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The package starts a broker on port 1883 in some images; tests start their own.
