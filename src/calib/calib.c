/* Calibration windows and Hessian accumulation (calib.h). */
#include "calib/calib.h"

#include "kernels/kernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

pq_status pq__calib_windows(pq_ctx *ctx, const int32_t *tokens, int64_t n_tokens, int64_t n, int64_t len,
                            uint64_t seed, int32_t **windows, int64_t **starts) {
    *windows = NULL;
    *starts = NULL;
    if (n <= 0 || len <= 0) return pq__fail(ctx, PQ_ERR_INVALID, "calibration: nsamples and seqlen must be positive");
    if (n_tokens < len)
        return pq__fail(ctx, PQ_ERR_INVALID, "calibration: %lld tokens, fewer than seqlen %lld", (long long)n_tokens,
                        (long long)len);
    int32_t *w = pq__malloc(ctx, (size_t)(n * len) * sizeof *w, "calibration windows");
    int64_t *s = w ? pq__malloc(ctx, (size_t)n * sizeof *s, "calibration windows") : NULL;
    if (!s) {
        free(w);
        return ctx->status;
    }
    uint64_t rng = seed;
    const uint64_t span = (uint64_t)(n_tokens - len + 1);
    for (int64_t i = 0; i < n; i++) {
        s[i] = (int64_t)(splitmix(&rng) % span);
        memcpy(w + i * len, tokens + s[i], (size_t)len * sizeof *w);
    }
    *windows = w;
    *starts = s;
    return PQ_OK;
}

/* Columns per panel of the float product: tmp holds [cols, PANEL] floats instead of the whole
 * [cols, cols] matrix, so accumulating the largest Hessian (the down projection's, 14336
 * columns for Llama-3-8B) needs its double sum plus ~2% rather than 1.5x of it. */
enum { PANEL = 512 };

/* Start of row i of the packed lower triangle (row i holds columns 0..i). */
static int64_t tri(int64_t i) {
    return i * (i + 1) / 2;
}

pq_status pq__hacc_init(pq_ctx *ctx, pq__hacc *a, int64_t cols) {
    memset(a, 0, sizeof *a);
    a->cols = cols;
    a->n_threads = pq__threads(ctx);
    const int64_t pw = cols < PANEL ? cols : PANEL;
    /* the packed triangle in large pages, zeroed here by all threads: touched page by page
     * inside the first products, its faults cost more than the product (Llama-3-8B's down
     * projection on a VM: 6 of 8.5 s) */
    const size_t bytes = (size_t)tri(cols) * sizeof(double);
    a->sum = pq__big_malloc(ctx, bytes ? bytes : 1, "Hessian");
    a->tmp = a->sum ? pq__malloc(ctx, (size_t)(cols * pw) * sizeof(float), "Hessian") : NULL;
    if (!a->tmp) {
        pq__hacc_free(a);
        return ctx->status;
    }
    const size_t piece = (size_t)1 << 21, np = (bytes + piece - 1) / piece;
#pragma omp parallel for num_threads(a->n_threads) schedule(static) if (np > 1)
    for (size_t p = 0; p < np; p++)
        memset((char *)a->sum + p * piece, 0, bytes - p * piece < piece ? bytes - p * piece : piece);
    return PQ_OK;
}

void pq__hacc_add(pq__hacc *a, const float *x, int64_t n) {
    const int64_t c = a->cols;
    /* the first panel's product is the largest: small ones run on one thread, as in matmul */
    const double flops = (double)n * (double)c * (double)(c < PANEL ? c : PANEL);
    const int prev_threads = pq__blas_threads_push(flops < PQ_PAR_MIN_FLOPS ? 1 : a->n_threads);
    /* lower triangle, one panel of columns j0..j0+w at a time: rows j0..c of X^T X */
    for (int64_t j0 = 0; j0 < c; j0 += PANEL) {
        const int64_t w = c - j0 < PANEL ? c - j0 : PANEL, r = c - j0;
        pq__sgemm(PQ_TRANS, PQ_NOTRANS, r, w, n, 1.0f, x + j0, c, x + j0, c, 0.0f, a->tmp, w);
        a->flop += 2.0 * (double)r * (double)w * (double)n;
        /* rows are independent: the sums do not depend on the threads */
#pragma omp parallel for num_threads(a->n_threads) schedule(static) if (r * w >= PQ_PAR_MIN_ELEMS)
        for (int64_t i = 0; i < r; i++) {
            double *dst = a->sum + tri(j0 + i) + j0;
            const float *src = a->tmp + i * w;
            const int64_t jn = i + 1 < w ? i + 1 : w;
            for (int64_t j = 0; j < jn; j++)
                dst[j] += src[j];
        }
    }
    pq__blas_threads_pop(prev_threads);
    a->n += n;
}

