#!/usr/bin/env bash
# Decode and prompt speed, and memory, of a 1B-shaped Llama (hidden 2048, 16 layers, ffn 5632,
# GQA 32/4, vocab 32000; random weights, the Llama-2 tokenizer) run as stored by prunequant,
# side by side with real llama.cpp (scripts/llamacpp.sh) on the same weights, in one run:
#
#   ours:      float32, float16, bfloat16 folders; packed 8/4/3/2-bit g128 and 2:4 + 4-bit g128
#              (round to nearest; embeddings and lm_head float16)           build/bench_decode run
#   llama.cpp: the same weights as F16 GGUF, and llama-quantize's Q8_0 and Q4_0 of it, once
#              with token_embd / output kept F16 (the weights ours stores) and once --pure
#                                                                          llama_check --bench
#   in turns:  2:4 + 4-bit against 4-bit decoding in one process            build/bench_decode pair
#   memory:    `prunequant ppl` on the packed 4-bit model (ctx 512), peak RSS against
#              file bytes + KV cache + activations                         build/bench_decode rss
#
#   bench/bench_decode.sh [DIR]       DIR keeps the generated models (default /tmp/pq-bench-decode,
#                                      about 12 GB); THREADS=N (default: all cores); MAKE_ONLY=1
#                                      makes the models and stops; NO_MMAP=1 loads every model on
#                                      both sides read into memory instead of mapped (ours:
#                                      --no-mmap, large pages; llama.cpp: load mode none)
# Protocol (both sides): prompt = 512 tokens in one batch, logits of the last, best of 2; decode
# = 128 greedy single-token steps after a 128-token prompt. Ours twice each: float32-accurate
# products, and 8-bit activations as llama.cpp computes (pq_ctx_set_int8_prompts / _decode).
# Prints one JSON line per measurement, then a table of the best of each (REPS=N repetitions of
# the compared pairs, interleaved). Nothing else should run on the machine meanwhile.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
D=${1:-/tmp/pq-bench-decode}
T=${THREADS:-$(nproc)}
DATA=${PQ_DATA:-$SRC/../shared/data}
TOK=$DATA/models/llama2-tokenizer/tokenizer.bin
TEXT=$DATA/text/tinystories/tinystories_val.txt
PQ=$BUILD/prunequant
for f in "$PQ" "$BUILD/bench_decode" "$BUILD/bench_compress" "$TOK" "$TEXT"; do
    [ -e "$f" ] || { echo "bench_decode.sh: $f missing (run make first; PQ_DATA for the data)" >&2; exit 1; }
done
LL=$(bash "$SRC/scripts/llamacpp.sh" | tail -1)
mkdir -p "$D"
OUT=$D/results.jsonl
: >"$OUT"

make_once() { # NAME COMMAND...: runs the command unless DIR/NAME exists
    local name=$1
    shift
    [ -e "$D/$name" ] && return 0
    echo "bench_decode.sh: making $name" >&2
    "$@" >/dev/null
}
C=(--tokenizer "$TOK" --calib "$TEXT" --nsamples 2 --seqlen 64 --quiet --dtype f16 --quant rtn --group 128)
make_once hf-bf16 "$BUILD/bench_compress" make "$D/hf-bf16" 16 2048 5632 32 4 32000
make_once hf-f32 "$PQ" convert "$D/hf-bf16" --tokenizer "$TOK" --to hf --dtype f32 --out "$D/hf-f32" --quiet
make_once hf-f16 "$PQ" convert "$D/hf-bf16" --tokenizer "$TOK" --to hf --dtype f16 --out "$D/hf-f16" --quiet
for b in 8 4 3 2; do make_once q$b "$PQ" compress "$D/hf-bf16" "${C[@]}" --bits $b --out "$D/q$b"; done
make_once p24q4 "$PQ" compress "$D/hf-bf16" "${C[@]}" --bits 4 --prune magnitude --pattern 2:4 --out "$D/p24q4"
make_once f16.gguf "$PQ" convert "$D/hf-f16" --to gguf --dtype f16 --out "$D/f16.gguf" --quiet
for q in Q8_0 Q4_0; do
    make_once $q.gguf "$LL/llama-quantize" --output-tensor-type f16 --token-embedding-type f16 "$D/f16.gguf" \
        "$D/$q.gguf" $q "$T"
    make_once $q-pure.gguf "$LL/llama-quantize" --pure "$D/f16.gguf" "$D/$q-pure.gguf" $q "$T"
done

[ -z "${MAKE_ONLY:-}" ] || exit 0 # MAKE_ONLY=1: the models only

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $T threads" >&2
NM=()
[ -z "${NO_MMAP:-}" ] || NM=(--no-mmap)
echo "loading: ${NM[*]:-mapped}" >&2
ours() { "$BUILD/bench_decode" run "$D/$1" "$T" "${NM[@]}" | tee -a "$OUT"; }
llama() {
    "$LL/llama_check" "$D/$1.gguf" --bench --threads "$T" --timeout 1200 "${NM[@]}" | awk -v m="$1" -v t="$T" \
        -v bytes="$(stat -c %s "$D/$1.gguf")" '
        $1 == "bench" { r[$2] = $5 }
        END { printf "{\"bench\": \"llamacpp\", \"model\": \"%s\", \"threads\": %d, \"prompt_tok_s\": %s, \"decode_tok_s\": %s, \"file_mib\": %.1f}\n", m, t, r["prompt"], r["decode"], bytes / 1048576 }' |
        tee -a "$OUT"
}
# the pairs the ratios compare run side by side, REPS times (default 3; the table keeps each
# model's best: a shared host's noise only ever slows a run down); the rest once
for rep in $(seq "${REPS:-3}"); do
    ours q4; llama Q4_0; ours q8; llama Q8_0; ours p24q4; ours hf-f16; llama f16
