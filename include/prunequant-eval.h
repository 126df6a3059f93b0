/* prunequant evaluation: benchmarks in lm-evaluation-harness style, KL divergence to a
 * base model, and the compression/retention metrics of docs/ALGORITHMS.md §7-§8.
 *
 * Protocols (printed next to every number, see pq_task_result.protocol):
 *  - multiple choice: log P(" " + choice | context) summed over the choice's tokens; acc =
 *    argmax of the sum, acc_norm = argmax of the sum / length of " " + choice in characters.
 *    The context runs once; every choice is scored from a copy of its KV state.
 *  - generative: greedy decoding until a stop string; GSM8K last number, MATH last \boxed{}
 *    (normalised), BBH exact match (trimmed, case-insensitive).
 *  - stderr of a mean of 0/1 scores: sqrt(p (1 - p) / (n - 1)) (the harness's sample stderr).
 *  - k-shot examples come from the task's dev split (MMLU: its first k dev rows, as the
 *    harness) or, without one, from the other items of the same task/subject, drawn with
 *    a fixed seed; the drawn set depends only on (seed, item index).
 * Task data files are read from a data folder laid out as shared/data (tasks/, text/).
 */
#ifndef PRUNEQUANT_EVAL_H
#define PRUNEQUANT_EVAL_H

#include "prunequant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- parameters */

typedef struct pq_eval_params {
    const char *data_dir;         /* folder with tasks/ and text/ (required for named tasks) */
    const char *cache_dir;        /* base-model result cache; NULL = no caching */
    int64_t limit;                /* items per task (per subject for mmlu/bbh); ppl/kld: windows; 0 = all */
    int shots;                    /* k-shot examples; -1 = the task's default (0 for most) */
    uint64_t seed;                /* few-shot sampling seed (default 1234, as the harness) */
    int64_t ctx;                  /* ppl/kld window (default 512, clamped to the models' context) */
    pq_ppl_protocol ppl_protocol; /* ppl/kld protocol (default gptq) */
    int64_t gen_max_tokens;       /* generative tasks: new tokens (0 = the task's default) */
    int normalize_chance;         /* 1: Sr and its interval from chance-normalised retentions of the
                                     multiple-choice tasks (stated in each task's protocol) */
    /* Per-item records of the evaluated model (not of the base), lm-evaluation-harness
     * --log_samples style: one JSON object per item, as a line without the newline:
     * {"task", "doc_id", "prompt", "choices", "loglikelihoods", "pred", "gold", "acc"} for
     * multiple choice, {"task", "doc_id", "prompt", "output", "target", "acc"} for generation.
     * Return non-zero to stop (the task fails with PQ_ERR_CANCELLED). NULL = off. */
    int (*on_sample)(void *user, const char *json_line);
    void *sample_user;
} pq_eval_params;

pq_eval_params pq_eval_params_default(void);

/* ---------------------------------------------------------------- results */

/* Per-unit results of one task on one model, for paired statistics: the base and every
 * compressed model are scored on the same units (items, or ppl windows), so their
 * differences are resampled together. */
typedef enum pq_units_kind {
    PQ_UNITS_MEAN = 0, /* score = mean of value (0/1 correctness of each item) */
    PQ_UNITS_PPL = 1   /* score = exp(sum value / sum weight): value = NLL summed over a window's
                          scored tokens, weight = its token count */
} pq_units_kind;

typedef struct pq_units {
    pq_units_kind kind;
    int64_t n;
    double *value;  /* [n], malloc'ed (owned by the result that holds it) */
    double *weight; /* [n] or NULL (= 1 each), malloc'ed */
    int chance_k;   /* > 1: the score is chance-normalised for k choices before any ratio,
                       max(0, (raw - 1/k) / (1 - 1/k)) (Open LLM Leaderboard); 0: raw */
} pq_units;

