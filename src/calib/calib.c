/* Calibration windows and Hessian accumulation (calib.h). */
#include "calib/calib.h"

#include <cblas.h>
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

pq_status pq__hacc_init(pq_ctx *ctx, pq__hacc *a, int64_t cols) {
    memset(a, 0, sizeof *a);
    a->cols = cols;
    a->sum = pq__calloc(ctx, (size_t)(cols * cols), sizeof(double), "Hessian");
    a->tmp = a->sum ? pq__malloc(ctx, (size_t)(cols * cols) * sizeof(float), "Hessian") : NULL;
    if (!a->tmp) {
        pq__hacc_free(a);
        return ctx->status;
    }
    return PQ_OK;
}

void pq__hacc_add(pq__hacc *a, const float *x, int64_t n) {
    const int64_t c = a->cols;
    cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, (int)c, (int)n, 1.0f, x, (int)c, 0.0f, a->tmp, (int)c);
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j <= i; j++)
            a->sum[i * c + j] += a->tmp[i * c + j];
    a->n += n;
}

pq_status pq__hacc_finish(pq_ctx *ctx, const pq__hacc *a, float **H) {
    const int64_t c = a->cols;
    float *h = pq__malloc(ctx, (size_t)(c * c) * sizeof(float), "Hessian");
    if (!h) return ctx->status;
    const double f = a->n ? 2.0 / (double)a->n : 0.0;
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j <= i; j++)
            h[i * c + j] = h[j * c + i] = (float)(a->sum[i * c + j] * f);
    *H = h;
    return PQ_OK;
}

void pq__hacc_free(pq__hacc *a) {
    free(a->sum);
    free(a->tmp);
    a->sum = NULL;
    a->tmp = NULL;
}
