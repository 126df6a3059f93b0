/* Unknown options: one message for every command, with the nearest option the command knows
 * ("unknown option --bitz (did you mean --bits?)"), exit code 2. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* The options of each command (as its --help lists them, plus the common ones). */
static const struct {
    const char *cmd, *options;
} known[] = {
    {"info", "--json --tensors --sparsity --tokenizer --threads --quiet --help"},
    {"tokenize", "--bos --file --tokenizer --threads --quiet --help"},
    {"detokenize", "--file --skip-special --tokenizer --threads --quiet --help"},
    {"generate", "--prompt --seed --temp --top-p --int8-prompt --int8-decode --tokenizer --threads --quiet --help"},
    {"ppl", "--batch --ctx --json --max-tokens --protocol --text --tokenizer --threads --quiet --help"},
    {"convert", "--dtype --gguf-type --imatrix --out --to --tokenizer --threads --quiet --help"},
    {"compress", "--act-order --asym --bits --blocksize --calib --dtype --format --gguf-type --group --imatrix-out "
                 "--joint --keep-mask "
                 "--no-keep-mask --nsamples --out --pattern --percdamp --prune --quant --recipe --report --seed "
                 "--seqlen --skip --sparsity --static-groups --sym --tokenizer --true-sequential --threads --quiet "
                 "--help"},
    {"layer", "--act-order --asym --bits --blocksize --error --f32-factor --group --hessian --joint --json "
              "--keep-mask --no-keep-mask --out --pattern --percdamp --prune --quant --reference --sparsity "
              "--static-groups --sym --weight --threads --quiet --help"},
    {"eval",
     "--base --base-tokenizer --bits --cache-dir --ctx --data-dir --json --limit --max-gen --no-cache "
     "--protocol --seed --shots --sparsity --tasks --tokenizer --normalize --log-samples --threads --quiet --help"},
    {"sweep", "--calib --data-dir --db --dry-run --grid --keep-models --limit --nsamples --resume --seed --seqlen "
              "--tasks --tcr --tokenizer --verbose --threads --quiet --help"},
    {"recommend", "--db --json --max-bytes --min-sr --point --tcr --help"},
    {"report", "--db --json --out --text --help"},
    {"tasks", "--cache-dir --choices --data-dir --limit --out --seed --help"},
    {"tasks list", "--cache-dir --data-dir --limit --help"},
    {"tasks make-cloze", "--choices --out --seed --help"},
};

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la > 60 || lb > 60) return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            const size_t up = row[j], sub = diag + (a[i - 1] != b[j - 1]), del = up + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            diag = up;
        }
    }
    return row[lb];
}

int cli_nearest_word(const char *word, const char *words, char *out, size_t n) {
    size_t best = 99;
    out[0] = 0;
    for (const char *p = words; *p;) {
        while (*p == ' ')
            p++;
        const size_t len = strcspn(p, " ");
        if (!len) break;
        char w[64];
        snprintf(w, sizeof w, "%.*s", (int)len, p);
        const size_t d = edit_distance(word, w);
        if (d < best) best = d, snprintf(out, n, "%s", w);
        p += len;
    }
    /* a suggestion only when it is close: at most 2 edits, and fewer than half the word */
    if (best > 2 || 2 * best >= strlen(word)) out[0] = 0;
    return out[0] != 0;
}

int cli_unknown_option(const char *cmd, const char *arg) {
    const char *opts = NULL;
    for (size_t i = 0; i < sizeof known / sizeof known[0] && !opts; i++)
        if (!strcmp(known[i].cmd, cmd)) opts = known[i].options;
    char near[64], name[64];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg); /* --bitz=4 -> --bitz */
    if (opts && cli_nearest_word(name, opts, near, sizeof near))
        fprintf(stderr, "prunequant %s: unknown option %s (did you mean %s?)\n", cmd, name, near);
    else
        fprintf(stderr, "prunequant %s: unknown option %s (see 'prunequant %s --help')\n", cmd, name, cmd);
    return 2;
}
