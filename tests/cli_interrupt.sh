#!/usr/bin/env bash
# Issue 10, defects 1, 7 and 13 on BabyLlama: a SIGINT/SIGTERM during compress, convert, eval
# --json and compress --report removes the temporary output, says "interrupted; nothing
# written" and exits 130; a SIGKILLed compress leaves OUT.tmp.PID, which the next run on the
# same OUT removes; bad output paths fail before any work, naming the path given; progress
# lines when stderr is not a terminal (PQ_PROGRESS_INTERVAL), the compress summary and the
# tokens/s of generate, all silenced by --quiet.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
. "$(dirname "$0")/lib.sh"
babyllama
PIDS=
trap 'for p in $PIDS; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$T"' EXIT

head -c 400000 "$TEXT" > "$T/calib.txt"
tail -c 30000 "$TEXT" > "$T/eval.txt"
C=(--tokenizer "$TOK" --calib "$T/calib.txt")
MSG_RE='^prunequant [a-z]+: interrupted; nothing written$'

# wait_for PATTERN FILE PID: until PATTERN is in FILE (0), or PID ended / 60 s passed (1)
wait_for() {
    local i
    for ((i = 0; i < 1200; i++)); do
        grep -qE "$1" "$2" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { grep -qE "$1" "$2" 2>/dev/null; return; }
        sleep 0.05
    done
    return 1
}

# interrupted NAME SIGNAL PATTERN OUT CMD...: runs CMD in the background, sends SIGNAL once
# PATTERN is on its stderr, and checks exit 130, the one-line message and that neither OUT nor
# any OUT.tmp.* / OUT.old.* is left
interrupted() {
    local name=$1 sig=$2 pat=$3 out=$4
    shift 4
    "$@" 2> "$T/$name.err" &
    local pid=$!
    PIDS="$PIDS $pid"
    if ! wait_for "$pat" "$T/$name.err" "$pid"; then
        bad "$name: '$pat' never appeared on stderr: $(tail -3 "$T/$name.err")"
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return
    fi
    kill "-$sig" "$pid"
    wait "$pid"
    local rc=$?
    [ "$rc" -eq 130 ] && ok || bad "$name: SIG$sig exit $rc, expected 130"
    [ "$(grep -cE "$MSG_RE" "$T/$name.err")" -eq 1 ] && ok || bad "$name: no 'interrupted; nothing written' line: $(tail -3 "$T/$name.err")"
    tail -1 "$T/$name.err" | grep -qE "$MSG_RE" && ok || bad "$name: the message is not the last line"
    local left
    left=$(ls -d "$out" "$out".tmp.* "$out".old.* 2>/dev/null)
    [ -z "$left" ] && ok || bad "$name: left behind: $left"
}

# 1. SIGINT during compress (128 windows: seconds of work after the first linear is done)
interrupted compress INT 'model\.layers\.0\.' "$T/out" "$BIN" compress "$M" "${C[@]}" --nsamples 128 --out "$T/out"
# SIGTERM during compress with --report: the report goes too
interrupted compress_report TERM 'model\.layers\.0\.' "$T/out" "$BIN" compress "$M" "${C[@]}" --nsamples 128 \
    --out "$T/out" --report "$T/rep.jsonl"
check test ! -e "$T/rep.jsonl"
[ -z "$(ls "$T"/rep.jsonl.* 2>/dev/null)" ] && ok || bad "report temporaries left: $(ls "$T"/rep.jsonl.*)"
# SIGTERM during convert (HF folder and GGUF file), slowed by the testing knob so that the
# signal lands between tensors; the progress lines say when it started
export PQ_PROGRESS_INTERVAL=0
for to in hf gguf; do
    PQ_PROGRESS_DELAY_MS=100 interrupted "convert_$to" TERM '^prunequant: convert [1-9][0-9]*/' "$T/conv" \
        "$BIN" convert "$M" --tokenizer "$TOK" --to "$to" --out "$T/conv"
done
# SIGTERM during eval --json FILE
PQ_PROGRESS_DELAY_MS=300 interrupted eval TERM '^prunequant: ppl [0-9]+/' "$T/e.json" \
    "$BIN" eval "$M" --tokenizer "$TOK" --tasks "ppl:$T/eval.txt" --ctx 64 --no-cache --threads 1 --json "$T/e.json"
unset PQ_PROGRESS_INTERVAL

# 2. SIGKILL leaves OUT.tmp.PID; the next run on the same OUT removes it
"$BIN" compress "$M" "${C[@]}" --nsamples 128 --out "$T/k" 2> "$T/k.err" &
pid=$!
PIDS="$PIDS $pid"
if wait_for 'model\.layers\.1\.' "$T/k.err" "$pid"; then
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    [ -d "$T/k.tmp.$pid" ] && ok || bad "SIGKILL left no $T/k.tmp.$pid (the test needs it)"
    "$BIN" compress "$M" "${C[@]}" --out "$T/k" 2> "$T/k2.err" && ok || bad "compress after SIGKILL: $(tail -2 "$T/k2.err")"
    check test -f "$T/k/config.json"
    check test ! -e "$T/k.tmp.$pid"
    grep -q "removed $T/k.tmp.$pid, left by process $pid that is gone" "$T/k2.err" && ok ||
        bad "the removal is not logged: $(grep -v 'info: model' "$T/k2.err")"
    # a live process's temporary folder is not touched
    mkdir "$T/k.tmp.$$"
    "$BIN" compress "$M" "${C[@]}" --out "$T/k" --quiet && ok || bad "compress beside a live tmp"
    check test -d "$T/k.tmp.$$"
