/* Pruning: exact selection, N:M cells, magnitude/Wanda masks, SparseGPT against the plain
 * implementation of the published algorithm (tests/obs_ref.h), and the expected ordering of the methods. */
#include <stdint.h>

#include "kernels/mask.h"
#include "obs_ref.h"
#include "prunequant-compress.h"
#include "test.h"
#define RANDGEN_SEED 0x243f6a8885a308d3ULL
#include "randgen.h"

/* H = 2 X X^T / T, X = low rank + noise (correlated channels) */
static float *make_h(int64_t n, int64_t T, int rank) {
    float *X = malloc(sizeof(float) * (size_t)(n * T)), *A = malloc(sizeof(float) * (size_t)(n * rank));
    for (int64_t i = 0; i < n * rank; i++)
        A[i] = nrand();
    for (int64_t t = 0; t < T; t++) {
        float z[64];
        for (int k = 0; k < rank; k++)
            z[k] = nrand();
        for (int64_t i = 0; i < n; i++) {
            float v = 0.4f * nrand();
            for (int k = 0; k < rank; k++)
                v += A[i * rank + k] * z[k];
            X[i * T + t] = v * (i % 13 == 5 ? 5.0f : 1.0f);
        }
    }
    float *H = malloc(sizeof(float) * (size_t)(n * n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0.0;
            for (int64_t t = 0; t < T; t++)
                s += (double)X[i * T + t] * X[j * T + t];
            H[i * n + j] = H[j * n + i] = (float)(2.0 * s / (double)T);
        }
    free(X);
    free(A);
    return H;
}

/* ---------------------------------------------------------------- selection */

static void test_select(void) {
    const int64_t sizes[] = {1, 2, 7, 100, 1000, 5000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int64_t n = sizes[si];
        float *x = malloc(sizeof(float) * (size_t)n), *s = malloc(sizeof(float) * (size_t)n);
        uint32_t *scratch = malloc(sizeof(uint32_t) * (size_t)n);
        uint8_t *keep = malloc((size_t)n);
        for (int rep = 0; rep < 4; rep++) {
            for (int64_t i = 0; i < n; i++)
                x[i] = rep == 0   ? nrand()
                       : rep == 1 ? (float)(int)(urand() * 5) - 2.0f
                       : rep == 2 ? 0.0f
                                  : -fabsf(nrand());
            if (rep == 1 && n > 3) x[1] = -0.0f;
            memcpy(s, x, sizeof(float) * (size_t)n);
            qsort(s, (size_t)n, sizeof(float), obs_ref_cmp_float);
            for (int t = 0; t < 5; t++) {
                const int64_t k = (int64_t)(urand() * (double)n);
                int64_t less;
                const float v = pq__select_kth(x, n, k, &less, scratch);
                CHECK_MSG(v == s[k], "n %lld k %lld: %g vs %g", (long long)n, (long long)k, v, s[k]);
                int64_t expect_less = 0;
                while (expect_less < n && s[expect_less] < s[k])
                    expect_less++;
                /* -0 sorts below +0 in the key order; count with the same order */
                if (rep != 1) CHECK(less == expect_less);
                /* exactly k pruned, the smallest ones, ties by index */
                pq__mask_k_smallest(x, n, k, keep, scratch);
                int64_t pruned = 0, bad = 0, ties_seen = 0;
                const float t_k = k > 0 ? s[k - 1] : -INFINITY;
                for (int64_t i = 0; i < n; i++) {
                    pruned += !keep[i];
                    if (!keep[i] && x[i] > t_k) bad++;
                    if (keep[i] && x[i] < t_k) bad++;
                    if (x[i] == t_k) {
                        /* pruned ties come first in index order */
                        if (keep[i])
                            ties_seen = 1;
                        else if (ties_seen)
                            bad++;
                    }
                }
                CHECK(pruned == k && bad == 0);
            }
        }
        /* reference rule: everything <= the value at position k */
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)(int)(urand() * 4);
        memcpy(s, x, sizeof(float) * (size_t)n);
        qsort(s, (size_t)n, sizeof(float), obs_ref_cmp_float);
        const int64_t k = n / 2;
        pq__mask_le_kth(x, n, k, keep, scratch);
        int ok = 1;
        for (int64_t i = 0; i < n; i++)
            ok &= keep[i] == (x[i] > s[k]);
        CHECK(ok);
        free(x);
        free(s);
        free(scratch);
        free(keep);
    }
    CHECK(pq__prune_count(10, 0.3) == 3);
    CHECK(pq__prune_count(100, 0.57) == 57);
    CHECK(pq__prune_count_ref(100, 0.57) == 56); /* 100 * 0.57 = 56.99999999999999 in double */
    CHECK(pq__prune_count(4096, 0.5) == 2048);
}

