/* The packed linear codec (model/packed.c) through a safetensors image: packed-v2's N:M keep
 * index round-trips every kept set of cells of 2..16 (all C(m, k) subsets appear), quantized
 * and prune-only, and is smaller than the bitmask; a mask that is not N:M is coded
 * (model/maskcode.c: .kmask + .kmask_idx) when that is smaller than the bitmask, and the coded
 * mask round-trips exactly for sparsities 0.05..0.95, degenerate rows and rows of 1..3000
 * columns within its bound + 2 bits per row (bytes rounded up per block) + the index;
 * packed-v1 never writes an index or a coded mask; bad indices, offsets, streams, counts and
 * sizes give one-line errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "io/safetensors.h"
#include "model/maskcode.h"
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

/* A random layer [rows, cols] kept by mask [rows * cols] (taken over), with codes of `bits`
 * bits in groups of 8 (one group per row when 8 does not divide cols; bits 0: not quantized). */
static void make_layer_masked(layer *L, int64_t rows, int64_t cols, int bits, uint8_t *mask) {
    L->rows = rows, L->cols = cols, L->mask = mask;
    const int64_t n = rows * cols;
    L->W = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        L->W[i] = mask[i] ? 0.1f * (float)urand() - 0.05f : 0.0f;
    if (!bits) {
        pq__packed_snap(L->W, rows, cols, L->mask, NULL); /* the kept values in f16 */
        return;
    }
    pq_qcodes *q = &L->q;
    q->rows = rows, q->cols = cols, q->bits = bits, q->group_size = cols % 8 ? cols : 8;
    q->n_groups = cols / q->group_size;
    q->codes = malloc((size_t)n);
    q->scales = malloc(sizeof(float) * (size_t)(rows * q->n_groups));
    q->zeros = malloc((size_t)(rows * q->n_groups));
    q->g_idx = malloc(sizeof(int32_t) * (size_t)cols);
    for (int64_t c = 0; c < cols; c++)
        q->g_idx[c] = (int32_t)(c / q->group_size);
    for (int64_t i = 0; i < rows * q->n_groups; i++) {
        q->scales[i] = 0.01f + 0.001f * (float)(i % 7);
        q->zeros[i] = (uint8_t)(1 << (bits - 1));
    }
    for (int64_t i = 0; i < n; i++) { /* kept weights never on the zero point: the mask is exact */
        const int z = 1 << (bits - 1), span = (1 << bits) - 1;
        int c = (int)(urand() * span);
        q->codes[i] = (uint8_t)(L->mask[i] ? (c >= z ? c + 1 : c) : z);
    }
    pq__packed_snap(L->W, rows, cols, L->mask, q);
}

/* A random layer [ROWS, cols] pruned by cells of m keeping k (k == 0: unstructured, about 30%
 * pruned); see make_layer_masked. */
static void make_layer(layer *L, int64_t cols, int bits, int m, int k, uint64_t seed) {
    memset(L, 0, sizeof *L);
    rng = seed * RANDGEN_SEED + 1;
    uint8_t *mask = calloc((size_t)(ROWS * cols), 1);
    for (int64_t r = 0; r < ROWS; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += (k ? m : 1)) {
            if (!k) {
                mask[r * cols + c0] = (float)urand() > 0.3f;
                continue;
            }
            /* a random k-subset of the cell (partial Fisher-Yates) */
            int idx[16];
            for (int i = 0; i < m; i++)
                idx[i] = i;
            for (int i = 0; i < k; i++) {
                int j = i + (int)(urand() * (m - i)), t = idx[i];
                idx[i] = idx[j], idx[j] = t;
                mask[r * cols + c0 + idx[i]] = 1;
            }
        }
    make_layer_masked(L, ROWS, cols, bits, mask);
}

/* A mask [rows * cols] (1 = kept): each weight pruned with probability s; s < 0: degenerate
 * rows in turn (all kept, none kept, one kept, one pruned, the first or the last column only)
 * between rows pruned with probability 0.5. */
