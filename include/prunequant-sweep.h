/* prunequant sweep: expand a grid of compression recipes, compress and evaluate each one
 * against the base model, keep the results in an SQLite database (resumable), pick the
 * best configuration and draw a self-contained HTML report (docs/ALGORITHMS.md §7).
 *
 * Grid file (JSON object; every key optional, each a list or a single value):
 *   prune    ["none", "magnitude", "wanda", "sparsegpt"]      (default ["none"])
 *   sparsity [0.25, 0.5, "2:4", "2:8"]  fractions and/or N:M  (default [0.5])
 *   quant    ["none", "rtn", "gptq"]                          (default ["none"])
 *   bits     [3, 4, 8]                                        (default [4])
 *   group    [-1, 128]                                        (default [-1])
 *   sym      [false, true]                                    (default [false])
 *   act_order[false, true]                                    (default [false])
 *   joint    ["a", "b", "fused"]                              (default: the engine's)
 *   allocate true | "CANDIDATES"  (not an axis)  after the cross product, for every config an
 *            allocated one (pq_allocate with its methods, the default candidates or these) at
 *            the real bytes that config's run stored; its hash is the config's + "." + 6 hex
 *            digits of the allocation's settings, so the report pairs the two
 * The run list is the cross product with irrelevant keys dropped (prune none ignores
 * sparsity, quant none ignores bits/group/sym/act_order, act_order only with gptq, joint
 * only when both are on), invalid recipes (pq_layer_params_validate) and the no-op
 * none/none removed, and duplicates merged (first occurrence kept). */
#ifndef PRUNEQUANT_SWEEP_H
#define PRUNEQUANT_SWEEP_H

#include "prunequant-compress.h"
#include "prunequant-eval.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- grid */

typedef struct pq_sweep_config {
    pq_layer_params layer;
    double sparsity;        /* effective s (N:M: N/M), 0 without pruning */
    double bits;            /* q, 16 without quantization */
    double tcr;             /* theoretical compression rate */
    char *recipe;           /* canonical recipe JSON (malloc'ed), usable by compress --recipe; an allocated
                               config's names what it is allocated from (its run stores the recipe made) */
    char hash[24];          /* FNV-1a 64 of recipe, 16 hex digits; allocated: "<config's>.<6 hex>" */
    int64_t alloc_of;       /* -1; else the config whose stored bytes are this allocation's budget */
    char *alloc_candidates; /* an allocated config's candidate list (malloc'ed; NULL: the default) */
} pq_sweep_config;

typedef struct pq_sweep_grid {
    pq_sweep_config *configs;
    int64_t n;
    int64_t n_invalid;   /* combinations dropped by the validator */
    int64_t n_duplicate; /* combinations merged into an earlier identical one */
} pq_sweep_grid;

/* Calibration settings that are part of every recipe (and so of its hash). */
typedef struct pq_sweep_calib {
    int64_t nsamples; /* default 32 */
    int64_t seqlen;   /* 0 = min(512, model max) */
    uint64_t seed;    /* default 0 */
} pq_sweep_calib;

pq_sweep_calib pq_sweep_calib_default(void);

/* Expands a grid JSON text (see above). */
pq_status pq_sweep_grid_expand(pq_ctx *ctx, const char *json, size_t len, const pq_sweep_calib *calib,
                               pq_sweep_grid *out);
/* Keeps only the configs whose TCr is within 1e-9 of one of tcr[0..n) (an allocated config goes
 * with the config it is allocated from). */
void pq_sweep_grid_filter_tcr(pq_sweep_grid *g, const double *tcr, int64_t n);
/* Parses "0.75,0.8125" into a malloc'ed array. */
pq_status pq_sweep_parse_list(pq_ctx *ctx, const char *s, double **out, int64_t *n);
void pq_sweep_grid_free(pq_sweep_grid *g);

/* Canonical recipe JSON and hash of one layer recipe (+ calibration). */
char *pq_sweep_recipe_json(const pq_layer_params *p, const pq_sweep_calib *calib);
void pq_sweep_hash(const char *recipe, char hash[17]);

/* ---------------------------------------------------------------- results store */

typedef struct pq_sweep_score {
    char task[96], metric[24];
    double score, se, base_score, retention;
    int higher_is_better;   /* 0 for perplexity */
    pq_units units;         /* per-item / per-window results (owned; n = 0 in databases made before them) */
    double retention_ci[2]; /* paired bootstrap interval against the base run's units
                               (pq_sweep_results_intervals; NAN when not computed) */
} pq_sweep_score;

