#!/usr/bin/env bash
# The system binaries the tests call instead of re-implementing them: promtool and prometheus
# (tests/deploy checks and evaluates the rules and dashboard with them) and chromium with its
# driver (browser tests). kubectl, which renders the overlays, is expected on the CI image.
# Idempotent: installs only what is missing and runs `apt-get update` at most once.
set -euo pipefail

missing=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

# apt-get needs root; CI containers run as root, elsewhere fall back to sudo.
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "install-system-tools: installing ${missing[*]}"
$sudo apt-get update -qq
# --no-install-recommends: the prometheus package otherwise pulls in node-exporter and friends.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
