#!/usr/bin/env bash
# Defects a newcomer found (issue 10), each checked here so it cannot come back: vocabulary
# mismatches, the data folder and task lists of eval/sweep, the calibration length in the
# protocol, tokenize/detokenize with MODEL + --tokenizer, --skip that matches nothing, text
# files that are folders, empty or not UTF-8, undefined Sr, and "-" for nan / negative ACr.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
DATA=${PQ_DATA:?PQ_DATA not set}
S=$DATA/models/stories260K/stories260K.bin
TOK=$DATA/models/stories260K/tok512.bin
BABY=$DATA/models/babyllama-tok105/model5000.bin
TOK105=$DATA/models/babyllama-tok105/tok105.model
TEXT=$DATA/text/tinystories/tinystories_val.txt
for f in "$S" "$TOK" "$BABY" "$TOK105" "$TEXT"; do
    [ -f "$f" ] || { echo "FAIL: $f missing (shared data)" >&2; exit 1; }
done
command -v python3 > /dev/null || { echo "FAIL: python3 is needed to inspect the database" >&2; exit 1; }
. "$(dirname "$0")/lib.sh"
q() { python3 -c 'import sqlite3, sys; print("\n".join("|".join(map(str, r)) for r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2])))' "$@"; }
head -c 60000 "$TEXT" > "$T/calib.txt"
tail -c 20000 "$TEXT" > "$T/eval.txt"

# 4. a tokenizer whose vocabulary differs from the model's, smaller or larger: an error naming both sizes
"$BIN" ppl "$S" --tokenizer "$TOK105" --text "$T/eval.txt" > /dev/null 2> "$T/e4a"
rc=$?
[ $rc -eq 1 ] && grep -q "105 tokens, the model 512" "$T/e4a" && ok || bad "smaller tokenizer accepted (rc $rc): $(cat "$T/e4a")"
"$BIN" generate "$BABY" --tokenizer "$TOK" -n 4 > /dev/null 2> "$T/e4b"
rc=$?
[ $rc -eq 1 ] && grep -q "512 tokens, the model 105" "$T/e4b" && ok || bad "larger tokenizer accepted (rc $rc): $(cat "$T/e4b")"
[ "$(wc -l < "$T/e4a")" -le 2 ] && ok || bad "vocabulary error is not one line"

# 5. the data folder: sweep finds it as eval does (no --data-dir, PQ_DATA unset, run from elsewhere)
echo '{"quant": ["rtn"], "bits": [4]}' > "$T/grid.json"
(cd "$T" && env -u PQ_DATA "$BIN" sweep "$S" --grid grid.json --calib calib.txt --tasks arc_easy --limit 5 \
    --nsamples 2 --seqlen 32 --db data.sqlite --quiet 2> e5a)
rc=$?
[ $rc -eq 0 ] && [ "$(q "$T/data.sqlite" "select count(*) from runs where status in ('done', 'undefined')")" = 2 ] && ok ||
    bad "sweep --tasks arc_easy without --data-dir (rc $rc): $(tail -2 "$T/e5a")"
(cd "$T" && env -u PQ_DATA "$BIN" eval "$S" --tasks arc_easy --limit 5 --no-cache > /dev/null 2> e5b) && ok ||
    bad "eval --tasks arc_easy without --data-dir: $(tail -1 "$T/e5b")"
# ... a typo in a task name: refused before any work, no database left
"$BIN" sweep "$S" --grid "$T/grid.json" --calib "$T/calib.txt" --tasks arc_easy,arc_eazy --data-dir "$DATA" \
    --db "$T/typo.sqlite" 2> "$T/e5c"
rc=$?
[ $rc -eq 1 ] && grep -q "unknown task 'arc_eazy'" "$T/e5c" && ok || bad "sweep task typo (rc $rc): $(cat "$T/e5c")"
[ ! -e "$T/typo.sqlite" ] && ok || bad "a task typo left $T/typo.sqlite"
grep -q "config" "$T/e5c" && grep -q "calibration\|compress" "$T/e5c" && bad "sweep worked before checking tasks" || ok
# ... and in eval: the typo in the last task stops it before the first task runs
"$BIN" eval "$S" --tasks "ppl:$T/eval.txt,arc_eazy" --no-cache --json "$T/e5.json" > "$T/e5d.out" 2> "$T/e5d"
rc=$?
[ $rc -eq 1 ] && grep -q "arc_eazy" "$T/e5d" && ok || bad "eval task typo (rc $rc)"
grep -q "task ppl" "$T/e5d" && bad "eval ran a task before finding the typo" || ok

# 6. the protocol records the calibration length that was used when --seqlen is not given
proto=$(q "$T/data.sqlite" "select value from meta where key='protocol'")
echo "$proto" | grep -q "calibration 2 windows x 32 tokens" && ok || bad "protocol with --seqlen 32: $proto"
(cd "$T" && "$BIN" sweep "$S" --grid grid.json --calib calib.txt --tasks "ppl:eval.txt" --limit 5 --nsamples 2 \
    --db noseq.sqlite --quiet 2> e6)
proto=$(q "$T/noseq.sqlite" "select value from meta where key='protocol'")
echo "$proto" | grep -q "calibration 2 windows x 512 tokens" && ok || bad "protocol without --seqlen: $proto ($(tail -1 "$T/e6"))"

