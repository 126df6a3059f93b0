/* Plain reference implementations of the optimal-brain-surgeon column engine of
 * ../shared/docs/ALGORITHMS.md, written for reading (textbook loops, the factorisation in
 * float64, no BLAS in the column loop), against which the library's GPTQ and SparseGPT are
 * checked (test_layer.c, test_prune.c). Header-only; one definition of each step:
 *   obs_ref_quad_err      the layer error tr((W-Q) H (W-Q)^T) (§4 "layer error"), in double
 *   obs_ref_fit/_quant    the min-max grid of §3 (the reference Quantizer.find_params)
 *   obs_ref_dead_fix      §2 dead inputs
 *   obs_ref_hinv_upper    §2 damping, Hinv = H^-1 by Cholesky, U = upper Cholesky of Hinv
 *   obs_ref_sweep         the lazy-batch column loop of §4, shared by GPTQ and SparseGPT:
 *                         a rule gives each column's new values, the sweep spreads the error
 *   obs_ref_gptq          §4 GPTQ (act-order, static and dynamic groups, the fasterquant quirks)
 *   obs_ref_sparsegpt     §5 SparseGPT without quantization (unstructured per block, N:M) */
#ifndef PQ_TEST_OBS_REF_H
#define PQ_TEST_OBS_REF_H

#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* tr((W-Q) H (W-Q)^T) for W, Q [rows, n], H [n, n], naive, in double. */
static inline double obs_ref_quad_err(const float *W, const float *Q, int64_t rows, int64_t n, const float *H) {
    double tot = 0.0;
    double *d = malloc(sizeof(double) * (size_t)n);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < n; j++)
            d[j] = (double)W[r * n + j] - (double)Q[r * n + j];
        for (int64_t i = 0; i < n; i++) {
            if (d[i] == 0.0) continue;
            double s = 0.0;
            for (int64_t j = 0; j < n; j++)
                s += (double)H[i * n + j] * d[j];
            tot += d[i] * s;
        }
    }
    free(d);
    return tot;
}

/* Grid of the reference Quantizer.find_params on x[0..m) (stride st). */
static inline void obs_ref_fit(const float *x, int64_t m, int64_t st, int bits, int sym, float *scale, float *zero) {
    const float maxq = (float)((1 << bits) - 1);
    float xmin = 0.0f, xmax = 0.0f;
    for (int64_t i = 0; i < m; i++) {
        xmin = fminf(xmin, x[i * st]);
        xmax = fmaxf(xmax, x[i * st]);
    }
    if (sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0) xmin = -xmax;
    }
    if (xmin == 0 && xmax == 0) {
        xmin = -1;
        xmax = 1;
    }
    *scale = (xmax - xmin) / maxq;
    *zero = sym ? (maxq + 1) / 2 : rintf(-xmin / *scale);
}

static inline float obs_ref_quant(float x, float scale, float zero, int bits) {
    const float maxq = (float)((1 << bits) - 1);
    const float q = fminf(fmaxf(rintf(x / scale) + zero, 0.0f), maxq);
    return scale * (q - zero);
}

/* Dead inputs: H[j,j] == 0 -> H[j,j] = 1 and W[:, j] = 0. H [n, n] (double), W [rows, n]. */
static inline void obs_ref_dead_fix(double *H, float *W, int64_t rows, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        if (H[j * n + j] == 0) {
            H[j * n + j] = 1;
            for (int64_t r = 0; r < rows; r++)
                W[r * n + j] = 0;
        }
}

/* Damping by percdamp * mean(diag H), then U [n, n] = upper Cholesky factor of H^-1 (in
 * float, zeros below the diagonal). H [n, n] is overwritten. */
static inline void obs_ref_hinv_upper(double *H, int64_t n, double percdamp, float *U) {
    double mean = 0;
    for (int64_t j = 0; j < n; j++)
        mean += H[j * n + j];
    for (int64_t j = 0; j < n; j++)
        H[j * n + j] += percdamp * mean / (double)n;
    LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, H, (lapack_int)n);
    LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, H, (lapack_int)n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            H[i * n + j] = H[j * n + i];
    LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, H, (lapack_int)n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            U[i * n + j] = j >= i ? (float)H[i * n + j] : 0.0f;
}

/* The rule of a sweep. block (may be NULL) is called at the start of each block of cnt
 * columns from i1 with W1 [rows, cnt] (the block as updated so far); column is called for
 * block column i (global j = i1 + i) and writes every row's new value into q [rows].
 * W [rows, n] is the whole matrix, whose block columns are not yet updated in-block. */
typedef struct obs_ref_rule {
    void (*block)(void *user, const float *W1, int64_t rows, int64_t cnt, int64_t i1, const float *U, int64_t n);
    void (*column)(void *user, const float *W1, int64_t rows, int64_t cnt, int64_t i1, int64_t i, const float *U,
                   int64_t n, const float *W, float *q);
    void *user;
} obs_ref_rule;

/* The column loop on W [rows, n] with U [n, n] in blocks of B: column j's new values q,
 * err = (w - q) / U[j,j], the rest of the block updated by err * U[j, :]; after each block
 * one update of every later column by the block's errors. W ends holding the new values. */
