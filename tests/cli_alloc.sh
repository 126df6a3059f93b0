#!/usr/bin/env bash
# allocate on BabyLlama at the real bytes of uniform GPTQ 4-bit g32 (from info --sparsity): the
# recipe it writes, compressed, stores at most the budget and at least 99 % of it, exactly the
# bytes allocate counted (its candidates here are all exact: quantization and 2:4), declares the
# parameter-weighted bits, shows the allocation in info's heat map, and has a lower held-out
# perplexity than the uniform model. Usage errors and a budget below the cheapest candidates.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
. "$(dirname "$0")/lib.sh"
babyllama

head -c 200000 "$TEXT" > "$T/calib.txt"
tail -c 60000 "$TEXT" > "$T/eval.txt"
C=(--calib "$T/calib.txt" --tokenizer "$TOK" --nsamples 16 --seqlen 128 --quiet)
"$BIN" compress "$M" "${C[@]}" --bits 4 --group 32 --out "$T/uniform" 2> "$T/err" || bad "compress uniform: $(cat "$T/err")"
budget=$("$BIN" info "$T/uniform" --sparsity --json |
    python3 -c "import json,sys; print(sum(l['bytes'] for l in json.load(sys.stdin)['layers']))")
if ! "$BIN" allocate "$M" "${C[@]}" --budget-bytes "$budget" --candidates "prune=none,2:4;bits=2..8;group=32,-1" \
    --out "$T/recipe.json" --json > "$T/alloc.json" 2> "$T/err"; then
    bad "allocate: $(cat "$T/err")"
fi
"$BIN" compress "$M" "${C[@]}" --recipe "$T/recipe.json" --out "$T/alloc" 2> "$T/err" ||
    bad "compress --recipe: $(cat "$T/err")"
"$BIN" info "$T/alloc" --sparsity --json > "$T/sp.json" 2> "$T/err" || bad "info: $(cat "$T/err")"
python3 - "$budget" "$T/alloc.json" "$T/sp.json" "$T/alloc/config.json" <<'PY' && ok || bad "allocation bytes"
import json, sys
budget = int(sys.argv[1])
a, sp, cfg = (json.load(open(p)) for p in sys.argv[2:5])
real = sum(l["bytes"] for l in sp["layers"])
assert a["budget"] == budget and a["bytes"] <= budget, (a["bytes"], budget)
assert 0.99 * budget <= real <= budget, (real, budget)
assert real == a["bytes"], ("all candidates are exact", real, a["bytes"])
assert a["lower_bound"] <= a["damage"], a
choices = {l["choice"] for l in a["linears"]}
assert len(choices) > 1, choices  # an allocation, not a uniform recipe
# the grid shows each linear as stored: the choices allocate printed
grid = [c for row in sp["grid"] for c in row]
want = [l["choice"].replace("g128", "g-1") for l in a["linears"]]
assert grid == want, (grid, want)
q = cfg["quantization_config"]
n = sum(l["rows"] * l["cols"] for l in sp["layers"])
kept = sum(l["kept"] for l in sp["layers"])
bits = sum(l["kept"] * l["bits"] for l in sp["layers"]) / kept
assert abs(q["param_weighted"]["bits"] - bits) < 1e-9 and abs(q["param_weighted"]["sparsity"] - (1 - kept / n)) < 1e-3, q
assert len(q["overrides"]) >= 1, q
print("budget %d bytes: allocated %d (%.2f%%), %d distinct choices, %.3f bits per kept weight"
      % (budget, real, 100.0 * real / budget, len(choices), bits))
PY
"$BIN" info "$T/alloc" --sparsity > "$T/sp.txt" 2>&1 && grep -q "^4 " "$T/sp.txt" && grep -q "^block " "$T/sp.txt" &&
    ok || bad "info --sparsity prints the block x linear grid: $(tail -7 "$T/sp.txt")"
pu=$("$BIN" ppl "$T/uniform" --text "$T/eval.txt" --ctx 256 2> /dev/null | awk '/^ppl/ {print $2}')
pa=$("$BIN" ppl "$T/alloc" --text "$T/eval.txt" --ctx 256 2> /dev/null | awk '/^ppl/ {print $2}')
echo "held-out ppl: uniform 4-bit g32 $pu, allocated $pa"
python3 -c "import sys; sys.exit(0 if 0 < float('$pa') < float('$pu') else 1)" 2> /dev/null && ok ||
    bad "allocated ppl $pa is not below uniform $pu"

