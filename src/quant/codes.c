/* The codes of a quantized linear (pq_qcodes, prunequant-compress.h): allocation before any
 * sweep writes output, so that nothing fails after it, and release. */
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "linalg/linalg.h"
#include "quant/codes.h"

pq_status pq__qcodes_alloc(pq_ctx *ctx, int64_t rows, int64_t cols, int bits, int64_t group_size, pq_qcodes *codes) {
    const int64_t g = group_size > 0 ? group_size : cols, ng = cols / g;
    memset(codes, 0, sizeof *codes);
    codes->rows = rows;
    codes->cols = cols;
    codes->bits = bits;
    codes->group_size = g;
    codes->n_groups = ng;
    codes->codes = pq__big_malloc(ctx, (size_t)(rows * cols), "codes");
    codes->scales = pq__malloc(ctx, sizeof(float) * (size_t)(ng * rows), "scales");
    codes->zeros = pq__malloc(ctx, (size_t)(ng * rows), "zeros");
    codes->g_idx = pq__malloc(ctx, sizeof(int32_t) * (size_t)cols, "g_idx");
    if (!codes->codes || !codes->scales || !codes->zeros || !codes->g_idx) {
        pq_qcodes_free(codes);
        return PQ_ERR_NOMEM;
    }
    return PQ_OK;
}

void pq_qcodes_free(pq_qcodes *c) {
    if (!c) return;
    free(c->codes);
    free(c->scales);
    free(c->zeros);
    free(c->g_idx);
    free(c->gguf_blocks);
    memset(c, 0, sizeof *c);
}
