#!/usr/bin/env bash
# prunequant layer on small generated .npy files: the methods run and write Q, JSON and
# human output, N:M patterns hold in Q, and bad input (shapes, recipes, files) fails with one
# line on stderr and the documented exit code.
set -u
BIN=${PQ_LAYER_BIN:-${PQ_BIN:?PQ_BIN not set}}
. "$(dirname "$0")/lib.sh"

# W [32, 64], H = 2 X X^T / 256 with correlated channels; f8 and Fortran-order variants;
# an H of the wrong shape. Standard library only (no numpy).
python3 - "$T" <<'EOF'
import math, random, struct, sys
d = sys.argv[1]
random.seed(7)
def npy(path, shape, vals, descr='<f4', fortran=False):
    fmt = {'<f4': 'f', '<f8': 'd'}[descr]
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (
        descr, 'True' if fortran else 'False',
        ', '.join(str(s) for s in shape) + (',' if len(shape) == 1 else ''))
    h = h.encode()
    h += b' ' * ((64 - (10 + len(h) + 1) % 64) % 64) + b'\n'
    with open(path, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h)
        f.write(struct.pack('<%d%s' % (len(vals), fmt), *vals))
rows, cols, toks, rank = 32, 64, 256, 6
A = [[random.gauss(0, 1) for _ in range(rank)] for _ in range(cols)]
Z = [[random.gauss(0, 1) for _ in range(toks)] for _ in range(rank)]
X = [[sum(A[i][k] * Z[k][t] for k in range(rank)) + 0.3 * random.gauss(0, 1) for t in range(toks)]
     for i in range(cols)]
H = [[2.0 * sum(a * b for a, b in zip(X[i], X[j])) / toks for j in range(cols)] for i in range(cols)]
W = [random.gauss(0, 0.05) for _ in range(rows * cols)]
Hf = [v for row in H for v in row]
npy(d + '/W.npy', (rows, cols), W)
npy(d + '/H.npy', (cols, cols), Hf)
npy(d + '/W8.npy', (rows, cols), W, '<f8')
npy(d + '/Wf.npy', (rows, cols), W, fortran=True)
npy(d + '/Hbad.npy', (cols - 1, cols - 1), [1.0] * ((cols - 1) ** 2))
npy(d + '/v.npy', (cols,), [1.0] * cols)
EOF

# json_field FILE KEY: prints the value of KEY in the JSON object in FILE
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

run() { "$BIN" layer --weight "$T/W.npy" --hessian "$T/H.npy" --quiet "$@"; }

# GPTQ beats RTN; JSON fields present; output written
run --quant gptq --bits 3 --group 16 --out "$T/q_gptq.npy" --json > "$T/gptq.json" 2> "$T/err" && ok \
  || bad "gptq run failed: $(cat "$T/err")"
run --quant rtn --bits 3 --group 16 --out "$T/q_rtn.npy" --json > "$T/rtn.json" 2> "$T/err" && ok \
  || bad "rtn run failed: $(cat "$T/err")"
for k in error seconds sparsity damping bits group; do
  json_field "$T/gptq.json" $k > /dev/null 2>&1 && ok || bad "json lacks $k"
done
python3 - "$T/gptq.json" "$T/rtn.json" <<'EOF' && ok || bad "gptq error not below rtn"
import json, sys
g, r = (json.load(open(f)) for f in sys.argv[1:3])
sys.exit(0 if g["error"] < r["error"] and g["bits"] == 3 and g["group"] == 16 else 1)
EOF
[ "$(stat -c %s "$T/q_gptq.npy")" -eq $((128 + 32 * 64 * 4)) ] && ok || bad "q_gptq.npy size"

# SparseGPT 2:4: the pattern holds in every group of 4 in Q
run --prune sparsegpt --pattern 2:4 --out "$T/q24.npy" > "$T/human.txt" 2> "$T/err" && ok \
  || bad "2:4 failed: $(cat "$T/err")"
grep -q "^error" "$T/human.txt" && grep -q "^wrote" "$T/human.txt" && ok \
  || bad "human output: $(cat "$T/human.txt")"
python3 - "$T/q24.npy" <<'EOF' && ok || bad "2:4 pattern broken in Q"
import struct, sys
b = open(sys.argv[1], 'rb').read()
hl = struct.unpack('<H', b[8:10])[0]
v = struct.unpack('<%df' % (32 * 64), b[10 + hl:])
sys.exit(0 if all(sum(1 for x in v[i:i + 4] if x == 0.0) >= 2 for i in range(0, len(v), 4)) else 1)
EOF

