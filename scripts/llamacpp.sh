#!/usr/bin/env bash
# Sets up real llama.cpp (v0.4.0, commit 5b4ebc5) as a test dependency, once per machine, and
# prints the folder that holds the programs (the last line of stdout):
#   llama_check        tests/llamacpp/llama_check.c against llama.h, linked to the prebuilt libllama
#   llama-quantize     llama.cpp's tools/quantize, compiled from the release's source
#   llama-perplexity   llama.cpp's tools/perplexity, likewise
# beside symlinks to the prebuilt libllama / libllama-common / libggml* and the libggml-cpu-*.so
# variants (ggml loads its CPU backend from the executable's folder).
#
# Source of both: the npm packages node-llama-cpp@3.21.1 and @node-llama-cpp/linux-x64@3.21.1,
# pinned exactly. The second holds the prebuilt linux-x64 libraries; the first holds the full
# llama.cpp source as a git bundle (llama/gitRelease.bundle), cloned here for the headers and the
# tools. Nothing of llama.cpp is copied into the project.
#
# Cache: ${PQ_CACHE:-$HOME/.cache/prunequant}/llamacpp-3.21.1/ (stamp files per step; a change
# to llama_check.c or to this script rebuilds the programs). Concurrent runs wait on a flock.
# Needs node/npm with the npm registry reachable on first use, git, gcc and g++; exits 1 with the
# reason otherwise.
set -euo pipefail

VER=3.21.1
SRC=$(cd "$(dirname "$0")/.." && pwd)
BASE=${PQ_CACHE:-${HOME:-/tmp}/.cache/prunequant}
C=$BASE/llamacpp-$VER
die() {
    echo "llamacpp.sh: $*" >&2
    exit 1
}
log() { [ -n "${PQ_LLAMACPP_QUIET:-}" ] || echo "llamacpp.sh: $*" >&2; }

for tool in node npm git gcc g++ flock; do
    command -v "$tool" >/dev/null 2>&1 || die "cannot set up llama.cpp: $tool not found (scripts/install-deps.sh installs it)"
done
mkdir -p "$C" 2>/dev/null || die "cannot create the cache folder $C (set PQ_CACHE)"
exec 9>"$C/.lock"
flock 9

# 1. the npm packages (prebuilt libraries + source bundle)
LIBS=$C/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
BUNDLE=$C/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle
if [ ! -f "$C/npm.stamp" ]; then
    log "installing node-llama-cpp@$VER and @node-llama-cpp/linux-x64@$VER (npm, once per machine)"
    rm -rf "$C/npm"
    mkdir -p "$C/npm"
    echo '{"name":"pq-llamacpp","private":true}' >"$C/npm/package.json"
    if ! (cd "$C/npm" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true timeout 600 npm i -E "node-llama-cpp@$VER" \
        "@node-llama-cpp/linux-x64@$VER" --omit=optional --no-audit --no-fund --loglevel=error) >"$C/npm.log" 2>&1; then
        tail -5 "$C/npm.log" >&2
        die "cannot install the npm packages (log: $C/npm.log)"
    fi
    [ -f "$LIBS/libllama.v0.4.0.so" ] || die "npm: $LIBS/libllama.v0.4.0.so missing"
    [ -f "$BUNDLE" ] || die "npm: $BUNDLE missing"
    touch "$C/npm.stamp"
fi

# 2. the source (headers, common/, tools/)
if [ ! -f "$C/src.stamp" ]; then
    log "cloning the llama.cpp v0.4.0 source from the bundle"
    rm -rf "$C/src"
    git clone -q "$BUNDLE" "$C/src" 2>"$C/clone.log" || die "git clone of $BUNDLE failed (log: $C/clone.log)"
    [ -f "$C/src/include/llama.h" ] || die "$C/src/include/llama.h missing"
    touch "$C/src.stamp"
fi

# 3. the programs
S=$C/src
BIN=$C/bin
want="$VER $(cat "$SRC/tests/llamacpp/llama_check.c" "$0" | sha256sum | cut -c1-16)"
if [ "$(cat "$C/bin.stamp" 2>/dev/null)" != "$want" ]; then
    log "building llama_check, llama-quantize, llama-perplexity, llama-imatrix in $BIN"
    rm -rf "$BIN.tmp"
    mkdir -p "$BIN.tmp"
    for l in "$LIBS"/*.so; do ln -s "$l" "$BIN.tmp/"; done
    LINK=(-L"$BIN.tmp" -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so -Wl,-rpath,'$ORIGIN' -pthread)
    gcc -std=c11 -O2 -Wall -Wextra -Werror -I"$S/include" -I"$S/ggml/include" "$SRC/tests/llamacpp/llama_check.c" \
        -o "$BIN.tmp/llama_check" "${LINK[@]}" -lm 2>"$C/build.log" || {
        cat "$C/build.log" >&2
        die "building llama_check failed"
    }
    CXX=(g++ -std=c++17 -O2 -w -I"$S/include" -I"$S/ggml/include" -I"$S/common" -I"$S/vendor")
    for t in quantize perplexity imatrix; do
        "${CXX[@]}" "$S/tools/$t/"*.cpp -o "$BIN.tmp/llama-$t" -l:libllama-common.so \
            "${LINK[@]}" 2>>"$C/build.log" || {
            tail -20 "$C/build.log" >&2
            die "building llama-$t failed (log: $C/build.log)"
        }
    done
    for p in llama_check llama-quantize llama-perplexity llama-imatrix; do # 127: a library did not resolve
        rc=0
        "$BIN.tmp/$p" --help >/dev/null 2>&1 || rc=$?
        [ $rc -lt 126 ] || die "$p does not run (exit $rc)"
    done
    rm -rf "$BIN"
    mv "$BIN.tmp" "$BIN"
    echo "$want" >"$C/bin.stamp"
fi
echo "$BIN"
