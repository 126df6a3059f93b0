#!/usr/bin/env bash
# eval reads the compression metrics of a packed folder from the folder itself: TCr from the
# recipe its config.json declares (25%+4-bit and 2:8+4-bit = 0.8125, 2:4+4-bit = 0.875,
# 3-bit = 0.8125, 4-bit = 0.75, exactly), ACr and bpw from the bytes of its packed linear
# tensors (the same numbers info --sparsity prints), beside the scores. BabyLlama (its
# hidden size 352 is a multiple of 8, so 2:8 applies to every linear).
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
DATA=${PQ_DATA:?PQ_DATA not set}
M=$DATA/models/babyllama-tok105/model5000.bin
TOK=$DATA/models/babyllama-tok105/tok105.model
TEXT=$DATA/text/tinystories/tinystories_val.txt
if [ ! -f "$M" ] || [ ! -f "$TEXT" ]; then echo "FAIL: BabyLlama or tinystories missing under $PQ_DATA" >&2; exit 1; fi
. "$(dirname "$0")/lib.sh"

head -c 100000 "$TEXT" > "$T/calib.txt"
tail -c 20000 "$TEXT" > "$T/eval.txt"
C=(--calib "$T/calib.txt" --tokenizer "$TOK" --nsamples 4 --seqlen 64 --group 32 --quiet)
while read -r name tcr args; do
    # shellcheck disable=SC2086
    if ! "$BIN" compress "$M" "${C[@]}" --out "$T/$name" $args 2> "$T/$name.err"; then
        bad "compress $name: $(cat "$T/$name.err")"
        continue
    fi
    "$BIN" eval "$T/$name" --base "$M" --base-tokenizer "$TOK" --tasks "ppl:$T/eval.txt" --json "$T/$name.json" \
        > "$T/$name.txt" 2> "$T/$name.err" || { bad "eval $name: $(cat "$T/$name.err")"; continue; }
    "$BIN" info "$T/$name" --sparsity --json > "$T/$name.sp.json" 2>> "$T/$name.err" || { bad "info $name"; continue; }
    python3 - "$T/$name.json" "$T/$name.sp.json" "$tcr" <<'PY' && ok || bad "metrics of $name: $(cat "$T/$name.json")"
import json, sys
j = json.load(open(sys.argv[1]))["metrics"]
sp = json.load(open(sys.argv[2]))
want = float(sys.argv[3])
assert j["tcr"] == want, ("tcr", j["tcr"], want)
assert abs(j["acr"] - sp["acr"]) < 1e-9 and abs(j["bpw"] - sp["bpw"]) < 1e-9, (j, sp["acr"], sp["bpw"])
assert 0 < j["acr"] < 1 and 2 < j["bpw"] < 10, j
PY
    grep -q "TCr $tcr" "$T/$name.txt" && ok || bad "human table of $name lacks TCr $tcr: $(grep TCr "$T/$name.txt")"
done <<'CFG'
s25q4 0.8125 --prune sparsegpt --sparsity 0.25 --quant gptq --bits 4
p28q4 0.8125 --prune sparsegpt --pattern 2:8 --quant gptq --bits 4
p24q4 0.8750 --prune sparsegpt --pattern 2:4 --quant gptq --bits 4
q3 0.8125 --quant gptq --bits 3
q4 0.7500 --quant gptq --bits 4
CFG
# flags still override what the folder declares
"$BIN" eval "$T/q4" --tasks "ppl:$T/eval.txt" --bits 8 --json "$T/o.json" > /dev/null 2>&1 &&
    python3 -c "import json,sys; sys.exit(0 if json.load(open('$T/o.json'))['metrics']['tcr'] == 0.5 else 1)" &&
    ok || bad "--bits 8 overrides the declared bits"
echo "cli_metrics: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