# joint fused 50% + 4-bit g16 with act-order; f8 input accepted
"$BIN" layer --weight "$T/W8.npy" --hessian "$T/H.npy" --prune sparsegpt --sparsity 0.5 --quant gptq \
  --group 16 --act-order --joint fused --out "$T/qf.npy" --json --quiet > "$T/fused.json" 2> "$T/err" && ok \
  || bad "fused failed: $(cat "$T/err")"
[ "$(json_field "$T/fused.json" sparsity 2>/dev/null)" = "0.5" ] && ok || bad "fused sparsity != 0.5"
for j in a b; do # mode a re-masks by default (keep_mask), so both hold the sparsity asked for
  run --prune wanda --sparsity 0.25 --quant gptq --joint $j --out "$T/q$j.npy" --json \
    > "$T/$j.json" 2> "$T/err" \
    && [ "$(json_field "$T/$j.json" sparsity)" = "0.25" ] && ok || bad "joint $j: $(cat "$T/err")"
done
run --quant gptq --reference --sym --blocksize 16 --group 32 --out "$T/qr.npy" > /dev/null 2> "$T/err" && ok \
  || bad "reference run failed: $(cat "$T/err")"

# expect_fail CODE PATTERN args... (--out added): exit code, one line on stderr naming the problem, no
# output file
expect_fail() {
  local code=$1 pat=$2
  shift 2
  rm -f "$T/out.npy"
  "$BIN" layer "$@" --out "$T/out.npy" > "$T/out" 2> "$T/err"
  local rc=$?
  if [ $rc -ne "$code" ]; then bad "expected exit $code, got $rc for: $*"; return; fi
  if [ "$(wc -l < "$T/err")" -ne 1 ] || ! grep -q "^prunequant layer: .*$pat" "$T/err"; then
    bad "stderr for '$*': $(cat "$T/err")"
    return
  fi
  [ ! -e "$T/out.npy" ] && ok || bad "output written despite failure: $*"
}
W=(--weight "$T/W.npy")
H=(--hessian "$T/H.npy")
expect_fail 1 "Hbad.npy: shape (63, 63) does not match" "${W[@]}" --hessian "$T/Hbad.npy" --quant gptq
expect_fail 1 "v.npy: expected a non-empty 2-D array" --weight "$T/v.npy" "${H[@]}" --quant gptq
expect_fail 1 "fortran_order" --weight "$T/Wf.npy" "${H[@]}" --quant gptq
expect_fail 1 "missing.npy: cannot open" --weight "$T/missing.npy" "${H[@]}" --quant gptq
expect_fail 2 "--bits: must be an integer 2..8 (got '9')" "${W[@]}" "${H[@]}" --quant gptq --bits 9
expect_fail 2 "--bits: must be an integer 2..8 (got '1')" "${W[@]}" "${H[@]}" --quant rtn --bits 1
expect_fail 2 "3:2: N:M needs 0 < N < M" "${W[@]}" "${H[@]}" --prune sparsegpt --pattern 3:2
expect_fail 2 "M = 3 does not divide cols = 64" "${W[@]}" "${H[@]}" --prune wanda --pattern 1:3
expect_fail 2 "expected N:M" "${W[@]}" "${H[@]}" --prune wanda --pattern 2/4
expect_fail 2 "group size 24 does not divide cols = 64" "${W[@]}" "${H[@]}" --quant gptq --group 24
expect_fail 2 "sparsity" "${W[@]}" "${H[@]}" --prune magnitude --sparsity 1.5
expect_fail 2 "nothing to do" "${W[@]}" "${H[@]}"
expect_fail 2 "needs quant gptq" "${W[@]}" "${H[@]}" --prune sparsegpt --quant rtn --joint fused
expect_fail 2 "unknown option --bogus" "${W[@]}" "${H[@]}" --quant gptq --bogus
expect_fail 2 "unknown option --bitz (did you mean --bits?)" "${W[@]}" "${H[@]}" --quant gptq --bitz 4
"$BIN" layer "${W[@]}" "${H[@]}" --quant gptq > "$T/out" 2> "$T/err"
[ $? -eq 2 ] && grep -q "^prunequant layer: --out is required" "$T/err" && ok || bad "missing --out: $(cat "$T/err")"

echo "cli_layer: $pass passed, $fail failed"
[ $fail -eq 0 ]
