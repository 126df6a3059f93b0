#!/usr/bin/env bash
# prunequant sweep / recommend / report on stories260K: a real 2-config sweep (4-bit and
# 25% + 4-bit, the iso-TCr pair of 75% / 81.25%), resume (skips done configs, redoes a
# config left 'running' by a crash, refuses a non-empty db without --resume), Ctrl-C
# (exit 130, nothing half-done), recommend (recipe usable by compress --recipe) and report.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
DATA=${PQ_DATA:?PQ_DATA not set}
M=$DATA/models/stories260K/stories260K.bin
TOK=$DATA/models/stories260K/tok512.bin
TEXT=$DATA/text/tinystories/tinystories_val.txt
if [ ! -f "$M" ] || [ ! -f "$TEXT" ]; then echo "FAIL: stories260K or tinystories missing under $PQ_DATA" >&2; exit 1; fi
if ! "$BIN" sweep --help > /dev/null 2>&1; then
    echo "FAIL: '$BIN sweep' is not a command (cli/main.c must dispatch sweep/recommend/report)" >&2
    exit 1
fi
PY=python3
command -v $PY > /dev/null || { echo "FAIL: python3 is needed to inspect the database" >&2; exit 1; }
. "$(dirname "$0")/lib.sh"
# q DB SQL: runs a query (committed), prints rows as a|b|c
q() {
    $PY -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rows = c.execute(sys.argv[2]).fetchall()
c.commit()
print("\n".join("|".join(map(str, r)) for r in rows))' "$@"
}

head -c 200000 "$TEXT" > "$T/calib.txt"
tail -c 20000 "$TEXT" > "$T/eval.txt"
cat > "$T/grid.json" <<'J'
{"prune": ["none", "sparsegpt"], "sparsity": [0.25, 0.5], "quant": ["none", "gptq"], "bits": [3, 4]}
J
S=(--grid "$T/grid.json" --tokenizer "$TOK" --calib "$T/calib.txt" --tasks "ppl:$T/eval.txt,arc_easy"
   --data-dir "$DATA" --limit 10 --nsamples 4 --seqlen 64 --tcr 0.75,0.8125)

# dry run: the TCr filter leaves 3-bit, 4-bit and 25% + 4-bit
n=$("$BIN" sweep "${S[@]}" --dry-run 2>/dev/null | wc -l)
[ "$n" -eq 3 ] && ok || bad "dry run lists $n configs, expected 3"
cat > "$T/grid2.json" <<'J'
{"prune": ["none", "sparsegpt"], "sparsity": [0.25], "quant": ["gptq"], "bits": [4]}
J
G2=(--grid "$T/grid2.json" --tokenizer "$TOK" --calib "$T/calib.txt" --tasks "ppl:$T/eval.txt,arc_easy"
    --data-dir "$DATA" --limit 10 --nsamples 4 --seqlen 64)
DB=$T/s.sqlite
start=$(date +%s)
"$BIN" sweep "$M" "${G2[@]}" --db "$DB" --keep-models "$T/models" 2> "$T/err1"
rc=$?
[ $rc -eq 0 ] && ok || { bad "sweep rc $rc"; cat "$T/err1" >&2; }
grep -q "2/2 configs" "$T/err1" && grep -q "ETA" "$T/err1" && ok || bad "progress with ETA on stderr"
[ "$(q "$DB" "select count(*) from runs where status='done'")" = 3 ] && ok || bad "2 done runs + base"
[ "$(q "$DB" "select count(*) from scores")" = 6 ] && ok || bad "2 scores per run"
q "$DB" "select round(tcr,6) from runs where config_hash!='base' order by tcr" | tr '\n' ' ' | grep -q "^0.75 0.8125 $" \
    && ok || bad "TCr of the runs"
$PY - "$DB" <<'PY' && ok || bad "stored metrics"
import sqlite3, sys, math
c = sqlite3.connect(sys.argv[1])
for h, tcr, acr, bpw, sr, srcr, b in c.execute("select config_hash, tcr, acr, bpw, sr, srcr, bytes from runs"):
    if h == 'base':
        continue
    assert 0.5 < acr < tcr and 3 < bpw < 8 and b > 0, (h, acr, bpw, b)
    assert 0.2 < sr < 2 and math.isfinite(srcr), (h, sr, srcr)
