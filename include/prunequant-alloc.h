/* prunequant: per-linear allocation of (pruning, bits, group) under a byte budget.
 *
 * pq_allocate chooses one candidate recipe per linear layer so that the total damage is as
 * small as the search finds while the bytes the packed format stores for the linears stay
 * within the budget:
 *  - bytes: pq_recipe_bytes, from the packed writer's layout without compressing anything:
 *    exact for quantization and N:M patterns, an upper bound for unstructured masks (their coded
 *    size is known only after coding the real mask), so the output never exceeds the budget;
 *  - damage: the layer error tr(dW H dW^T) of the real layer compression (pq_layer_compress's
 *    machinery) run for every candidate on a seeded random sample of each linear's rows with
 *    its full Hessian (one factorisation per Hessian shared by every candidate and linear on
 *    it), scaled by rows / sampled rows; its standard error from the sampled rows' errors. Hessians
 *    come from the calibration windows through the dense model, block by block, as compress
 *    collects them. Optionally each linear's damage is scaled by its measured output
 *    sensitivity: the KLD of the model's next-token distributions on a few calibration windows
 *    when only that linear's sampled rows are compressed (with the quantization-only candidate
 *    nearest the budget), per unit of their layer error: layer errors of different linears are
 *    in different units (a q_proj error acts through attention scores, an o_proj error on the
 *    residual stream), the KLD puts them on one scale;
 *  - search: Lagrangian relaxation (bisection on lambda, every linear takes argmin damage +
 *    lambda bytes) to the smallest lambda whose choice fits, then a greedy fill of the bytes
 *    left by the upgrade with the best damage saved per byte that fits, until none fits. The
 *    dual bound max_lambda sum_i min_c (damage + lambda bytes) - lambda budget is a lower bound
 *    on the optimum of the multiple-choice knapsack, so (damage - bound) bounds the gap.
 *    Deterministic for a given thread count. */
#ifndef PRUNEQUANT_ALLOC_H
#define PRUNEQUANT_ALLOC_H

#include "prunequant-pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pq_alloc_params {
    /* calibration (nsamples, seqlen, seed, chunk), the packed version the bytes are counted in
     * (packed 2 or 1), and compress.layer: what every candidate shares besides its pruning
     * pattern or sparsity, bits and group (prune method, quantizer, joint mode (default fused:
     * one sweep per candidate), sym, percdamp, blocksize, keep_mask); skip, report, gguf_type
     * and overrides must be unset */
    pq_compress_params compress;
    /* candidates: ';'-separated axes of a cross product, each "key=v1,v2,..":
     *   prune  none | N:M | a sparsity in (0, 1)        (default none,2:4)
     *   bits   2..8, lists and ranges "a..b"             (default 2..8)
     *   group  -1 (one grid per row) or a size           (default 32,128)
     * NULL: the defaults. A candidate that does not suit a linear (group or M not dividing its
     * inputs) is left out for it. */
    const char *candidates;
    double budget_bpw;    /* > 0: bits per linear weight, or */
    int64_t budget_bytes; /* > 0: bytes of the linears' stored tensors; exactly one of the two */
    int64_t sample_rows;  /* rows of each linear whose sweeps estimate the damage (default 128; all when fewer) */
    uint64_t sample_seed; /* (default 0) */
    int sensitivity;      /* 1 (default): scale each linear's damage by its output sensitivity (needs a model
                             with its weights, not deferred); 0: the layer errors as they are (they are not
                             comparable across linears: on BabyLlama that allocation loses to uniform) */
    int64_t sens_windows; /* calibration windows of the sensitivity passes (default 4) */
    int64_t sens_len;     /* their first tokens (default 128; at most the window) */
} pq_alloc_params;

pq_alloc_params pq_alloc_params_default(void);

