/* Hessian preparation and factorisation: known matrices, the published route (Cholesky,
 * inverse, upper Cholesky of the inverse), permutations, dead columns, damping escalation,
 * the direct quadratic error and the transposes. */
#include <lapacke.h>
#include <stdint.h>

#include "linalg/linalg.h"
#include "test.h"
#define RANDGEN_SEED 0x853c49e6748fea9bULL
#include "randgen.h"

/* SPD n x n: A A^T / k + eps I, A [n, k] */
static float *spd(int64_t n, int64_t k, double eps) {
    double *A = malloc(sizeof(double) * (size_t)(n * k));
    for (int64_t i = 0; i < n * k; i++)
        A[i] = urand() - 0.5;
    float *H = malloc(sizeof(float) * (size_t)(n * n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0.0;
            for (int64_t t = 0; t < k; t++)
                s += A[i * k + t] * A[j * k + t];
            H[i * n + j] = H[j * n + i] = (float)(s / (double)k + (i == j ? eps : 0.0));
        }
    free(A);
    return H;
}

static int n_warn;
static void count_warn(void *user, pq_log_level level, const char *msg) {
    (void)user;
    (void)msg;
    n_warn += level == PQ_LOG_WARN;
}

/* V [n, n] (upper, float64) from the factor */
static double *full_v(const pq__hfactor *f) {
    const int64_t n = f->n;
    double *V = calloc((size_t)(n * n), sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = i; k < n; k++)
            V[i * n + k] = k == i ? f->vdiag[k] : (double)f->vs[i * n + k] * f->vdiag[k];
    return V;
}

static void test_known(void) {
    /* H = [[4,2,0],[2,5,1],[0,1,3]], det = 4*14 - 2*6 = 44; inverse by cofactors */
    const float H[9] = {4, 2, 0, 2, 5, 1, 0, 1, 3};
    const double inv[9] = {14 / 44.0, -6 / 44.0, 2 / 44.0,  -6 / 44.0, 12 / 44.0,
                           -4 / 44.0, 2 / 44.0,  -4 / 44.0, 16 / 44.0};
    pq_ctx *ctx = pq_ctx_new();
    for (int f32 = 0; f32 < 2; f32++) {
        pq__hfactor f;
        CHECK(pq__hfactor_compute(ctx, H, 3, NULL, 0.0, f32, 1, NULL, &f) == PQ_OK);
        CHECK(f.damp == 0.0 && f.retries == 0 && f.n_dead == 0);
        double *V = full_v(&f);
        /* V V^T = H */
        double maxe = 0.0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double s = 0.0;
                for (int k = 0; k < 3; k++)
                    s += V[i * 3 + k] * V[j * 3 + k];
                maxe = fmax(maxe, fabs(s - H[i * 3 + j]));
            }
        CHECK_MSG(maxe < (f32 ? 1e-5 : 1e-6), "V V^T - H = %g", maxe);
        /* U = V^-1 is the upper Cholesky factor of H^-1: U^T U = H^-1, U upper, diag > 0 */
        double U[9];
        CHECK(pq__hfactor_upper_inverse(ctx, &f, U) == PQ_OK);
        maxe = 0.0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double s = 0.0;
                for (int k = 0; k < 3; k++)
                    s += U[k * 3 + i] * U[k * 3 + j];
                maxe = fmax(maxe, fabs(s - inv[i * 3 + j]));
                if (j < i) CHECK(U[i * 3 + j] == 0.0);
            }
        CHECK_MSG(maxe < (f32 ? 1e-5 : 1e-6), "U^T U - H^-1 = %g", maxe);
        CHECK(U[0] > 0 && U[4] > 0 && U[8] > 0);
        /* the last column: U[2,2] = 1/sqrt(H[2,2] | nothing after) = sqrt(inv[2,2])... */
        CHECK_NEAR(U[8], 1.0 / sqrt(3.0), 1e-6);
        free(V);
        pq__hfactor_free(&f);
    }
    pq__hfactor_free(NULL);
    pq_ctx_free(ctx);
}

