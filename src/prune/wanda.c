/* Wanda (Sun et al. 2023): the weights of least |W| * ||x|| in each row (or N:M cell) go,
 * with ||x_c|| = sqrt(H[c,c]) from the calibration Hessian. */
#include <math.h>
#include <stdlib.h>

#include "common/common.h"
#include "kernels/mask.h"
#include "prune/prune.h"

pq_status pq__wanda_mask(pq_ctx *ctx, const pq_layer_params *p, const float *W, int64_t rows, int64_t cols,
                         const float *H, uint8_t *keep, int n_threads) {
    float *colscale = pq__malloc(ctx, sizeof(float) * (size_t)cols, "wanda scale");
    if (!colscale) return PQ_ERR_NOMEM;
    for (int64_t c = 0; c < cols; c++) {
        const float h = H[c * cols + c];
        colscale[c] = h > 0.0f ? sqrtf(h) : 0.0f;
    }
    const pq_status st =
        pq__prune_oneshot_mask(ctx, W, rows, cols, colscale, p->sparsity, p->prune_n, p->prune_m, keep, n_threads);
    free(colscale);
    return st;
}
