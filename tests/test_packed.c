/* The packed linear codec (model/packed.c) through a safetensors image: packed-v2's N:M keep
 * index round-trips every kept set of cells of 2..16 (all C(m, k) subsets appear), quantized
 * and prune-only, and is smaller than the bitmask; a mask that is not N:M stays a bitmask;
 * packed-v1 never writes an index; bad indices, counts and sizes give one-line errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "io/safetensors.h"
#include "model/packed.h"
#include "randgen.h"
#include "test.h"

enum { ROWS = 24 };

typedef struct layer {
    int64_t rows, cols;
    float *W;
    uint8_t *mask;
    pq_qcodes q;
} layer;

/* A random layer [rows, cols] with codes of `bits` bits in groups of 8 (bits 0: not
 * quantized), pruned by mask (cells of m keeping k; k == 0: unstructured, about 30% pruned). */
static void make_layer(layer *L, int64_t cols, int bits, int m, int k, uint64_t seed) {
    memset(L, 0, sizeof *L);
    L->rows = ROWS, L->cols = cols;
    const int64_t n = ROWS * cols;
    rng = seed * RANDGEN_SEED + 1;
    L->W = malloc((size_t)n * sizeof(float));
    L->mask = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++)
        L->W[i] = 0.1f * (float)urand() - 0.05f;
    for (int64_t r = 0; r < ROWS; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += (k ? m : 1)) {
            if (!k) {
                L->mask[r * cols + c0] = (float)urand() > 0.3f;
                continue;
            }
            /* a random k-subset of the cell (partial Fisher-Yates) */
            int idx[16];
            for (int i = 0; i < m; i++)
                idx[i] = i;
            for (int i = 0; i < k; i++) {
                int j = i + (int)(urand() * (m - i)), t = idx[i];
                idx[i] = idx[j], idx[j] = t;
                L->mask[r * cols + c0 + idx[i]] = 1;
            }
        }
    for (int64_t i = 0; i < n; i++)
        if (!L->mask[i]) L->W[i] = 0.0f;
    if (!bits) {
        pq__packed_snap(L->W, ROWS, cols, L->mask, NULL); /* the kept values in f16 */
        return;
    }
    pq_qcodes *q = &L->q;
    q->rows = ROWS, q->cols = cols, q->bits = bits, q->group_size = 8, q->n_groups = cols / 8;
    q->codes = malloc((size_t)n);
    q->scales = malloc(sizeof(float) * (size_t)(ROWS * q->n_groups));
    q->zeros = malloc((size_t)(ROWS * q->n_groups));
    q->g_idx = malloc(sizeof(int32_t) * (size_t)cols);
    for (int64_t c = 0; c < cols; c++)
        q->g_idx[c] = (int32_t)(c / 8);
    for (int64_t i = 0; i < ROWS * q->n_groups; i++) {
        q->scales[i] = 0.01f + 0.001f * (float)(i % 7);
        q->zeros[i] = (uint8_t)(1 << (bits - 1));
    }
    for (int64_t i = 0; i < n; i++) { /* kept weights never on the zero point: the mask is exact */
        const int z = 1 << (bits - 1), span = (1 << bits) - 1;
        int c = (int)(urand() * span);
        q->codes[i] = (uint8_t)(L->mask[i] ? (c >= z ? c + 1 : c) : z);
    }
    pq__packed_snap(L->W, ROWS, cols, L->mask, q);
}

static void free_layer(layer *L) {
    free(L->W);
    free(L->mask);
    pq_qcodes_free(&L->q);
}

/* Encodes L (version v) into a safetensors image parsed into src; returns 0 on failure. */
static int encode(pq_ctx *ctx, const layer *L, int v, uint8_t **img, size_t *len, pq__source *src, size_t *bytes) {
    pq__packed_linear pk;
    if (pq__packed_encode(ctx, "x", L->W, L->rows, L->cols, L->mask, L->q.bits ? &L->q : NULL, v, &pk)) return 0;
    *bytes = 0;
    for (int i = 0; i < pk.n; i++)
        *bytes += pk.e[i].nbytes;
    const pq_status st = pq__safetensors_serialize(ctx, pk.e, pk.n, NULL, img, len);
    pq__packed_linear_free(&pk);
    pq__source_init(src);
    return st == PQ_OK && pq__safetensors_parse(ctx, "t.safetensors", *img, *len, src) == PQ_OK;
}

