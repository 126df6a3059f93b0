/* Every kernel against its reference twin (kernels/kernels.h, quant/quant.h, model/packed.h),
 * after ggml's test-quantize-fns: a table of kernels, each with a stated error bound; random
 * inputs of several shapes (1 and odd sizes included); the worst observed error as a fraction
 * of the bound is printed per kernel.
 *
 * Bounds (Higham, Accuracy and Stability of Numerical Algorithms, ch. 3, 8, 10, 14): with unit
 * roundoff u (2^-24 float, 2^-53 double) and gamma_k = k u / (1 - k u), a computed sum of k
 * products is within gamma_k * sum |products| of the exact one, whatever the summation order or
 * blocking (BLAS included). A fast and a reference result each within such a bound of the exact
 * value differ by at most twice it. Factorisations are checked on their residuals, which the
 * same analysis bounds for every algorithm (the forward error would depend on conditioning).
 * Integer results (grid zero points, bit streams) and kernels that share the reference's
 * arithmetic must agree exactly. */
#include <stdint.h>
#include <string.h>

#include "kernels/dtype.h"
#include "kernels/kernels.h"
#include "model/packed.h"
#include "kernels/grid.h"
#include "test.h"
#define RANDGEN_SEED 0x2545f4914f6cdd1dULL
#include "randgen.h"

#define U_F32 (1.0 / 16777216.0)         /* 2^-24 */
#define U_F64 (1.0 / 9007199254740992.0) /* 2^-53 */
/* glibc's documented worst errors (sysdeps/x86_64/fpu/libm-test-ulps): expf scalar and libmvec
 * 1 ulp, exp and log 1 ulp; one ulp of v is at most 2 u |v|. */
#define EXPF_ULP 1.0
#define EXP_ULP 1.0
#define LOG_ULP 1.0

static double gam(double k, double u) {
    return k * u / (1.0 - k * u);
}

/* One row of the report: the worst |fast - ref| / bound seen over every element checked. */
typedef struct kstat {
    const char *name, *ref, *bound;
    double worst;
    int64_t n;
} kstat;

enum {
    K_MATMUL,
    K_SGEMM,
    K_STRSM,
    K_SPOTRF,
    K_DPOTRF,
    K_DTRTRI,
    K_RMSNORM,
    K_SOFTMAX,
    K_LSE,
    K_LOGSM,
    K_GRID,
    K_PACK,
    K_ATTN,
    K_HALF,
    K_N
};

static kstat table[K_N] = {
    [K_MATMUL] = {"pq__matmul_wt", "pq__matmul_wt_ref", "2 gamma_{k+1} (sum|w x| + |b|)"},
    [K_SGEMM] = {"pq__sgemm", "pq__sgemm_ref", "2 gamma_{k+2} (|alpha| sum|a b| + |beta c|)"},
    [K_STRSM] = {"pq__strsm_lutu", "pq__strsm_lutu_ref", "residual gamma_{m+1} (|alpha B| + |A^T||X|)"},
    [K_SPOTRF] = {"pq__potrf_lower f32", "pq__potrf_lower_ref", "residual gamma_{n+1} |L||L^T|"},
    [K_DPOTRF] = {"pq__potrf_lower f64", "pq__potrf_lower_ref", "residual gamma_{n+1} |L||L^T| (u = 2^-53)"},
    [K_DTRTRI] = {"pq__dtrtri_upper", "pq__dtrtri_upper_ref", "residual gamma_n |X||U| (u = 2^-53)"},
    [K_RMSNORM] = {"pq__rmsnorm", "pq__rmsnorm_ref", "0 (same arithmetic); ref: (gamma_{d+2}/2 + gamma_5) |y|"},
    [K_SOFTMAX] = {"pq__softmax", "pq__softmax_ref", "(gamma_{n+1} + 4 ulp_exp u + u (|d_i| + max|d|)) p_i"},
    [K_LSE] = {"pq__logsumexp", "pq__logsumexp_ref", "gamma_{n+1} + 2u (ulp_exp + ulp_log |log s| + 2 |lse|)"},
    [K_LOGSM] = {"pq__log_softmax", "pq__log_softmax_ref", "bound(lse) + 2 u |lp_i| (u = 2^-53)"},
    [K_GRID] = {"pq__grid_fit_tile", "pq__grid_fit_tile_ref", "0 (bit-exact scale and zero)"},
    [K_PACK] = {"pq__bits_pack/unpack", "pq__bits_*_ref", "0 (bit-exact stream and codes)"},
    [K_HALF] = {"pq__to_f32/from_f32", "pq__f16_*, pq__bf16_*", "0 (bit-exact, NaNs included)"},
    [K_ATTN] = {"pq__attend_row", "pq__attend_row_ref", "sum_t p_t |v_t| (4 delta + e_softmax + 2 gamma_{T+1})"},
};

