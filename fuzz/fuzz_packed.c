/* Fuzz target for the packed linear decoder (model/packed.c, docs/PACKED.md): the first two
 * bytes give the linear's shape (rows = 1 + b0 % 32, cols = 1 + b1), the rest is a
 * safetensors image holding the tensors of linear "x" (x.qcodes, x.scales, x.zeros, x.g_idx,
 * x.mask or x.nm + x.nm_km or x.kmask + x.kmask_idx, x.values). Decoding either succeeds or
 * fails with a one-line message; a decoded layer that is stored with an N:M index has exactly
 * the index's kept count per cell of non-zero-capable positions (every zero outside them).
 * Then a round trip: the same bytes read as a keep mask of that shape are written by the
 * packed-v2 encoder (prune-only; it picks the index, the coded mask or the bitmask) and must
 * decode to the same layer, and coded directly (model/maskcode.h) in blocks of 1 + b0 / 32
 * rows must decode to the same mask. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/maskcode.h"
#include "model/packed.h"

/* The prune-only layer kept by mask [rows * cols] (kept weights 1.0, exact in F16) through
 * packed-v2 and back. */
static void round_trip_layer(pq_ctx *ctx, const uint8_t *mask, int64_t rows, int64_t cols) {
    float W[32 * 256];
    for (int64_t i = 0; i < rows * cols; i++)
        W[i] = mask[i] ? 1.0f : 0.0f;
    pq__packed_linear pk;
    uint8_t *img = NULL;
    size_t len = 0;
    pq__source src;
    pq__source_init(&src);
    float *D = NULL;
    if (pq__packed_encode(ctx, "x", W, rows, cols, mask, NULL, 2, &pk) != PQ_OK) return; /* out of memory */
    const pq_status st = pq__safetensors_serialize(ctx, pk.e, pk.n, NULL, &img, &len);
    pq__packed_linear_free(&pk);
    if (st == PQ_OK && pq__safetensors_parse(ctx, "rt", img, len, &src) == PQ_OK &&
        pq__packed_decode(ctx, &src, "x", rows, cols, &D) == PQ_OK &&
        memcmp(D, W, sizeof(float) * (size_t)(rows * cols)))
        abort();
    free(D);
    pq__source_free(&src);
    free(img);
}

/* The bitmask of mask coded in blocks of R rows and decoded through the checked decoder. */
static void round_trip_kmask(pq_ctx *ctx, const uint8_t *mask, int64_t rows, int64_t cols, int64_t R) {
    const int64_t mrow = (cols + 7) / 8, nb = pq__kmask_blocks(rows, R);
    uint8_t bm[32 * 32] = {0}, back[32 * 32]; /* rows <= 32, cols <= 256 */
    for (int64_t i = 0; i < rows * cols; i++)
        if (mask[i]) bm[i / cols * mrow + i % cols / 8] |= (uint8_t)(1u << (i % cols % 8));
    const size_t n = pq__kmask_size(bm, rows, cols, R);
    uint8_t *buf = malloc(n + 1);
    int32_t idx[32];
    if (!buf) return;
    if (pq__kmask_encode(bm, rows, cols, R, buf, n, idx) != (int64_t)n) abort();
    pq__tensor tk = {
        .name = "x.kmask", .dtype = PQ_DTYPE_U8, .n_dims = 1, .shape = {(int64_t)n}, .data = buf, .nbytes = n};
    pq__tensor ti = {.name = "x.kmask_idx",
                     .dtype = PQ_DTYPE_I32,
                     .n_dims = 1,
                     .shape = {nb},
                     .data = idx,
                     .nbytes = 4 * (size_t)nb};
    if (pq__kmask_decode(ctx, "rt", "x", &tk, &ti, rows, cols, back) != PQ_OK ||
        memcmp(back, bm, (size_t)(rows * mrow)))
        abort();
    free(buf);
}

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
    uint8_t mask[32 * 256];
    for (int64_t i = 0; i < rows * cols; i++)
        mask[i] = size > 2 ? (data[2 + (size_t)(i / 8) % (size - 2)] >> (i % 8)) & 1 : 0;
    round_trip_layer(ctx, mask, rows, cols);
    round_trip_kmask(ctx, mask, rows, cols, 1 + data[0] / 32);
    pq__source_free(&src);
    pq_ctx_free(ctx);
    return 0;
}