/* The task's score from its units (mean, or perplexity). NAN for no units. */
double pq_units_score(const pq_units *u);
void pq_units_clear(pq_units *u); /* frees the arrays; a zeroed pq_units is empty */

typedef struct pq_task_result {
    char name[96];    /* e.g. "arc_easy", "ppl:wiki.test.raw", "bbh:navigate" */
    char metric[24];  /* main metric: "acc", "acc_norm", "exact_match", "ppl" */
    double score, se; /* main metric (ppl: perplexity, stderr by the delta method) */
    char metric2[24]; /* second metric or "" (acc_norm for MC, ppl for lambada) */
    double score2, se2;
    int64_t n;            /* items (ppl: scored tokens) */
    int n_choices;        /* choices per item for chance normalisation (0 = not MC) */
    int higher_is_better; /* 0 for ppl */
    int shots;
    char protocol[320]; /* one line */
    char file[512];     /* the data file read */
    /* filled by pq_eval_run when a base model is given */
    int has_base;
    int base_cached; /* the base result came from the cache */
    double base_score, base_se, base_score2;
    double retention;       /* score/base (ppl: base/score); NAN if undefined */
    double retention_norm;  /* chance-normalised retention; NAN if not MC or undefined */
    double retention_ci[2]; /* paired bootstrap interval of retention (pq_eval_run; NAN if none) */
    pq_units units;         /* per-unit results of the model (owned; n = 0 when not kept) */
    pq_units base_units;    /* the same units of the base (owned; filled by pq_eval_run) */
    double seconds;         /* wall time of the model's evaluation (pq_eval_run; base not included) */
} pq_task_result;

typedef struct pq_kld_result {
    int64_t n_tokens, n_windows, ctx;
    double mean, se;
    double mean_ci[2]; /* bootstrap interval of the mean, windows as blocks of tokens */
    double p999, p99, p95, p90, median, p10, p05, p01, max, min;
    double same_top, same_top_se;  /* fraction of positions with equal argmax */
    double dp_mean, dp_se, dp_rms; /* delta p of the correct token: p_model - p_base */
    double dp_p999, dp_p99, dp_p95, dp_p90, dp_median, dp_p10, dp_p05, dp_p01;
    double ppl_base, ppl_model;
    double ln_ppl_ratio, ln_ppl_ratio_se;
    char protocol[320];
    char file[512];
    double seconds; /* wall time (both models' forward passes), set by pq_eval_run */
    pq_units units; /* per window: the summed KLD of its scored tokens (value) and their count (weight),
                       so that the score is the mean KLD; for paired comparisons of models on the same
                       windows. Owned (pq_units_clear; pq_eval_report_free does it) */
} pq_kld_result;

typedef struct pq_metrics {
    double sparsity;    /* s in [0,1) */
    double bits;        /* q */
    double stored_bits; /* bits of the stored float dtype of the linear weights */
    double tcr, acr, bpw;
    double sr, sr_norm; /* mean retention over tasks with one (NAN if none) */
    double sr_ci[2];    /* paired bootstrap interval of Sr (NAN if undefined) */
    int n_retention;    /* tasks in sr */
    double srcr, sr_tcr;
} pq_metrics;

typedef struct pq_eval_report {
    char model[512], base[512];
    pq_task_result *tasks; /* [n_tasks] */
    int64_t n_tasks;
    int has_kld;
    pq_kld_result kld;
    pq_metrics metrics;
} pq_eval_report;

void pq_eval_report_free(pq_eval_report *r);

/* ---------------------------------------------------------------- statistics
 * Paired bootstrap (percentile intervals): every replicate draws, for each task, n units
 * with replacement from that task's units, and the SAME draw is applied to the base and to
 * every compressed model, so what varies together (hard items, hard windows) cancels in
 * retentions and differences. Tasks are drawn independently of each other. The draw of task
 * t in replicate b depends only on (seed, t, b): two calls with the same task order give the
 * same replicates, so a difference of Sr is resampled consistently with each Sr. A model
 * compared with itself gets intervals of exactly [1, 1] and differences of [0, 0]. */
