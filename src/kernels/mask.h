/* Pruning masks: exact k-smallest selection, N:M cells, and the one-shot methods that need
 * no weight update (magnitude, Wanda). SparseGPT's sweep lives in joint/ (it shares the
 * GPTQ column loop) and uses the selection helpers from here. Masks: 1 = kept, 0 = pruned. */
#ifndef PQ_PRUNE_H
#define PQ_PRUNE_H

#include "common/common.h"

/* Number of weights to prune out of n at sparsity s: floor(n*s), tolerant to the decimal
 * representation of s (0.57 of 100 prunes 57). The reference rule floor in plain double
 * arithmetic is pq__prune_count_ref. */
int64_t pq__prune_count(int64_t n, double s);
int64_t pq__prune_count_ref(int64_t n, double s);

/* k-th smallest (0-based, k < n) of x[0..n) by radix selection on order-preserving keys;
 * *n_less = how many are strictly smaller. scratch: n uint32. NaNs order above +inf. */
float pq__select_kth(const float *x, int64_t n, int64_t k, int64_t *n_less, uint32_t *scratch);

/* keep[i] = 0 for exactly the k smallest x (ties: lower index first), 1 otherwise.
 * scratch: n uint32. */
void pq__mask_k_smallest(const float *x, int64_t n, int64_t k, uint8_t *keep, uint32_t *scratch);

/* Reference rule (SparseGPT): keep[i] = 0 where x[i] <= the value at sorted position k. */
void pq__mask_le_kth(const float *x, int64_t n, int64_t k, uint8_t *keep, uint32_t *scratch);

/* One N:M cell: keep[c] = 0 for the nprune smallest of s[0..m) (ties: lower index first).
 * scratch: m uint32 (used only for m > 64). */
void pq__mask_nm_cell(const float *s, int m, int nprune, uint8_t *keep, uint32_t *scratch);

/* N:M cells of T rows at once (SparseGPT's sweep): row r's scores are
 * x[k * xs + r] * x[k * xs + r] * v[k] * v[k] (k < m <= 64, in that order of products), and
 * keep[k * ks + r] is what pq__mask_nm_cell gives for them, bit for bit. key: m * T uint32. */
void pq__mask_nm_rows(const float *x, int64_t xs, const float *v, int m, int nprune, int64_t T, uint8_t *keep,
                      int64_t ks, uint32_t *key);

/* Magnitude (colscale NULL) or Wanda (colscale[c] = sqrt(diag H)[c]) mask of W [rows, cols]:
 * score |W[r,c]| * colscale[c], compared within each row; prune_m > 0 selects per N:M cell,
 * else pq__prune_count(cols, sparsity) per row. keep [rows, cols] out. */
pq_status pq__prune_oneshot_mask(pq_ctx *ctx, const float *W, int64_t rows, int64_t cols, const float *colscale,
                                 double sparsity, int prune_n, int prune_m, uint8_t *keep, int n_threads);

#endif
