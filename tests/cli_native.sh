#!/usr/bin/env bash
# Compressed models run as compressed: BabyLlama compressed to packed-v2 and to --format dense
# with the same recipe (4-bit g32, 2:4 + 4-bit, 25 % unstructured + 4-bit, 3-bit act-order with
# dynamic groups), and the dense output converted to float16 / bfloat16: `info` reports every
# linear running as stored, and the perplexity of each stored form equals the dense float32
# output's within 1e-6 relative (the kernels sum in another order than BLAS; tests/test_qmat.c
# bounds each product), for a batch of windows (GEMM) and for windows one token at a time
# (--batch 1 --ctx 2: the GEMV kernels). generate with 8-bit activations writes the same greedy
# text as with exact products; --no-mmap gives the same perplexities and text bit for bit.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
. "$(dirname "$0")/lib.sh"
babyllama

head -c 100000 "$TEXT" >"$T/calib.txt"
tail -c 20000 "$TEXT" >"$T/eval.txt"
C=(--calib "$T/calib.txt" --tokenizer "$TOK" --nsamples 4 --seqlen 64 --group 32 --quiet)

# ppl MODEL ARGS...: prints the perplexity (JSON "ppl")
ppl() {
    local m=$1
    shift
    "$BIN" ppl "$m" --text "$T/eval.txt" --json "$@" 2>"$T/ppl.err" |
        python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["ppl"]))'
}
# same A B: relative difference at most 1e-6
same() { python3 -c "import sys; a, b = $1, $2; sys.exit(0 if abs(a / b - 1) <= 1e-6 else 1)"; }

while read -r name args; do
    # shellcheck disable=SC2086
    if ! "$BIN" compress "$M" "${C[@]}" --out "$T/$name" $args 2>"$T/err" ||
        ! "$BIN" compress "$M" "${C[@]}" --out "$T/$name.dense" --format dense $args 2>"$T/err"; then
        bad "compress $name: $(cat "$T/err")"
        continue
    fi
    "$BIN" info "$T/$name" --json >"$T/info.json" 2>"$T/err" || { bad "info $name: $(cat "$T/err")"; continue; }
    python3 -c "
import json; j = json.load(open('$T/info.json'))
assert j['n_native'] == j['n_linears'] == 35, j
assert j['kernels'] in ('avx512', 'avx2', 'portable'), j" && ok || bad "$name: not every linear runs as stored: $(cat "$T/info.json")"
    for mode in "--ctx 64" "--ctx 2 --batch 1 --max-tokens 400"; do
        # shellcheck disable=SC2086
        a=$(ppl "$T/$name.dense" $mode) && b=$(ppl "$T/$name" $mode) || { bad "ppl $name ($mode): $(cat "$T/ppl.err")"; continue; }
        if same "$a" "$b"; then ok; else bad "$name ($mode): packed ppl $b vs dense $a"; fi
        echo "$name ($mode): packed ppl $b, dense $a"
    done
done <<'CFG'
q4 --quant gptq --bits 4
p24q4 --prune sparsegpt --pattern 2:4 --quant gptq --bits 4
s25q4 --prune sparsegpt --sparsity 0.25 --quant gptq --bits 4
q3act --quant gptq --bits 3 --act-order
CFG

# generate with 8-bit activations (the prompt's GEMM and each decoded token's GEMV; llama.cpp's
# numerics, logits about 1e-3 relative off): greedy text equal to the exact products' on 4-bit
g=() # exact, int8
for f in "" "--int8-prompt --int8-decode"; do
    # shellcheck disable=SC2086
    g+=("$("$BIN" generate "$T/q4" --tokenizer "$TOK" --prompt "Once upon a time" -n 24 --temp 0 $f 2>"$T/err")") ||
        bad "generate $f: $(cat "$T/err")"
done
if [ -n "${g[0]}" ] && [ "${g[0]}" = "${g[1]}" ]; then ok; else bad "generate: exact '${g[0]}' vs 8-bit '${g[1]}'"; fi

# --no-mmap (the files read into memory of large pages instead of mapped): the same perplexity
# bit for bit, batched and one token at a time, and the same greedy text
for name in q4 p24q4 s25q4; do
    for mode in "--ctx 64" "--ctx 2 --batch 1 --max-tokens 200"; do
        # shellcheck disable=SC2086
        a=$(ppl "$T/$name" $mode) && b=$(ppl "$T/$name" $mode --no-mmap) ||
            { bad "ppl --no-mmap $name ($mode): $(cat "$T/ppl.err")"; continue; }
        if [ "$a" = "$b" ]; then ok; else bad "$name ($mode): ppl $b with --no-mmap, $a mapped"; fi
    done
done
n=$("$BIN" generate "$T/p24q4" --tokenizer "$TOK" --prompt "Once upon a time" -n 24 --temp 0 --no-mmap 2>"$T/err") ||
    bad "generate --no-mmap: $(cat "$T/err")"
m=$("$BIN" generate "$T/p24q4" --tokenizer "$TOK" --prompt "Once upon a time" -n 24 --temp 0 2>"$T/err") ||
    bad "generate: $(cat "$T/err")"
if [ -n "$n" ] && [ "$n" = "$m" ]; then ok; else bad "generate: --no-mmap '$n' vs mapped '$m'"; fi

# float16 / bfloat16 folders run from their stored dtype
for dt in f16 bf16; do
    "$BIN" convert "$T/q4.dense" --to hf --dtype $dt --out "$T/$dt" --quiet 2>"$T/err" || { bad "convert $dt: $(cat "$T/err")"; continue; }
    a=$(ppl "$T/q4.dense" --ctx 64) && b=$(ppl "$T/$dt" --ctx 64) || { bad "ppl $dt: $(cat "$T/ppl.err")"; continue; }
    # 4-bit codes times an f16 scale are exact in f16 and bf16 only when the scale is: compare with
    # the folder's own float32 conversion instead
    "$BIN" convert "$T/$dt" --to hf --dtype f32 --out "$T/$dt.f32" --quiet 2>"$T/err" &&
        c=$(ppl "$T/$dt.f32" --ctx 64) || { bad "convert $dt back: $(cat "$T/err")"; continue; }
    if same "$c" "$b"; then ok; else bad "$dt: stored ppl $b vs its float32 copy $c"; fi
    "$BIN" info "$T/$dt" --json | python3 -c "import json,sys; j=json.load(sys.stdin); sys.exit(0 if j['n_native'] == j['n_linears'] else 1)" &&
        ok || bad "$dt: not every linear runs as stored"
    echo "$dt: stored ppl $b, float32 copy $c"
done
echo "cli_native: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