static void test_nm_cell(void) {
    const int pats[][2] = {{2, 4}, {4, 8}, {2, 8}, {1, 4}, {6, 8}, {50, 100}};
    for (size_t p = 0; p < sizeof pats / sizeof pats[0]; p++) {
        const int nn = pats[p][0], m = pats[p][1];
        float s[100];
        uint8_t keep[100];
        uint32_t scratch[100];
        for (int rep = 0; rep < 20; rep++) {
            for (int c = 0; c < m; c++)
                s[c] = rep % 2 ? (float)(int)(urand() * 3) : nrand();
            pq__mask_nm_cell(s, m, nn, keep, scratch);
            int pruned = 0, bad = 0;
            for (int c = 0; c < m; c++) {
                pruned += !keep[c];
                for (int d = 0; d < m; d++) /* a kept weight never scores below a pruned one */
                    if (keep[c] && !keep[d] && (s[c] < s[d] || (s[c] == s[d] && c < d))) bad++;
            }
            CHECK_MSG(pruned == nn && bad == 0, "%d:%d pruned %d bad %d", nn, m, pruned, bad);
        }
    }
}

/* The sweep's cells of many rows at once hold to the one-cell rule bit for bit: scores
 * x^2 v^2 with ties (repeated and zero weights, -0), NaNs and infinities, odd row counts. */
static void test_nm_rows(void) {
    const int pats[][2] = {{2, 4}, {1, 4}, {4, 8}, {2, 8}, {3, 5}, {32, 64}};
    const int64_t T = 37, xs = 41; /* rows, column stride (x[k * xs + r]) */
    for (size_t p = 0; p < sizeof pats / sizeof pats[0]; p++) {
        const int nn = pats[p][0], m = pats[p][1];
        float *x = malloc(sizeof(float) * (size_t)(m * xs)), v[64], s[64];
        uint8_t *keep = malloc((size_t)(m * xs)), ref[64];
        uint32_t *key = malloc(sizeof(uint32_t) * (size_t)(m * T)), scratch[64];
        for (int rep = 0; rep < 8; rep++) {
            for (int k = 0; k < m; k++) {
                v[k] = rep % 4 == 3 ? 1.0f : 0.5f + urand();
                for (int64_t r = 0; r < xs; r++) {
                    const double u = urand();
                    float w = rep % 2 ? (float)(int)(urand() * 3) - 1.0f : nrand();
                    if (rep >= 4 && u < 0.05) w = NAN;
                    if (rep >= 4 && u > 0.95) w = u > 0.975 ? INFINITY : -0.0f;
                    x[k * xs + r] = w;
                }
            }
            memset(keep, 7, (size_t)(m * xs));
            pq__mask_nm_rows(x, xs, v, m, nn, T, keep, xs, key);
            int bad = 0, untouched = 1;
            for (int64_t r = 0; r < T; r++) {
                for (int k = 0; k < m; k++)
                    s[k] = x[k * xs + r] * x[k * xs + r] * v[k] * v[k];
                pq__mask_nm_cell(s, m, nn, ref, scratch);
                for (int k = 0; k < m; k++)
                    bad += keep[k * xs + r] != ref[k];
            }
            for (int k = 0; k < m; k++)
                for (int64_t r = T; r < xs; r++)
                    untouched &= keep[k * xs + r] == 7;
            CHECK_MSG(bad == 0 && untouched, "%d:%d rep %d: %d differ from the cell rule", nn, m, rep, bad);
        }
        free(x);
        free(keep);
        free(key);
    }
}