static uint8_t *random_mask(int64_t rows, int64_t cols, double s) {
    uint8_t *mask = calloc((size_t)(rows * cols), 1);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *m = mask + r * cols;
        const int64_t one = (int64_t)(urand() * (double)cols);
        const int kind = s >= 0 ? -1 : (int)(r % 7);
        for (int64_t c = 0; c < cols; c++)
            switch (kind) {
            case 0: m[c] = 1; break;
            case 1: m[c] = 0; break;
            case 2: m[c] = c == one; break;
            case 3: m[c] = c != one; break;
            case 4: m[c] = c == 0; break;
            case 5: m[c] = c == cols - 1; break;
            default: m[c] = urand() >= (s >= 0 ? s : 0.5);
            }
    }
    return mask;
}

/* The bitmask [rows, ceil(cols/8)] of a byte mask [rows * cols]. */
static uint8_t *bitmask_of(const uint8_t *mask, int64_t rows, int64_t cols) {
    const int64_t mrow = (cols + 7) / 8;
    uint8_t *bm = calloc((size_t)(rows * mrow) + 1, 1);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            if (mask[r * cols + c]) bm[r * mrow + c / 8] |= (uint8_t)(1u << (c % 8));
    return bm;
}

static void free_layer(layer *L) {
    free(L->W);
    free(L->mask);
    pq_qcodes_free(&L->q);
}

typedef void (*pk_edit)(pq__packed_linear *pk);

/* Encodes L (version v), applies edit (may be NULL) to the tensors and parses the safetensors
 * image into src; returns 0 on failure. */
static int encode(pq_ctx *ctx, const layer *L, int v, pk_edit edit, uint8_t **img, size_t *len, pq__source *src,
                  size_t *bytes) {
    pq__packed_linear pk;
    pq__source_init(src);
    if (pq__packed_encode(ctx, "x", L->W, L->rows, L->cols, L->mask, L->q.bits ? &L->q : NULL, v, &pk)) return 0;
    if (edit) edit(&pk);
    *bytes = 0;
    for (int i = 0; i < pk.n; i++)
        *bytes += pk.e[i].nbytes;
    const pq_status st = pq__safetensors_serialize(ctx, pk.e, pk.n, NULL, img, len);
    pq__packed_linear_free(&pk);
    return st == PQ_OK && pq__safetensors_parse(ctx, "t.safetensors", *img, *len, src) == PQ_OK;
}

/* The layer decodes to exactly W and stores its keep mask as want ("mask", "nm", "kmask";
 * NULL: any); returns the stored bytes (0 on failure), and in *mask_bytes those of the
 * index (.nm) or the coded mask (.kmask + .kmask_idx). */
static size_t round_trip(pq_ctx *ctx, const layer *L, int v, const char *want, const char *tag, size_t *mask_bytes) {
    uint8_t *img = NULL;
    size_t len = 0, bytes = 0;
    pq__source src;
    float *D = NULL;
    int ok = encode(ctx, L, v, NULL, &img, &len, &src, &bytes) &&
             pq__packed_decode(ctx, &src, "x", L->rows, L->cols, &D) == PQ_OK;
    CHECK_MSG(ok, "%s: %s", tag, pq_ctx_error(ctx));
    if (ok) {
        CHECK_MSG(memcmp(D, L->W, sizeof(float) * (size_t)(L->rows * L->cols)) == 0, "%s: decode differs", tag);
        static const char *const kinds[] = {"mask", "nm", "kmask"}, *const names[] = {"x.mask", "x.nm", "x.kmask"};
        for (int k = 0; k < 3 && want; k++)
            CHECK_MSG((pq__source_find(&src, names[k]) != NULL) == !strcmp(want, kinds[k]),
                      "%s: keep mask stored as x.%s, not as x.%s", tag, want, kinds[k]);
        CHECK(pq__packed_bytes(&src, "x") == bytes);
        const pq__tensor *nm = pq__source_find(&src, "x.nm"), *km = pq__source_find(&src, "x.kmask"),
                         *ki = pq__source_find(&src, "x.kmask_idx");
        if (mask_bytes) *mask_bytes = (nm ? nm->nbytes : 0) + (km ? km->nbytes : 0) + (ki ? ki->nbytes : 0);
    }
    free(D);
    pq__source_free(&src);
    free(img);
    return ok ? bytes : 0;
}