static void test_published_route(void) {
    /* U equals potrf -> potri -> potrf('U') of the damped H, the reference's route */
    const int64_t n = 60;
    float *H = spd(n, 20, 0.0); /* rank 20: singular without damping */
    pq_ctx *ctx = pq_ctx_new();
    pq__hfactor f;
    CHECK(pq__hfactor_compute(ctx, H, n, NULL, 0.01, 0, 2, NULL, &f) == PQ_OK);
    double mean = 0.0;
    for (int64_t j = 0; j < n; j++)
        mean += H[j * n + j];
    mean /= (double)n;
    CHECK_NEAR(f.damp, 0.01 * mean, 1e-12 * mean);
    CHECK_NEAR(f.percdamp, 0.01, 1e-15);
    double *A = malloc(sizeof(double) * (size_t)(n * n)), *U = malloc(sizeof(double) * (size_t)(n * n));
    for (int64_t i = 0; i < n * n; i++)
        A[i] = H[i] + ((i / n) == (i % n) ? f.damp : 0.0);
    CHECK(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n) == 0);
    CHECK(LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n) == 0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            A[i * n + j] = A[j * n + i];
    CHECK(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, A, (lapack_int)n) == 0);
    CHECK(pq__hfactor_upper_inverse(ctx, &f, U) == PQ_OK);
    double maxe = 0.0, maxa = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            maxe = fmax(maxe, fabs(U[i * n + j] - A[i * n + j]));
            maxa = fmax(maxa, fabs(A[i * n + j]));
        }
    CHECK_MSG(maxe <= 1e-5 * maxa, "U vs published route: %g (max %g)", maxe, maxa);

    /* a permutation gives the factor of the permuted matrix */
    int64_t perm[60];
    for (int64_t i = 0; i < n; i++)
        perm[i] = (i * 7) % n;
    float *Hp = malloc(sizeof(float) * (size_t)(n * n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            Hp[i * n + j] = H[perm[i] * n + perm[j]];
    pq__hfactor fp, fq;
    CHECK(pq__hfactor_compute(ctx, H, n, perm, 0.01, 0, 2, NULL, &fp) == PQ_OK);
    CHECK(pq__hfactor_compute(ctx, Hp, n, NULL, 0.01, 0, 2, NULL, &fq) == PQ_OK);
    int same = 1;
    for (int64_t i = 0; i < n; i++) {
        same &= fp.vdiag[i] == fq.vdiag[i];
        for (int64_t j = i + 1; j < n; j++)
            same &= fp.vs[i * n + j] == fq.vs[i * n + j];
    }
    CHECK(same);
    pq__hfactor_free(&f);
    pq__hfactor_free(&fp);
    pq__hfactor_free(&fq);
    free(A);
    free(U);
    free(H);
    free(Hp);
    pq_ctx_free(ctx);
}

static void test_dead_and_escalation(void) {
    const int64_t n = 40;
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_log(ctx, count_warn, NULL);
    float *H = spd(n, 10, 0.0);
    for (int64_t j = 0; j < n; j++)
        H[3 * n + j] = H[j * n + 3] = 0.0f;
    pq__hfactor f;
    /* rank 10 without damping: escalation from 0 to 0.01 (x10 steps), each logged */
    n_warn = 0;
    CHECK(pq__hfactor_compute(ctx, H, n, NULL, 0.0, 0, 1, NULL, &f) == PQ_OK);
    CHECK(f.n_dead == 1 && f.dead[3] == 1);
    CHECK_MSG(f.retries >= 1 && n_warn == f.retries, "retries %d, warnings %d", f.retries, n_warn);
    CHECK(f.percdamp >= 0.01 && f.damp > 0.0);
    /* the dead column is a unit column of V: no coupling to the others */
    int unit = 1;
    for (int64_t i = 0; i < n; i++)
        if (i != 3) unit &= (i < 3 ? f.vs[i * n + 3] : f.vs[3 * n + i]) == 0.0f;
    CHECK(unit);
    CHECK_NEAR(f.vdiag[3], sqrt(1.0 + f.damp), 1e-6);
    pq__hfactor_free(&f);
    /* indefinite: every escalation fails, then PQ_ERR_NUMERIC */
    for (int64_t i = 0; i < n * n; i++)
        H[i] = 0.0f;
    for (int64_t j = 0; j < n; j++)
        H[j * n + j] = 1.0f;
    H[5 * n + 5] = -1e6f;
    n_warn = 0;
    CHECK(pq__hfactor_compute(ctx, H, n, NULL, 0.01, 0, 1, NULL, &f) == PQ_ERR_NUMERIC);
    CHECK(n_warn == 4); /* 0.1, 1, 10, 100 */
    CHECK(strstr(pq_ctx_error(ctx), "Cholesky") != NULL);
    CHECK(f.vs == NULL);
    H[5 * n + 5] = 1.0f;
    H[7 * n + 2] = NAN;
    CHECK(pq__hfactor_compute(ctx, H, n, NULL, 0.01, 0, 1, NULL, &f) == PQ_ERR_NUMERIC);
    CHECK_MSG(strstr(pq_ctx_error(ctx), "non-finite value at [7, 2]") != NULL, "%s", pq_ctx_error(ctx));
    free(H);
    pq_ctx_free(ctx);
}

static void test_quad_error(void) {
    const int64_t rows = 37, n = 600; /* more than one 512-column panel */
    float *H = spd(n, 50, 0.1), *D = malloc(sizeof(float) * (size_t)(rows * n));
    for (int64_t i = 0; i < rows * n; i++)
        D[i] = (float)(urand() - 0.5);
    double naive = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int64_t j = 0; j < n; j++)
                s += (double)H[i * n + j] * D[r * n + j];
            naive += D[r * n + i] * s;
        }
    pq_ctx *ctx = pq_ctx_new();
    double got = 0.0;
    CHECK(pq__quad_error(ctx, D, rows, n, H, 2, &got) == PQ_OK);
    CHECK_NEAR(got, naive, 1e-5 * fabs(naive));
    free(H);
    free(D);
    pq_ctx_free(ctx);
}