static inline void obs_ref_sweep(float *W, int64_t rows, int64_t n, const float *U, int64_t B,
                                 const obs_ref_rule *rule) {
    float *W1 = malloc(sizeof(float) * (size_t)(rows * B)), *E1 = malloc(sizeof(float) * (size_t)(rows * B));
    float *q = malloc(sizeof(float) * (size_t)rows);
    for (int64_t i1 = 0; i1 < n; i1 += B) {
        const int64_t i2 = i1 + B < n ? i1 + B : n, cnt = i2 - i1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < cnt; i++)
                W1[r * cnt + i] = W[r * n + i1 + i];
        if (rule->block) rule->block(rule->user, W1, rows, cnt, i1, U, n);
        for (int64_t i = 0; i < cnt; i++) {
            const int64_t j = i1 + i;
            const float d = U[j * n + j];
            rule->column(rule->user, W1, rows, cnt, i1, i, U, n, W, q);
            for (int64_t r = 0; r < rows; r++) {
                const float err = (W1[r * cnt + i] - q[r]) / d;
                for (int64_t k = i; k < cnt; k++)
                    W1[r * cnt + k] -= err * U[j * n + i1 + k];
                W1[r * cnt + i] = q[r];
                E1[r * cnt + i] = err;
            }
        }
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < cnt; i++)
                W[r * n + i1 + i] = W1[r * cnt + i];
            for (int64_t k = i2; k < n; k++) {
                float s = 0.0f;
                for (int64_t i = 0; i < cnt; i++)
                    s += E1[r * cnt + i] * U[(i1 + i) * n + k];
                W[r * n + k] -= s;
            }
        }
    }
    free(W1);
    free(E1);
    free(q);
}

/* ---------------------------------------------------------------- GPTQ */

typedef struct obs_ref_gptq_state {
    int bits, sym, stat;
    int64_t g, ng;
    const int64_t *perm; /* [n] column order */
    float *scale, *zero; /* [rows, ng] */
} obs_ref_gptq_state;

static inline void obs_ref_gptq_column(void *user, const float *W1, int64_t rows, int64_t cnt, int64_t i1, int64_t i,
                                       const float *U, int64_t n, const float *W, float *q) {
    (void)U;
    obs_ref_gptq_state *s = user;
    const int64_t j = i1 + i, ng = s->ng;
    int64_t gi = 0;
    if (s->g > 0) {
        gi = s->stat ? s->perm[j] / s->g : j / s->g;
        if (!s->stat && j % s->g == 0) /* fitted on W (not W1): misses in-block updates */
            for (int64_t r = 0; r < rows; r++)
                obs_ref_fit(W + r * n + j, s->g, 1, s->bits, s->sym, &s->scale[r * ng + gi], &s->zero[r * ng + gi]);
    }
    for (int64_t r = 0; r < rows; r++)
        q[r] = obs_ref_quant(W1[r * cnt + i], s->scale[r * ng + gi], s->zero[r * ng + gi], s->bits);
}

/* GPTQ as published (Frantar et al., the reference fasterquant): per-row grids (g < 0) fitted
 * before the dead fix, static groups after it, act-order (stable, by decreasing diag H),
 * damping, the factorisation, the sweep; group g columns, blocks of B. Qout [rows, n]. */
static inline void obs_ref_gptq(const float *W0, int64_t rows, int64_t n, const float *H0, int bits, int64_t g,
                                int sym, int act, int stat, double percdamp, int64_t B, float *Qout) {
    float *W = malloc(sizeof(float) * (size_t)(rows * n));
    memcpy(W, W0, sizeof(float) * (size_t)(rows * n));
    double *H = malloc(sizeof(double) * (size_t)(n * n));
    for (int64_t i = 0; i < n * n; i++)
        H[i] = H0[i];
    const int64_t ng = g > 0 ? n / g : 1;
    float *scale = malloc(sizeof(float) * (size_t)(rows * ng)), *zero = malloc(sizeof(float) * (size_t)(rows * ng));
    if (g < 0)
        for (int64_t r = 0; r < rows; r++)
            obs_ref_fit(W + r * n, n, 1, bits, sym, &scale[r], &zero[r]);
    obs_ref_dead_fix(H, W, rows, n);
    if (g > 0 && stat)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < ng; k++)
                obs_ref_fit(W + r * n + k * g, g, 1, bits, sym, &scale[r * ng + k], &zero[r * ng + k]);
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t j = 0; j < n; j++)
        perm[j] = j;
    if (act) /* stable insertion sort by decreasing diag */
        for (int64_t i = 1; i < n; i++) {
            const int64_t v = perm[i];
            int64_t k = i;
            while (k > 0 && H[perm[k - 1] * n + perm[k - 1]] < H[v * n + v]) {
                perm[k] = perm[k - 1];
                k--;
            }
            perm[k] = v;
        }
    float *Wp = malloc(sizeof(float) * (size_t)(rows * n)), *U = malloc(sizeof(float) * (size_t)(n * n));
    double *Hp = malloc(sizeof(double) * (size_t)(n * n));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            Wp[r * n + j] = W[r * n + perm[j]];
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            Hp[i * n + j] = H[perm[i] * n + perm[j]];
    obs_ref_hinv_upper(Hp, n, percdamp, U);
    obs_ref_gptq_state s = {
        .bits = bits, .sym = sym, .stat = stat, .g = g, .ng = ng, .perm = perm, .scale = scale, .zero = zero};
    const obs_ref_rule rule = {.column = obs_ref_gptq_column, .user = &s};
    obs_ref_sweep(Wp, rows, n, U, B, &rule);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++)
            Qout[r * n + perm[j]] = Wp[r * n + j];
    free(W);
    free(H);
    free(scale);
    free(zero);
    free(perm);
    free(Wp);
    free(Hp);
    free(U);
}