for t, r in c.execute("select task, retention from scores where config_hash != 'base'"):
    assert r is not None and 0 < r < 3, (t, r)
assert c.execute("select count(*) from scores where config_hash='base'").fetchone()[0] == 2
assert c.execute("select value from meta where key='protocol'").fetchone()[0]
PY
ls "$T/models" | grep -q '^[0-9a-f]\{16\}$' && ok || bad "--keep-models keeps <hash>/ folders"

# without --resume an existing database is refused; with it, done configs are skipped
"$BIN" sweep "$M" "${G2[@]}" --db "$DB" 2> "$T/err2" && bad "sweep onto a filled db without --resume" || ok
grep -q -- "--resume" "$T/err2" && ok || bad "message names --resume"
"$BIN" sweep "$M" "${G2[@]}" --db "$DB" --resume 2> "$T/err3" && ok || bad "resume rc"
grep -q "config 1/2" "$T/err3" && bad "resume recomputed a done config" || ok
# a different task list is another experiment
"$BIN" sweep "$M" "${G2[@]}" --tasks arc_easy --db "$DB" --resume 2> "$T/err4" && bad "resume with other tasks" || ok
grep -q "tasks" "$T/err4" && ok || bad "message names tasks"

# a crash mid-config leaves a 'running' row: resume redoes it, without duplicates
h=$(q "$DB" "select config_hash from runs where tcr > 0.8")
q "$DB" "update runs set status='running', sr=NULL where config_hash='$h'" > /dev/null
"$BIN" sweep "$M" "${G2[@]}" --db "$DB" --resume 2> "$T/err5" && ok || bad "resume after a crash"
grep -q "config 2/2 $h" "$T/err5" && ok || bad "the 'running' config was redone"
[ "$(q "$DB" "select count(*) from runs")" = 3 ] && [ "$(q "$DB" "select count(*) from scores")" = 6 ] \
    && ok || bad "no duplicates after resume"
[ "$(q "$DB" "select status from runs where config_hash='$h'")" = done ] && ok || bad "redone config is done"

# recommend
"$BIN" recommend --db "$DB" > "$T/rec.txt" && ok || bad "recommend"
grep -q "^SrCr" "$T/rec.txt" && ok || bad "recommend prints SrCr"
"$BIN" recommend --db "$DB" --tcr 0.8125 --json > "$T/rec.json" && ok || bad "recommend --tcr --json"
$PY - "$T/rec.json" <<'PY' && ok || bad "recommend --json is a recipe"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["prune"] == "sparsegpt" and j["sparsity"] == 0.25 and j["quant"] == "gptq" and j["bits"] == 4, j
assert list(j)[:3] == ["prune", "sparsity", "quant"] and j["nsamples"] == 4 and j["seqlen"] == 64, j
PY
"$BIN" recommend --db "$DB" --tcr 0.5 2> "$T/err6" && bad "recommend at a TCr with no run" || ok
grep -q "0.5" "$T/err6" && ok || bad "message names the TCr"
"$BIN" recommend --db "$DB" --min-sr 0.01 --json > /dev/null && ok || bad "recommend --min-sr"
"$BIN" recommend --db "$DB" --max-bytes 1 2> /dev/null && bad "recommend --max-bytes 1" || ok
"$BIN" recommend --db "$T/missing.sqlite" 2> /dev/null && bad "recommend on a missing db" || ok
[ ! -e "$T/missing.sqlite" ] && ok || bad "recommend created a db"
check "$BIN" compress "$M" --tokenizer "$TOK" --calib "$T/calib.txt" --recipe "$T/rec.json" --out "$T/rec_model" --quiet
check test -f "$T/rec_model/config.json"
# ... and evaluating that model reproduces the Sr the database holds for the recommended config
"$BIN" eval "$T/rec_model" --base "$M" --base-tokenizer "$TOK" --tasks "ppl:$T/eval.txt,arc_easy" --data-dir "$DATA" \
    --limit 10 --json "$T/rec_eval.json" > /dev/null 2>&1 && ok || bad "eval of the recommended recipe"