static void test_transpose(void) {
    const int64_t rows = 45, cols = 70;
    float *a = malloc(sizeof(float) * (size_t)(rows * cols)), *t = malloc(sizeof(float) * (size_t)(rows * cols)),
          *b = malloc(sizeof(float) * (size_t)(rows * cols));
    uint8_t *a8 = malloc((size_t)(rows * cols)), *t8 = malloc((size_t)(rows * cols)),
            *b8 = malloc((size_t)(rows * cols));
    int64_t perm[70];
    for (int64_t i = 0; i < cols; i++)
        perm[i] = (i * 11 + 3) % cols;
    for (int64_t i = 0; i < rows * cols; i++) {
        a[i] = (float)i;
        a8[i] = (uint8_t)(i * 7);
    }
    pq__transpose_gather(a, rows, cols, perm, t, 2);
    int ok = 1;
    for (int64_t p = 0; p < cols; p++)
        for (int64_t r = 0; r < rows; r++)
            ok &= t[p * rows + r] == a[r * cols + perm[p]];
    CHECK(ok);
    pq__transpose_scatter(t, rows, cols, perm, b, 2);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)(rows * cols)) == 0);
    pq__transpose_gather_u8(a8, rows, cols, NULL, t8, 1);
    pq__transpose_scatter_u8(t8, rows, cols, NULL, b8, 1);
    CHECK(memcmp(a8, b8, (size_t)(rows * cols)) == 0 && t8[1] == a8[cols]);
    free(a);
    free(t);
    free(b);
    free(a8);
    free(t8);
    free(b8);
}

/* Factoring in H's own memory gives the factor of the out-of-place float32 route, through
 * the same damping escalation (rank-deficient H, a dead column); failures leave nothing to
 * free twice. n = 1600: large enough for the in-place route to give the pages of the dead
 * lower triangle back (the upper one must be intact). */
static void test_inplace(int64_t n) {
    pq_ctx *ctx = pq_ctx_new();
    float *H = spd(n, 30, 0.0);
    for (int64_t j = 0; j < n; j++)
        H[11 * n + j] = H[j * n + 11] = 0.0f;
    float *Hc = malloc(sizeof(float) * (size_t)(n * n));
    memcpy(Hc, H, sizeof(float) * (size_t)(n * n));
    pq__hfactor a, b;
    CHECK(pq__hfactor_compute(ctx, H, n, NULL, 0.0, 1, 2, NULL, &a) == PQ_OK);
    CHECK(pq__hfactor_compute(ctx, Hc, n, NULL, 0.0, 1, 2, Hc, &b) == PQ_OK);
    CHECK(b.vs == Hc && b.vs_borrowed && !a.vs_borrowed);
    CHECK(a.retries >= 1 && a.retries == b.retries && a.damp == b.damp && a.n_dead == 1 && b.n_dead == 1);
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a.vdiag[i] - b.vdiag[i]) / fabs((double)a.vdiag[i]));
        for (int64_t k = i + 1; k < n; k++)
            worst =
                fmax(worst, fabs((double)a.vs[i * n + k] - b.vs[i * n + k]) / (fabs((double)a.vs[i * n + k]) + 1e-6));
    }
    CHECK_MSG(worst < 1e-5, "in-place factor differs by %g", worst);
    pq__hfactor_free(&a);
    pq__hfactor_free(&b); /* does not free Hc */
    /* the in-place route needs float32 and no permutation */
    int64_t perm[3] = {2, 1, 0};
    CHECK(pq__hfactor_compute(ctx, Hc, 3, perm, 0.01, 1, 1, Hc, &b) == PQ_ERR_INVALID);
    CHECK(pq__hfactor_compute(ctx, Hc, 3, NULL, 0.01, 0, 1, Hc, &b) == PQ_ERR_INVALID);
    /* indefinite: every escalation fails; H's memory stays the caller's */
    for (int64_t i = 0; i < n * n; i++)
        Hc[i] = 0.0f;
    for (int64_t j = 0; j < n; j++)
        Hc[j * n + j] = 1.0f;
    Hc[5 * n + 5] = -1e6f;
    CHECK(pq__hfactor_compute(ctx, Hc, n, NULL, 0.01, 1, 1, Hc, &b) == PQ_ERR_NUMERIC);
    CHECK(b.vs == NULL);
    free(Hc);
    free(H);
    pq_ctx_free(ctx);
}

int main(void) {
    test_known();
    test_published_route();
    test_dead_and_escalation();
    test_inplace(200);
    test_inplace(1600);
    test_quad_error();
    test_transpose();
    return test_end("test_linalg");
}