/* An image edited by edit (may be NULL), then at byte off of the tensor named t (NULL: none),
 * fails with a one-line message containing want or, when given, want2. */
static void corrupt2(pq_ctx *ctx, const layer *L, pk_edit edit, const char *t, size_t off, uint8_t val,
                     const char *want, const char *want2) {
    uint8_t *img = NULL;
    size_t len = 0, bytes = 0;
    pq__source src;
    if (!encode(ctx, L, 2, edit, &img, &len, &src, &bytes)) {
        CHECK_MSG(0, "corrupt %s: encode: %s", want, pq_ctx_error(ctx));
        pq__source_free(&src);
        free(img);
        return;
    }
    const pq__tensor *x = t ? pq__source_find(&src, t) : NULL;
    CHECK(!t || (x != NULL && off < x->nbytes));
    if (x && off < x->nbytes) ((uint8_t *)img)[(const uint8_t *)x->data - img + off] = val;
    float *D = NULL;
    pq_ctx *c2 = pq_ctx_new();
    const pq_status st = pq__packed_decode(c2, &src, "x", L->rows, L->cols, &D);
    const char *e = pq_ctx_error(c2);
    CHECK_MSG(st == PQ_ERR_FORMAT && (strstr(e, want) || (want2 && strstr(e, want2))) && !strchr(e, '\n') && !D,
              "corrupt %s[%zu] = %u: status %d '%s' (want '%s')", t ? t : "-", off, val, st, e, want);
    free(D);
    pq_ctx_free(c2);
    pq__source_free(&src);
    free(img);
}

static void corrupt(pq_ctx *ctx, const layer *L, const char *t, size_t off, uint8_t val, const char *want) {
    corrupt2(ctx, L, NULL, t, off, val, want, NULL);
}

/* ---------------------------------------------------------------- coded masks (maskcode.h) */

/* Bits of the bound of rows r0..r1-1 of bm: log2 C(cols, kept) + log2(cols + 1) per row. */
static double bound_bits(const uint8_t *bm, int64_t r0, int64_t r1, int64_t cols) {
    const int64_t mrow = (cols + 7) / 8;
    double b = 0;
    for (int64_t r = r0; r < r1; r++) {
        int64_t k = 0;
        for (int64_t c = 0; c < cols; c++)
            k += (bm[r * mrow + c / 8] >> (c % 8)) & 1;
        b += (lgamma((double)cols + 1) - lgamma((double)k + 1) - lgamma((double)(cols - k) + 1)) / log(2.0) +
             log2((double)cols + 1);
    }
    return b;
}

static pq__tensor tensor_of(const char *name, pq_dtype dt, const void *data, size_t nbytes, int64_t n) {
    return (pq__tensor){.name = (char *)name, .dtype = dt, .n_dims = 1, .shape = {n}, .data = data, .nbytes = nbytes};
}

/* The coded mask of bm [rows, cols] in blocks of R rows: exact size (pq__kmask_size, a cap one
 * byte short refused), each block within ceil((its bound + 2 bits per row) / 8) bytes, decodes
 * exactly through the checked decoder; the last block cut by a byte or grown by a zero byte
 * does not decode. */
