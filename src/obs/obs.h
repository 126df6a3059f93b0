/* The optimal-brain-surgeon column sweep shared by GPTQ, SparseGPT, their fused combination and frozen-mask GPTQ
 * (ALGORITHMS.md §4-§6), plus its feedback-free variant (RTN, plain masking).
 *
 * Data are transposed and in sweep order: wt[p, r] is weight (row r, column perm[p]), so a
 * column is contiguous and the trailing update is one GEMM. The published update
 *   err = (w_j - q_j) / U[j,j];  W[:, k] -= err * U[j,k]  (k > j)
 * is run on V = U^-1 (linalg.h) without forming U: with d_j = w0_j - q_j (start weights
 * minus the chosen value), the current weight of column k is
 *   w_k = w0_k + sum_{j<k} d_j * V[j,k] / V[k,k],
 * which gives the same Q exactly (Err = (W0 - Q) V). Only the column being processed holds
 * the published algorithm's value: a later column's value "after the updates of columns
 * < m" (what grids, SparseGPT masks and N:M cells are chosen on) is recovered for a window
 * [m, m+L) by a unit triangular solve, x (I + Vs[win, win]) = wt - w0, w = w0 + x
 * (H_FR H_RR^-1 = V_FR V_RR^-1 for H = V V^T). Per block of B columns: the in-block
 * part as axpys over a tile of rows, then one sgemm for every later column. Each thread
 * owns a slice of rows for the whole sweep (rows are independent; only the unstructured
 * SparseGPT mask is chosen over all rows of a block, at a barrier). */
#ifndef PQ_OBS_H
#define PQ_OBS_H

#include "common/common.h"
#include "kernels/grid.h"

typedef enum pq__obs_mask {
    PQ_OBS_MASK_NONE = 0,     /* nothing pruned */
    PQ_OBS_MASK_FIXED = 1,    /* mt given, held (pruned weights set to 0) */
    PQ_OBS_MASK_UNSTRUCT = 2, /* SparseGPT: per block, lowest w^2 V_jj^2 over rows x block */
    PQ_OBS_MASK_NM = 3        /* SparseGPT N:M: at each cell start, per row, on updated weights */
} pq__obs_mask;

typedef enum pq__obs_grid {
    PQ_OBS_GRID_DYNAMIC = 0, /* group of `group` consecutive sweep columns, fitted at its start */
    PQ_OBS_GRID_STATIC = 1,  /* groups of original columns, all fitted before column 0 */
    PQ_OBS_GRID_FIXED = 2    /* groups of consecutive original columns whose grids the caller gives
                                (scales, and zeros or offs): GPTQ onto ggml block grids */
} pq__obs_grid;

typedef struct pq__obs {
    const char *stage; /* progress stage name */
    int64_t rows, n;
    /* factor in sweep order (linalg.h); vs NULL: no error feedback */
    const float *vs;    /* [n, n] */
    const float *vdiag; /* [n] */
    float *wt;          /* [n, rows] in: start weights; out: Q */
    const float *w0t;   /* [n, rows] start weights (a copy; unused without feedback) */
    /* pruning */
    pq__obs_mask mask;
    uint8_t *mt; /* [n, rows] 1 = kept: in for FIXED, out for UNSTRUCT/NM */
    double sparsity;
    int nm_n, nm_m;
    int ref_select; /* reference rule for UNSTRUCT (see prunequant-compress.h, 5.) */
    /* quantization (bits 0 = none) */
    int bits;
    pq__grid_kind grid;
    int64_t group; /* columns per group; n = one grid per row */
    pq__obs_grid grid_mode;
    const int64_t *perm; /* [n] original column of each position (static groups), NULL = identity */
    int grid_survivors;  /* fit grids on kept weights only; undecided masks are predicted */
    int grid_stale;      /* reference: a group starting inside a block sees block-start weights */
    const float *grid0t; /* optional [n, rows]: one-per-row grids are fitted on this instead */
    float *scales;       /* [n / group, rows] out */
    uint8_t *zeros;      /* [n / group, rows] out (FIXED: in) */
    const float *offs;   /* FIXED, optional [n / group, rows]: value = scale * code + off (zeros unused) */
    uint8_t *ct;         /* optional [n, rows] codes out */
    int64_t blocksize;
    int align; /* cut blocks so no dynamic group starts inside one and ends after it */
    int n_threads;
    double *row_loss; /* optional [rows]: each row's part of loss is added to it */
    /* results */
    double loss; /* sum (w - q)^2 V_jj^2 / 2 */
    int64_t blocksize_used;
} pq__obs;

pq_status pq__obs_run(pq_ctx *ctx, pq__obs *s);

#endif