static float *compress(pq_ctx *ctx, const pq_layer_params *p, const float *W, int64_t rows, int64_t cols,
                       const float *H, uint8_t *mask, pq_layer_result *res) {
    float *Q = malloc(sizeof(float) * (size_t)(rows * cols));
    memcpy(Q, W, sizeof(float) * (size_t)(rows * cols));
    const pq_status st = pq_layer_compress(ctx, p, Q, rows, cols, H, mask, NULL, res);
    CHECK_MSG(st == PQ_OK, "compress: %s", pq_ctx_error(ctx));
    return Q;
}

static void test_sparsegpt_reference(void) {
    const int64_t rows = 40, n = 96;
    float *H = make_h(n, 200, 10), *W = make_w(rows, n);
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, 2);
    const struct {
        int pn, pm;
        int64_t B;
    } cases[] = {{0, 0, 96}, {0, 0, 32}, {2, 4, 32}, {4, 8, 24}, {1, 4, 96}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pq_layer_params p = pq_layer_params_default();
        p.prune = PQ_PRUNE_SPARSEGPT;
        p.quant = PQ_QUANT_NONE;
        p.prune_n = cases[k].pn;
        p.prune_m = cases[k].pm;
        p.blocksize = cases[k].B;
        p.reference = 1;
        pq_layer_result res;
        float *Q = compress(ctx, &p, W, rows, n, H, NULL, &res);
        float *R = malloc(sizeof(float) * (size_t)(rows * n));
        obs_ref_sparsegpt(W, rows, n, H, 0.5, cases[k].pn, cases[k].pm, cases[k].B, R);
        int64_t zq = 0, zr = 0, same_zero = 0;
        for (int64_t i = 0; i < rows * n; i++) {
            zq += Q[i] == 0.0f;
            zr += R[i] == 0.0f;
            same_zero += (Q[i] == 0.0f) == (R[i] == 0.0f);
        }
        const double eq = obs_ref_quad_err(W, Q, rows, n, H), er = obs_ref_quad_err(W, R, rows, n, H);
        CHECK_MSG(fabs(eq - er) <= 1e-4 * er, "case %zu: error %.8g vs reference %.8g", k, eq, er);
        CHECK_MSG(same_zero >= rows * n - 2, "case %zu: masks differ in %lld places", k,
                  (long long)(rows * n - same_zero));
        CHECK_NEAR(res.error, eq, 1e-4 * eq);
        free(Q);
        free(R);
    }
    pq_ctx_free(ctx);
    free(H);
    free(W);
}

static int pattern_holds(const float *Q, int64_t rows, int64_t cols, int pn, int pm) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c += pm) {
            int z = 0;
            for (int k = 0; k < pm; k++)
                z += Q[r * cols + c + k] == 0.0f;
            if (z < pn) return 0;
        }
    return 1;
}

