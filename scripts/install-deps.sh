#!/usr/bin/env bash
# Installs the Debian packages prunequant builds and tests with (chromium renders the HTML
# report in a test), when run as root and any is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev liblapacke-dev libcjson-dev libpcre2-dev libsqlite3-dev libbz2-dev chromium openmpi-bin libopenmpi-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# the tokenizer acceptance test builds its fixtures with Node.js packages from the npm registry
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "prunequant: missing Debian packages: ${missing[*]}" >&2
  echo "prunequant: run 'sudo apt-get install ${missing[*]}' (or run make as root)" >&2
  exit 1
fi
echo "prunequant: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