# usage: one budget; a bad candidate list is a usage error (2); a budget below the cheapest
# candidates is refused before any work (1), naming both
"$BIN" allocate "$M" "${C[@]}" --out "$T/x.json" > /dev/null 2>&1
[ $? -eq 2 ] && ok || bad "allocate without a budget should exit 2"
"$BIN" allocate "$M" "${C[@]}" --budget-bpw 4 --budget-bytes 100 --out "$T/x.json" > /dev/null 2>&1
[ $? -eq 2 ] && ok || bad "allocate with two budgets should exit 2"
"$BIN" allocate "$M" "${C[@]}" --budget-bpw 4 --candidates "bits=3..9" --out "$T/x.json" > /dev/null 2> "$T/err"
[ $? -eq 2 ] && grep -q -- "--candidates: bits" "$T/err" && ok || bad "bad candidates: $(cat "$T/err")"
"$BIN" allocate "$M" "${C[@]}" --budget-bpw 1.5 --out "$T/x.json" > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "below the cheapest" "$T/err" && [ ! -e "$T/x.json" ] && ok ||
    bad "a budget below the cheapest candidates: $(cat "$T/err")"
# the recipe's budget_bytes holds the real bytes: 1000 bytes less and compress writes nothing
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['budget_bytes']=$budget-1000; json.dump(r, open(sys.argv[2],'w'))" \
    "$T/recipe.json" "$T/tight.json"
"$BIN" compress "$M" "${C[@]}" --recipe "$T/tight.json" --out "$T/tight" > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "over the recipe's budget" "$T/err" && [ ! -e "$T/tight" ] && ok ||
    bad "a recipe over its budget_bytes: $(cat "$T/err")"
# a recipe whose override matches no linear is refused (a typo, as --skip)
printf '{"bits": 4, "overrides": [{"match": "mlp\\\\.dwn_proj", "bits": 6}]}' > "$T/typo.json"
"$BIN" compress "$M" "${C[@]}" --recipe "$T/typo.json" --out "$T/typo" > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "matches no linear" "$T/err" && [ ! -e "$T/typo" ] && ok ||
    bad "an override matching nothing: $(cat "$T/err")"
# a sweep with "allocate": the allocated config runs at the real bytes of its config, and the
# report compares the two on the same windows (ppl, KLD: uniform - allocated, paired intervals)
cat > "$T/grid.json" <<'J'
{"quant": "gptq", "bits": 4, "group": 32, "allocate": "prune=none;bits=3..6;group=32,-1"}
J
if "$BIN" sweep "$M" --tokenizer "$TOK" --grid "$T/grid.json" --calib "$T/calib.txt" --nsamples 8 --seqlen 128 \
    --tasks "ppl:$T/eval.txt,kld:$T/eval.txt" --limit 12 --db "$T/s.sqlite" > /dev/null 2> "$T/err"; then
    ok
else
    bad "sweep with allocate: $(tail -3 "$T/err")"
fi
"$BIN" report --db "$T/s.sqlite" --json > "$T/rep.json" 2> "$T/err" && "$BIN" report --db "$T/s.sqlite" --text > "$T/rep.txt" &&
    python3 - "$T/rep.json" "$T/rep.txt" <<'PY' && ok || bad "report of the allocated pair: $(cat "$T/err")"
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r["allocated"]) == 1, r["allocated"]
a = r["allocated"][0]
assert a["config"].startswith(a["uniform"] + ".") and 0.99 * a["budget_bytes"] <= a["bytes"] <= a["budget_bytes"], a
for k in ("ppl", "kld"):
    d = a[k]
    assert d["difference"] == d["uniform"] - d["allocated"] and len(d["difference_ci"]) == 2, d
    assert d["difference_ci"][0] <= d["difference"] <= d["difference_ci"][1], d
kinds = {x["config"]: x["kind"] for x in r["runs"]}
assert kinds[a["config"]] == "allocated" and kinds[a["uniform"]] == "quant", kinds
assert "allocated per linear vs uniform" in open(sys.argv[2]).read()
PY
echo "cli_alloc: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