/* Records |got - want| against bound (0: exact equality); returns 1 when within. */
static int within(int k, double got, double want, double bound) {
    const double d = fabs(got - want);
    const double f = bound > 0 ? d / bound : (d == 0 ? 0.0 : INFINITY);
    if (f > table[k].worst || f != f) table[k].worst = f != f ? INFINITY : f;
    table[k].n++;
    return f <= 1.0;
}

static float *randv(int64_t n, float sd) {
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        x[i] = sd * nrand();
    return x;
}

static int blas_threads_now(void) {
    const int prev = pq__blas_threads_push(1);
    pq__blas_threads_pop(prev);
    return prev;
}

/* ---- products ---------------------------------------------------------------------------- */

static void test_matmul(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {3, 17, 33}, {64, 65, 127}, {130, 96, 257}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int with_b = 0; with_b < 2; with_b++) {
            const int64_t n = shapes[s][0], rows = shapes[s][1], cols = shapes[s][2];
            float *x = randv(n * cols, 1.0f), *w = randv(rows * cols, 1.0f), *b = with_b ? randv(rows, 1.0f) : NULL;
            float *yf = randv(n * rows, 1.0f), *yr = randv(n * rows, 1.0f);
            const int before = blas_threads_now();
            pq__matmul_wt(x, w, b, yf, n, rows, cols, 2);
            CHECK(blas_threads_now() == before); /* the call restored the thread count */
            pq__matmul_wt_ref(x, w, b, yr, n, rows, cols);
            int bad = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t r = 0; r < rows; r++) {
                    double abs = b ? fabs(b[r]) : 0.0;
                    for (int64_t c = 0; c < cols; c++)
                        abs += fabs((double)w[r * cols + c] * x[i * cols + c]);
                    bad +=
                        !within(K_MATMUL, yf[i * rows + r], yr[i * rows + r], 2 * gam((double)cols + 1, U_F32) * abs);
                }
            CHECK_MSG(bad == 0, "matmul %lldx%lldx%lld: %d outside the bound", (long long)n, (long long)rows,
                      (long long)cols, bad);
            free(x), free(w), free(b), free(yf), free(yr);
        }
}

static void test_sgemm(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {1, 9, 5}, {7, 1, 3}, {5, 6, 1}, {17, 33, 65}, {128, 130, 257}};
    static const float alphas[] = {1.0f, 0.37f}, betas[] = {0.0f, 1.0f, -0.5f};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int ab = 0; ab < 6; ab++) {
                const int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], pad = (t + ab) % 3;
                const pq__trans ta = t & 1 ? PQ_TRANS : PQ_NOTRANS, tb = t & 2 ? PQ_TRANS : PQ_NOTRANS;
                const float alpha = alphas[ab % 2], beta = betas[ab / 2];
                /* stored shapes with padded leading dimensions */
                const int64_t ar = ta ? k : m, ac = (ta ? m : k), lda = ac + pad;
                const int64_t br = tb ? n : k, bc = (tb ? k : n), ldb = bc + pad, ldc = n + pad;
                float *A = randv(ar * lda, 1.0f), *B = randv(br * ldb, 1.0f), *C0 = randv(m * ldc, 1.0f);
                float *Cf = copy_f(C0, m * ldc), *Cr = copy_f(C0, m * ldc);
                pq__sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, Cf, ldc);
                pq__sgemm_ref(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, Cr, ldc);
                int bad = 0;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double abs = 0.0;
                        for (int64_t p = 0; p < k; p++)
                            abs += fabs((double)(ta ? A[p * lda + i] : A[i * lda + p]) *
                                        (double)(tb ? B[j * ldb + p] : B[p * ldb + j]));
                        abs = fabs(alpha) * abs + fabs((double)beta * C0[i * ldc + j]);
                        bad +=
                            !within(K_SGEMM, Cf[i * ldc + j], Cr[i * ldc + j], 2 * gam((double)k + 2, U_F32) * abs);
                    }
                CHECK_MSG(bad == 0, "sgemm %lldx%lldx%lld trans %d: %d outside the bound", (long long)m, (long long)n,
                          (long long)k, t, bad);
                free(A), free(B), free(C0), free(Cf), free(Cr);
            }
}

