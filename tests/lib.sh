# Shared preamble of the CLI tests (sourced): a private temporary folder $T, removed at exit,
# and the pass / fail counters with ok, bad MESSAGE and check COMMAND...
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if "$@"; then ok; else bad "$*"; fi; }

# babyllama: M (BabyLlama), TOK (its tokenizer) and TEXT (TinyStories val) under $PQ_DATA; a
# FAIL line and exit 1 when they are missing.
babyllama() {
    DATA=${PQ_DATA:?PQ_DATA not set}
    M=$DATA/models/babyllama-tok105/model5000.bin
    TOK=$DATA/models/babyllama-tok105/tok105.model
    TEXT=$DATA/text/tinystories/tinystories_val.txt
    if [ ! -f "$M" ] || [ ! -f "$TEXT" ]; then echo "FAIL: BabyLlama or tinystories missing under $PQ_DATA" >&2; exit 1; fi
}

# llamacpp_load_check FILE: real llama.cpp (prebuilt libllama, set up once per machine by
# scripts/llamacpp.sh) loads the GGUF, tokenizes a text with a newline and a character that small
# vocabularies lack, and decodes one token; counts ok / bad. A setup failure counts as bad.
llamacpp_load_check() {
    if [ -z "${PQ_LLAMACPP_BIN:-}" ]; then
        local src=${PQ_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
        PQ_LLAMACPP_BIN=$(PQ_LLAMACPP_QUIET=1 bash "$src/scripts/llamacpp.sh") || {
            bad "llamacpp_load_check $1: the llama.cpp harness could not be set up (scripts/llamacpp.sh)"
            return 1
        }
    fi
    local out
    if out=$("$PQ_LLAMACPP_BIN/llama_check" "$1" --tokenize "$(printf 'Once upon a time.\n\nThe end, \305\223!')" \
        --greedy 1 --timeout 120 2>&1); then
        ok
    else
        bad "llama.cpp does not load $1: $(printf '%s\n' "$out" | grep -v '^\(n_vocab\|tokens\|greedy\)' | tail -3)"
        return 1
    fi
}
