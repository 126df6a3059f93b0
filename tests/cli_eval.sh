#!/usr/bin/env bash
# CLI checks of the evaluation stage: tasks list (every task file loads, counts printed),
# make-cloze, stories260K on a 300-item TinyStories cloze task (accuracy > 0.40), a model
# evaluated against itself (KLD 0, same top 100%, Sr 1), JSON keys, malformed-line errors.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
DATA=${PQ_DATA:?PQ_DATA not set}
TMP=$(mktemp -d /tmp/pq_cli_eval.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# eval and tasks must be wired into the CLI
"$BIN" eval --help >/dev/null 2>&1 || { echo "FAIL: prunequant eval --help"; exit 1; }

M=$DATA/models/stories260K/stories260K.bin
T=$DATA/models/stories260K/tok512.bin

# 1. tasks list: every built-in task loads (hellaswag straight from the shipped .bz2)
"$BIN" tasks list --data-dir "$DATA" --cache-dir "$TMP" >"$TMP/list.txt" 2>&1
rc=$?
cat "$TMP/list.txt"
[ $rc -eq 0 ] && ok "tasks list" || bad "tasks list exited $rc"
for t in hellaswag:10042 lambada:5153 arc_easy:2376 arc_challenge:1172 piqa:1838 winogrande:1267 boolq:3270 mmlu:14042 \
    mmlu_pro:400 gsm8k:1319 math:500 bbh:6511 bbh:navigate:250; do
    name=${t%:*}
    n=${t##*:}
    grep -Eq "^$name +$n " "$TMP/list.txt" && ok "$name has $n items" || bad "$name count (want $n)"
done

# 2. malformed lines name the file and line
printf '{"context": "a", "choices": ["x"], "gold": 0}\n{"context": "b", "choices": ["x"], "gold": 3}\n' >"$TMP/bad.jsonl"
out=$("$BIN" eval "$M" --tokenizer "$T" --tasks "mc:$TMP/bad.jsonl" --no-cache 2>&1)
echo "$out" | grep -q "bad.jsonl:2:" && ok "malformed line error: $out" || bad "malformed line error: $out"

# 3. cloze task from TinyStories val; stories260K scores above chance (0.25)
"$BIN" tasks make-cloze "$DATA/text/tinystories/tinystories_val.txt" --out "$TMP/cloze.jsonl" --choices 4 --seed 0 \
    --limit 300 || bad "make-cloze"
[ "$(wc -l <"$TMP/cloze.jsonl")" -eq 300 ] && ok "300 cloze items" || bad "cloze item count"
"$BIN" tasks make-cloze "$DATA/text/tinystories/tinystories_val.txt" --out "$TMP/cloze2.jsonl" --choices 4 --seed 0 \
    --limit 300 >/dev/null && cmp -s "$TMP/cloze.jsonl" "$TMP/cloze2.jsonl" && ok "cloze deterministic" ||
    bad "cloze not deterministic"
"$BIN" eval "$M" --tokenizer "$T" --tasks "mc:$TMP/cloze.jsonl" --no-cache --threads 1 --json "$TMP/cloze.json" -q ||
    bad "eval cloze"
python3 - "$TMP/cloze.json" <<'EOF' && ok "stories260K cloze accuracy" || bad "stories260K cloze accuracy"
import json, sys
r = json.load(open(sys.argv[1]))
t = next(iter(r["tasks"].values()))
acc, accn = t["score"], t["acc_norm"]["score"]
print(f"stories260K cloze: acc {acc:.4f} +/- {t['stderr']:.4f}, acc_norm {accn:.4f}, n {t['n']}")
assert t["n"] == 300 and acc > 0.35 and accn > 0.40, (acc, accn)
EOF

# 4. the model against itself: KLD 0, same top 100%, retention and Sr exactly 1; the
#    second run reads the base results from the cache
head -40 "$TMP/cloze.jsonl" >"$TMP/c40.jsonl"
for run in 1 2; do
    "$BIN" eval "$M" --tokenizer "$T" --base "$M" --base-tokenizer "$T" --cache-dir "$TMP/cache" --threads 1 -q \
        --tasks "mc:$TMP/c40.jsonl,ppl:text/tinystories/tinystories_val.txt,kld:text/tinystories/tinystories_val.txt" \
        --data-dir "$DATA" --limit 40 --ctx 256 --json "$TMP/self$run.json" >"$TMP/self$run.txt" || bad "self eval $run"
done
cat "$TMP/self1.txt"
python3 - "$TMP/self1.json" "$TMP/self2.json" <<'EOF' && ok "self evaluation" || bad "self evaluation"
import json, sys
for i, path in enumerate(sys.argv[1:]):
    r = json.load(open(path))
    k, m = r["kld"], r["metrics"]
    assert abs(k["mean"]) <= 1e-6 and k["same_top"] == 1.0, k
    for key in ("stderr", "p99", "p95", "median", "p99_9", "p90", "p10", "p5", "p1", "ln_ppl_ratio", "delta_p"):
        assert key in k, key
    for name, t in r["tasks"].items():
        for key in ("metric", "score", "stderr", "base_score", "retention", "protocol"):
            assert key in t, (name, key)
        assert t["retention"] == 1.0, (name, t)
        assert t["retention_ci"] == [1, 1], (name, t["retention_ci"])  # paired: exactly [1, 1], also from the cache
        assert t["base_cached"] == (i == 1), (name, t["base_cached"])
    for key in ("tcr", "acr", "bpw", "sparsity", "bits", "sr", "srcr"):
        assert key in m, key
    assert m["sr"] == 1.0 and m["srcr"] == 1.0 and m["tcr"] == 0 and m["sparsity"] == 0 and m["bits"] == 16, m
    assert m["sr_ci"] == [1, 1] and "bootstrap" in m["interval_method"], m
print("self: KLD", k["mean"], "same_top", k["same_top"], "Sr", m["sr"])
EOF
# chance-normalised retention (leaderboard style), stated in the protocol
"$BIN" eval "$M" --tokenizer "$T" --base "$M" --base-tokenizer "$T" --no-cache --threads 1 -q --normalize chance \
    --tasks "mc:$TMP/c40.jsonl" --data-dir "$DATA" --limit 40 --json "$TMP/norm.json" >"$TMP/norm.txt" || bad "eval --normalize chance"
grep -q "retention chance-normalised (k = 4)" "$TMP/norm.txt" && ok "chance normalisation stated" || bad "chance normalisation not stated"
python3 -c 'import json, sys; m = json.load(open(sys.argv[1]))["metrics"]; assert m["sr"] == m["sr_norm"] and m["sr_ci"] in (None, [1, 1]), m' \
    "$TMP/norm.json" && ok "normalised Sr" || bad "normalised Sr"
"$BIN" eval "$M" --normalize leaderboard --tasks arc_easy 2>/dev/null; [ $? -eq 2 ] && ok "bad --normalize" || bad "bad --normalize exit"
# --log-samples: one lm-eval-style record per evaluated item, the file only when the run succeeds
"$BIN" eval "$M" --tokenizer "$T" --no-cache --threads 1 -q --tasks "mc:$TMP/c40.jsonl,gsm8k" --data-dir "$DATA" \
    --limit 5 --max-gen 4 --log-samples "$TMP/samples.jsonl" >/dev/null || bad "eval --log-samples"
python3 - "$TMP/samples.jsonl" <<'EOF' && ok "log samples" || bad "log samples"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 10, len(rows)
for r in rows[:5]:
    assert {"task", "doc_id", "prompt", "choices", "loglikelihoods", "pred", "gold", "acc"} <= set(r), r
    assert len(r["choices"]) == len(r["loglikelihoods"]) == 4 and r["acc"] == (r["pred"] == r["gold"]), r
for r in rows[5:]:
    assert r["task"] == "gsm8k" and {"prompt", "output", "target", "acc"} <= set(r), r
EOF
"$BIN" eval "$M" --tokenizer "$T" --no-cache -q --tasks "mc:$TMP/c40.jsonl,nosuchtask" --log-samples "$TMP/s2.jsonl" \
    >/dev/null 2>&1 && bad "eval with a bad task" || ok "bad task fails"
ls "$TMP"/s2.jsonl* >/dev/null 2>&1 && bad "a failed eval left $TMP/s2.jsonl*" || ok "no samples file after a failure"

# 5. usage errors
"$BIN" eval "$M" --tokenizer "$T" --tasks "kld:text/tinystories/tinystories_val.txt" --data-dir "$DATA" --no-cache \
    >/dev/null 2>"$TMP/err.txt" && bad "kld without --base accepted" || ok "kld without --base: $(cat "$TMP/err.txt")"
"$BIN" eval "$M" --tokenizer "$T" --tasks nosuch --data-dir "$DATA" --no-cache >/dev/null 2>"$TMP/err.txt" &&
    bad "unknown task accepted" || ok "unknown task: $(head -c 120 "$TMP/err.txt")"
exit $fail
