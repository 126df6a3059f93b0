/* The damage of every candidate on one linear (alloc.h): the real layer compression (GPTQ,
 * SparseGPT, the joint modes: pq_layer_compress's machinery) of a seeded random sample of the
 * linear's rows with its full Hessian. The OBS sweep of a row depends only on that row and the
 * factor of H (the unstructured SparseGPT mask, chosen over the rows of a block, excepted), so
 * the sample's layer error scaled by rows / sampled is an unbiased estimate of the whole layer's.
 * The sample is swept in one call (its rows share the sweep's matrix products; batches of a few
 * rows ran 2-3x slower per row), and each sampled row's error d_r H d_r^T comes with it (the
 * sweep's identity row by row, or one product (W - Q) H for two-sweep modes): their spread gives
 * the standard error, and the same rows serve the sensitivity pass. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/alloc.h"
#include "joint/joint.h"

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

void pq__alloc_sample_free(pq__alloc_sample *s) {
    if (!s) return;
    free(s->idx);
    free(s->Wq);
    memset(s, 0, sizeof *s);
}

/* k of the rows (a partial Fisher-Yates shuffle seeded by seed and the linear's name), sorted. */
static pq_status sample(pq_ctx *ctx, const char *name, int64_t rows, int64_t k, uint64_t seed, int64_t **out) {
    int64_t *idx = pq__malloc(ctx, sizeof *idx * (size_t)rows, "sampled rows");
    if (!idx) return ctx->status;
    for (int64_t r = 0; r < rows; r++)
        idx[r] = r;
    uint64_t x = seed ^ pq__fnv1a(name, strlen(name), PQ_FNV_INIT);
    for (int64_t i = 0; i < k && k < rows; i++) {
        const int64_t j = i + (int64_t)(splitmix(&x) % (uint64_t)(rows - i));
        const int64_t t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
    qsort(idx, (size_t)k, sizeof *idx, cmp_i64);
    *out = idx;
    return PQ_OK;
}

/* The estimate for all rows from the sampled rows' errors e[k], and its standard error (with
 * the finite population correction: 0 when every row was swept). */
static void estimate(const double *e, int64_t k, int64_t rows, double *d, double *se) {
    double sum = 0, ss = 0;
    for (int64_t r = 0; r < k; r++)
        sum += e[r];
    const double mu = sum / (double)k;
    for (int64_t r = 0; r < k; r++)
        ss += (e[r] - mu) * (e[r] - mu);
    *d = mu * (double)rows;
    *se = k < rows && k > 1 ? (double)rows * sqrt(ss / (double)(k - 1) / (double)k * (1.0 - (double)k / rows)) : 0;
}

/* The sample's rows, work arrays and the reference's output. */
typedef struct dwork {
    float *Ws, *Wq;
    double *e;
} dwork;

static void dwork_free(dwork *w) {
    free(w->Ws);
    free(w->Wq);
    free(w->e);
}

static pq_status dwork_init(pq_ctx *ctx, dwork *w, const pq__alloc_linear_in *in, const pq__alloc_sample *s) {
    const size_t n = sizeof(float) * (size_t)(s->k * in->cols);
    memset(w, 0, sizeof *w);
    w->Ws = pq__big_malloc(ctx, n, "sampled rows");
    w->Wq = w->Ws ? pq__big_malloc(ctx, n, "sampled rows") : NULL;
    w->e = w->Wq ? pq__malloc(ctx, sizeof *w->e * (size_t)s->k, "row errors") : NULL;
    if (!w->e) return ctx->status;
    for (int64_t i = 0; i < s->k; i++)
        memcpy(w->Ws + i * in->cols, in->W + s->idx[i] * in->cols, sizeof(float) * (size_t)in->cols);
    return PQ_OK;
}

pq_status pq__alloc_damage(pq_ctx *ctx, const pq__alloc_linear_in *in, const pq_layer_params *cands, int64_t n_cands,
                           const int64_t *bytes, int64_t sample_rows, uint64_t seed, int ref, double *damage,
                           double *se, pq__alloc_sample *out) {
    const int64_t rows = in->rows, cols = in->cols;
    memset(out, 0, sizeof *out);
    out->k = sample_rows > 0 && sample_rows < rows ? sample_rows : rows;
    dwork w;
    memset(&w, 0, sizeof w);
    pq_status st = sample(ctx, in->name, rows, out->k, seed, &out->idx);
    if (st == PQ_OK) st = dwork_init(ctx, &w, in, out);
    pq_ctx q; /* the many sweeps neither log nor report progress; the caller does */
    pq__quiet_begin(ctx, &q);
    for (int64_t c = 0; st == PQ_OK && c < n_cands; c++) {
        damage[c] = se[c] = NAN;
        if (bytes[c] < 0) continue;
        if ((st = pq__progress(ctx, "allocate", in->done, in->total)) != PQ_OK) break; /* a cancel point */
        memcpy(w.Wq, w.Ws, sizeof(float) * (size_t)(out->k * cols));
        pq_layer_result res;
        if ((st = pq__layer_compress_factored(&q, &cands[c], w.Wq, out->k, cols, in->H, in->fac, &res, w.e)) !=
            PQ_OK) {
            st = pq__fail(ctx, st, "%s: %s", in->name, q.error);
            break;
        }
        estimate(w.e, out->k, rows, &damage[c], &se[c]);
        if (c != ref) continue;
        out->error = damage[c] * (double)out->k / (double)rows; /* the sample's own error */
        out->Wq = w.Wq;
        w.Wq = NULL;
        if (!(w.Wq = pq__big_malloc(ctx, sizeof(float) * (size_t)(out->k * cols), "sampled rows"))) st = ctx->status;
    }
    dwork_free(&w);
    if (st != PQ_OK) pq__alloc_sample_free(out);
    return st;
}
