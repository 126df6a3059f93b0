#!/usr/bin/env bash
# `make demo`: runs prunequant on the default model and shows the result.
# Uses ../shared/data when present; otherwise PQ_MODEL (+ PQ_TOKENIZER, PQ_TEXT) or says how.
set -euo pipefail
BIN=$1
DATA=$2
MODEL=${PQ_MODEL:-}
TOK=${PQ_TOKENIZER:-}
TEXT=${PQ_TEXT:-}
if [ -z "$MODEL" ]; then
  if [ -f "$DATA/models/babyllama-tok105/model5000.bin" ]; then
    MODEL=$DATA/models/babyllama-tok105/model5000.bin
    TOK=$DATA/models/babyllama-tok105/tok105.model
    TEXT=$DATA/text/tinystories/tinystories_val.txt
  else
    cat >&2 <<MSG
prunequant demo: no model found.
  The demo uses ../shared/data/models (not present at $DATA).
  Point it at your own model instead, for example:
    make demo PQ_MODEL=path/to/model.gguf PQ_TEXT=path/to/text.txt
    make demo PQ_MODEL=path/to/hf-folder PQ_TEXT=path/to/text.txt
    make demo PQ_MODEL=stories260K.bin PQ_TOKENIZER=tok512.bin PQ_TEXT=text.txt
MSG
    exit 1
  fi
fi
tokargs=()
[ -n "$TOK" ] && tokargs=(--tokenizer "$TOK")
echo "== prunequant info $MODEL"
"$BIN" info "$MODEL" "${tokargs[@]}"
echo
echo "== greedy generation (128 tokens)"
"$BIN" generate "$MODEL" "${tokargs[@]}" --temp 0 -n 128 --prompt "Once upon a time"
echo
if [ -n "$TEXT" ]; then
  echo
  echo "== perplexity on $TEXT"
  "$BIN" ppl "$MODEL" "${tokargs[@]}" --text "$TEXT" --ctx 256 --max-tokens 100000
fi
