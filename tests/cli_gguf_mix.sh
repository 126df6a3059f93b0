#!/usr/bin/env bash
# Our GGUF type mixture (src/quant/gguf_mix.c) and imatrix files (src/io/imatrix.c) against real
# llama.cpp v0.4.0 (llama-quantize, llama-imatrix; set up by scripts/llamacpp.sh, the test fails
# if that cannot be done).
# - Models: two synthetic Llama f32 GGUFs with 256-multiple rows (4 layers, GQA 2, untied; 8
#   layers, GQA 4, tied embeddings) and stories260K / BabyLlama converted by `prunequant convert`
#   (rows 64 / 172 / 288 ...: the fallbacks).
# - For every preset llama-quantize writes a file; the type of each of its tensors (read from the
#   GGUF header) must equal our plan. Also: --pure for the plain K types, --imatrix for the
#   Q4_0 / Q5_0 ffn_down guard.
# - imatrix: a file we write with known values is loaded by llama-quantize (it says so) and read
#   back exactly; files written by llama-imatrix (GGUF and legacy .dat) read plausibly and give the
#   same per-column importance in both formats.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
DATA=${PQ_DATA:?PQ_DATA not set}
SRC=${PQ_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
TB=$(dirname "$BIN")/test_gguf_mix
S=$DATA/models/stories260K
B=$DATA/models/babyllama-tok105
TEXT=$DATA/text/tinystories/tinystories_val.txt
for f in "$TB" "$S/stories260K.bin" "$S/tok512.bin" "$B/model5000.bin" "$B/tok105.model" "$TEXT"; do
    [ -e "$f" ] || { echo "FAIL: $f missing" >&2; exit 1; }
done
. "$(dirname "$0")/lib.sh"

LB=$(PQ_LLAMACPP_QUIET=1 bash "$SRC/scripts/llamacpp.sh") || { echo "FAIL: cannot set up llama.cpp (scripts/llamacpp.sh)" >&2; exit 1; }
Q=$LB/llama-quantize

# types FILE: "name TYPE" of every tensor in a GGUF file's header, sorted by name
types() {
    python3 - "$1" <<'EOF'
import struct, sys
NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
         11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16"}
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
f = open(sys.argv[1], "rb")
def rd(fmt):
    return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]
def rstr():
    return f.read(rd("Q")).decode()
def skip(t):
    if t == 8: rstr()
    elif t == 9:
        et, n = rd("I"), rd("Q")
        for _ in range(n): skip(et)
    else: f.read(SIZES[t])
assert f.read(4) == b"GGUF"
ver, nt, nkv = rd("I"), rd("Q"), rd("Q")
for _ in range(nkv):
    rstr(); skip(rd("I"))
out = []
for _ in range(nt):
    name = rstr()
    nd = rd("I")
    for _ in range(nd): rd("Q")
    t = rd("I"); rd("Q")
    out.append("%s %s" % (name, NAMES.get(t, "type%d" % t)))
print("\n".join(sorted(out)))
EOF
}

# compare MODEL LABEL LLAMA_ARGS... -- PLAN_ARGS...: llama-quantize's types vs our plan
compare() {
    local model=$1 label=$2
    shift 2
    local qargs=() pargs=()
    while [ "$1" != "--" ]; do qargs+=("$1"); shift; done
    shift
    pargs=("$@")
    local out=$T/q.gguf
    rm -f "$out"
    if ! "$Q" "${qargs[@]:0:${#qargs[@]}-1}" "$model" "$out" "${qargs[-1]}" 2 >"$T/q.log" 2>&1; then
        bad "$label: llama-quantize failed: $(tail -3 "$T/q.log")"
        return 1
    fi
    types "$out" > "$T/theirs" || { bad "$label: cannot read llama-quantize's output header"; return 1; }
    "$TB" plan "$model" "${pargs[@]}" 2>"$T/err" | sort > "$T/ours" || { bad "$label: plan: $(cat "$T/err")"; return 1; }
    if cmp -s "$T/ours" "$T/theirs"; then
        ok
        printf '  %-28s %s\n' "$label" "$(awk '{print $2}' "$T/ours" | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}')"
    else
        bad "$label: our plan differs from llama-quantize (< ours, > llama-quantize):
$(diff "$T/ours" "$T/theirs" | grep '^[<>]' | head -12)"
    fi
}