typedef struct pq_bootstrap_params {
    int64_t resamples; /* replicates (default 2000) */
    double level;      /* two-sided coverage (default 0.95) */
    uint64_t seed;     /* default 20250101 */
} pq_bootstrap_params;

pq_bootstrap_params pq_bootstrap_params_default(void);
/* One line naming the method (params NULL: the defaults), e.g. "paired bootstrap, 2000 resamples, 95% percentile
 * interval, seed 20250101". */
void pq_bootstrap_describe(const pq_bootstrap_params *p, char *buf, size_t n);

/* Sr of one model over n_tasks tasks and its interval. model[t] and base[t] are the units of
 * task t (same n); higher[t] = 1 for scores, 0 for perplexity. sr/ci get NAN when undefined
 * (or when fewer than 95% of the replicates give a finite Sr). n_tasks = 1 gives a task's
 * retention. */
pq_status pq_bootstrap_sr(pq_ctx *ctx, int64_t n_tasks, const pq_units *const *model, const pq_units *const *base,
                          const int *higher, const pq_bootstrap_params *p, double *sr, double ci[2]);
/* The interval of one model's score from its units alone (e.g. the mean KLD over windows:
 * tokens resampled in blocks of a window, since neighbouring tokens are not independent). */
pq_status pq_bootstrap_score(pq_ctx *ctx, const pq_units *u, const pq_bootstrap_params *p, double ci[2]);
/* score(a) - score(b) of two models' units on the same items or windows (e.g. their
 * perplexities, or their mean KLD to a base), each replicate drawing the same units for both
 * (task 0's draws); NAN when a and b are not paired. */
pq_status pq_bootstrap_score_diff(pq_ctx *ctx, const pq_units *a, const pq_units *b, const pq_bootstrap_params *p,
                                  double *diff, double ci[2]);
/* Sr(a) - Sr(b) and its interval, a and b resampled with the same draws. */
pq_status pq_bootstrap_sr_diff(pq_ctx *ctx, int64_t n_tasks, const pq_units *const *a, const pq_units *const *b,
                               const pq_units *const *base, const int *higher, const pq_bootstrap_params *p,
                               double *diff, double ci[2]);

/* ---------------------------------------------------------------- running */

/* Evaluates one task spec (see pq_eval_run) on one model. */
pq_status pq_eval_task(pq_ctx *ctx, const pq_model *model, const char *task, const pq_eval_params *params,
                       pq_task_result *out);

/* KL divergence of model to base on a text file, streamed window by window (float32
 * logits of both models in the same run). Both models must share the vocabulary. */
pq_status pq_eval_kld(pq_ctx *ctx, const pq_model *base, const pq_model *model, const char *text_path,
                      const pq_eval_params *params, pq_kld_result *out);

typedef struct pq_compress_info {
    double sparsity;     /* < 0: measure (fraction of zeros in the linear weights) */
    double bits;         /* <= 0: 16 for a float model */
    size_t linear_bytes; /* bytes of compressed linear weights incl. metadata; 0: as stored */
} pq_compress_info;

pq_compress_info pq_compress_info_default(void);

/* Runs a comma-separated task list on model (and base, which may be NULL):
 *   ppl:FILE  kld:FILE (needs base)  lambada  arc_easy  arc_challenge  piqa  hellaswag
 *   winogrande  boolq  mmlu  mmlu_pro  gsm8k  math  bbh  bbh:NAME  mc:FILE.jsonl  gen:FILE.jsonl
 * Base results are read from / written to params->cache_dir when set. Fills retentions
 * and metrics. *out is owned by the caller (pq_eval_report_free). */
pq_status pq_eval_run(pq_ctx *ctx, const pq_model *model, const char *model_path, const pq_model *base,
                      const char *base_path, const char *tasks, const pq_eval_params *params,
                      const pq_compress_info *cinfo, pq_eval_report **out);

