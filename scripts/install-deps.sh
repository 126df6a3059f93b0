#!/usr/bin/env bash
# Installs the Debian packages prunequant needs, when run as root and any is missing.
#   install-deps.sh build   what `make` needs: compiler, CMake, OpenBLAS (on OpenMP), LAPACKE, cJSON, PCRE2,
#                           SQLite, bz2 (Open MPI is optional: `sweep --mpi` is built when found)
#   install-deps.sh test    also the test dependencies: Chromium (renders the HTML report),
#                           Open MPI (the MPI sweep test), Node.js + npm (reference tokenizers,
#                           real llama.cpp from the npm registry)
set -euo pipefail
what=${1:-build}
pkgs=(build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev liblapacke-dev libcjson-dev libpcre2-dev libsqlite3-dev libbz2-dev)
# wanted, not needed: without it the build links the default OpenBLAS (same results, slower)
optional=(libopenblas-openmp-dev)
[ "$what" = test ] && pkgs+=(chromium openmpi-bin libopenmpi-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$what" = test ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  needed=()
  for p in "${missing[@]}"; do
    if [[ " ${optional[*]} " == *" $p "* ]]; then
      echo "prunequant: $p is not installed (OpenBLAS then runs its own threads: slower compression)" >&2
    else
      needed+=("$p")
    fi
  done
  [ ${#needed[@]} -eq 0 ] && exit 0
  echo "prunequant: missing Debian packages: ${needed[*]}" >&2
  echo "prunequant: run 'sudo apt-get install ${needed[*]}' (or run make as root)" >&2
  exit 1
fi
echo "prunequant: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
