/* Calibration windows and Hessian accumulation (calib.h). */
#include "calib/calib.h"

#include "kernels/kernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

pq_status pq__hacc_init(pq_ctx *ctx, pq__hacc *a, int64_t cols) {
    memset(a, 0, sizeof *a);
    a->cols = cols;
    a->n_threads = pq__threads(ctx);
    const int64_t pw = cols < PANEL ? cols : PANEL;
    a->sum = pq__calloc(ctx, (size_t)(cols * cols), sizeof(double), "Hessian");
    a->tmp = a->sum ? pq__malloc(ctx, (size_t)(cols * pw) * sizeof(float), "Hessian") : NULL;
    if (!a->tmp) {
        pq__hacc_free(a);
        return ctx->status;
    }
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
        for (int64_t i = 0; i < r; i++) {
            double *dst = a->sum + (j0 + i) * c + j0;
            const float *src = a->tmp + i * w;
            const int64_t jn = i + 1 < w ? i + 1 : w;
            for (int64_t j = 0; j < jn; j++)
                dst[j] += src[j];
        }
    }
    pq__blas_threads_pop(prev_threads);
    a->n += n;
}

/* Releases the whole pages of [lo, hi) to the system (their contents are dead). */
static void release_pages(void *base, size_t lo, size_t hi) {
    const uintptr_t pg = 4096, a = ((uintptr_t)base + lo + pg - 1) / pg * pg, b = ((uintptr_t)base + hi) / pg * pg;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* The upper triangle of h [c, c] from its lower one, in tiles (both sides stay in cache). */
static void mirror_lower(float *h, int64_t c, int nt) {
    enum { TB = 64 };
    const int64_t nb = (c + TB - 1) / TB;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (c * c >= PQ_PAR_MIN_ELEMS)
    for (int64_t bi = 0; bi < nb; bi++)
        for (int64_t j0 = 0; j0 <= bi * TB; j0 += TB) {
            const int64_t i0 = bi * TB, i1 = i0 + TB < c ? i0 + TB : c;
            for (int64_t i = i0; i < i1; i++) {
                const int64_t j1 = j0 + TB < i ? j0 + TB : i;
                for (int64_t j = j0; j < j1; j++)
                    h[j * c + i] = h[i * c + j];
            }
        }
}

/* Rows [r0, r1) of the scaled lower triangle, double sum -> float h in the same memory. */
static void compact_rows(const double *sum, float *h, int64_t c, double f, int64_t r0, int64_t r1,
                         size_t release_from) {
    for (int64_t i = r0; i < r1; i++) {
        for (int64_t j = 0; j <= i; j++) {
            const double v = sum[i * c + j] * f;
            h[i * c + j] = (float)v;
        }
        const size_t lo = (size_t)(i * c) * sizeof(double);
        if (lo >= release_from) release_pages((void *)(uintptr_t)sum, lo, lo + (size_t)c * sizeof(double));
    }
}

pq_status pq__hacc_finish(pq_ctx *ctx, pq__hacc *a, float **H) {
    const int64_t c = a->cols;
    *H = NULL;
    if (!a->sum) return pq__fail(ctx, PQ_ERR_INVALID, "Hessian: accumulator already finished");
    free(a->tmp);
    a->tmp = NULL;
    const double f = a->n ? 2.0 / (double)a->n : 0.0;
    double *sum = a->sum;
    float *h = (float *)(void *)sum;
    /* In place: float element k lands at byte 4k, below double k's 8k, so a forward pass
     * never overwrites a double it has yet to read. First compact the scaled lower triangle
     * (row-major order), then mirror it. The rows in the upper half of the buffer are read
     * once and never written: their pages go back as soon as they are read, so the float
     * matrix grows into memory the doubles give up (a large H costs about its float64 lower
     * triangle, not that plus the float matrix). */
    const size_t fbytes = (size_t)(c * c) * sizeof(float);
    /* small ones: not worth the system calls */
    const size_t release_from = fbytes >= ((size_t)8 << 20) ? fbytes : SIZE_MAX;
    /* rows [a, 2a) write floats at bytes [4ac, 8ac), below every double they or later rows
     * read (from 8ac): such a batch may run in parallel */
    compact_rows(sum, h, c, f, 0, c < 1 ? c : 1, release_from);
    for (int64_t a0 = 1; a0 < c; a0 *= 2) {
        const int64_t a1 = 2 * a0 < c ? 2 * a0 : c, per = (a1 - a0 + a->n_threads - 1) / a->n_threads;
#pragma omp parallel for num_threads(a->n_threads) schedule(static) if ((a1 - a0) * c >= PQ_PAR_MIN_ELEMS)
        for (int64_t r0 = a0; r0 < a1; r0 += per)
            compact_rows(sum, h, c, f, r0, r0 + per < a1 ? r0 + per : a1, release_from);
    }
    mirror_lower(h, c, a->n_threads);
    float *shrunk = realloc(h, fbytes);
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