done
# 2:4 + 4-bit against 4-bit in one process, in turns (bench_decode pair): the ratio a drifting host
# cannot bias
"$BUILD/bench_decode" pair "$D/q4" "$D/p24q4" "$T" "${NM[@]}" | tee -a "$OUT"
for m in hf-f32 hf-bf16 q3 q2 Q8_0.gguf Q4_0.gguf; do ours $m; done # the GGUFs: llama.cpp's files run by us
for g in Q8_0-pure Q4_0-pure; do llama $g; done

# memory of ppl on the packed 4-bit model: file bytes + KV cache + activations of a ctx-512 pass
# (batch of 4 windows: hidden states, the block's buffers, the logits; src/eval/ppl.c, forward.c)
FILE_B=$(cat "$D"/q4/*.safetensors | wc -c)
BUDGET=$(python3 -c "
N, D, F, KV, V, ctx, nt = 4 * 512, 2048, 5632, 256, 32000, 512, $T
kv = 2 * 4 * 512 * KV * 4                                   # one layer's cache for the batch
act = 4 * (N * D + N * (D + D + 2 * KV + D + 2 * F) + nt * ctx * ctx + N * V)
print($FILE_B + kv + act)")
"$BUILD/bench_decode" rss "$BUDGET" -- "$PQ" ppl "$D/q4" --text "$TEXT" --ctx 512 --max-tokens 8192 --quiet \
    --threads "$T" "${NM[@]}" 2>"$D/ppl.out" | tee -a "$OUT"
grep -v '^$' "$D/ppl.out" | head -3 >&2

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def best(rows, name):  # per model, each rate at its best over the repetitions
    out = {}
    for r in rows:
        k = name(r)
        if k not in out:
            out[k] = dict(r)
        else:
            for f, v in r.items():
                if f.endswith("tok_s"):
                    out[k][f] = max(out[k][f], v)
    return out
ours = best([r for r in rows if r["bench"] == "decode"], lambda r: r["model"].rstrip("/").split("/")[-1])
ll = best([r for r in rows if r["bench"] == "llamacpp"], lambda r: r["model"])
print("\n| model | file MiB | prompt tok/s | prompt tok/s, 8-bit activations | decode tok/s | decode tok/s, 8-bit activations | peak RSS MiB |")
print("|---|---|---|---|---|---|---|")
for k, r in ours.items():
    print("| prunequant %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f |" % (k, r["file_mib"], r["prompt_tok_s"], r["prompt_int8_tok_s"], r["decode_tok_s"], r["decode_int8_tok_s"], r["peak_rss_mib"]))
for k, r in ll.items():
    print("| llama.cpp %s | %.0f | - | %.1f | - | %.1f | - |" % (k, r["file_mib"], r["prompt_tok_s"], r["decode_tok_s"]))
def ratio(a, b, key):
    return ours[a][key] / ll[b][key] if a in ours and b in ll else float("nan")
print("\nratios (ours / llama.cpp, same weights with F16 embeddings and output; --pure in brackets):")
def ratio2(a, ka, b, kb):
    return ours[a][ka] / ll[b][kb] if a in ours and b in ll else float("nan")
for a, b, ka, kb in [("q4", "Q4_0", "decode_tok_s", "decode_tok_s"), ("q8", "Q8_0", "decode_tok_s", "decode_tok_s"),
                     ("q4", "Q4_0", "decode_int8_tok_s", "decode_tok_s"), ("q8", "Q8_0", "decode_int8_tok_s", "decode_tok_s"),
                     ("q4", "Q4_0", "prompt_tok_s", "prompt_tok_s"), ("q4", "Q4_0", "prompt_int8_tok_s", "prompt_tok_s"),
                     ("hf-f16", "f16", "decode_tok_s", "decode_tok_s"), ("hf-f16", "f16", "prompt_tok_s", "prompt_tok_s")]:
    print("  %-7s vs %-5s %-18s %.2fx [%.2fx]" % (a, b, ka, ratio2(a, ka, b, kb), ratio2(a, ka, b + "-pure", kb) if b != "f16" else float("nan")))
if "p24q4" in ours and "q4" in ours:
    print("  2:4+q4 vs q4 decode %.2fx, with 8-bit activations %.2fx" % (ours["p24q4"]["decode_tok_s"] / ours["q4"]["decode_tok_s"],
          ours["p24q4"]["decode_int8_tok_s"] / ours["q4"]["decode_int8_tok_s"]))
for r in rows:
    if r["bench"] == "decode_pair":
        print("  2:4+q4 vs q4 decode in turns, one process: %.2fx, with 8-bit activations %.2fx" % (r["ratio"], r["ratio_int8"]))
for r in rows:
    if r["bench"] == "rss":
        print("  ppl on q4: peak RSS %.0f MiB = %.3f x (file + KV cache + activations = %.0f MiB)" % (r["peak_rss_mib"], r["ratio"], r["budget_mib"]))
PY
