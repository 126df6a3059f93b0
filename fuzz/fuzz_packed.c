/* Fuzz target for the packed linear decoder (model/packed.c, docs/PACKED.md): the first two
 * bytes give the linear's shape (rows = 1 + b0 % 32, cols = 1 + b1), the rest is a
 * safetensors image holding the tensors of linear "x" (x.qcodes, x.scales, x.zeros, x.g_idx,
 * x.mask or x.nm + x.nm_km, x.values). Decoding either succeeds or fails with a one-line
 * message; a decoded layer that is stored with an N:M index has exactly the index's kept count
 * per cell of non-zero-capable positions (every zero outside them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/packed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const int64_t rows = 1 + data[0] % 32, cols = 1 + (int64_t)data[1];
    pq_ctx *ctx = pq_ctx_new();
    if (!ctx) return 0;
    pq__source src;
    pq__source_init(&src);
    if (pq__safetensors_parse(ctx, "fuzz", data + 2, size - 2, &src) == PQ_OK) {
        float *W = NULL;
        const pq_status st = pq__packed_decode(ctx, &src, "x", rows, cols, &W);
        if (st != PQ_OK && (!pq_ctx_error(ctx)[0] || strchr(pq_ctx_error(ctx), '\n') || W)) abort();
        const pq__tensor *km = pq__source_find(&src, "x.nm_km");
        if (st == PQ_OK && km && km->nbytes == 3) { /* at most k non-zeros in every cell of m */
            const int k = ((const uint8_t *)km->data)[0], m = ((const uint8_t *)km->data)[1];
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c0 = 0; c0 + m <= cols; c0 += m) {
                    int nz = 0;
                    for (int i = 0; i < m; i++)
                        nz += W[r * cols + c0 + i] != 0.0f;
                    if (nz > k) abort();
                }
        }
        pq__packed_parts parts; /* the byte accounting reads the same tensors without crashing */
        pq__packed_parts_of(&src, "x", rows, cols, &parts);
        free(W);
    } else if (!pq_ctx_error(ctx)[0]) {
        abort();
    }
    pq__source_free(&src);
    pq_ctx_free(ctx);
    return 0;
}