/* Checks a task list before any work: every name is known, every file exists and parses,
 * kld tasks have a base (have_base). pq_eval_run calls it first; sweeps call it before they
 * create their database. */
pq_status pq_eval_tasks_check(pq_ctx *ctx, const char *tasks, const pq_eval_params *params, int have_base);

/* Writes the report as JSON atomically: {"model", "base", "tasks": {name: {metric, score,
 * stderr, base_score, retention, protocol, ...}}, "kld": {...}, "metrics": {...}}. */
pq_status pq_eval_report_write_json(pq_ctx *ctx, const pq_eval_report *r, const char *path);
/* The same JSON as a malloc'ed string (caller frees). */
char *pq_eval_report_json(const pq_eval_report *r);

/* ---------------------------------------------------------------- task files */

/* Names of the built-in tasks, NULL-terminated (static). */
const char *const *pq_eval_task_names(void);
/* One line on what a built-in task (or bbh:NAME) measures; NULL for others. Static. */
const char *pq_eval_task_description(const char *name);

/* Loads a task spec's data (params->data_dir; hellaswag also looks for a decompressed
 * copy in params->cache_dir) and counts its items (params->limit applies); file receives
 * the path read (for multi-file tasks the folder). A malformed line fails with a message naming file and line. */
pq_status pq_eval_task_count(pq_ctx *ctx, const char *task, const pq_eval_params *params, int64_t *n_items,
                             char *file, size_t file_size);

typedef struct pq_cloze_params {
    int n_choices; /* default 4 */
    uint64_t seed; /* default 0 */
    int64_t limit; /* items to write (default 1000; 0 = one per usable passage) */
} pq_cloze_params;

pq_cloze_params pq_cloze_params_default(void);

/* Story-continuation MC task from any text: passages split on blank lines; context = a
 * passage's sentences up to a point, the true next sentence against n_choices-1 sentences
 * drawn from other passages. Writes {"context", "choices", "gold"} lines atomically. */
pq_status pq_tasks_make_cloze(pq_ctx *ctx, const char *text_path, const char *out_path, const pq_cloze_params *params,
                              int64_t *n_written);

/* ---------------------------------------------------------------- metrics (§7) */

/* Theoretical compression rate vs 16 bits: 1 - (1 - s) * q / 16 (pruning only: q = 16;
 * quantization only: s = 0). */
double pq_metrics_tcr(double sparsity, double bits);
/* Sparsity of an N:M pattern (n zeros in every m). */
double pq_metrics_nm_sparsity(int n, int m);
/* Actual compression rate: 1 - compressed_bytes / (2 * n_weights). */
double pq_metrics_acr(size_t compressed_bytes, int64_t n_weights);
/* Bits per weight: 8 * bytes / n_weights. */
double pq_metrics_bpw(size_t bytes, int64_t n_weights);
/* Retention of one task: score / base (higher is better) or base / score (perplexity). */
double pq_metrics_retention(double score, double base, int higher_is_better);
/* Chance normalisation for k choices: max(0, (raw - 1/k) / (1 - 1/k)). */
double pq_metrics_chance_norm(double raw, int k);
/* Mean of the finite values (NAN if none). */
double pq_metrics_sr(const double *retentions, int64_t n);
/* SrCr, THIS PROJECT'S READING of the paper (its equation is unpublished):
 * Sr / (sqrt(1 - s) * log2(q) / log2(16)). Equals Sr for a dense 16-bit model. */
double pq_metrics_srcr(double sr, double sparsity, double bits);
/* Plain alternative: Sr * TCr. */
double pq_metrics_sr_tcr(double sr, double sparsity, double bits);
/* Binomial standard error of a mean of 0/1 scores: sqrt(p (1 - p) / (n - 1)). */
double pq_metrics_binom_stderr(double p, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* PRUNEQUANT_EVAL_H */