/* max_ij |alpha B - A^T X|_ij / (gamma_{m+1} (|alpha B| + |A^T||X|)_ij), A unit upper. */
static void strsm_residual(int64_t m, int64_t n, float alpha, const float *A, int64_t lda, const float *B,
                           const float *X, int64_t ldb, int *bad) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double r = (double)alpha * B[i * ldb + j] - X[i * ldb + j];
            double abs = fabs((double)alpha * B[i * ldb + j]) + fabs((double)X[i * ldb + j]);
            for (int64_t k = 0; k < i; k++) {
                r -= (double)A[k * lda + i] * X[k * ldb + j];
                abs += fabs((double)A[k * lda + i] * X[k * ldb + j]);
            }
            *bad += !within(K_STRSM, r, 0.0, gam((double)m + 1, U_F32) * abs);
        }
}

static void test_strsm(void) {
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {5, 1}, {33, 17}, {128, 65}, {200, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int pad = 0; pad < 2; pad++) {
            const int64_t m = shapes[s][0], n = shapes[s][1], lda = m + 3 * pad, ldb = n + pad;
            const float alpha = pad ? 0.75f : 1.0f;
            /* off-diagonal entries of size 1/m keep A well conditioned; its diagonal and lower
             * part hold garbage the kernels must not read */
            float *A = randv(m * lda, 1.0f / (float)m);
            for (int64_t i = 0; i < m; i++)
                A[i * lda + i] = 1e3f;
            float *B = randv(m * ldb, 1.0f), *Xf = copy_f(B, m * ldb), *Xr = copy_f(B, m * ldb);
            pq__strsm_lutu(m, n, alpha, A, lda, Xf, ldb);
            pq__strsm_lutu_ref(m, n, alpha, A, lda, Xr, ldb);
            int bad = 0;
            strsm_residual(m, n, alpha, A, lda, B, Xf, ldb, &bad);
            strsm_residual(m, n, alpha, A, lda, B, Xr, ldb, &bad);
            CHECK_MSG(bad == 0, "strsm %lldx%lld: %d residuals outside the bound", (long long)m, (long long)n, bad);
            free(A), free(B), free(Xf), free(Xr);
        }
}

/* ---- factorisations ---------------------------------------------------------------------- */

static double aget(const void *A, int f32, int64_t i) {
    return f32 ? (double)((const float *)A)[i] : ((const double *)A)[i];
}

/* |A - L L^T|_ij <= gamma_{n+1} (|L||L^T|)_ij on the lower triangle (A's copy in A0). */
static int potrf_residual(int f32, int64_t n, const double *A0, const void *L, int64_t lda) {
    const int k = f32 ? K_SPOTRF : K_DPOTRF;
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double r = A0[i * n + j], abs = 0.0;
            for (int64_t p = 0; p <= j; p++) {
                const double v = aget(L, f32, i * lda + p) * aget(L, f32, j * lda + p);
                r -= v;
                abs += fabs(v);
            }
            bad += !within(k, r, 0.0, gam((double)n + 1, f32 ? U_F32 : U_F64) * abs);
        }
    return bad;
}

