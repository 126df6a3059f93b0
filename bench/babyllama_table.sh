#!/usr/bin/env bash
# The compression table of the paper's kind on a real trained model: BabyLlama (model5000.bin,
# tok105), calibration on the first 400 kB of TinyStories val (32 x 256 windows, seed 0),
# perplexity (gptq protocol, ctx 256) on the rest; group 32 asym. RTN/GPTQ 2-8 bit, the
# pruning methods at 50 % and 2:4, the joint modes at 25 %+4, 2:8+4, 50 %+4, 2:4+4 bits
# (SparseGPT as the pruner). Prints one markdown row per config with ppl, ACr and bpw.
# Usage: bench/babyllama_table.sh [build/prunequant] [../shared/data]   (about 10 minutes)
set -euo pipefail
BIN=${1:-build/prunequant}
DATA=${2:-../shared/data}
M=$DATA/models/babyllama-tok105/model5000.bin
TOK=$DATA/models/babyllama-tok105/tok105.model
TEXT=$DATA/text/tinystories/tinystories_val.txt
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
head -c 400000 "$TEXT" > "$T/calib.txt"
tail -c +400001 "$TEXT" > "$T/rest.txt"
ppl() { "$BIN" ppl "$1" --tokenizer "$TOK" --text "$T/rest.txt" --ctx 256 --json 2>/dev/null |
        python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'; }
acr() { "$BIN" info "$1" --sparsity --json 2>/dev/null |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f | %.2f" % (j["acr"], j["bpw"]))'; }
row() { # name args...
    local name=$1; shift
    "$BIN" compress "$M" --tokenizer "$TOK" --calib "$T/calib.txt" --nsamples 32 --seqlen 256 --seed 0 \
        --quiet --out "$T/m" "$@"
    echo "| $name | $(ppl "$T/m") | $(acr "$T/m") |"
    rm -rf "$T/m"
}
echo "| config | ppl | ACr | bpw |"
echo "|---|---|---|---|"
echo "| dense (f32) | $(ppl "$M") | - | - |"
for b in 2 3 4 5 6 7 8; do
    row "RTN $b-bit" --quant rtn --bits $b --group 32 --asym
    row "GPTQ $b-bit" --quant gptq --bits $b --group 32 --asym
done
for p in magnitude wanda sparsegpt; do
    row "$p 50%" --prune $p --sparsity 0.5
    row "$p 2:4" --prune $p --pattern 2:4
done
while IFS='|' read -r label flag val; do
    for j in a b fused; do
        row "$label + GPTQ 4-bit, joint $j" --prune sparsegpt "$flag" "$val" --quant gptq --bits 4 --group 32 --asym --joint $j
    done
done <<'CFG'
25%|--sparsity|0.25
2:8|--pattern|2:8
50%|--sparsity|0.5
2:4|--pattern|2:4
CFG