else
    bad "SIGKILL test: compress did not start: $(tail -3 "$T/k.err")"
    kill -KILL "$pid" 2>/dev/null
fi

# 3. bad output paths fail before any work (no calibration line), naming the path given
cd "$T" || exit 1
start=$(date +%s.%N)
"$BIN" compress "$M" "${C[@]}" --out missing/dir/out 2> "$T/m.err" && bad "compress into a missing folder succeeded"
end=$(date +%s.%N)
python3 -c "import sys; sys.exit(0 if $end - $start < 1.0 else 1)" && ok || bad "missing folder took $(python3 -c "print($end - $start)") s"
[ "$(wc -l < "$T/m.err")" -eq 1 ] && ok || bad "missing folder: not one line: $(cat "$T/m.err")"
grep -q "folder missing/dir does not exist" "$T/m.err" && ok || bad "missing folder message: $(cat "$T/m.err")"
grep -qE 'calibration|tmp' "$T/m.err" && bad "missing folder: $(cat "$T/m.err")" || ok
check test ! -e missing
echo x > "$T/afile"
"$BIN" compress "$M" "${C[@]}" --out afile/out 2> "$T/m.err" && bad "compress under a file succeeded"
grep -q "afile/out: cannot write: afile is not a folder" "$T/m.err" && ok || bad "file as folder: $(cat "$T/m.err")"
"$BIN" compress "$M" "${C[@]}" --out afile 2> "$T/m.err" && bad "compress onto a file succeeded"
grep -q "afile: exists and is not a folder" "$T/m.err" && ok || bad "file as output folder: $(cat "$T/m.err")"
mkdir -p "$T/mine" && echo keep > "$T/mine/notes.txt"
"$BIN" compress "$M" "${C[@]}" --out mine 2> "$T/m.err" && bad "compress replaced a folder that is not an output"
check test -f "$T/mine/notes.txt"
grep -q "mine: exists and is neither empty nor an earlier output" "$T/m.err" && ok || bad "foreign folder: $(cat "$T/m.err")"
"$BIN" compress "$M" "${C[@]}" --out "$T/out" --report missing/r.jsonl 2> "$T/m.err" && bad "report into a missing folder"
grep -q "missing/r.jsonl: cannot write: folder missing does not exist" "$T/m.err" && ok || bad "report path: $(cat "$T/m.err")"
check test ! -e "$T/out"
"$BIN" convert "$M" --tokenizer "$TOK" --to gguf --out missing/m.gguf 2> "$T/m.err" && bad "convert into a missing folder"
grep -q "missing/m.gguf: cannot write: folder missing does not exist" "$T/m.err" && ok || bad "convert path: $(cat "$T/m.err")"
"$BIN" convert "$M" --tokenizer "$TOK" --to gguf --out mine 2> "$T/m.err" && bad "convert onto a folder"
grep -q "mine: is a folder, not a file" "$T/m.err" && ok || bad "convert onto a folder: $(cat "$T/m.err")"
cd - > /dev/null || exit 1

# 4. progress lines when stderr is not a terminal, the summary, --quiet
PQ_PROGRESS_INTERVAL=0.2 "$BIN" compress "$M" "${C[@]}" --nsamples 64 --out "$T/p" 2> "$T/p.err" && ok || bad "compress: $(tail -2 "$T/p.err")"
grep -qE '^prunequant: compress [0-9]/5 blocks, [0-9]+s elapsed, ([0-9.]+|-)/s, ETA ([0-9]+s|[0-9]+m[0-9]{2}s|-)$' "$T/p.err" && ok ||
    bad "no progress line: $(grep -v 'info: model' "$T/p.err")"
grep -qE '^prunequant compress: wrote .*/p in [0-9.]+s: 3\.76 MB -> [0-9.]+ kB on disk \([0-9.]+x\), linears 4\.[0-9]+ bpw, ACr 0\.7[0-9]+$' "$T/p.err" && ok ||
    bad "no summary line: $(tail -1 "$T/p.err")"
# the default interval is about 10 s: a run of a few seconds prints no progress line
"$BIN" compress "$M" "${C[@]}" --out "$T/p" 2> "$T/p.err" && ok || bad "compress: $(tail -2 "$T/p.err")"
grep -q '^prunequant: compress [0-9]' "$T/p.err" && bad "progress line within 10 s: $(grep '^prunequant: compress' "$T/p.err")" || ok
PQ_PROGRESS_INTERVAL=0 "$BIN" compress "$M" "${C[@]}" --out "$T/p" --quiet 2> "$T/p.err" && ok || bad "compress --quiet"
[ ! -s "$T/p.err" ] && ok || bad "compress --quiet printed: $(cat "$T/p.err")"
"$BIN" generate "$M" --tokenizer "$TOK" --prompt "Once upon a time" -n 40 > /dev/null 2> "$T/g.err" && ok || bad "generate"
grep -qE '^prunequant generate: 40 tokens in [0-9.]+s, [0-9.]+ tokens/s$' "$T/g.err" && ok || bad "generate tokens/s: $(cat "$T/g.err")"
"$BIN" generate "$M" --tokenizer "$TOK" --prompt "Once upon a time" -n 40 --quiet > /dev/null 2> "$T/g.err" && ok || bad "generate --quiet"
[ ! -s "$T/g.err" ] && ok || bad "generate --quiet printed: $(cat "$T/g.err")"

echo "cli_interrupt: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