static void test_potrf(void) {
    static const int64_t sizes[] = {1, 2, 7, 33, 130};
    for (int f32 = 0; f32 < 2; f32++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            const int64_t n = sizes[s], lda = n + (int64_t)s % 2, esz = f32 ? 4 : 8;
            /* SPD: G G^T / n + I, G [n, n] */
            float *G = randv(n * n, 1.0f);
            double *A0 = malloc(sizeof(double) * (size_t)(n * n));
            void *Af = malloc((size_t)(n * lda * esz)), *Ar = malloc((size_t)(n * lda * esz));
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++) {
                    double v = i == j ? 1.0 : 0.0;
                    for (int64_t p = 0; p < n; p++)
                        v += (double)G[i * n + p] * G[j * n + p] / (double)n;
                    if (f32) v = (float)v;
                    A0[i * n + j] = v;
                }
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < lda; j++) {
                    const double v = j < n ? A0[i * n + j] : 0.0;
                    if (f32)
                        ((float *)Af)[i * lda + j] = ((float *)Ar)[i * lda + j] = (float)v;
                    else
                        ((double *)Af)[i * lda + j] = ((double *)Ar)[i * lda + j] = v;
                }
            CHECK(pq__potrf_lower(f32, n, Af, lda) == 0);
            CHECK(pq__potrf_lower_ref(f32, n, Ar, lda) == 0);
            const int bad = potrf_residual(f32, n, A0, Af, lda) + potrf_residual(f32, n, A0, Ar, lda);
            CHECK_MSG(bad == 0, "potrf f32=%d n=%lld: %d residuals outside the bound", f32, (long long)n, bad);
            /* not positive definite at order 4: both report the same pivot */
            if (n >= 7) {
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = 0; j < lda; j++) {
                        const double v = i == j ? (i == 3 ? -1.0 : 1.0) : 0.0;
                        if (f32)
                            ((float *)Af)[i * lda + j] = ((float *)Ar)[i * lda + j] = (float)v;
                        else
                            ((double *)Af)[i * lda + j] = ((double *)Ar)[i * lda + j] = v;
                    }
                CHECK(pq__potrf_lower(f32, n, Af, lda) == 4);
                CHECK(pq__potrf_lower_ref(f32, n, Ar, lda) == 4);
            }
            free(G), free(A0), free(Af), free(Ar);
        }
}

/* Residual of X = U^-1: right (U X - I) for the reference's column substitution, left (X U - I)
 * for LAPACK's method; either is bounded by gamma_n times the matching |.||.| product. */
static int trtri_residual(int64_t n, const double *U, const double *X, int64_t lda, int left) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            double r = i == j ? -1.0 : 0.0, abs = 0.0;
            for (int64_t p = i; p <= j; p++) {
                const double v = left ? X[i * lda + p] * U[p * lda + j] : U[i * lda + p] * X[p * lda + j];
                r += v;
                abs += fabs(v);
            }
            bad += !within(K_DTRTRI, r, 0.0, gam((double)n, U_F64) * abs);
        }
    return bad;
}

static void test_trtri(void) {
    static const int64_t sizes[] = {1, 2, 9, 64, 131};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int64_t n = sizes[s], lda = n + (int64_t)s % 2;
        double *U = malloc(sizeof(double) * (size_t)(n * lda)), *Xf = malloc(sizeof(double) * (size_t)(n * lda));
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < lda; j++)
                U[i * lda + j] = j < i || j >= n ? 7.0 : j == i ? 1.0 + urand() : (urand() - 0.5) / (double)n;
        memcpy(Xf, U, sizeof(double) * (size_t)(n * lda));
        double *Xr = malloc(sizeof(double) * (size_t)(n * lda));
        memcpy(Xr, U, sizeof(double) * (size_t)(n * lda));
        CHECK(pq__dtrtri_upper(n, Xf, lda) == 0);
        CHECK(pq__dtrtri_upper_ref(n, Xr, lda) == 0);
        int bad = trtri_residual(n, U, Xf, lda, 1) + trtri_residual(n, U, Xr, lda, 0);
        for (int64_t i = 1; i < n; i++) /* the strict lower triangle is untouched */
            bad += Xf[i * lda] != 7.0 || Xr[i * lda] != 7.0;
        CHECK_MSG(bad == 0, "trtri n=%lld: %d residuals outside the bound", (long long)n, bad);
        U[(n - 1) * lda + n - 1] = 0.0;
        CHECK(pq__dtrtri_upper(n, U, lda) == (int)n);
        free(U), free(Xf), free(Xr);
    }
}

/* ---- normalisation and softmax ----------------------------------------------------------- */