static void test_masks(void) {
    const int64_t rows = 48, n = 128, nel = rows * n;
    float *H = make_h(n, 300, 12), *W = make_w(rows, n);
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, 2);
    uint8_t *mask = malloc((size_t)nel);
    const pq_prune_method methods[] = {PQ_PRUNE_MAGNITUDE, PQ_PRUNE_WANDA, PQ_PRUNE_SPARSEGPT};
    const int pats[][2] = {{2, 4}, {4, 8}, {2, 8}, {1, 4}, {6, 8}};
    for (int mi = 0; mi < 3; mi++) {
        for (size_t pi = 0; pi < sizeof pats / sizeof pats[0]; pi++) {
            for (int q = 0; q < 2; q++) {
                pq_layer_params p = pq_layer_params_default();
                p.prune = methods[mi];
                p.prune_n = pats[pi][0];
                p.prune_m = pats[pi][1];
                p.quant = q ? PQ_QUANT_GPTQ : PQ_QUANT_NONE;
                p.group_size = 32;
                p.joint = methods[mi] == PQ_PRUNE_SPARSEGPT ? PQ_JOINT_FUSED : PQ_JOINT_B;
                pq_layer_result res;
                float *Q = compress(ctx, &p, W, rows, n, H, mask, &res);
                CHECK_MSG(pattern_holds(Q, rows, n, p.prune_n, p.prune_m), "%s %d:%d quant %d",
                          pq_prune_method_name(p.prune), p.prune_n, p.prune_m, q);
                CHECK_NEAR(res.sparsity, (double)p.prune_n / p.prune_m, 1e-12);
                int64_t pruned = 0;
                for (int64_t i = 0; i < nel; i++)
                    pruned += !mask[i];
                CHECK(pruned == nel * p.prune_n / p.prune_m);
                free(Q);
            }
        }
        /* unstructured: magnitude and Wanda prune floor(cols * s) per row; SparseGPT is
         * exact per block */
        pq_layer_params p = pq_layer_params_default();
        p.prune = methods[mi];
        p.quant = PQ_QUANT_NONE;
        p.sparsity = 0.3;
        pq_layer_result res;
        float *Q = compress(ctx, &p, W, rows, n, H, mask, &res);
        if (methods[mi] != PQ_PRUNE_SPARSEGPT) {
            int rows_ok = 1;
            for (int64_t r = 0; r < rows; r++) {
                int64_t z = 0;
                for (int64_t c = 0; c < n; c++)
                    z += !mask[r * n + c];
                rows_ok &= z == 38; /* floor(128 * 0.3) */
            }
            CHECK(rows_ok);
            /* magnitude: every kept |w| >= every pruned |w| of the row (Wanda: scaled) */
            int order_ok = 1;
            for (int64_t r = 0; r < rows && methods[mi] == PQ_PRUNE_MAGNITUDE; r++) {
                float maxp = 0.0f, mink = INFINITY;
                for (int64_t c = 0; c < n; c++) {
                    const float a = fabsf(W[r * n + c]);
                    if (mask[r * n + c])
                        mink = fminf(mink, a);
                    else
                        maxp = fmaxf(maxp, a);
                }
                order_ok &= maxp <= mink;
            }
            CHECK(order_ok);
            int unchanged = 1; /* no weight update */
            for (int64_t i = 0; i < nel; i++)
                unchanged &= mask[i] ? Q[i] == W[i] : Q[i] == 0.0f;
            CHECK(unchanged);
        } else {
            CHECK_NEAR(res.sparsity, 0.3, 1.0 / (double)n);
        }
        free(Q);
    }
    free(mask);
    pq_ctx_free(ctx);
    free(H);
    free(W);
}

static void test_ordering(void) {
    const int64_t rows = 64, n = 128;
    float *H = make_h(n, 400, 12), *W = make_w(rows, n);
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, 2);
    const int pats[][2] = {{0, 0}, {2, 4}};
    for (int k = 0; k < 2; k++) {
        double e[3];
        const pq_prune_method methods[] = {PQ_PRUNE_SPARSEGPT, PQ_PRUNE_WANDA, PQ_PRUNE_MAGNITUDE};
        for (int mi = 0; mi < 3; mi++) {
            pq_layer_params p = pq_layer_params_default();
            p.prune = methods[mi];
            p.quant = PQ_QUANT_NONE;
            p.sparsity = 0.5;
            p.prune_n = pats[k][0];
            p.prune_m = pats[k][1];
            pq_layer_result res;
            float *Q = compress(ctx, &p, W, rows, n, H, NULL, &res);
            e[mi] = res.error;
            CHECK_NEAR(res.error, obs_ref_quad_err(W, Q, rows, n, H), 1e-4 * res.error);
            free(Q);
        }
        CHECK_MSG(e[0] < e[1] && e[1] < e[2], "pattern %d: sparsegpt %g, wanda %g, magnitude %g", k, e[0], e[1],
                  e[2]);
    }
    pq_ctx_free(ctx);
    free(H);
    free(W);
}

int main(void) {
    test_select();
    test_nm_cell();
    test_nm_rows();
    test_sparsegpt_reference();
    test_masks();
    test_ordering();
    return test_end("test_prune");
}
