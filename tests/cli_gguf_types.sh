#!/usr/bin/env bash
# ggml block types (src/quant/ggml_types.h) against real llama.cpp (v0.4.0, set up by
# scripts/llamacpp.sh; the test fails if that cannot be done), for Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
# Q2_K Q3_K Q4_K Q5_K Q6_K:
# - decode: our decode of random blocks (every bit pattern of scales and codes, finite f16) is
#   ggml's to_float bit for bit, and unpack -> encode gives the same bytes back
# - quantizer: on 48 rows x 1024 (Gaussian, 5% outliers at 3x), without and with an importance
#   matrix, our round-to-nearest has a weighted error (llama.cpp's weights) <= ggml_quantize_chunk's
#   on every row; the ratio per type is printed; the bytes we encode decode in ggml to our values
# - reader: a stories260K GGUF re-quantized by llama-quantize to Q4_1 / Q5_0 / Q5_1 (row sizes of
#   32) loads in prunequant, `info` names its dtypes, and converted to F32 by prunequant its
#   tensors are ggml's dequantization of the file, bit for bit.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
DATA=${PQ_DATA:?PQ_DATA not set}
SRC=${PQ_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
TT=$(dirname "$BIN")/test_ggml_types
S=$DATA/models/stories260K/stories260K.gguf
for f in "$S" "$TT"; do
    [ -e "$f" ] || { echo "FAIL: $f missing" >&2; exit 1; }
done
. "$(dirname "$0")/lib.sh"

LB=$(PQ_LLAMACPP_QUIET=1 bash "$SRC/scripts/llamacpp.sh") || { echo "FAIL: cannot set up llama.cpp (scripts/llamacpp.sh)" >&2; exit 1; }
TYPES="Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K"

# 1. decode and layout
for ty in $TYPES; do
    "$TT" --random-blocks "$ty" 200 11 "$T/b.bin" || { bad "$ty: random blocks"; continue; }
    check "$TT" --encode-check "$ty" "$T/b.bin"
    "$TT" --decode "$ty" "$T/b.bin" "$T/ours.f32" && "$LB/llama_check" --dequant-raw "$ty" "$T/b.bin" "$T/ggml.f32" ||
        { bad "$ty: decode"; continue; }
    check cmp -s "$T/ours.f32" "$T/ggml.f32"
done

# 2. quantizer vs ggml_quantize_chunk
COLS=1024
python3 - "$T" "$COLS" <<'EOF'
import random, struct, sys
random.seed(5)
t, c = sys.argv[1], int(sys.argv[2])
x = [random.gauss(0, 1) * (3 if random.random() < 0.05 else 1) for _ in range(48 * c)]
open(t + "/x.f32", "wb").write(struct.pack("%df" % len(x), *x))
open(t + "/im.f32", "wb").write(struct.pack("%df" % c, *[random.expovariate(1.0) for _ in range(c)]))
EOF
for im in - "$T/im.f32"; do
    for ty in $TYPES; do
        "$TT" --quantize "$ty" $COLS "$T/x.f32" "$im" "$T/ours.bin" &&
            "$LB/llama_check" --quantize-row "$ty" $COLS "$T/x.f32" "$im" "$T/ggml.bin" &&
            "$TT" --err "$ty" $COLS "$T/x.f32" "$im" "$T/ours.bin" >"$T/e1" &&
            "$TT" --err "$ty" $COLS "$T/x.f32" "$im" "$T/ggml.bin" >"$T/e2" || { bad "$ty: quantize"; continue; }
        # every row: ours <= ggml (1e-12 relative slack for the double sums of equal rows)
        res=$(paste "$T/e1" "$T/e2" | awk '$1=="row"{ if ($3 > $6*(1+1e-12)) w++ } $1=="total"{ r=$2/$4 }
            END{ printf "%d %.4f", w, r }')
        echo "$ty imatrix=$([ "$im" = - ] && echo no || echo yes): rows worse than ggml ${res% *} of 48, error ours/ggml ${res#* }"
        check [ "${res% *}" = 0 ]
        "$TT" --decode "$ty" "$T/ours.bin" "$T/d1.f32" && "$LB/llama_check" --dequant-raw "$ty" "$T/ours.bin" "$T/d2.f32" &&
            check cmp -s "$T/d1.f32" "$T/d2.f32"
    done
done

# 3. reader: GGUF files of llama-quantize, through prunequant's loader
for ty in Q4_1 Q5_0 Q5_1; do
    q="$T/s_$ty.gguf"
    "$LB/llama-quantize" --allow-requantize "$S" "$q" "$ty" >"$T/q.log" 2>&1 || { bad "llama-quantize $ty"; continue; }
    check grep -q "dtypes .*$ty:" <("$BIN" info "$q")
    "$BIN" convert "$q" --to gguf --dtype f32 --out "$T/f.gguf" >/dev/null || { bad "convert $ty"; continue; }
    "$LB/llama_check" --dequant "$q" "$T/a.f32" >"$T/a.txt" && "$LB/llama_check" --dequant "$T/f.gguf" "$T/b.f32" >"$T/b.txt" ||
        { bad "$ty: --dequant"; continue; }
    check python3 - "$T" <<'EOF'
import sys
t = sys.argv[1]
def load(n):
    data, out, off = open(t + "/" + n + ".f32", "rb").read(), {}, 0
    for line in open(t + "/" + n + ".txt"):
        _, name, ty, ne = line.split()
        out[name] = data[off:off + 4 * int(ne)]
        off += 4 * int(ne)
    return out
a, b = load("a"), load("b")
missing = [k for k in a if k not in b and k != "rope_freqs.weight"]
diff = [k for k in a if k in b and a[k] != b[k]]
if missing or diff:
    sys.exit("tensors missing %s, different %s" % (missing[:3], diff[:3]))
EOF
done

echo "cli_gguf_types: $pass passed, $fail failed"
[ "$fail" = 0 ]