static void test_rmsnorm(void) {
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {3, 128}, {300, 513}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t n = shapes[s][0], d = shapes[s][1];
        const float eps = 1e-5f;
        float *x = randv(n * d, 2.0f), *w = randv(d, 1.0f), *yf = randv(n * d, 1.0f), *yr = randv(n * d, 1.0f);
        pq__rmsnorm(yf, x, w, n, d, eps, 2);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            pq__rmsnorm_ref(yr + i * d, x + i * d, w, d, eps);
            double ss = 0.0;
            for (int64_t j = 0; j < d; j++)
                ss += (double)x[i * d + j] * x[i * d + j];
            const double inv = 1.0 / sqrt(ss / (double)d + eps);
            for (int64_t j = 0; j < d; j++) {
                const double exact = (double)w[j] * x[i * d + j] * inv;
                bad += !within(K_RMSNORM, yf[i * d + j], yr[i * d + j], 0.0);
                /* the reference itself, against double precision (not in the table's fraction) */
                const double bound = (gam((double)d + 2, U_F32) / 2 + gam(5, U_F32)) * fabs(exact);
                bad += fabs(yr[i * d + j] - exact) > bound;
            }
        }
        CHECK_MSG(bad == 0, "rmsnorm %lldx%lld: %d outside the bound", (long long)n, (long long)d, bad);
        /* in place (out == x) */
        float *xi = copy_f(x, n * d);
        pq__rmsnorm(xi, xi, w, n, d, eps, 2);
        CHECK(memcmp(xi, yf, sizeof(float) * (size_t)(n * d)) == 0);
        free(x), free(w), free(yf), free(yr), free(xi);
    }
}

static void test_softmax(void) {
    static const int64_t sizes[] = {1, 2, 7, 64, 1000, 32000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int64_t n = sizes[s];
        float *x = randv(n, 3.0f);
        float *pf = copy_f(x, n), *pr = copy_f(x, n);
        pq__softmax(pf, n);
        pq__softmax_ref(pr, n);
        float mx = x[0];
        for (int64_t i = 1; i < n; i++)
            mx = x[i] > mx ? x[i] : mx;
        double dmax = 0.0;
        for (int64_t i = 0; i < n; i++)
            dmax = fmax(dmax, (double)mx - x[i]);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            const double rel = gam((double)n + 1, U_F32) + 4 * EXPF_ULP * U_F32 + U_F32 * ((double)mx - x[i] + dmax);
            bad += !within(K_SOFTMAX, pf[i], pr[i], rel * pr[i]);
        }
        CHECK_MSG(bad == 0, "softmax n=%lld: %d outside the bound", (long long)n, bad);
        free(x), free(pf), free(pr);
    }
}

/* One query over T cached rows: scores differ by at most delta = 2 gamma_hd max_t sum|q k_t|
 * scale between the two dots; to first order each probability then moves by at most
 * p_t (2 delta + e_softmax) (the softmax bound above, with |d| <= delta), and the weighted sums
 * of V by that plus their own 2 gamma_{T+1} sum p_t |v_t|. */
static void test_attend_row(void) {
    static const int64_t Ts[] = {1, 2, 17, 300, 1024}, hds[] = {8, 64, 80};
    for (size_t a = 0; a < sizeof Ts / sizeof Ts[0]; a++)
        for (size_t b = 0; b < sizeof hds / sizeof hds[0]; b++) {
            const int64_t T = Ts[a], hd = hds[b], ld = 3 * hd;
            float *q = randv(hd, 1.0f), *K = randv(T * ld, 1.0f), *V = randv(T * ld, 1.0f);
            float *sf = malloc(sizeof(float) * (size_t)T), *sr = malloc(sizeof(float) * (size_t)T);
            float *of = malloc(sizeof(float) * (size_t)hd), *orf = malloc(sizeof(float) * (size_t)hd);
            const float scale = 1.0f / sqrtf((float)hd);
            pq__attend_row(q, K, V, ld, T, hd, scale, sf, of);
            pq__attend_row_ref(q, K, V, ld, T, hd, scale, sr, orf);
            double delta = 0;
            for (int64_t t = 0; t < T; t++) {
                double m = 0;
                for (int64_t d = 0; d < hd; d++)
                    m += fabs((double)q[d] * K[t * ld + d]);
                delta = fmax(delta, 2 * gam((double)hd, U_F32) * m * scale);
            }
            const double e_sm = gam((double)T + 1, U_F32) + 4 * EXPF_ULP * U_F32 + U_F32 * 2 * delta;
            int bad = 0;
            for (int64_t d = 0; d < hd; d++) {
                double pv = 0;
                for (int64_t t = 0; t < T; t++)
                    pv += (double)sr[t] * fabs(V[t * ld + d]);
                const double bound = pv * (4 * delta + e_sm + 2 * gam((double)T + 1, U_F32)) * 2 + 1e-30;
                bad += !within(K_ATTN, of[d], orf[d], bound);
            }
            CHECK_MSG(bad == 0, "attend_row T=%lld hd=%lld: %d outside the bound", (long long)T, (long long)hd, bad);
            free(q), free(K), free(V), free(sf), free(sr), free(of), free(orf);
        }
}

