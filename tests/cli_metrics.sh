#!/usr/bin/env bash
# eval reads the compression metrics of a packed folder from the folder itself: TCr from the
# recipe its config.json declares (25%+4-bit and 2:8+4-bit = 0.8125, 2:4+4-bit = 0.875,
# 3-bit = 0.8125, 4-bit = 0.75, exactly), ACr and bpw from the bytes of its packed linear
# tensors (the same numbers info --sparsity prints), beside the scores. BabyLlama (its
# hidden size 352 is a multiple of 8, so 2:8 applies to every linear). info --sparsity's parts
# sum to the bytes, and its information bound is the kept codes + the mask's bound (log2 C(M, N)
# bits per N:M cell; per row log2 C(cols, kept) + the count) + scales and zeros. 25% unstructured
# + 4-bit stores its mask coded (packed-v2 .kmask): at most 4.60 bpw, every layer within 2% of
# its bound.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
. "$(dirname "$0")/lib.sh"
babyllama

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
    python3 - "$T/$name.json" "$T/$name.sp.json" "$tcr" "$name" <<'PY' && ok || bad "metrics of $name: $(cat "$T/$name.json")"
import json, sys
j = json.load(open(sys.argv[1]))["metrics"]
sp = json.load(open(sys.argv[2]))
want = float(sys.argv[3])
assert j["tcr"] == want, ("tcr", j["tcr"], want)
assert abs(j["acr"] - sp["acr"]) < 1e-9 and abs(j["bpw"] - sp["bpw"]) < 1e-9, (j, sp["acr"], sp["bpw"])
assert 0 < j["acr"] < 1 and 2 < j["bpw"] < 10, j
# the stored bytes part by part, and the information bound (info --sparsity)
from math import comb, log2, lgamma, log
bound = 0
for L in sp["layers"]:
    n, rows, cols, kept = L["rows"] * L["cols"], L["rows"], L["cols"], L["kept"]
    assert sum(L["parts"].values()) == L["bytes"] and L["bits"] == (3 if sys.argv[4] == "q3" else 4), L
    assert L["parts"]["codes"] == max(kept, 8) * L["bits"] // 8 + (max(kept, 8) * L["bits"] % 8 > 0), L
    if L["parts"]["mask"] == 0:
        assert L["mask_bound"] == 0 and kept == n, L
    elif L["pattern"] and L["pattern_ok"]:  # N:M: log2 C(M, M-N) bits per cell
        N, M = map(int, L["pattern"].split(":"))
        assert abs(L["mask_bound"] - rows * cols / M * log2(comb(M, M - N)) / 8) < 1e-6 * L["mask_bound"], L
    else:  # per row log2 C(cols, kept) + the count: at most n H(s) + rows log2(cols + 1) bits
        s_ = 1 - kept / n
        H = -(s_ * log2(s_) + (1 - s_) * log2(1 - s_))
        assert 0 < L["mask_bound"] <= (n * H + rows * log2(cols + 1)) / 8, (L, n * H / 8)
    want = kept * L["bits"] / 8 + L["mask_bound"] + L["parts"]["scales"] + L["parts"]["zeros"] + L["parts"]["g_idx"]
    assert abs(L["bound_bytes"] - want) < 1e-6 * want and L["bound_bytes"] <= L["bytes"] + 1e-9, (L, want)
    bound += L["bound_bytes"]
params = sum(L["rows"] * L["cols"] for L in sp["layers"])
assert abs(sp["bound_bpw"] - 8 * bound / params) < 1e-9, sp["bound_bpw"]
worst = max(L["bytes"] / L["bound_bytes"] for L in sp["layers"])
if sys.argv[4] == "s25q4":  # unstructured: packed-v2 codes the mask (.kmask) near its bound
    assert sp["bpw"] <= 4.60, sp["bpw"]
    for L in sp["layers"]:
        assert L["bytes"] <= 1.02 * L["bound_bytes"], L
        assert 0 < L["parts"]["mask"] < L["rows"] * ((L["cols"] + 7) // 8), L  # smaller than a bitmask
print("%-6s stored %.3f bpw, information bound %.3f bpw (worst layer %.2f%% over its bound)"
      % (sys.argv[4], sp["bpw"], sp["bound_bpw"], 100 * (worst - 1)))
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