want=$(q "$DB" "select sr from runs where config_hash != 'base' and abs(tcr - 0.8125) < 1e-9 order by sr desc limit 1")
$PY - "$T/rec_eval.json" "$want" <<'PY' && ok || bad "Sr of compress --recipe + eval differs from the sweep's ($want)"
import json, sys
got, want = json.load(open(sys.argv[1]))["metrics"]["sr"], float(sys.argv[2])
assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), (got, want)
print(f"recommended recipe reproduced: Sr {got:.9f} (sweep {want:.9f})")
PY

# report
check "$BIN" report --db "$DB" --out "$T/report.html"
for id in sr-vs-tcr iso-tcr srcr-ranking sr-vs-bpw; do
    grep -q "<svg id=\"$id\"" "$T/report.html" && ok || bad "report lacks svg#$id"
done
# intervals on the runs, the iso-TCr / iso-bpw lines, the per-layer heat map of every run
grep -q "Sr \[95% interval\]" "$T/report.html" && grep -q "id=\"iso-tcr-lines\"" "$T/report.html" &&
    grep -q "id=\"iso-bpw\"" "$T/report.html" && ok || bad "report lacks intervals or the iso lines"
[ "$(grep -o 'class="heatmap"' "$T/report.html" | wc -l)" = 2 ] && ok || bad "report lacks the per-layer heat maps"
"$BIN" report --db "$DB" --json > "$T/report.json" && $PY - "$T/report.json" <<'PY' && ok || bad "report --json"
import json, sys
j = json.load(open(sys.argv[1]))
assert len(j["runs"]) == 2 and all(r["sr_ci"] is None or r["sr_ci"][0] <= r["sr"] <= r["sr_ci"][1] for r in j["runs"]), j["runs"]
for c in j["iso_tcr"] + j["iso_bpw"]:
    assert {"difference", "difference_ci", "verdict", "distinguishable"} <= set(c), c
assert "bootstrap" in j["interval_method"]
PY
$PY - "$T/report.html" <<'PY' && ok || bad "report is well-formed standalone HTML"
import sys
from html.parser import HTMLParser
class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.ext = [], []
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") or (v and v.startswith("http") and k != "xmlns"):
                self.ext.append((tag, k, v))
        if tag not in ("meta", "br", "img", "input", "link", "hr") and not tag in ("circle", "line", "rect", "polyline"):
            self.stack.append(tag)
    def handle_startendtag(self, tag, attrs):
        pass
    def handle_endtag(self, tag):
        if tag in ("circle", "line", "rect", "polyline"):
            return
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()
p = P()
p.feed(open(sys.argv[1]).read())
assert not p.stack, p.stack
assert not p.ext, p.ext
PY
"$BIN" report --db "$DB" --out "$T/missing/r.html" 2> /dev/null && bad "report into a missing folder" || ok
# the iso-TCr table as text: both configs, and the joint-vs-quantization line at 0.75 (only quant) / 0.8125
"$BIN" report --db "$DB" --text > "$T/table.txt" && ok || bad "report --text"
grep -q "^0.7500  quant" "$T/table.txt" && grep -q "^0.8125  joint" "$T/table.txt" && ok || bad "iso-TCr rows: $(cat "$T/table.txt")"
grep -q "TCr 0.8125: only joint runs" "$T/table.txt" && ok || bad "joint vs quantization lines: $(cat "$T/table.txt")"
"$BIN" report --db "$DB" 2> /dev/null && bad "report without --out or --text" || ok