/* The layer decodes to exactly W; returns the stored bytes (0 on failure). */
static size_t round_trip(pq_ctx *ctx, const layer *L, int v, int want_nm, const char *tag, size_t *nm_bytes) {
    uint8_t *img = NULL;
    size_t len = 0, bytes = 0;
    pq__source src;
    float *D = NULL;
    int ok = encode(ctx, L, v, &img, &len, &src, &bytes) &&
             pq__packed_decode(ctx, &src, "x", L->rows, L->cols, &D) == PQ_OK;
    CHECK_MSG(ok, "%s: %s", tag, pq_ctx_error(ctx));
    if (ok) {
        CHECK_MSG(memcmp(D, L->W, sizeof(float) * (size_t)(L->rows * L->cols)) == 0, "%s: decode differs", tag);
        CHECK_MSG((pq__source_find(&src, "x.nm") != NULL) == want_nm &&
                      (pq__source_find(&src, "x.mask") != NULL) != want_nm,
                  "%s: index %s expected", tag, want_nm ? "" : "not");
        CHECK(pq__packed_bytes(&src, "x") == bytes);
        const pq__tensor *nm = pq__source_find(&src, "x.nm");
        if (nm_bytes) *nm_bytes = nm ? nm->nbytes : 0;
    }
    free(D);
    pq__source_free(&src);
    free(img);
    return ok ? bytes : 0;
}

/* A corrupted image (edit applied to the tensor named t at byte off) fails with a message
 * containing want. */
static void corrupt(pq_ctx *ctx, const layer *L, const char *t, size_t off, uint8_t val, const char *want) {
    uint8_t *img = NULL;
    size_t len = 0, bytes = 0;
    pq__source src;
    if (!encode(ctx, L, 2, &img, &len, &src, &bytes)) {
        CHECK_MSG(0, "corrupt %s: encode: %s", t, pq_ctx_error(ctx));
        return;
    }
    const pq__tensor *x = pq__source_find(&src, t);
    CHECK(x != NULL && off < x->nbytes);
    if (x && off < x->nbytes) ((uint8_t *)img)[(const uint8_t *)x->data - img + off] = val;
    float *D = NULL;
    pq_ctx *c2 = pq_ctx_new();
    const pq_status st = pq__packed_decode(c2, &src, "x", L->rows, L->cols, &D);
    CHECK_MSG(st == PQ_ERR_FORMAT && strstr(pq_ctx_error(c2), want) && !strchr(pq_ctx_error(c2), '\n') && !D,
              "corrupt %s[%zu] = %u: status %d '%s' (want '%s')", t, off, val, st, pq_ctx_error(c2), want);
    free(D);
    pq_ctx_free(c2);
    pq__source_free(&src);
    free(img);
}

int main(void) {
    pq_ctx *ctx = pq_ctx_new();
    /* every cell size and kept count: the index round-trips, quantized and prune-only, and is
     * smaller than the bitmask whenever ceil(log2 C(m, k)) < m */
    for (int m = 2; m <= 16; m *= 2)
        for (int k = 1; k < m; k++)
            for (int bits = 0; bits <= 4; bits += 4) {
                layer L;
                make_layer(&L, 64, bits, m, k, (uint64_t)(m * 100 + k * 10 + bits));
                char tag[64];
                snprintf(tag, sizeof tag, "%d of %d, %d bits", k, m, bits);
                long cm = 1; /* C(m, k) */
                for (int i = 1; i <= k; i++)
                    cm = cm * (m - k + i) / i;
                const double bound = (double)(64 / m) * log2((double)cm); /* bits per row */
                /* the index is written when it beats the bitmask's bit per weight; cells of a
                 * larger m may also be uniform (k of m is 2k of 2m): the smallest index wins */
                const int want = (int)ceil(bound / 8) < 64 / 8;
                size_t nmb = 0;
                const size_t v2 = round_trip(ctx, &L, 2, want, tag, &nmb), v1 = round_trip(ctx, &L, 1, 0, tag, NULL);
                if (want) /* within a byte per row of the information bound, and smaller than v1 */
                    CHECK_MSG(v2 && v2 < v1 && nmb <= (size_t)ROWS * ((size_t)ceil(bound / 8) + 1),
                              "%s: %zu bytes (index %zu, bound %.1f bits per row) vs v1 %zu", tag, v2, nmb, bound,
                              v1);
                free_layer(&L);
            }
    /* unstructured: a bitmask in both versions */
    layer U;
    make_layer(&U, 64, 4, 0, 0, 7);
    round_trip(ctx, &U, 2, 0, "unstructured", NULL);
    free_layer(&U);

    /* bad files: one-line errors */
    layer L;
    make_layer(&L, 64, 4, 4, 2, 9); /* 2 of 4: C(4,2) = 6 sets, 5 cells (6^5 = 7776) per 13-bit index */
    corrupt(ctx, &L, "x.nm", 1, 0xff, "out of range"); /* bits 8..12 set: >= 7936 */
    corrupt(ctx, &L, "x.nm_km", 0, 4, "nm_km");
    corrupt(ctx, &L, "x.nm_km", 1, 17, "nm_km");
    corrupt(ctx, &L, "x.nm_km", 1, 3, "nm_km");              /* 3 does not divide 64 */
    corrupt(ctx, &L, "x.nm_km", 2, 0, "nm_km");              /* no cells per index */
    corrupt(ctx, &L, "x.nm_km", 2, 13, "nm_km");             /* 6^13 > 2^32 */
    corrupt(ctx, &L, "x.nm_km", 0, 1, "x.nm': expected U8"); /* 1 of 4: another size */
    free_layer(&L);
    pq_ctx_free(ctx);
    return test_end("test_packed");
}