typedef struct pq_sweep_run {
    char hash[24];
    char *recipe;    /* malloc'ed */
    char status[12]; /* "done", "undefined" (finished, no Sr: error says why), "failed", "running" */
    double sparsity, bits, tcr, acr, bpw, sr, srcr, seconds;
    int64_t bytes;          /* stored bytes of the compressed linear weights (incl. metadata) */
    char *error;            /* malloc'ed or NULL */
    char *layers;           /* compress's per-linear report (JSON lines: name, rows, cols, recipe,
                               error, sparsity, moved_off_zero), malloc'ed or NULL */
    pq_sweep_score *scores; /* malloc'ed, with their units: pq_sweep_scores_free */
    int64_t n_scores;
    double sr_ci[2]; /* paired bootstrap interval of Sr (pq_sweep_results_intervals; NAN if none) */
} pq_sweep_run;

/* Frees scores[n] and the units they own (NULL is a no-op). */
void pq_sweep_scores_free(pq_sweep_score *scores, int64_t n);

typedef struct pq_sweep_results {
    pq_sweep_run *runs; /* every row except the base, ordered by rowid */
    int64_t n;
    int has_base;
    pq_sweep_run base;                      /* base model scores (hash "base") */
    char *model, *calib, *tasks, *protocol; /* meta, malloc'ed or NULL */
} pq_sweep_results;

typedef struct pq_sweep_db pq_sweep_db;

/* Opens (creating the tables) an SQLite results database in WAL mode. */
pq_status pq_sweep_db_open(pq_ctx *ctx, const char *path, pq_sweep_db **out);
void pq_sweep_db_close(pq_sweep_db *db);
/* meta key/value; get returns a malloc'ed copy or NULL when absent. */
pq_status pq_sweep_db_meta_set(pq_ctx *ctx, pq_sweep_db *db, const char *key, const char *value);
pq_status pq_sweep_db_meta_get(pq_ctx *ctx, pq_sweep_db *db, const char *key, char **value);
/* Status of a config ("" when absent) into status[12]. */
pq_status pq_sweep_db_status(pq_ctx *ctx, pq_sweep_db *db, const char *hash, char status[12]);
/* The stored linear bytes of a finished run (done or undefined), -1 when there is none. */
pq_status pq_sweep_db_bytes(pq_ctx *ctx, pq_sweep_db *db, const char *hash, int64_t *bytes);
/* Writes a run row and replaces its scores, in one transaction. */
pq_status pq_sweep_db_put(pq_ctx *ctx, pq_sweep_db *db, const pq_sweep_run *run);
/* Removes a run row and its scores (one transaction). */
pq_status pq_sweep_db_delete(pq_ctx *ctx, pq_sweep_db *db, const char *hash);
/* Reads everything. */
pq_status pq_sweep_db_load(pq_ctx *ctx, pq_sweep_db *db, pq_sweep_results *out);
void pq_sweep_results_free(pq_sweep_results *r);

/* ---------------------------------------------------------------- statistics */

/* Fills every done run's sr_ci and its scores' retention_ci from the stored units, paired
 * with the base run's units of the same task (pq_bootstrap_sr). Runs whose tasks lack units
 * (older databases) keep NAN. */
pq_status pq_sweep_results_intervals(pq_ctx *ctx, pq_sweep_results *r, const pq_bootstrap_params *p);
/* Sr(runs[a]) - Sr(runs[b]) over the tasks in Sr of both, and its paired interval (the same
 * draws for a, b and the base). NAN when the units are missing. */
pq_status pq_sweep_compare(pq_ctx *ctx, const pq_sweep_results *r, int64_t a, int64_t b, const pq_bootstrap_params *p,
                           double *diff, double ci[2]);

/* An allocated run against the run whose bytes were its budget (hash "X.yyyyyy" against "X"),
 * on the same windows: perplexity and mean KLD to the base of both, their differences
 * (uniform - allocated: positive when the allocation is better) with paired bootstrap intervals
 * (pq_bootstrap_score_diff), and Sr(allocated) - Sr(uniform) with its interval. */
typedef struct pq_sweep_alloc_pair {
    int64_t alloc, uniform; /* indices into runs */
    char ppl_task[96];
    double ppl[2], ppl_diff, ppl_ci[2]; /* [0] uniform, [1] allocated; NAN without such a task */
    double kld[2], kld_diff, kld_ci[2];
    double sr_diff, sr_ci[2];
} pq_sweep_alloc_pair;

/* Every done allocated run whose budget's run is done: *out [*n] malloc'ed (NULL when none). */
pq_status pq_sweep_alloc_pairs(pq_ctx *ctx, const pq_sweep_results *r, const pq_bootstrap_params *p,
                               pq_sweep_alloc_pair **out, int64_t *n);

