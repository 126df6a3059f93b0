#!/usr/bin/env bash
# Byte identity of compress outputs across refactors: BabyLlama compressed with 8 recipes (RTN,
# GPTQ, SparseGPT 50%, SparseGPT 2:4, joint a / b / fused, a dense bf16 output), every output file's sha256 compared
# with the values recorded from the pre-redesign build (tests/golden/compress.sha256).
# GPTQ's numbers differ in the last bits between OpenBLAS kernel families, so the hashes are
# recorded per family and each family this CPU can run is forced with OPENBLAS_CORETYPE (Haswell
# runs on every AVX2 CPU, Intel or AMD; the AVX-512 families where the CPU has them).
# OpenBLAS runs on one thread (OPENBLAS_NUM_THREADS=1): the pre-redesign build left its BLAS
# thread count to whatever an earlier call had set (its first Hessian chunk ran on OpenBLAS's
# default), and Haswell's sgemm rounds differently on 1 and on several threads; the recorded
# hashes are that build's output on one BLAS thread (the redesigned build scopes the count and
# gives the same bytes for any OPENBLAS_NUM_THREADS).
# PQ_GOLDEN_RECORD=1 rewrites the file (only when a change of output is intended: say why in the
# commit).
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
SRC=${PQ_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
GOLD=$SRC/tests/golden/compress.sha256
. "$(dirname "$0")/lib.sh"
babyllama

# the calibration path is recorded in config.json: run from $T with a relative path
cd "$T" || exit 1
export OPENBLAS_NUM_THREADS=1
head -c 400000 "$TEXT" > calib.txt
# the pre-redesign build wrote packed-v1 (a 2:4 keep mask as a bitmask); packed-v2 is checked
# against the dense output in test_pipeline
C=(--calib calib.txt --tokenizer "$TOK" --nsamples 8 --seqlen 128 --threads 2 --quiet --format packed-v1)
recipes=(
    "rtn|--quant rtn --bits 4 --group 32"
    "gptq|--quant gptq --bits 4 --group 32 --asym --act-order"
    "sparsegpt50|--prune sparsegpt --sparsity 0.5"
    "sparsegpt24|--prune sparsegpt --pattern 2:4"
    "joint_a|--prune sparsegpt --sparsity 0.25 --quant gptq --bits 4 --group 32 --joint a"
    "joint_b|--prune wanda --sparsity 0.25 --quant gptq --bits 3 --group 32 --joint b"
    "joint_fused|--prune sparsegpt --pattern 2:4 --quant gptq --bits 4 --group 32 --joint fused"
    "gptq_dense_bf16|--quant gptq --bits 3 --group 32 --format dense --dtype bf16 --true-sequential"
)

families=(Haswell)
grep -qw avx512f /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo && families+=(SkylakeX)
grep -qw avx512_bf16 /proc/cpuinfo && families+=(Cooperlake)

hashes() { # FAMILY: one line "FAMILY RECIPE FILE SHA256" per output file
    local fam=$1 r name args f
    for r in "${recipes[@]}"; do
        name=${r%%|*}
        args=${r#*|}
        rm -rf "out_$name"
        # shellcheck disable=SC2086
        if ! OPENBLAS_CORETYPE=$fam "$BIN" compress "$M" "${C[@]}" $args --out "out_$name"; then
            echo "$fam $name compress-failed -"
            continue
        fi
        for f in $(cd "out_$name" && ls); do
            echo "$fam $name $f $(sha256sum "out_$name/$f" | cut -d' ' -f1)"
        done
    done
}

if [ "${PQ_GOLDEN_RECORD:-0}" = 1 ]; then
    : > new.sha256
    for fam in Haswell SkylakeX Cooperlake; do hashes "$fam" >> new.sha256; done
    cp new.sha256 "$GOLD"
    echo "recorded $(wc -l < "$GOLD") hashes in $GOLD"
    exit 0
fi

[ -f "$GOLD" ] || { echo "FAIL: $GOLD missing" >&2; exit 1; }
for fam in "${families[@]}"; do
    hashes "$fam" > "got_$fam.sha256"
    grep "^$fam " "$GOLD" > "want_$fam.sha256"
    [ -s "want_$fam.sha256" ] || { bad "no recorded hashes for $fam"; continue; }
    if diff "want_$fam.sha256" "got_$fam.sha256" > "diff_$fam.txt"; then
        ok
    else
        bad "$fam: outputs differ from the recorded ones: $(grep -c '^>' "diff_$fam.txt") file(s): $(grep '^>' "diff_$fam.txt" | head -3 | cut -d' ' -f3,4 | tr '\n' ' ')"
    fi
done
echo "cli_golden: $pass passed, $fail failed (families: ${families[*]})"
[ "$fail" -eq 0 ]
