#!/usr/bin/env bash
# Runtime acceptance on the real models in ../shared/data: llama2.c oracle texts from the
# .bin and the .gguf, BabyLlama with its SentencePiece model, Llama-2 tokenizer ids,
# perplexity and conversion round trips, and clean errors on bad input.
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
DATA=${PQ_DATA:?PQ_DATA not set}
if [ ! -d "$DATA/models" ]; then
  echo "cli_runtime: shared data not found at $DATA" >&2
  exit 1
fi
. "$(dirname "$0")/lib.sh"
S=$DATA/models/stories260K
B=$DATA/models/babyllama-tok105

# ORACLE.md section 1a, the llama2.c test text (no trailing newline)
printf '%s\n%s\n%s\n%s' \
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.' \
  'Lily'"'"'s mom said, "Lily, let'"'"'s go to the park." Lily was sad and didn'"'"'t know what to do. She said, "I want to play with your ball, but I can'"'"'t find it."' \
  'Lily was sad and didn'"'"'t know what to do. She said, "I'"'"'m sorry, Lily. I didn'"'"'t know what to do."' \
  'Lily didn'"'"'t want to help her mom, so she' > "$T/oracle1a.txt"

"$BIN" generate "$S/stories260K.bin" --tokenizer "$S/tok512.bin" --temp 0 -n 200 > "$T/gen_bin.txt" 2>"$T/err" \
  && cmp -s "$T/gen_bin.txt" "$T/oracle1a.txt" && ok || bad "stories260K.bin greedy 200 != ORACLE 1a"
"$BIN" generate "$S/stories260K.gguf" --temp 0 -n 200 > "$T/gen_gguf.txt" 2>"$T/err" \
  && cmp -s "$T/gen_gguf.txt" "$T/oracle1a.txt" && ok || bad "stories260K.gguf greedy 200 != ORACLE 1a"

# ORACLE.md section 1b, sampled with llama2.c's sampler (temperature 1, top-p 0.9, seed 133742)
printf '%s\n%s\n%s' \
  'Once upon a time, there was a little boy named Timmy. Timmy loved to play with his toys and eat sandwiches. One day, Timmy'"'"'s mom told him it was time to rest for a while. Timmy'"'"'s friend Billy came over and took him a down.' \
  'Timmy'"'"'s mom saw that Timmy was sad, but Timmy said, "I didn'"'"'t understand what is it! We need to find some leafs." Timmy thought about it and took a deep breath on a spoon. He hoped it was important to be kind and continued to find its image next time.' \
  'After they finished getting, Timmy'"'"'s dad came up to his house and promised to help Timmy.' > "$T/oracle1b.txt"
"$BIN" generate "$S/stories260K.bin" --temp 1 --top-p 0.9 --seed 133742 -n 256 > "$T/gen_topp.txt" 2>"$T/err" \
  && cmp -s "$T/gen_topp.txt" "$T/oracle1b.txt" && ok || bad "stories260K top-p seed 133742 != ORACLE 1b"

# ORACLE.md section 4, BabyLlama with tok105.model
printf '%s' 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. One day, she went to the park with her mommy and daddy. She saw a big box on the ground. She wanted to play with it, but she was too heavy. She was so happy t' > "$T/oracle4.txt"
"$BIN" generate "$B/model5000.bin" --tokenizer "$B/tok105.model" --temp 0 -n 256 > "$T/gen_baby.txt" 2>"$T/err" \
  && cmp -s "$T/gen_baby.txt" "$T/oracle4.txt" && ok || bad "BabyLlama greedy 256 != ORACLE 4"

# ORACLE.md section 3, Llama 2 tokenizer
L2=$DATA/models/llama2-tokenizer/tokenizer.bin
chk_tok() {
  local got
  got=$("$BIN" tokenize --tokenizer "$L2" --bos "$1")
  [ "$got" = "$2" ] && ok || bad "tokenize '$1': got '$got'"
}
chk_tok "" "1"
chk_tok "I believe the meaning of life is" "1 306 4658 278 6593 310 2834 338"
chk_tok "Simply put, the theory of relativity states that " "1 3439 17632 1925 29892 278 6368 310 14215 537 5922 393 29871"