/* ---------------------------------------------------------------- SparseGPT */

typedef struct obs_ref_sparsegpt_state {
    double sp;
    int pn, pm;
    uint8_t *mask;    /* [rows, B] 1 = pruned, for the current block */
    float *tmp, *srt; /* [rows * B] scores, sorted scores */
} obs_ref_sparsegpt_state;

static inline int obs_ref_cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Unstructured: scores w^2 / U[j,j]^2 over the block, prune those <= the value at sorted
 * position floor(numel * sp). */
static inline void obs_ref_sparsegpt_block(void *user, const float *W1, int64_t rows, int64_t cnt, int64_t i1,
                                           const float *U, int64_t n) {
    obs_ref_sparsegpt_state *s = user;
    memset(s->mask, 0, (size_t)(rows * cnt));
    if (s->pm) return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < cnt; i++) {
            const float d = U[(i1 + i) * n + i1 + i];
            s->tmp[r * cnt + i] = W1[r * cnt + i] * W1[r * cnt + i] / (d * d);
        }
    memcpy(s->srt, s->tmp, sizeof(float) * (size_t)(rows * cnt));
    qsort(s->srt, (size_t)(rows * cnt), sizeof(float), obs_ref_cmp_float);
    const float thresh = s->srt[(int64_t)((double)(rows * cnt) * s->sp)];
    for (int64_t i = 0; i < rows * cnt; i++)
        s->mask[i] = s->tmp[i] <= thresh;
}

/* N:M at every M-th column on the updated weights (the N lowest scores, lower index first);
 * the new value is 0 where masked, else w. */
static inline void obs_ref_sparsegpt_column(void *user, const float *W1, int64_t rows, int64_t cnt, int64_t i1,
                                            int64_t i, const float *U, int64_t n, const float *W, float *q) {
    (void)W;
    obs_ref_sparsegpt_state *s = user;
    const int64_t j = i1 + i;
    if (s->pm > 0 && i % s->pm == 0)
        for (int64_t r = 0; r < rows; r++) {
            float sc[16];
            for (int k = 0; k < s->pm; k++) {
                const float d = U[(j + k) * n + j + k];
                sc[k] = W1[r * cnt + i + k] * W1[r * cnt + i + k] / (d * d);
            }
            for (int c = 0; c < s->pn; c++) {
                int best = -1;
                for (int k = 0; k < s->pm; k++)
                    if (!s->mask[r * cnt + i + k] && (best < 0 || sc[k] < sc[best])) best = k;
                s->mask[r * cnt + i + best] = 1;
            }
        }
    for (int64_t r = 0; r < rows; r++)
        q[r] = s->mask[r * cnt + i] ? 0.0f : W1[r * cnt + i];
}

/* SparseGPT as published (Frantar & Alistarh, the reference fasterprune), no quantization:
 * dead fix, damping 0.01, the factorisation, the sweep with the masks above; sparsity sp
 * (unstructured) or pn:pm, blocks of B. Wout [rows, n]. */
static inline void obs_ref_sparsegpt(const float *W0, int64_t rows, int64_t n, const float *H0, double sp, int pn,
                                     int pm, int64_t B, float *Wout) {
    memcpy(Wout, W0, sizeof(float) * (size_t)(rows * n));
    double *H = malloc(sizeof(double) * (size_t)(n * n));
    for (int64_t i = 0; i < n * n; i++)
        H[i] = H0[i];
    obs_ref_dead_fix(H, Wout, rows, n);
    float *U = malloc(sizeof(float) * (size_t)(n * n));
    obs_ref_hinv_upper(H, n, 0.01, U);
    obs_ref_sparsegpt_state s = {.sp = sp,
                                 .pn = pn,
                                 .pm = pm,
                                 .mask = malloc((size_t)(rows * B)),
                                 .tmp = malloc(sizeof(float) * (size_t)(rows * B)),
                                 .srt = malloc(sizeof(float) * (size_t)(rows * B))};
    const obs_ref_rule rule = {.block = obs_ref_sparsegpt_block, .column = obs_ref_sparsegpt_column, .user = &s};
    obs_ref_sweep(Wout, rows, n, U, B, &rule);
    free(H);
    free(U);
    free(s.mask);
    free(s.tmp);
    free(s.srt);
}

#endif
