/* GPTQ onto ggml block grids: the per-row fit before the sweep and the encoding after it
 * (gguf_grid.h). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "kernels/kernels.h"
#include "quant/gguf_grid.h"

void pq__ggml_layer_free(pq__ggml_layer *g) {
    if (!g) return;
    free(g->params);
    free(g->scales);
    free(g->offs);
    free(g->zeros);
    memset(g, 0, sizeof *g);
}

/* Row r's importance weights (llama.cpp's rule on imatrix = diag(H)), 0 where pruned. */
static void row_weights(const pq__ggml_layer *g, const float *x, const float *imat, const uint8_t *keep, float *w) {
    pq__ggml_weights(g->ti, x, imat, g->cols, w);
    if (keep)
        for (int64_t c = 0; c < g->cols; c++)
            if (!keep[c]) w[c] = 0.0f;
}

/* The sub-block grids of row r into the sweep's transposed arrays. */
static void row_grids(pq__ggml_layer *g, int64_t r) {
    const pq__ggml_info *ti = g->ti;
    const int per = ti->block / ti->sub;
    for (int64_t b = 0; b < g->nblk; b++)
        for (int s = 0; s < per; s++) {
            pq__ggml_grid gr;
            pq__ggml_grid_of(ti, &g->params[r * g->nblk + b], s, &gr);
            const int64_t gi = b * per + s;
            g->scales[gi * g->rows + r] = gr.a;
            g->zeros[gi * g->rows + r] = (uint8_t)gr.z;
            if (g->offs) g->offs[gi * g->rows + r] = gr.b;
        }
}

pq_status pq__ggml_layer_fit(pq_ctx *ctx, pq_dtype type, const float *W, int64_t rows, int64_t cols, const float *H,
                             const uint8_t *keep, int n_threads, pq__ggml_layer *g) {
    memset(g, 0, sizeof *g);
    g->ti = pq__ggml_info_of(type);
    if (!g->ti) return pq__fail(ctx, PQ_ERR_INVALID, "%s is not a ggml block type", pq_dtype_name(type));
    if (cols % g->ti->block)
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: rows of %lld weights are not whole blocks of %d", g->ti->name,
                        (long long)cols, g->ti->block);
    g->rows = rows;
    g->cols = cols;
    g->nblk = cols / g->ti->block;
    const int64_t ng = cols / g->ti->sub;
    g->params = pq__calloc(ctx, (size_t)(rows * g->nblk), sizeof *g->params, "ggml block parameters");
    g->scales = pq__malloc(ctx, sizeof(float) * (size_t)(ng * rows), "ggml grid scales");
    g->zeros = pq__malloc(ctx, (size_t)(ng * rows), "ggml grid zeros");
    g->offs = g->ti->z ? NULL : pq__malloc(ctx, sizeof(float) * (size_t)(ng * rows), "ggml grid offsets");
    float *imat = H ? pq__malloc(ctx, sizeof(float) * (size_t)cols, "importance") : NULL;
    float *w = pq__malloc(ctx, sizeof(float) * (size_t)(cols * n_threads), "importance weights");
    if (!g->params || !g->scales || !g->zeros || (!g->ti->z && !g->offs) || (H && !imat) || !w) {
        free(imat);
        free(w);
        pq__ggml_layer_free(g);
        return PQ_ERR_NOMEM;
    }
    for (int64_t c = 0; H && c < cols; c++)
        imat[c] = H[c * cols + c];
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t r = 0; r < rows; r++) {
        float *wr = w + cols * omp_get_thread_num();
        row_weights(g, W + r * cols, imat, keep ? keep + r * cols : NULL, wr);
        pq__ggml_fit_row(g->ti, W + r * cols, wr, cols, g->params + r * g->nblk);
        row_grids(g, r);
    }
    free(imat);
    free(w);
    return PQ_OK;
}

void pq__ggml_layer_fixed(const pq__ggml_layer *g, pq__obs_fixed *fix) {
    int bits = 0;
    while ((1 << bits) - 1 < g->ti->maxq)
        bits++;
    fix->group = g->ti->sub;
    fix->bits = bits;
    fix->scales = g->scales;
    fix->zeros = g->zeros;
    fix->offs = g->offs;
}

void pq__ggml_layer_zero(const pq__ggml_layer *g, int64_t r, int64_t c, uint8_t *code, float *value) {
    pq__ggml_grid gr;
    pq__ggml_grid_at(g->ti, g->params + r * g->nblk, c, &gr);
    *code = (uint8_t)pq__ggml_grid_round(&gr, 0.0f, value);
}

pq_status pq__ggml_layer_encode(pq_ctx *ctx, const pq__ggml_layer *g, const uint8_t *codes, float *Q,
                                pq_qcodes *out) {
    const size_t row_bytes = (size_t)g->nblk * (size_t)g->ti->bytes;
    out->gguf_bytes = row_bytes * (size_t)g->rows;
    out->gguf_type = g->ti->dtype;
    out->gguf_blocks = pq__big_malloc(ctx, out->gguf_bytes, "ggml blocks");
    if (!out->gguf_blocks) return PQ_ERR_NOMEM;
    for (int64_t r = 0; r < g->rows; r++) {
        uint8_t *dst = out->gguf_blocks + (size_t)r * row_bytes;
        pq__ggml_encode_row(g->ti, g->params + r * g->nblk, codes + r * g->cols, g->cols, dst);
        pq__ggml_decode_row(g->ti, dst, Q + r * g->cols, g->cols);
    }
    return PQ_OK;
}