static void test_log_softmax(void) {
    static const int64_t sizes[] = {1, 2, 7, 64, 1000, 32000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int64_t n = sizes[s];
        float *x = randv(n, 4.0f);
        if (n > 3) x[n / 2] = x[1] = 30.0f; /* a tie for the maximum: the first one wins */
        double *lf = malloc(sizeof(double) * (size_t)n), *lr = malloc(sizeof(double) * (size_t)n);
        const pq__lse f = pq__logsumexp(x, n), r = pq__logsumexp_ref(x, n);
        const double u = U_F64;
        const double b_lse = gam((double)n + 1, u) + 2 * u * (EXP_ULP + LOG_ULP * fabs(log(r.sum)) + 2 * fabs(r.lse));
        int bad = !within(K_LSE, f.lse, r.lse, b_lse);
        bad += !within(K_LSE, f.sum, r.sum, (gam((double)n, u) + 2 * u * EXP_ULP + u) * r.sum);
        CHECK(f.max == r.max && f.argmax == r.argmax);
        if (n > 3) CHECK(f.argmax == 1);
        const pq__lse f2 = pq__log_softmax(x, n, lf), r2 = pq__log_softmax_ref(x, n, lr);
        CHECK(f2.lse == f.lse && f2.argmax == f.argmax && r2.lse == r.lse);
        for (int64_t i = 0; i < n; i++)
            bad += !within(K_LOGSM, lf[i], lr[i], b_lse + 2 * u * fabs(lr[i]));
        CHECK_MSG(bad == 0, "log-softmax n=%lld: %d outside the bound", (long long)n, bad);
        free(x), free(lf), free(lr);
    }
}

/* ---- quantization kernels ---------------------------------------------------------------- */

static void test_grid_fit(void) {
    static const int64_t shapes[][2] = {{1, 1}, {7, 5}, {32, 256}, {128, 3}};
    static const int bits[] = {2, 3, 4, 8};
    int bad = 0, cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int kind = PQ_GRID_ASYM; kind <= PQ_GRID_SYM_MSE; kind++)
            for (size_t bi = 0; bi < sizeof bits / sizeof bits[0]; bi++)
                for (int mode = 0; mode < 3; mode++) { /* no keep, random keep, a row with nothing kept */
                    const int64_t nc = shapes[s][0], T = shapes[s][1];
                    float *v = randv(nc * T, 0.05f);
                    uint8_t *kv = malloc((size_t)(nc * T));
                    const float *cols[128];
                    const uint8_t *keep[128];
                    for (int64_t c = 0; c < nc; c++) {
                        cols[c] = v + c * T;
                        keep[c] = kv + c * T;
                        for (int64_t r = 0; r < T; r++)
                            kv[c * T + r] = (uint8_t)(mode == 2 && r == 0 ? 0 : urand() < 0.7);
                    }
                    if (mode == 0 && nc > 1) v[0] = v[T] = 0.0f; /* ties and zeros in the range */
                    float sf[PQ_TILE], sr[PQ_TILE];
                    uint8_t zf[PQ_TILE], zr[PQ_TILE];
                    const uint8_t *const *kp = mode ? keep : NULL;
                    pq__grid_fit_tile((pq__grid_kind)kind, bits[bi], cols, kp, nc, T, sf, zf);
                    pq__grid_fit_tile_ref((pq__grid_kind)kind, bits[bi], cols, kp, nc, T, sr, zr);
                    for (int64_t r = 0; r < T; r++) {
                        bad += !within(K_GRID, sf[r], sr[r], 0.0);
                        bad += !within(K_GRID, zf[r], zr[r], 0.0);
                    }
                    cases++;
                    free(v), free(kv);
                }
    CHECK_MSG(bad == 0, "grid fit: %d of %d cases' values differ from the reference", bad, cases);
}