static void kmask_direct(pq_ctx *ctx, const uint8_t *bm, int64_t rows, int64_t cols, int64_t R, const char *tag) {
    const int64_t nb = pq__kmask_blocks(rows, R), mrow = (cols + 7) / 8;
    const size_t size = pq__kmask_size(bm, rows, cols, R);
    uint8_t *buf = calloc(size + 2, 1), *back = malloc((size_t)(rows * mrow) + 1);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)nb + 4);
    CHECK_MSG(pq__kmask_encode(bm, rows, cols, R, buf, size, idx) == (int64_t)size, "%s: size", tag);
    uint8_t *small = malloc(size + 1);
    CHECK_MSG(size == 0 || pq__kmask_encode(bm, rows, cols, R, small, size - 1, NULL) == -1,
              "%s: a cap below the size is refused", tag);
    free(small);
    for (int64_t b = 0; b < nb; b++) {
        const int64_t s = b ? idx[b] : 0, e = b + 1 < nb ? idx[b + 1] : (int64_t)size;
        const int64_t r1 = (b + 1) * R < rows ? (b + 1) * R : rows;
        const double lim = ceil((bound_bits(bm, b * R, r1, cols) + 2.0 * (double)(r1 - b * R)) / 8);
        CHECK_MSG((double)(e - s) <= lim, "%s: block %lld: %lld bytes, bound + 2 bits per row %.0f", tag,
                  (long long)b, (long long)(e - s), lim);
    }
    pq__tensor tk = tensor_of("x.kmask", PQ_DTYPE_U8, buf, size, (int64_t)size),
               ti = tensor_of("x.kmask_idx", PQ_DTYPE_I32, idx, 4 * (size_t)nb, nb);
    const pq_status st = pq__kmask_decode(ctx, "t", "x", &tk, &ti, rows, cols, back);
    CHECK_MSG(st == PQ_OK && memcmp(back, bm, (size_t)(rows * mrow)) == 0, "%s: round trip: %s", tag,
              pq_ctx_error(ctx));
    /* cut by a byte: an error, or (a short stream may be another mask's code) another mask */
    const int64_t last = nb > 1 ? idx[nb - 1] : 0, nr = rows - (nb - 1) * R;
    if (nb && size > (size_t)last)
        CHECK_MSG(pq__kmask_decode_block(buf + last, size - (size_t)last - 1, nr, cols, back) != 0 ||
                      memcmp(back, bm + (nb - 1) * R * mrow, (size_t)(nr * mrow)) != 0,
                  "%s: the last block cut by a byte decodes to the same mask", tag);
    if (nb) /* a trailing zero byte */
        CHECK_MSG(pq__kmask_decode_block(buf + last, size - (size_t)last + 1, nr, cols, back) != 0,
                  "%s: the last block with a trailing byte decodes", tag);
    free(buf);
    free(back);
    free(idx);
}

/* 1 when every cell of some m = 2..16 dividing cols keeps the same count 0 < k < m (the writer
 * then stores an N:M index). */
static int nm_uniform(const uint8_t *mask, int64_t rows, int64_t cols) {
    for (int m = 2; m <= 16; m *= 2) {
        int k0 = -1, ok = cols % m == 0;
        for (int64_t c0 = 0; ok && c0 < rows * cols; c0 += m) {
            int k = 0;
            for (int i = 0; i < m; i++)
                k += mask[c0 + i];
            if (k0 < 0) k0 = k;
            ok = k == k0;
        }
        if (ok && k0 > 0 && k0 < m) return 1;
    }
    return 0;
}

/* Random masks at sparsities 0.05..0.95 and degenerate rows, rows of 1..3000 columns: the
 * coded mask directly (blocks of 1, 7 and the writer's rows), and the layer through the writer,
 * quantized and prune-only, stored coded exactly when that is smaller than the bitmask. */