/* The upper triangle of h [c, c] from its lower one, in tiles (both sides stay in cache); the
 * inner loop stores consecutive elements (rows c apart, for the usual c a power of two, share
 * one L1 set: stores walking down a column would miss on every one). */
static void mirror_lower(float *h, int64_t c, int nt) {
    enum { TB = 64 };
    const int64_t nb = (c + TB - 1) / TB;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (c * c >= PQ_PAR_MIN_ELEMS)
    for (int64_t bi = 0; bi < nb; bi++)
        for (int64_t j0 = 0; j0 <= bi * TB; j0 += TB) {
            const int64_t i0 = bi * TB, i1 = i0 + TB < c ? i0 + TB : c, j1 = j0 + TB < c ? j0 + TB : c;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0 > j + 1 ? i0 : j + 1; i < i1; i++)
                    h[j * c + i] = h[i * c + j];
        }
}

pq_status pq__hacc_finish(pq_ctx *ctx, pq__hacc *a, float **H) {
    const int64_t c = a->cols;
    *H = NULL;
    if (!a->sum) return pq__fail(ctx, PQ_ERR_INVALID, "Hessian: accumulator already finished");
    free(a->tmp);
    a->tmp = NULL;
    /* In place: the packed double triangle (4 c (c + 1) bytes) becomes the float matrix (4 c^2
     * bytes) in the same memory, rows from the last up, a batch of rows at a time. A batch
     * [r0, r1) writes floats at bytes [4 r0 c, 4 r1 c), above every double of the rows below
     * it (they end at 4 r0 (r0 + 1) <= 4 r0 c): its own doubles are copied out first, so its
     * rows convert in parallel. Then the lower triangle is mirrored. */
    enum { BATCH = 64 };
    const int64_t rows = c < BATCH ? c : BATCH;
    double *copy = pq__malloc(ctx, (size_t)(rows * c > 0 ? rows * c : 1) * sizeof(double), "Hessian");
    if (!copy) return ctx->status;
    const double f = a->n ? 2.0 / (double)a->n : 0.0;
    const double *sum = a->sum;
    float *h = (float *)(void *)a->sum;
    for (int64_t r1 = c; r1 > 0;) {
        const int64_t r0 = r1 > BATCH ? r1 - BATCH : 0;
        memcpy(copy, sum + tri(r0), (size_t)(tri(r1) - tri(r0)) * sizeof(double));
#pragma omp parallel for num_threads(a->n_threads) schedule(static) if ((r1 - r0) * c >= PQ_PAR_MIN_ELEMS)
        for (int64_t i = r0; i < r1; i++) {
            const double *src = copy + tri(i) - tri(r0);
            for (int64_t j = 0; j <= i; j++) {
                const double v = src[j] * f;
                h[i * c + j] = (float)v;
            }
        }
        r1 = r0;
    }
    free(copy);
    mirror_lower(h, c, a->n_threads);
    const size_t fbytes = (size_t)(c * c) * sizeof(float);
    float *shrunk = fbytes ? realloc(h, fbytes) : NULL;
    a->sum = NULL;
    *H = shrunk ? shrunk : h;
    return PQ_OK;
}

void pq__hacc_free(pq__hacc *a) {
    free(a->sum);
    free(a->tmp);
    a->sum = NULL;
    a->tmp = NULL;
}
