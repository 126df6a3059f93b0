#!/usr/bin/env bash
# prunequant compress on stories260K: GPTQ 4-bit g32 packed output loads in ppl and generate
# with a perplexity near the dense model's; a SparseGPT 2:4 output passes info --sparsity;
# recipe files, bad recipes and atomic output.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
DATA=${PQ_DATA:?PQ_DATA not set}
M=$DATA/models/stories260K/stories260K.bin
TOK=$DATA/models/stories260K/tok512.bin
TEXT=$DATA/text/tinystories/tinystories_val.txt
if [ ! -f "$M" ] || [ ! -f "$TEXT" ]; then echo "FAIL: stories260K or tinystories missing under $PQ_DATA" >&2; exit 1; fi
. "$(dirname "$0")/lib.sh"

head -c 400000 "$TEXT" > "$T/calib.txt"
tail -c 60000 "$TEXT" > "$T/eval.txt"
C=(--calib "$T/calib.txt" --tokenizer "$TOK" --nsamples 8 --seqlen 128 --quiet)

check "$BIN" compress "$M" "${C[@]}" --out "$T/gptq" --quant gptq --bits 4 --group 32 --asym --report "$T/rep.jsonl"
check test -f "$T/gptq/config.json" -a -f "$T/gptq/tokenizer.model" -a -f "$T/gptq/model.safetensors.index.json"
check grep -q '"packed-v2"' "$T/gptq/config.json"
check grep -q '"model.layers.0.self_attn.q_proj.qcodes"' "$T/gptq/model.safetensors.index.json"
[ "$(wc -l < "$T/rep.jsonl")" -eq 35 ] && ok || bad "report lines"
check grep -q '"damping"' "$T/rep.jsonl"
# GGUF output: each report line names the linear's ggml type in its recipe and gguf_type
check "$BIN" compress "$M" "${C[@]}" --out "$T/q4.gguf" --format gguf --gguf-type Q4_1 --prune sparsegpt \
    --pattern 2:4 --report "$T/rep_gguf.jsonl"
python3 - "$T/rep_gguf.jsonl" <<'PY' && ok || bad "GGUF report lines: $(head -1 "$T/rep_gguf.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 35, len(rows)
for r in rows:
    if "gguf_type" not in r:  # a row that does not split into blocks of 32 stays float: pruned only
        assert r["recipe"] == "sparsegpt 2:4" and r["cols"] % 32, r
        continue
    assert r["gguf_type"] == "Q4_1" and r["recipe"] == "sparsegpt 2:4 + gptq onto Q4_1 joint a", r
    # Q4_1 has no exact zero: the pruned weights are stored as the nearest code
    assert r["pruned_nonzero"] > 0 and r["sparsity"] < 0.5, r
PY

ppl() { "$BIN" ppl "$1" --tokenizer "$TOK" --text "$T/eval.txt" --ctx 256 --json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])'; }
pd=$(ppl "$M")
pq=$(ppl "$T/gptq")
python3 -c "import math,sys; d,q=float('$pd'),float('$pq'); sys.exit(0 if math.isfinite(q) and q < 1.3*d else 1)" \
    && ok || bad "ppl dense $pd packed $pq"
# a packed model has the parameters of the dense one (not the bytes of its codes)
np() { "$BIN" info "$1" --tokenizer "$TOK" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_params"])'; }
[ "$(np "$T/gptq")" = "$(np "$M")" ] && ok || bad "n_params packed $(np "$T/gptq") vs dense $(np "$M")"
"$BIN" info "$T/gptq" | grep -q "35 linears packed" && ok || bad "info names the packed linears"
# dense bf16 output (what other tools load): the weights are the packed ones rounded to bf16
check "$BIN" compress "$M" "${C[@]}" --out "$T/dense16" --quant gptq --bits 4 --group 32 --asym --format dense --dtype bf16
check grep -q '"torch_dtype":[[:space:]]*"bfloat16"' "$T/dense16/config.json"
pb=$(ppl "$T/dense16")
python3 -c "import sys; a,b=float('$pq'),float('$pb'); sys.exit(0 if abs(a-b) < 0.02*a else 1)" && ok || bad "ppl packed $pq vs dense bf16 $pb"
out=$("$BIN" generate "$T/gptq" --prompt "Once upon a time" -n 20 2>/dev/null)
[ -n "$out" ] && ok || bad "generate on the packed output"

# a recipe file with a flag overriding it; 2:4 pattern everywhere
cat > "$T/r.json" <<'J'
{"prune": "sparsegpt", "pattern": "2:4", "quant": "none", "nsamples": 4, "seqlen": 64, "true_sequential": true}
J
check "$BIN" compress "$M" "${C[@]}" --recipe "$T/r.json" --nsamples 8 --out "$T/s24"
check grep -q '"2:4"' "$T/s24/config.json"
check grep -q '"nsamples":[[:space:]]*8' "$T/s24/config.json"
"$BIN" info "$T/s24" --sparsity --json > "$T/sp.json" && ok || bad "info --sparsity"
python3 - "$T/sp.json" <<'PY' && ok || bad "2:4 pattern in info --sparsity"
import json, sys
j = json.load(open(sys.argv[1]))
assert len(j["layers"]) == 35 and j["packed"], j
assert all(l["pattern"] == "2:4" and l["pattern_ok"] for l in j["layers"]), j
PY
"$BIN" info "$T/s24" --sparsity | grep -q '^ACr' && ok || bad "info --sparsity text"

# bad recipes: one-line errors, exit 1, nothing written
for args in "--bits 1" "--pattern 3:2 --prune magnitude" "--group 48"; do
    # shellcheck disable=SC2086
    "$BIN" compress "$M" "${C[@]}" --out "$T/bad" $args 2> "$T/err" && bad "accepted $args"
    [ "$(wc -l < "$T/err")" -eq 1 ] && ok || bad "error of $args: $(cat "$T/err")"
done
check test ! -e "$T/bad"
"$BIN" compress "$M" "${C[@]}" --out "$T/bad" --seqlen 100000 2>/dev/null && bad "huge seqlen accepted"
check test ! -e "$T/bad"

echo "cli_compress: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