static void test_kmask_round_trips(pq_ctx *ctx) {
    static const int64_t cols_list[] = {1,   2,   3,   5,   7,   8,   9,   15,  16,   17,   31,   33,   64,
                                        100, 127, 128, 129, 255, 257, 352, 511, 1000, 1025, 2048, 2049, 3000};
    static const double sp[] = {0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, -1};
    for (size_t ci = 0; ci < sizeof cols_list / sizeof cols_list[0]; ci++)
        for (size_t si = 0; si < sizeof sp / sizeof sp[0]; si++) {
            const int64_t cols = cols_list[ci], rows = cols <= 400 ? 130 : 9;
            rng = (uint64_t)(ci * 100 + si + 1) * RANDGEN_SEED;
            uint8_t *mask = random_mask(rows, cols, sp[si]);
            uint8_t *bm = bitmask_of(mask, rows, cols);
            char tag[96];
            snprintf(tag, sizeof tag, "kmask %lld x %lld, s %.2f", (long long)rows, (long long)cols, sp[si]);
            kmask_direct(ctx, bm, rows, cols, PQ__KMASK_BLOCK_ROWS, tag);
            if (ci % 3 == 0) kmask_direct(ctx, bm, rows, cols, 1, tag);
            if (ci % 3 == 1) kmask_direct(ctx, bm, rows, cols, 7, tag);
            const int64_t nb = pq__kmask_blocks(rows, PQ__KMASK_BLOCK_ROWS), mrow = (cols + 7) / 8;
            const int coded =
                pq__kmask_size(bm, rows, cols, PQ__KMASK_BLOCK_ROWS) + 4 * (size_t)nb < (size_t)(rows * mrow);
            const char *want = nm_uniform(mask, rows, cols) ? NULL : coded ? "kmask" : "mask";
            for (int bits = 0; bits <= 4; bits += 4) {
                layer L = {0};
                uint8_t *m2 = malloc((size_t)(rows * cols));
                memcpy(m2, mask, (size_t)(rows * cols));
                make_layer_masked(&L, rows, cols, bits, m2);
                char t2[128];
                snprintf(t2, sizeof t2, "%s, %d bits", tag, bits);
                round_trip(ctx, &L, 2, want, t2, NULL);
                round_trip(ctx, &L, 1, "mask", t2, NULL);
                free_layer(&L);
            }
            free(mask);
            free(bm);
        }
}

/* Any bytes decode (or not) into counts <= cols with nothing set past column cols - 1: a count
 * larger than cols cannot be expressed (it is a choice among 0..cols). */
static void test_kmask_garbage(void) {
    rng = 77 * RANDGEN_SEED;
    for (int t = 0; t < 300; t++) {
        const int64_t cols = 1 + (int64_t)(urand() * 40), rows = 1 + (int64_t)(urand() * 5), mrow = (cols + 7) / 8;
        uint8_t in[64], bm[5 * 6];
        const size_t n = (size_t)(urand() * 64);
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)(urand() * 256);
        pq__kmask_decode_block(in, n, rows, cols, bm);
        int ok = 1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = cols; c < mrow * 8; c++)
                ok &= !((bm[r * mrow + c / 8] >> (c % 8)) & 1);
        CHECK_MSG(ok, "garbage %d: bits set past column %lld", t, (long long)cols);
    }
}

/* info --sparsity's parts of a coded-mask layer: the mask part is .kmask + .kmask_idx, the kept
 * count and the per-row bound come from the decoded mask. */
