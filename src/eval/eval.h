/* Internal evaluation pieces: token-level scoring from a shared KV state, text-level MC
 * scoring, greedy generation with stop strings, answer extraction, and task data. */
#ifndef PQ_EVAL_H
#define PQ_EVAL_H

#include "common/common.h"
#include "model/model.h"
#include "prunequant-eval.h"

/* ---------------------------------------------------------------- scoring (score.c) */

/* Log-likelihood of each continuation conts[c] (lens[c] tokens) after the same context
 * ctx_ids[n_ctx] (n_ctx >= 1): the context runs once, its KV state is copied to one
 * sequence per continuation, and all continuations run in one batch. ll[c] = summed
 * log P, greedy[c] = 1 if every continuation token is the argmax (may be NULL).
 * Caller guarantees n_ctx + max(lens) <= the model's context. */
pq_status pq__score_shared(pq_ctx *ctx, const pq_model *m, const int32_t *ctx_ids, int64_t n_ctx,
                           const int32_t *const *conts, const int64_t *lens, int n, double *ll, int *greedy);

/* Log-likelihood of one continuation after each of n contexts (winogrande partial
 * scoring): the sequences ctxs[c] + cont run as one right-padded batch. */
pq_status pq__score_partial(pq_ctx *ctx, const pq_model *m, const int32_t *const *ctxs, const int64_t *ctx_lens,
                            const int32_t *cont, int64_t n_cont, int n, double *ll, int *greedy);

/* log softmax(logits)[target] in double; *is_max set to 1 if target is the argmax. */
double pq__log_prob(const float *logits, int64_t V, int32_t target, int *is_max);

/* Text level: context (no leading/trailing space needed) and choices scored as
 * " " + choice with the harness's split (continuation tokens = tokens(context + " " +
 * choice) after the tokens of context). Fills ll[n] and, if given, chars[n] (code points
 * of " " + choice) and greedy[n]. Contexts too long for the model lose their oldest
 * tokens (BOS kept). */
pq_status pq__score_mc_text(pq_ctx *ctx, const pq_model *m, const char *context, const char *const *choices, int n,
                            double *ll, int64_t *chars, int *greedy);
/* Text level partial scoring: " " + cont after each of n contexts. */
pq_status pq__score_partial_text(pq_ctx *ctx, const pq_model *m, const char *const *contexts, int n, const char *cont,
                                 double *ll);

/* argmax of ll (first on ties); with chars, of ll / chars. */
int pq__mc_pick(const double *ll, const int64_t *chars, int n);
/* Number of UTF-8 code points. */
int64_t pq__utf8_len(const char *s);

/* Greedy generation from prompt (BOS added), stopping at the first of stops (not
 * included in *out) or after max_tokens. *out malloc'ed. */
pq_status pq__generate_text(pq_ctx *ctx, const pq_model *m, const char *prompt, const char *const *stops, int n_stops,
                            int64_t max_tokens, char **out);

/* ---------------------------------------------------------------- extraction (extract.c) */

/* Last number in text (digits with optional sign, ',' and '.'), normalised: ',' and '$'
 * removed, trailing '.' dropped. Returns 0 if none. */
int pq__extract_last_number(const char *text, char *out, size_t n);
/* GSM8K target: the number after "####", normalised as above. */
int pq__extract_gsm8k_target(const char *answer, char *out, size_t n);
/* Content of the last \boxed{...} (or \fbox{...}) with balanced braces; 0 if none. */
int pq__extract_boxed(const char *text, char *out, size_t n);
/* MATH answer normalisation (Minerva-style, simplified). */
void pq__math_normalize(const char *in, char *out, size_t n);
/* Numeric strings compare as numbers ("18" == "18.0"), others byte-wise. */
int pq__answers_equal(const char *a, const char *b);

/* ---------------------------------------------------------------- tasks (tasks.c) */

typedef enum pq__task_kind {
    PQ__KIND_MC = 0,      /* context + " " + choice */
    PQ__KIND_PARTIAL = 1, /* choices are contexts; " " + target after each */
    PQ__KIND_LAMBADA = 2, /* context + " " + target word: greedy match and ppl */
    PQ__KIND_GEN = 3,     /* prompt -> greedy -> extract -> compare with target */
    PQ__KIND_PPL = 4,
    PQ__KIND_KLD = 5
} pq__task_kind;