static void test_bits(void) {
    static const int64_t sizes[][2] = {{1, 1}, {1, 7}, {3, 8}, {2, 9}, {5, 100}, {3, 1001}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int b = 1; b <= 8; b++)
            for (int masked = 0; masked < 2; masked++) {
                const int64_t rows = sizes[s][0], n = sizes[s][1], mrow = (n + 7) / 8;
                uint8_t *codes = malloc((size_t)(rows * n)), *bm = calloc((size_t)(rows * mrow), 1);
                for (int64_t i = 0; i < rows * n; i++) {
                    /* high bits above b are set too: both kernels must ignore them */
                    codes[i] = (uint8_t)(urand() * 256.0);
                    if (!masked || urand() < 0.6) bm[(i / n) * mrow + (i % n) / 8] |= (uint8_t)(1u << ((i % n) % 8));
                }
                const size_t nbytes = (size_t)((rows * n * b + 7) / 8) + 1;
                uint8_t *qf = calloc(nbytes, 1), *qr = calloc(nbytes, 1);
                uint64_t pf = 0, pr = 0;
                for (int64_t r = 0; r < rows; r++) {
                    const uint8_t *row = masked ? bm + r * mrow : NULL;
                    pq__bits_pack(qf, &pf, codes + r * n, row, n, b);
                    pq__bits_pack_ref(qr, &pr, codes + r * n, row, n, b);
                }
                int bad = !within(K_PACK, (double)pf, (double)pr, 0.0);
                for (size_t i = 0; i < nbytes; i++)
                    bad += !within(K_PACK, qf[i], qr[i], 0.0);
                uint8_t *uf = calloc((size_t)(rows * n), 1), *ur = calloc((size_t)(rows * n), 1);
                pf = pr = 0;
                for (int64_t r = 0; r < rows; r++) {
                    const uint8_t *row = masked ? bm + r * mrow : NULL;
                    pq__bits_unpack(qf, &pf, row, n, b, uf + r * n);
                    pq__bits_unpack_ref(qr, &pr, row, n, b, ur + r * n);
                }
                bad += !within(K_PACK, (double)pf, (double)pr, 0.0);
                for (int64_t i = 0; i < rows * n; i++) {
                    const int stored = (bm[(i / n) * mrow + (i % n) / 8] >> ((i % n) % 8)) & 1;
                    bad += !within(K_PACK, uf[i], ur[i], 0.0);
                    bad += stored && uf[i] != (codes[i] & ((1u << b) - 1)); /* the round trip */
                    bad += !stored && uf[i] != 0;                           /* skipped, not written */
                }
                CHECK_MSG(bad == 0, "bits %lldx%lld b=%d masked=%d: %d differences", (long long)rows, (long long)n, b,
                          masked, bad);
                free(codes), free(bm), free(qf), free(qr), free(uf), free(ur);
            }
}

/* ---- 16-bit floats ---------------------------------------------------------------------- */

/* Float bits x through the bulk f16 and bf16 conversions against the scalar ones; returns the
 * number of differences. */
static int half_batch(const uint32_t *x, int64_t n) {
    uint16_t *h = malloc(2 * (size_t)n), *b = malloc(2 * (size_t)n);
    pq__from_f32(PQ_DTYPE_F16, (const float *)x, h, n);
    pq__from_f32(PQ_DTYPE_BF16, (const float *)x, b, n);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, &x[i], 4);
        bad += !within(K_HALF, h[i], pq__f32_to_f16(f), 0.0);
        bad += !within(K_HALF, b[i], pq__f32_to_bf16(f), 0.0);
    }
    free(h);
    free(b);
    return bad;
}

/* Every half and bfloat16 to float32 (unaligned source); float32 to both: every float whose
 * low 13 bits are one of the rounding cases (0, 1, half way - 1, half way, half way + 1, max)
 * at every exponent and the top mantissa bits in steps, plus a stride over all 2^32 patterns.
 * (All 2^32 were checked once by hand.) */