static void test_kmask_parts(pq_ctx *ctx, const layer *L) {
    uint8_t *img = NULL;
    size_t len = 0, bytes = 0;
    pq__source src;
    if (encode(ctx, L, 2, NULL, &img, &len, &src, &bytes)) {
        pq__packed_parts p;
        pq__packed_parts_of(&src, "x", L->rows, L->cols, &p);
        const pq__tensor *k = pq__source_find(&src, "x.kmask"), *i = pq__source_find(&src, "x.kmask_idx");
        int64_t kept = 0;
        for (int64_t j = 0; j < L->rows * L->cols; j++)
            kept += L->mask[j];
        uint8_t *bm = bitmask_of(L->mask, L->rows, L->cols);
        const double b = bound_bits(bm, 0, L->rows, L->cols);
        CHECK_MSG(k && i && p.mask == (int64_t)(k->nbytes + i->nbytes) && p.kept == kept && p.bits == 4 &&
                      fabs(p.mask_bound_bits - b) < 1e-6 * b && !p.cell_m,
                  "parts: mask %lld kept %lld (%lld) bound %.3f (%.3f)", (long long)p.mask, (long long)p.kept,
                  (long long)kept, p.mask_bound_bits, b);
        /* the bound + 2 bits per row + the index, and a byte per block for rounding up */
        const double nb = i ? (double)i->nbytes / 4 : 0;
        CHECK_MSG(8.0 * (double)p.mask <= b + 2.0 * (double)L->rows + 8.0 * (4 * nb + nb),
                  "parts: %lld mask bytes, bound %.1f bits", (long long)p.mask, b);
        free(bm);
    }
    pq__source_free(&src);
    free(img);
}

static int pk_find(const pq__packed_linear *pk, const char *name) {
    for (int i = 0; i < pk->n; i++)
        if (!strcmp(pk->names[i], name)) return i;
    return -1;
}

static void pk_drop(pq__packed_linear *pk, const char *name) {
    const int i = pk_find(pk, name);
    if (i < 0) return;
    free(pk->bufs[i]);
    pk->n--;
    if (i == pk->n) return;
    pk->bufs[i] = pk->bufs[pk->n], pk->e[i] = pk->e[pk->n];
    memcpy(pk->names[i], pk->names[pk->n], sizeof pk->names[i]);
    pk->e[i].name = pk->names[i];
}

/* The coded stream's length changed by d bytes (its last block's; the index is unchanged). */
static void pk_resize(pq__packed_linear *pk, int d) {
    const int k = pk_find(pk, "x.kmask");
    if (k < 0) return;
    uint8_t *nb = calloc(pk->e[k].nbytes + 2, 1);
    memcpy(nb, pk->bufs[k], pk->e[k].nbytes);
    free(pk->bufs[k]);
    pk->bufs[k] = nb, pk->e[k].data = nb;
    pk->e[k].nbytes = (size_t)((int64_t)pk->e[k].nbytes + d), pk->e[k].shape[0] += d;
}
static void edit_cut(pq__packed_linear *pk) {
    pk_resize(pk, -1);
}
static void edit_grow(pq__packed_linear *pk) {
    pk_resize(pk, 1);
}
static void edit_no_idx(pq__packed_linear *pk) {
    pk_drop(pk, "x.kmask_idx");
}
static void edit_no_kmask(pq__packed_linear *pk) {
    pk_drop(pk, "x.kmask");
}
static void edit_i8(pq__packed_linear *pk) {
    const int k = pk_find(pk, "x.kmask");
    if (k >= 0) pk->e[k].dtype = PQ_DTYPE_I8;
}
/* a bitmask beside the coded mask (rows [rows, 1], an 8-column mask's shape) */
static void edit_add_mask(pq__packed_linear *pk) {
    const int k = pk_find(pk, "x.kmask");
    if (k < 0 || pk->n >= 6) return;
    const int n = pk->n++;
    pk->bufs[n] = calloc(300 * 8, 1);
    snprintf(pk->names[n], sizeof pk->names[n], "x.mask");
    pk->e[n] = (pq__st_entry){.name = pk->names[n],
                              .dtype = PQ_DTYPE_U8,
                              .n_dims = 2,
                              .shape = {300, 8},
                              .data = pk->bufs[n],
                              .nbytes = 300 * 8};
}

