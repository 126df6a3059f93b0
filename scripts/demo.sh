#!/usr/bin/env bash
# `make demo`: the paper's experiment on the default model. An iso-TCr sweep at 75 / 81.25 /
# 87.5 % theoretical compression: GPTQ 4 / 3 / 2-bit alone against SparseGPT + GPTQ joint
# configurations (50 % + 8-bit, 25 % + 4-bit, 2:8 + 4-bit, 50 % + 4-bit, 2:4 + 4-bit, each in
# joint modes a, b and fused), scored on held-out perplexity, KL divergence to the dense
# model and a TinyStories cloze task; then the HTML report, the iso-TCr table and the
# recommendation. Results go to out/demo (results.sqlite, report.html); a rerun resumes.
# Uses ../shared/data when present; otherwise PQ_MODEL (+ PQ_TOKENIZER) and PQ_TEXT, or says how.
set -euo pipefail
BIN=$1
DATA=$2
OUT=${PQ_DEMO_OUT:-out/demo}
MODEL=${PQ_MODEL:-}
TOK=${PQ_TOKENIZER:-}
TEXT=${PQ_TEXT:-}
LIMIT=${PQ_DEMO_LIMIT:-300}
if [ -z "$MODEL" ]; then
  if [ -f "$DATA/models/babyllama-tok105/model5000.bin" ]; then
    MODEL=$DATA/models/babyllama-tok105/model5000.bin
    TOK=$DATA/models/babyllama-tok105/tok105.model
    TEXT=$DATA/text/tinystories/tinystories_val.txt
  else
    cat >&2 <<MSG
prunequant demo: no model found.
  The demo uses ../shared/data/models (not present at $DATA).
  Point it at your own model and a text of its domain (at least ~600 kB), for example:
    make demo PQ_MODEL=path/to/model.gguf PQ_TEXT=path/to/text.txt
    make demo PQ_MODEL=path/to/hf-folder PQ_TEXT=path/to/text.txt
    make demo PQ_MODEL=stories260K.bin PQ_TOKENIZER=tok512.bin PQ_TEXT=text.txt
MSG
    exit 1
  fi
fi
if [ -z "$TEXT" ] || [ ! -f "$TEXT" ]; then
  echo "prunequant demo: PQ_TEXT must name a text file for calibration and evaluation" >&2
  exit 1
fi
tokargs=()
[ -n "$TOK" ] && tokargs=(--tokenizer "$TOK")
mkdir -p "$OUT"
start=$(date +%s)

echo "== model"
"$BIN" info "$MODEL" "${tokargs[@]}"

# calibration on the first 400 kB, every score on the rest (no overlap)
head -c 400000 "$TEXT" > "$OUT/calib.txt"
tail -c +400001 "$TEXT" > "$OUT/heldout.txt"
"$BIN" tasks make-cloze "$OUT/heldout.txt" --out "$OUT/cloze.jsonl" --choices 4 --seed 0 --limit 300
cat > "$OUT/grid_unstructured.json" <<'J'
{"prune": ["none", "sparsegpt"], "sparsity": [0.25, 0.5], "quant": ["gptq"], "bits": [2, 3, 4, 8],
 "group": [32], "joint": ["a", "b", "fused"]}
J
cat > "$OUT/grid_nm.json" <<'J'
{"prune": ["sparsegpt"], "sparsity": ["2:8", "2:4"], "quant": ["gptq"], "bits": [4], "group": [32],
 "joint": ["a", "b", "fused"]}
J
TASKS="ppl:$OUT/heldout.txt,kld:$OUT/heldout.txt,mc:$OUT/cloze.jsonl"
DB=$OUT/results.sqlite
for grid in grid_unstructured grid_nm; do
  echo
  echo "== sweep $grid (iso-TCr 0.75, 0.8125, 0.875; --limit $LIMIT windows / items per task)"
  "$BIN" sweep "$MODEL" "${tokargs[@]}" --grid "$OUT/$grid.json" --tcr 0.75,0.8125,0.875 \
    --calib "$OUT/calib.txt" --nsamples 32 --seqlen 256 --tasks "$TASKS" --limit "$LIMIT" \
    --db "$DB" --resume
done
"$BIN" report --db "$DB" --out "$OUT/report.html"
echo
"$BIN" report --db "$DB" --text
echo
echo "== recommendation (max SrCr over all runs)"
"$BIN" recommend --db "$DB"
echo
echo "== recommendation at TCr 0.8125 (max Sr), as a recipe for 'prunequant compress --recipe'"
"$BIN" recommend --db "$DB" --tcr 0.8125 --json | tee "$OUT/recommended.json"
echo
echo "demo: $(( $(date +%s) - start )) s; results in $DB, report in $OUT/report.html"
echo "      (a rerun resumes from the database; delete $OUT to start over)"