# Ctrl-C: exit 130, no 'running' row left
"$BIN" sweep "$M" "${S[@]}" --db "$T/int.sqlite" 2> "$T/err7" &
pid=$!
# interrupt while the first config is in flight (polling, not a fixed sleep: a fast machine
# would otherwise finish the whole sweep first)
for _ in $(seq 1 500); do grep -q "config 1/" "$T/err7" 2> /dev/null && break; sleep 0.01; done
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] && ok || bad "interrupted sweep rc $rc (expected 130)"
[ "$(q "$T/int.sqlite" "select count(*) from runs where status='running'")" = 0 ] && ok || bad "a 'running' row left"
grep -q -- "--resume" "$T/err7" && ok || bad "interrupt message names --resume"
# ... resumed, then killed outright (SIGKILL) in the middle of a config, then resumed to the end:
# one row per config, no 'running' row, and the numbers of the uninterrupted sweep above
"$BIN" sweep "$M" "${S[@]}" --db "$T/int.sqlite" --resume 2> "$T/err10" &
pid=$!
for _ in $(seq 1 3000); do grep -q "config [0-9]*/3" "$T/err10" 2> /dev/null && break; sleep 0.01; done
kill -KILL $pid
wait $pid 2> /dev/null
"$BIN" sweep "$M" "${S[@]}" --db "$T/int.sqlite" --resume 2> "$T/err11" && ok || bad "resume after SIGKILL: $(tail -2 "$T/err11")"
[ "$(q "$T/int.sqlite" "select count(*) from runs")" = 4 ] &&
    [ "$(q "$T/int.sqlite" "select count(*) from runs where status='done'")" = 4 ] &&
    [ "$(q "$T/int.sqlite" "select count(*) from scores")" = 8 ] && ok || bad "rows after SIGKILL + resume"
$PY - "$T/int.sqlite" "$DB" <<'PY' && ok || bad "numbers after SIGKILL + resume differ from the uninterrupted sweep"
import sqlite3, sys
a = dict(sqlite3.connect(sys.argv[1]).execute("select config_hash, sr from runs"))
b = dict(sqlite3.connect(sys.argv[2]).execute("select config_hash, sr from runs"))
shared = [h for h in a if h in b and h != "base"]
assert len(shared) == 2, (a, b)
assert all(a[h] == b[h] for h in shared), [(a[h], b[h]) for h in shared]
PY

# MPI: 2 ranks give the same configs and numbers as one. Required wherever the build asks for
# MPI (PQ_MPI_REQUIRED=1: the default Release build); the sanitizer build is made without it.
if [ "${PQ_MPI_REQUIRED:-0}" = 1 ] && ! { "$BIN" sweep --help | grep -q "^MPI: yes" && command -v mpirun > /dev/null; }; then
    bad "MPI: the binary lacks MPI or mpirun is missing (install openmpi-bin libopenmpi-dev, or configure -DPQ_MPI=OFF)"
elif "$BIN" sweep --help | grep -q "^MPI: yes" && command -v mpirun > /dev/null; then
    MPIRUN=(mpirun -np 2 --oversubscribe)
    [ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
    "${MPIRUN[@]}" "$BIN" sweep "$M" "${G2[@]}" --threads 1 --db "$T/mpi.sqlite" 2> "$T/err9" && ok || bad "mpirun sweep"
    "$BIN" sweep "$M" "${G2[@]}" --threads 1 --db "$T/one.sqlite" 2> /dev/null && ok || bad "1-rank sweep"
    # bit identity: rank 0 stores exactly what the other rank computed (same threads)
    a=$(q "$T/mpi.sqlite" "select config_hash, status, sr, srcr, acr from runs order by config_hash")
    b=$(q "$T/one.sqlite" "select config_hash, status, sr, srcr, acr from runs order by config_hash")
    [ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "MPI results differ: $a vs $b"
else
    echo "note: this build was configured without MPI (PQ_MPI_REQUIRED=0): the MPI sweep is tested in the Release build"
fi

# errors
echo '{"bits": [4], "prunes": ["none"]}' > "$T/bad.json"
"$BIN" sweep "$M" --grid "$T/bad.json" --dry-run 2> "$T/err8" && bad "bad grid accepted" || ok
grep -q "bad.json.*prunes" "$T/err8" && ok || bad "bad grid message names file and key"

echo "cli_sweep: $pass passed, $fail failed ($(( $(date +%s) - start )) s)"
[ $fail -eq 0 ]