# the models
"$TB" synth "$T/syn4.gguf" 256 768 4 4 2 512 0 "$S/tok512.bin" 2>"$T/err" || bad "synth 4 layers: $(cat "$T/err")"
"$TB" synth "$T/syn8.gguf" 256 512 8 8 2 512 1 "$S/tok512.bin" 2>"$T/err" || bad "synth 8 layers: $(cat "$T/err")"
"$BIN" convert "$S/stories260K.bin" --tokenizer "$S/tok512.bin" --to gguf --dtype f32 --out "$T/s260.gguf" --quiet 2>"$T/err" ||
    bad "convert stories260K: $(cat "$T/err")"
"$BIN" convert "$B/model5000.bin" --tokenizer "$B/tok105.model" --to gguf --dtype f32 --out "$T/baby.gguf" --quiet 2>"$T/err" ||
    bad "convert BabyLlama: $(cat "$T/err")"

PRESETS="Q8_0 Q6_K Q5_K_M Q5_K_S Q4_K_M Q4_K_S Q3_K_L Q3_K_M Q3_K_S Q2_K Q5_0 Q5_1 Q4_0 Q4_1 F16 BF16"
for m in syn4 syn8 s260 baby; do
    [ -f "$T/$m.gguf" ] || continue
    echo "$m (ours = llama-quantize; type:count)"
    for p in $PRESETS; do
        compare "$T/$m.gguf" "$m $p" "$p" -- "$p"
    done
    # the plain K types: every tensor in the type, as llama-quantize --pure with the *_M ftype
    for p in Q5_K Q4_K Q3_K; do
        compare "$T/$m.gguf" "$m $p (--pure ${p}_M)" --pure "${p}_M" -- "$p"
    done
    compare "$T/$m.gguf" "$m Q4_0 --pure" --pure Q4_0 -- Q4_0 pure
done

# our imatrix, with known values, in llama-quantize: loaded, used for every weight but the token
# embeddings (llama-imatrix has none for them either: a row lookup, not a product), read back exactly
for m in syn8 s260; do
    [ -f "$T/$m.gguf" ] || continue
    "$TB" imatrix-write "$T/$m.imatrix.gguf" "$T/$m.gguf" >/dev/null 2>"$T/err" || { bad "imatrix-write $m: $(cat "$T/err")"; continue; }
    "$TB" imatrix-check "$T/$m.imatrix.gguf" "$T/$m.gguf" known >/dev/null 2>"$T/err" && ok || bad "imatrix read-back $m: $(cat "$T/err")"
    for p in Q4_0 Q5_0 Q4_K_M; do
        compare "$T/$m.gguf" "$m $p --imatrix (ours)" --imatrix "$T/$m.imatrix.gguf" "$p" -- "$p" imatrix
        n=$("$TB" imatrix-check "$T/$m.imatrix.gguf" "$T/$m.gguf" | awk '{print $2}')
        grep -q "loaded $n importance matrix entries from $T/$m.imatrix.gguf computed on 3 chunks" "$T/q.log" &&
            grep -q "have importance matrix data with $n entries" "$T/q.log" &&
            ! grep "did not find weights" "$T/q.log" | grep -qv token_embd &&
            ok || bad "$m $p: llama-quantize did not say that it used all $n entries of our imatrix: $(grep -i imatrix "$T/q.log" | head -3)"
    done
done

# llama-imatrix's own files (GGUF and legacy .dat) on the 4-layer synthetic model
head -c 20000 "$TEXT" > "$T/text.txt"
for fmt in gguf dat; do
    "$LB/llama-imatrix" -m "$T/syn4.gguf" -f "$T/text.txt" -c 64 --chunks 2 -t 2 --output-format $fmt \
        -o "$T/li.$fmt" >"$T/li.log" 2>&1 || { bad "llama-imatrix --output-format $fmt: $(tail -3 "$T/li.log")"; continue; }
    out=$("$TB" imatrix-check "$T/li.$fmt" "$T/syn4.gguf" 2>"$T/err") && ok || bad "llama-imatrix's $fmt file: $(cat "$T/err")"
    echo "  llama-imatrix $fmt: $out"
done
if [ -f "$T/li.gguf" ] && [ -f "$T/li.dat" ]; then
    out=$("$TB" imatrix-compare "$T/li.gguf" "$T/li.dat" 2>&1) && ok || bad "llama-imatrix gguf vs dat: $out"
    echo "  gguf vs dat importance: $out"
    compare "$T/syn4.gguf" "syn4 Q4_K_M --imatrix (llama-imatrix)" --imatrix "$T/li.gguf" Q4_K_M -- Q4_K_M imatrix
fi

echo "cli_gguf_mix: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
