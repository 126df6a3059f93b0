/* The allocator behind pq_allocate (prunequant-alloc.h), split by what each part does:
 * candidates.c parses the candidate list and writes the recipe file; damage.c estimates the
 * damage of every candidate on a sample of a linear's rows; sensitivity.c measures how much a
 * linear's layer error moves the model's output; solve.c chooses under the budget; allocate.c
 * drives the blocks. */
#ifndef PQ_ALLOC_H
#define PQ_ALLOC_H

#include "common/common.h"
#include "linalg/linalg.h"
#include "model/model.h"
#include "prunequant-alloc.h"

/* ---- solve.c: the multiple-choice knapsack */

typedef struct pq__alloc_problem {
    int64_t n_items, n_choices;
    const int64_t *cost;  /* [n_items * n_choices] bytes; < 0: choice not available */
    const double *damage; /* [n_items * n_choices] */
    int64_t budget;
} pq__alloc_problem;

typedef struct pq__alloc_solution {
    int *choice; /* [n_items], the caller's */
    int64_t cost;
    double damage;
    double lower_bound; /* the Lagrangian dual bound on the optimal damage */
    double lambda;
    int64_t upgrades;
} pq__alloc_solution;

/* Lagrangian relaxation then greedy fill (prunequant-alloc.h). PQ_ERR_INVALID when an item has
 * no available choice or the cheapest choices exceed the budget. Deterministic: ties go to the
 * lower cost, then the lower index. */
pq_status pq__alloc_solve(pq_ctx *ctx, const pq__alloc_problem *pb, pq__alloc_solution *sol);

/* ---- damage.c */

/* One linear's rows on one Hessian: W [rows, cols], H [cols, cols] and its factor. */
typedef struct pq__alloc_linear_in {
    const char *name;
    const float *W;
    int64_t rows, cols;
    const float *H;
    const pq__hfactor *fac;
    int64_t done, total; /* the allocation's progress (stage "allocate"), reported per candidate */
} pq__alloc_linear_in;

/* The sampled rows of a linear and what the reference candidate made of them (for the
 * sensitivity pass): idx [k] (sorted), Wq [k, cols], their summed layer error (not scaled). */
typedef struct pq__alloc_sample {
    int64_t k;
    int64_t *idx;
    float *Wq;
    double error;
} pq__alloc_sample;
void pq__alloc_sample_free(pq__alloc_sample *s);

/* The damage (layer error, scaled to all rows) of each candidate on a seeded sample of at most
 * sample_rows rows, swept in batches; damage[c] = NAN where bytes[c] < 0. ref >= 0: the rows
 * candidate ref made and their error go to *out (which also gets the sample). */
pq_status pq__alloc_damage(pq_ctx *ctx, const pq__alloc_linear_in *in, const pq_layer_params *cands, int64_t n_cands,
                           const int64_t *bytes, int64_t sample_rows, uint64_t seed, int ref, double *damage,
                           double *se, pq__alloc_sample *out);

/* ---- sensitivity.c */

/* The sensitivity passes (sensitivity.c): the first n_win calibration windows, their first T
 * tokens; P positions of each are scored. */
typedef struct pq__alloc_sens {
    const pq_model *m;
    int64_t n_win, T, P;
    float *x0;   /* [n_win * T, dim] the hidden states entering the current block */
    float *logp; /* [n_win * P, vocab] the model's log-probabilities with the current block unperturbed */
    pq__kv kv;   /* one layer's cache */
} pq__alloc_sens;

pq_status pq__alloc_sens_init(pq_ctx *ctx, pq__alloc_sens *s, const pq_model *m, int64_t n_win, int64_t T);
void pq__alloc_sens_free(pq__alloc_sens *s);
/* Block l begins: the windows' states from the runner's X [n_win.., L, dim] (entering block l)
 * and the reference log-probabilities with block l as b (the allocator's float32 copy). */
pq_status pq__alloc_sens_block(pq_ctx *ctx, pq__alloc_sens *s, const float *X, int64_t L, int64_t l,
                               const pq__block *b);
/* Mean KLD (reference || block l as b with linear i's weights replaced by Wp) per scored position. */
pq_status pq__alloc_sens_kld(pq_ctx *ctx, const pq__alloc_sens *s, int64_t l, const pq__block *b, int i,
                             const float *Wp, double *kld);

#endif