static void test_half(void) {
    enum { N = 65536 };
    uint8_t *src = malloc(2 * N + 1);
    float *f = malloc(sizeof(float) * N);
    int bad = 0;
    for (int t = 0; t < 2; t++) {
        for (uint32_t i = 0; i < N; i++) {
            const uint16_t h = (uint16_t)i;
            memcpy(src + 1 + 2 * i, &h, 2);
        }
        pq__to_f32(t ? PQ_DTYPE_BF16 : PQ_DTYPE_F16, src + 1, f, N);
        for (uint32_t i = 0; i < N; i++) {
            const float r = t ? pq__bf16_to_f32((uint16_t)i) : pq__f16_to_f32((uint16_t)i);
            uint32_t a, b;
            memcpy(&a, &f[i], 4);
            memcpy(&b, &r, 4);
            bad += !within(K_HALF, a, b, 0.0);
        }
    }
    static const uint32_t low[] = {0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x7fff, 0x8000, 0x8001, 0xffff};
    const int64_t n = 2 * 256 * 1024 * (int64_t)(sizeof low / sizeof low[0]);
    uint32_t *x = malloc(sizeof(uint32_t) * (size_t)n);
    int64_t k = 0;
    for (uint32_t sign = 0; sign < 2; sign++)
        for (uint32_t e = 0; e < 256; e++)
            for (uint32_t top = 0; top < 1024; top++)
                for (size_t l = 0; l < sizeof low / sizeof low[0]; l++)
                    x[k++] = sign << 31 | e << 23 | (top << 13 & 0x7fffff) | low[l];
    bad += half_batch(x, k);
    k = 0;
    for (uint64_t v = 0; v < ((uint64_t)1 << 32) && k < n; v += 1021)
        x[k++] = (uint32_t)v;
    bad += half_batch(x, k);
    CHECK_MSG(bad == 0, "16-bit float conversions: %d differences from the scalar ones", bad);
    free(x);
    free(src);
    free(f);
}

/* ---- policy and allocation --------------------------------------------------------------- */

static void test_thread_scope(void) {
    const int outer = pq__blas_threads_push(2);
    CHECK(blas_threads_now() == 2);
    const int inner = pq__blas_threads_push(0); /* <= 0 means 1 */
    CHECK(inner == 2 && blas_threads_now() == 1);
    pq__blas_threads_pop(inner);
    CHECK(blas_threads_now() == 2);
    pq__blas_threads_pop(outer);
    CHECK(blas_threads_now() == outer);
}

static void test_big_malloc(void) {
    pq_ctx *ctx = pq_ctx_new();
    const size_t big = (size_t)5 << 20;
    uint8_t *p = pq__big_malloc(ctx, big, "test array"), *q = pq__big_malloc(ctx, 100, "small array");
    CHECK(p && q && ((uintptr_t)p & (((uintptr_t)2 << 20) - 1)) == 0);
    if (p) memset(p, 1, big);
    free(p);
    free(q);
    CHECK(pq__big_malloc(ctx, SIZE_MAX / 2, "an impossible array") == NULL);
    CHECK(ctx->status == PQ_ERR_NOMEM && strstr(pq_ctx_error(ctx), "bytes") &&
          strstr(pq_ctx_error(ctx), "an impossible array"));
    pq_ctx_free(ctx);
}

int main(void) {
    test_thread_scope();
    test_big_malloc();
    test_matmul();
    test_sgemm();
    test_strsm();
    test_potrf();
    test_trtri();
    test_rmsnorm();
    test_softmax();
    test_attend_row();
    test_log_softmax();
    test_grid_fit();
    test_bits();
    test_half();
    printf("%-22s %-22s %9s %9s  %s\n", "kernel", "reference", "checked", "worst", "bound");
    for (int k = 0; k < K_N; k++) {
        CHECK_MSG(table[k].n > 0, "%s: nothing checked", table[k].name);
        printf("%-22s %-22s %9lld %9.3g  %s\n", table[k].name, table[k].ref, (long long)table[k].n, table[k].worst,
               table[k].bound);
    }
    return test_end("test_kernels");
}