typedef struct pq_alloc_linear {
    char name[96]; /* "model.layers.0.self_attn.q_proj" */
    int64_t rows, cols;
    int64_t sampled;    /* rows swept per candidate */
    int choice;         /* index of its candidate */
    double sensitivity; /* the scale of its damage (1 without sensitivity) */
} pq_alloc_linear;

typedef struct pq_alloc_result {
    int64_t n_candidates;
    pq_layer_params *candidates; /* [n_candidates] */
    int64_t n_linears;
    pq_alloc_linear *linears; /* [n_linears], block by block in block order */
    /* [n_linears * n_candidates], linear-major: bytes stored (-1: the candidate does not suit
     * the linear), 1 where exact, the damage estimate and its standard error (NAN: left out) */
    int64_t *bytes;
    uint8_t *exact;
    double *damage, *damage_se;
    int64_t n_weights;                           /* linear weights */
    int64_t budget, total_bytes;                 /* bytes: the budget and what the choice stores (at most) */
    double total_damage, total_damage_se;        /* of the choice, and the standard error of the sum */
    double lower_bound;                          /* the dual bound on the smallest total damage under the budget */
    double lambda;                               /* the multiplier of the Lagrangian step */
    int64_t upgrades;                            /* steps of the greedy fill */
    double seconds, sweep_seconds, sens_seconds; /* all, the candidate sweeps, the sensitivity passes */
} pq_alloc_result;

/* Allocates for model (left unchanged; may be loaded with deferred weights unless
 * p->sensitivity) with calibration tokens[n_tokens] (BOS included by the caller). Progress
 * stage "allocate" (linears done of all). *out: pq_alloc_result_free. */
pq_status pq_allocate(pq_ctx *ctx, const pq_model *model, const int32_t *tokens, int64_t n_tokens,
                      const pq_alloc_params *p, pq_alloc_result **out);
void pq_alloc_result_free(pq_alloc_result *r);

/* The allocation as a recipe file for compress --recipe (JSON, malloc'ed; NULL when out of
 * memory): the recipe of the most frequent choice with the calibration settings, and one
 * override per other choice matching exactly the linears that took it. */
char *pq_alloc_recipe_json(const pq_alloc_result *r, const pq_alloc_params *p);

/* The candidates of a list (pq_alloc_params.candidates; NULL: the default) on top of the methods
 * of base, duplicates left out: *out [*n] malloc'ed (free()). PQ_ERR_INVALID naming the bad
 * axis or value. */
pq_status pq_alloc_candidates(pq_ctx *ctx, const char *spec, const pq_layer_params *base, pq_layer_params **out,
                              int64_t *n);
/* The allocation as compress parameters (what compress --recipe makes of the recipe file):
 * p->compress with the base recipe, the overrides (*ov, pq_recipe_overrides_free after the
 * run; out borrows them) and the budget. */
pq_status pq_alloc_compress_params(pq_ctx *ctx, const pq_alloc_result *r, const pq_alloc_params *p,
                                   pq_compress_params *out, pq_recipe_overrides *ov);
/* Writes pq_alloc_recipe_json to path, atomically. */
pq_status pq_alloc_recipe_write(pq_ctx *ctx, const pq_alloc_result *r, const pq_alloc_params *p, const char *path);
/* A candidate in a few characters for tables and heat maps: "4b g32", "2:4+4b g128",
 * "25%+3b g-1", "2:4 only". */
void pq_alloc_label(const pq_layer_params *c, char *buf, size_t n);

/* Bytes the packed writer (version 2 or 1) stores for a linear [rows, cols] under recipe p,
 * before compressing: *exact 1 where exact (quantization, N:M), else an upper bound
 * (unstructured masks, act-order). -1 when p compresses nothing or does not suit the shape. */
int64_t pq_recipe_bytes(const pq_layer_params *p, int64_t rows, int64_t cols, int version, int *exact);

#ifdef __cplusplus
}
#endif
#endif /* PRUNEQUANT_ALLOC_H */
