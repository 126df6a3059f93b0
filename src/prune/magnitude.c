/* Magnitude pruning: the weights of least |W| in each row (or N:M cell) go. */
#include "kernels/mask.h"
#include "prune/prune.h"

pq_status pq__magnitude_mask(pq_ctx *ctx, const pq_layer_params *p, const float *W, int64_t rows, int64_t cols,
                             uint8_t *keep, int n_threads) {
    return pq__prune_oneshot_mask(ctx, W, rows, cols, NULL, p->sparsity, p->prune_n, p->prune_m, keep, n_threads);
}