# 9. tokenize / detokenize accept MODEL with an overriding --tokenizer
a=$("$BIN" tokenize "$S" --tokenizer "$TOK" "Once upon a time" 2> /dev/null)
b=$("$BIN" tokenize --tokenizer "$TOK" "Once upon a time" 2> /dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "tokenize MODEL --tokenizer FILE: '$a' vs '$b'"
t=$("$BIN" detokenize "$S" --tokenizer "$TOK" $a 2> /dev/null)
[ "$t" = "Once upon a time" ] && ok || bad "detokenize MODEL --tokenizer FILE: '$t'"
"$BIN" tokenize "$BABY" --tokenizer "$TOK" "hi" > /dev/null 2>&1 && bad "tokenize with a mismatched vocabulary" || ok

# 12. detokenize with an out-of-range id prints nothing and fails
"$BIN" detokenize --tokenizer "$TOK" $a 99999 > "$T/d.out" 2> "$T/d.err"
rc=$?
[ $rc -eq 1 ] && [ ! -s "$T/d.out" ] && grep -q "99999" "$T/d.err" && ok ||
    bad "detokenize with a bad id (rc $rc, printed '$(cat "$T/d.out")')"
# --skip that matches no linear is an error, before any work
"$BIN" compress "$S" --calib "$T/calib.txt" --out "$T/skip" --quant rtn --bits 4 --skip 'no_such_layer' 2> "$T/e12a"
rc=$?
[ $rc -ne 0 ] && grep -q "matches no linear" "$T/e12a" && [ ! -e "$T/skip" ] && ok || bad "--skip matching nothing (rc $rc)"
"$BIN" compress "$S" --calib "$T/calib.txt" --out "$T/skip2" --quant rtn --bits 4 --seqlen 32 --nsamples 2 \
    --skip 'down_proj' --quiet 2> "$T/e12b" && ok || bad "--skip down_proj: $(cat "$T/e12b")"
# a folder as --text, an empty calibration file, invalid UTF-8
"$BIN" ppl "$S" --text "$T" > /dev/null 2> "$T/e12c"
grep -q "is a directory" "$T/e12c" && ok || bad "folder as --text: $(cat "$T/e12c")"
: > "$T/empty.txt"
"$BIN" compress "$S" --calib "$T/empty.txt" --out "$T/o" --quant rtn --bits 4 2> "$T/e12d"
rc=$?
[ $rc -eq 1 ] && grep -q "empty.txt" "$T/e12d" && grep -q "empty" "$T/e12d" && ok || bad "empty calibration: $(cat "$T/e12d")"
head -c 800 "$TEXT" > "$T/short.txt"
"$BIN" compress "$S" --calib "$T/short.txt" --out "$T/o" --quant rtn --bits 4 2> "$T/e12e"
grep -q "short.txt has [0-9]* tokens, fewer than one window of 512" "$T/e12e" && ok ||
    bad "short calibration does not name the file: $(cat "$T/e12e")"
printf 'Once upon a time \xff\xfe there was a \xc3 cat.\n' > "$T/bad.txt"
"$BIN" tokenize "$S" --file "$T/bad.txt" > /dev/null 2> "$T/e12f"
grep -q "3 bytes are not valid UTF-8 (first at byte 17)" "$T/e12f" && ok || bad "invalid UTF-8 not reported: $(cat "$T/e12f")"
# a base score of 0: the run is stored as 'undefined' with the reason, never 'done' with a NaN Sr
cat > "$T/zero.jsonl" << 'J'
{"query": "Once upon a time, there was a little", "choices": ["girl", "qzxqzxqzx qzxqzx"], "gold": 1}
{"query": "One day, Lily went to the", "choices": ["park", "qzxqzxqzx qzxqzx"], "gold": 1}
{"query": "She was very", "choices": ["happy", "qzxqzxqzx qzxqzx"], "gold": 1}
J
"$BIN" sweep "$S" --grid "$T/grid.json" --calib "$T/calib.txt" --tasks "mc:$T/zero.jsonl" --nsamples 2 --seqlen 32 \
    --db "$T/zero.sqlite" 2> "$T/e12g"
st=$(q "$T/zero.sqlite" "select status || ':' || ifnull(error, '') from runs where config_hash != 'base'")
echo "$st" | grep -q "^undefined:.*a base score of 0" && ok || bad "Sr with a base score of 0: '$st'"
"$BIN" sweep "$S" --grid "$T/grid.json" --calib "$T/calib.txt" --tasks "mc:$T/zero.jsonl" --nsamples 2 --seqlen 32 \
    --db "$T/zero.sqlite" --resume 2> "$T/e12h"
grep -q "config 1/1" "$T/e12h" && bad "resume redid an undefined run" || ok
"$BIN" recommend --db "$T/data.sqlite" > "$T/rec.txt" 2>&1
grep -qi "nan" "$T/rec.txt" && bad "recommend prints nan: $(cat "$T/rec.txt")" || ok
"$BIN" recommend --db "$T/zero.sqlite" > "$T/rec0.txt" 2>&1
grep -qi "nan" "$T/rec0.txt" && bad "recommend prints nan (undefined db)" || ok
# dense models: ACr is "-", not -1
"$BIN" info "$S" --sparsity > "$T/info.txt" 2>&1
grep -q "^ACr -  " "$T/info.txt" && ok || bad "dense ACr: $(tail -1 "$T/info.txt")"
"$BIN" eval "$S" --tasks "ppl:$T/eval.txt" --no-cache > "$T/ev.txt" 2>&1
grep -q "ACr -  " "$T/ev.txt" && ! grep -q "ACr -1" "$T/ev.txt" && ok || bad "eval dense ACr: $(grep ACr "$T/ev.txt")"

echo "cli_hardening: $pass passed, $fail failed"
[ $fail -eq 0 ]