typedef enum pq__extract_kind { PQ__EXTRACT_EXACT = 0, PQ__EXTRACT_GSM8K = 1, PQ__EXTRACT_MATH = 2 } pq__extract_kind;

/* BBH exact match: trimmed, case-insensitive. */
int pq__exact_match(const char *output, const char *target);
/* MATH: the last \boxed{} of the output, else what follows "final answer is". */
void pq__extract_math_answer(const char *output, char *out, size_t n);
/* 1 when a generated output answers target under the task's extraction, else 0. */
int pq__answer_score(pq__extract_kind kind, const char *output, const char *target);
/* One line on how answers are extracted and compared, for the protocol. */
const char *pq__answer_method(pq__extract_kind kind);

typedef struct pq__item {
    char *context;  /* MC/lambada/gen: prompt text; PARTIAL: unused */
    char **choices; /* MC: choices; PARTIAL: the context options */
    int n_choices, gold;
    char *target;      /* GEN: reference answer; LAMBADA/PARTIAL: continuation */
    char *shot_target; /* GEN: text after the prompt in a few-shot example */
    int group;         /* subject index (mmlu, mmlu_pro, bbh) for few-shot pools */
    char **stops;      /* GEN: per-item stop strings (gen:FILE), or NULL */
    int n_stops;
} pq__item;

typedef struct pq__task {
    char name[96];
    pq__task_kind kind;
    pq__extract_kind extract;
    char file[512];
    pq__item *items; /* every item (few-shot pools draw from all of them) */
    int64_t n_items, cap_items;
    int64_t *eval_idx; /* the items evaluated: the first limit of each group */
    int64_t n_eval;
    pq__item *dev; /* dev split for few-shot (may be NULL: then the items themselves) */
    int64_t n_dev, cap_dev;
    char **group_names; /* [n_groups] */
    char **group_descr; /* [n_groups] description line before the shots (may be NULL) */
    int n_groups;
    int dev_first_n; /* few-shot = first k dev items of the group (mmlu) */
    int default_shots;
    int64_t gen_tokens;
    char **stops;
    int n_stops;
    int n_choices; /* for chance normalisation (0 if it varies / not MC) */
    char metric[24];
} pq__task;

/* Loads the data of a task spec (not ppl/kld, whose "file" is just resolved). limit > 0
 * evaluates the first limit items (per group for grouped tasks). aux_dir (may be NULL) is
 * searched for a decompressed hellaswag file. */
pq_status pq__task_load(pq_ctx *ctx, const char *spec, const char *data_dir, const char *aux_dir, int64_t limit,
                        pq__task *t);
/* Resolves a file argument: as given when it exists, else under data_dir, data_dir/text,
 * data_dir/tasks. out gets the path. Returns 0 if not found. */
int pq__resolve_file(const char *arg, const char *data_dir, char *out, size_t n);
void pq__task_free(pq__task *t);

/* The k-shot prefix for item i (joined with "\n\n", ending in "\n\n" when k > 0);
 * malloc'ed. */
char *pq__task_fewshot(const pq__task *t, int64_t i, int k, uint64_t seed);

/* ---------------------------------------------------------------- misc */

/* Reads the text file path and tokenizes it (BOS first) into *ids[*n] (malloc'ed). */
pq_status pq__read_tokens(pq_ctx *ctx, const pq_tokenizer *tok, const char *path, int32_t **ids, int64_t *n);

/* Content hash of a model's weights (names, shapes, dtypes, bytes) and tokenizer. */
uint64_t pq__model_hash(const pq_model *m);

/* A growable string. */
typedef struct pq__str {
    char *p;
    size_t len, cap;
} pq__str;
int pq__str_add(pq__str *s, const char *t, size_t n);
int pq__str_adds(pq__str *s, const char *t);
int pq__str_addf(pq__str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* xorshift64* stream */
uint64_t pq__rng_next(uint64_t *s);

#endif