/* Bad coded masks: one-line errors naming the tensor. */
static void test_kmask_bad(pq_ctx *ctx) {
    layer L = {0};
    rng = 5 * RANDGEN_SEED;
    make_layer_masked(&L, 300, 64, 4, random_mask(300, 64, 0.3)); /* 3 blocks of 128, 64, 44 rows */
    round_trip(ctx, &L, 2, "kmask", "bad: the layer", NULL);
    test_kmask_parts(ctx, &L);
    corrupt(ctx, &L, "x.kmask_idx", 0, 0, "x.kmask_idx': 0 rows per block");
    corrupt(ctx, &L, "x.kmask_idx", 0, 1, "x.kmask_idx': 3 entries, 300 rows in blocks of 1 need 300");
    corrupt(ctx, &L, "x.kmask_idx", 7, 0x80, "block 1 starts at byte -");          /* negative: before block 0 */
    corrupt(ctx, &L, "x.kmask_idx", 7, 0x7f, "past the end of 'x.kmask'");         /* past the end */
    corrupt(ctx, &L, "x.kmask_idx", 9, 0, "x.kmask_idx': block 2 starts at byte"); /* before block 1 starts */
    corrupt2(ctx, &L, edit_cut, NULL, 0, 0, "x.kmask': rows 256..299 (block 2) do not decode", NULL);
    corrupt2(ctx, &L, edit_grow, NULL, 0, 0, "x.kmask': rows 256..299 (block 2) do not decode", NULL);
    /* a byte changed inside block 0: the stream no longer ends where it should, or (if it still
     * does) the decoded counts disagree with the codes stored */
    corrupt2(ctx, &L, NULL, "x.kmask", 20, 0x5a, "x.kmask': rows 0..127 (block 0) do not decode", "x.qcodes");
    corrupt2(ctx, &L, NULL, "x.kmask", 0, 0xff, "x.kmask': rows 0..127", "x.qcodes");
    corrupt2(ctx, &L, edit_no_idx, NULL, 0, 0, "tensor 'x.kmask' without 'x.kmask_idx'", NULL);
    corrupt2(ctx, &L, edit_no_kmask, NULL, 0, 0, "tensor 'x.kmask_idx' without 'x.kmask'", NULL);
    corrupt2(ctx, &L, edit_i8, NULL, 0, 0, "x.kmask': expected U8", NULL);
    corrupt2(ctx, &L, edit_add_mask, NULL, 0, 0, "has both a .mask and a coded .kmask", NULL);
    /* a stream coded for 64 columns read as 63: the counts (choices among 0..63 now) derail */
    uint8_t *img = NULL;
    size_t len = 0, bytes = 0;
    pq__source src;
    if (encode(ctx, &L, 2, NULL, &img, &len, &src, &bytes)) {
        uint8_t *bm = malloc(300 * 8);
        pq_ctx *c2 = pq_ctx_new();
        const pq_status st = pq__kmask_decode(c2, "t", "x", pq__source_find(&src, "x.kmask"),
                                              pq__source_find(&src, "x.kmask_idx"), 300, 63, bm);
        CHECK_MSG(st == PQ_ERR_FORMAT && strstr(pq_ctx_error(c2), "do not decode"), "63 columns: %s",
                  pq_ctx_error(c2));
        pq_ctx_free(c2);
        free(bm);
    }
    pq__source_free(&src);
    free(img);
    free_layer(&L);
}

/* Layers over the encoder's parallel threshold (a million weights): 1, 2 and 3 threads write
 * the same tensors byte for byte (the code stream in runs of rows cut on whole bytes, found
 * near the even split when row lengths vary: 3-bit codes under an unstructured mask), and they
 * decode to W. */
