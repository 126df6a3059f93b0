/* The pruning methods (ALGORITHMS.md §2, §5): magnitude and Wanda make one-shot masks from
 * weight scores; SparseGPT is a pass of the OBS column sweep (obs/pass.h) that chooses the
 * mask as it goes and compensates the pruned weights through H's inverse factor. */
#ifndef PQ_PRUNE_PRUNE_H
#define PQ_PRUNE_PRUNE_H

#include "obs/pass.h"

/* Magnitude mask of W [rows, cols] for the recipe's sparsity or N:M pattern: keep out. */
pq_status pq__magnitude_mask(pq_ctx *ctx, const pq_layer_params *p, const float *W, int64_t rows, int64_t cols,
                             uint8_t *keep, int n_threads);
/* Wanda mask: scores |W[r,c]| * sqrt(H[c,c]). */
pq_status pq__wanda_mask(pq_ctx *ctx, const pq_layer_params *p, const float *W, int64_t rows, int64_t cols,
                         const float *H, uint8_t *keep, int n_threads);
/* SparseGPT's mask rule for the recipe: per N:M cell, or unstructured per block. */
pq__obs_mask pq__sparsegpt_mask(const pq_layer_params *p);
/* The SparseGPT pass on its own (no quantization). */
pq__obs_pass pq__sparsegpt_pass(const pq_layer_params *p);

#endif