/* ---------------------------------------------------------------- recommend */

typedef enum pq_sweep_goal {
    PQ_SWEEP_BEST_SRCR = 0,   /* max SrCr */
    PQ_SWEEP_AT_TCR = 1,      /* max Sr at TCr == value (within 1e-9) */
    PQ_SWEEP_MAX_BYTES = 2,   /* max Sr with bytes <= value */
    PQ_SWEEP_MIN_SR = 3,      /* fewest bytes with Sr >= value: the lower end of Sr's interval when the
                                 run has one (pq_sweep_results_intervals), else its point estimate */
    PQ_SWEEP_MIN_SR_POINT = 4 /* the same on the point estimate of Sr */
} pq_sweep_goal;

/* Index into r->runs of the best 'done' run, or -1 (with PQ_ERR_INVALID and a message)
 * when none qualifies. Ties keep the earlier run. */
pq_status pq_sweep_recommend(pq_ctx *ctx, const pq_sweep_results *r, pq_sweep_goal goal, double value,
                             int64_t *index);

/* ---------------------------------------------------------------- report */

/* Writes one self-contained HTML file (inline SVG, no external resources) atomically:
 * <svg id="sr-vs-tcr"> (scatter + Pareto frontier), <svg id="iso-tcr"> (joint vs
 * quantization-only bars per TCr), <svg id="srcr-ranking">, per-task tables, protocol. */
pq_status pq_sweep_report_html(pq_ctx *ctx, const pq_sweep_results *r, const char *path);
/* The iso-TCr table as text (malloc'ed; NULL when out of memory): per TCr the done runs by
 * Sr (kind, config, Sr, SrCr, ACr, bpw, per-task retention), then the best joint run against
 * the best quantization-only run at each TCr. */
char *pq_sweep_report_text(const pq_sweep_results *r);
/* The runs (with Sr and retention intervals), and the joint-vs-quantization comparisons at
 * equal TCr ("iso_tcr") and at equal real bytes ("iso_bpw", 0.25-bpw buckets), each with
 * "difference", "difference_ci" and a verdict, as JSON (malloc'ed; NULL when out of memory).
 * Call pq_sweep_results_intervals first for the intervals. */
char *pq_sweep_report_json(const pq_sweep_results *r);
/* The Pareto frontier flags (1 = on it: no other done run has TCr >= and Sr >, or TCr > and
 * Sr >=) into on[r->n] (0 for runs not done). */
void pq_sweep_pareto(const pq_sweep_results *r, int *on);

/* ---------------------------------------------------------------- run */

typedef int (*pq_sweep_stop_fn)(void *user); /* non-zero: stop after cleaning up */

typedef struct pq_sweep_params {
    const char *model_path;
    const char *tokenizer_path; /* NULL = from the model */
    const char *calib_path;
    const char *tasks; /* pq_eval_run task list */
    const char *data_dir;
    int64_t limit;
    pq_sweep_calib calib;
    const char *keep_models; /* folder for <hash>/ outputs; NULL = temporary, removed */
    const char *tmp_dir;     /* where temporary models go (NULL = $TMPDIR or /tmp) */
    int resume;              /* skip configs already 'done' (without it, a db with rows fails) */
    pq_sweep_stop_fn stop;
    void *stop_user;
} pq_sweep_params;

pq_sweep_params pq_sweep_params_default(void);

/* Runs every config of grid (compress with pq_compress_model, evaluate with pq_eval_run
 * against the base model, store). The base model is evaluated once and stored under the
 * hash "base"; meta holds model, calib, tasks, limit (a resumed sweep must match them) and
 * the evaluation protocol. Logs "sweep: k/n configs ... ETA" (info) and reports progress
 * stage "sweep" (done, total) after each config; inner stages pass through, so a progress
 * callback returning non-zero cancels the config in flight. A failing config is stored as
 * 'failed' with its message and the sweep goes on (resume retries it); *n_failed counts
 * them. Returns PQ_ERR_CANCELLED when stopped (the config in flight is removed from the
 * database, so nothing half-done stays).
 * Built with PQ_HAVE_MPI and called between MPI_Init and MPI_Finalize with several ranks:
 * the configs still to do are dealt round-robin over the ranks, every rank calls this with
 * the same grid and params, and only rank 0 passes a db (the others NULL); rank 0 stores
 * every result and its counts are the totals. */
pq_status pq_sweep_execute(pq_ctx *ctx, const pq_sweep_params *p, const pq_sweep_grid *grid, pq_sweep_db *db,
                           int64_t *n_done, int64_t *n_failed);

#ifdef __cplusplus
}
#endif
#endif /* PRUNEQUANT_SWEEP_H */