# perplexity 3..5 at ctx 512; HF and GGUF round trips within 1e-5 relative
VAL=$DATA/text/tinystories/tinystories_val.txt
# the first 100k tokens keep the suite fast; the full-file numbers are in the closing note
ppl_of() { "$BIN" ppl "$@" --text "$VAL" --ctx 512 --max-tokens 100000 --json | sed -n 's/.*"ppl":[[:space:]]*\([0-9.e+-]*\).*/\1/p'; }
P0=$(ppl_of "$S/stories260K.bin" --tokenizer "$S/tok512.bin")
awk -v p="$P0" 'BEGIN { exit !(p > 3 && p < 5) }' && ok || bad "stories260K ppl $P0 not in (3, 5)"
"$BIN" convert "$S/stories260K.bin" --tokenizer "$S/tok512.bin" --to hf --out "$T/hf" 2>"$T/err" && ok || bad "convert to hf: $(cat "$T/err")"
"$BIN" convert "$T/hf" --to gguf --out "$T/rt.gguf" 2>"$T/err" && ok || bad "convert to gguf: $(cat "$T/err")"
llamacpp_load_check "$T/rt.gguf"
P1=$(ppl_of "$T/hf")
P2=$(ppl_of "$T/rt.gguf")
for p in "$P1" "$P2"; do
  awk -v a="$P0" -v b="$p" 'BEGIN { d = (a - b) / a; if (d < 0) d = -d; exit !(b != "" && d <= 1e-5) }' && ok || bad "round-trip ppl $p vs $P0"
done
"$BIN" generate "$T/rt.gguf" --temp 0 -n 200 > "$T/gen_rt.txt" && cmp -s "$T/gen_rt.txt" "$T/oracle1a.txt" && ok || bad "round-trip gguf generation differs"
"$BIN" ppl "$S/stories260K.bin" --text "$VAL" --ctx 512 --protocol llamacpp --max-tokens 20000 | grep -q "protocol llamacpp" && ok || bad "llamacpp protocol not printed"

# bad input: non-zero exit 1..125, one line naming the file, no output left behind
expect_err() { # file-to-name, command...
  local name=$1; shift
  "$@" > "$T/out" 2> "$T/err"
  local rc=$?
  if [ $rc -ge 1 ] && [ $rc -le 125 ] && [ "$(wc -l < "$T/err")" -eq 1 ] && grep -q -- "$name" "$T/err"; then ok
  else bad "expected a one-line error naming $name from '$*' (rc $rc): $(head -c 300 "$T/err")"; fi
}
head -c 1000 "$S/stories260K.bin" > "$T/trunc.bin"
expect_err trunc.bin "$BIN" info "$T/trunc.bin"
head -c 5000 "$S/stories260K.gguf" > "$T/trunc.gguf"
expect_err trunc.gguf "$BIN" info "$T/trunc.gguf"
printf '\x00\x00\x10\x00\x00\x00\x00\x00{"a":' > "$T/bad.safetensors"
mkdir -p "$T/badhf" && cp "$T/hf/config.json" "$T/badhf/" && cp "$T/bad.safetensors" "$T/badhf/model.safetensors"
expect_err model.safetensors "$BIN" info "$T/badhf"
mkdir -p "$T/badjson" && echo '{"architectures": ["LlamaForCausalLM"], "hidden_size": ' > "$T/badjson/config.json"
expect_err config.json "$BIN" info "$T/badjson"
expect_err nonexistent "$BIN" info "$T/nonexistent"
printf '\x40\x00\x00\x00\x40\x00\x00\x00' > "$T/badtok.bin"
expect_err badtok.bin "$BIN" tokenize --tokenizer "$T/badtok.bin" hi
expect_err "\-\-ctx" "$BIN" ppl "$S/stories260K.bin" --text "$VAL" --ctx abc
expect_err "\-\-dtype" "$BIN" convert "$S/stories260K.bin" --to hf --out "$T/x" --dtype q3
# a failed conversion leaves nothing behind
"$BIN" convert "$T/trunc.bin" --to hf --out "$T/never" 2>/dev/null
[ ! -e "$T/never" ] && [ -z "$(ls "$T" | grep never)" ] && ok || bad "failed convert left output"

echo "cli_runtime: $pass passed, $fail failed"
[ $fail -eq 0 ]