static void test_parallel_encode(void) {
    const int64_t rows = 1031, cols = 1024;
    const struct {
        int bits, kind; /* kind 0: unstructured 30 %, 1: 2:4, 2: no mask */
    } cases[] = {{3, 0}, {4, 1}, {3, 2}, {0, 0}, {0, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        rng = (uint64_t)(k + 1) * RANDGEN_SEED;
        uint8_t *mask = cases[k].kind == 0 ? random_mask(rows, cols, 0.3) : calloc((size_t)(rows * cols), 1);
        for (int64_t i = 0; i < rows * cols && cases[k].kind > 0; i++)
            mask[i] = cases[k].kind == 2 || (i % 4 == (i / 4) % 4 || i % 4 == ((i / 4) + 1) % 4);
        layer L;
        memset(&L, 0, sizeof L);
        make_layer_masked(&L, rows, cols, cases[k].bits, mask);
        const uint8_t *use_mask = cases[k].kind == 2 ? NULL : L.mask;
        pq__packed_linear pk[3];
        int ok = 1;
        for (int t = 0; t < 3; t++) {
            pq_ctx *c = pq_ctx_new();
            pq_ctx_set_threads(c, t + 1);
            ok &= pq__packed_encode(c, "x", L.W, rows, cols, use_mask, L.q.bits ? &L.q : NULL, 2, &pk[t]) == PQ_OK;
            pq_ctx_free(c);
        }
        CHECK_MSG(ok, "case %zu: encode failed", k);
        for (int t = 1; t < 3 && ok; t++) {
            int same = pk[t].n == pk[0].n;
            for (int e = 0; same && e < pk[0].n; e++)
                same = pk[t].e[e].nbytes == pk[0].e[e].nbytes && !strcmp(pk[t].e[e].name, pk[0].e[e].name) &&
                       !memcmp(pk[t].e[e].data, pk[0].e[e].data, pk[0].e[e].nbytes);
            CHECK_MSG(same, "case %zu (%d bits, kind %d): %d threads differ from 1", k, cases[k].bits, cases[k].kind,
                      t + 1);
        }
        uint8_t *img = NULL;
        size_t len = 0;
        pq__source src;
        pq__source_init(&src);
        float *D = NULL;
        pq_ctx *c = pq_ctx_new();
        const int dec = ok && pq__safetensors_serialize(c, pk[1].e, pk[1].n, NULL, &img, &len) == PQ_OK &&
                        pq__safetensors_parse(c, "t.safetensors", img, len, &src) == PQ_OK &&
                        pq__packed_decode(c, &src, "x", rows, cols, &D) == PQ_OK;
        CHECK_MSG(dec && !memcmp(D, L.W, sizeof(float) * (size_t)(rows * cols)), "case %zu: decode differs: %s", k,
                  pq_ctx_error(c));
        free(D);
        pq__source_free(&src);
        free(img);
        pq_ctx_free(c);
        for (int t = 0; t < 3; t++)
            pq__packed_linear_free(&pk[t]);
        free_layer(&L);
    }
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
                const size_t v2 = round_trip(ctx, &L, 2, want ? "nm" : NULL, tag, &nmb),
                             v1 = round_trip(ctx, &L, 1, "mask", tag, NULL);
                if (want) /* within a byte per row of the information bound, and smaller than v1 */
                    CHECK_MSG(v2 && v2 < v1 && nmb <= (size_t)ROWS * ((size_t)ceil(bound / 8) + 1),
                              "%s: %zu bytes (index %zu, bound %.1f bits per row) vs v1 %zu", tag, v2, nmb, bound,
                              v1);
                free_layer(&L);
            }
    /* unstructured: coded in v2 (smaller than the bitmask at 30% pruned), a bitmask in v1 */
    layer U;
    make_layer(&U, 64, 4, 0, 0, 7);
    size_t kb = 0;
    const size_t u2 = round_trip(ctx, &U, 2, "kmask", "unstructured", &kb),
                 u1 = round_trip(ctx, &U, 1, "mask", "v1", NULL);
    CHECK_MSG(u2 && u2 < u1 && kb < (size_t)ROWS * 8, "unstructured: v2 %zu bytes (mask %zu), v1 %zu", u2, kb, u1);
    free_layer(&U);
    test_kmask_round_trips(ctx);
    test_kmask_garbage();
    test_kmask_bad(ctx);
    test_parallel_encode();

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
