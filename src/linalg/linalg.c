#include "linalg/linalg.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void pq__hfactor_free(pq__hfactor *f) {
    if (!f) return;
    if (!f->vs_borrowed) free(f->vs);
    free(f->vdiag);
    free(f->dead);
    memset(f, 0, sizeof *f);
}

/* Lower-triangle read of the symmetric H at original indices (a, b). */
static inline float h_at(const float *H, int64_t n, int64_t a, int64_t b) {
    return a >= b ? H[a * n + b] : H[b * n + a];
}

/* Element i of A, an array of float (f32 = 1) or double. */
static inline double a_get(const void *A, int f32, size_t i) {
    return f32 ? (double)((const float *)A)[i] : ((const double *)A)[i];
}
static inline void a_set(void *A, int f32, size_t i, double v) {
    if (f32)
        ((float *)A)[i] = (float)v;
    else
        ((double *)A)[i] = v;
}

/* Fills the row-major lower triangle (the only part potrf and the unflip read) of
 * A = J P (H + dead fix) P^T J + damp I, the matrix whose Cholesky factor, flipped, is V.
 * Tiled so that both H (read by rows) and A (written by columns) stay in cache. Returns the
 * flat index in H of a non-finite value (the smallest), or -1. */
#define FILL_TILE 64
static int64_t fill_flipped(void *A, int f32, const float *H, int64_t n, const int64_t *perm, const uint8_t *dead,
                            double damp, int nt) {
    int64_t bad = -1;
    const int64_t nb = (n + FILL_TILE - 1) / FILL_TILE;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t t = 0; t < nb * (nb + 1) / 2; t++) {
        /* tile (ta, tb) with tb <= ta, from the linear index t */
        int64_t ta = (int64_t)((sqrt(8.0 * (double)t + 1.0) - 1.0) / 2.0);
        while (ta * (ta + 1) / 2 > t)
            ta--;
        while ((ta + 1) * (ta + 2) / 2 <= t)
            ta++;
        const int64_t tb = t - ta * (ta + 1) / 2;
        const int64_t a0 = ta * FILL_TILE, a1 = a0 + FILL_TILE < n ? a0 + FILL_TILE : n;
        const int64_t b0 = tb * FILL_TILE, b1 = b0 + FILL_TILE < n ? b0 + FILL_TILE : n;
        /* rows of A outside, so that the stores are consecutive (A's rows lie n elements
         * apart, for the usual n a power of two: stores walking down a column would all fall
         * in one L1 set) */
        for (int64_t a = a0; a < a1; a++) {
            const int64_t x = n - 1 - a, hx = perm ? perm[x] : x;
            for (int64_t b = b0; b < b1 && b <= a; b++) {
                const int64_t y = n - 1 - b, hy = perm ? perm[y] : y;
                const int64_t at = hx >= hy ? hx * n + hy : hy * n + hx; /* lower triangle of H */
                const float v = H[at];
                if (!isfinite(v)) {
#pragma omp critical(pq_fill_bad)
                    if (bad < 0 || at < bad) bad = at;
                }
                a_set(A, f32, (size_t)(a * n + b), b < a ? (double)v : (dead[x] ? 1.0 : (double)v) + damp);
            }
        }
    }
    return bad;
}

/* Puts A = J (H + dead fix) J + damp I into H's own memory for the in-place factorisation:
 * on the first call J H J (H symmetric and full: the flat array reversed); on a retry the
 * row-major lower triangle that potrf overwrote is restored from the strict upper one, which
 * potrf never touches; then the damped diagonal from the saved diag(H). */
static void fill_inplace(float *A, int64_t n, const float *diag0, const uint8_t *dead, double damp, int first,
                         int nt) {
    const size_t N = (size_t)(n * n);
    if (first) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < N / 2; i++) {
            const float t = A[i];
            A[i] = A[N - 1 - i];
            A[N - 1 - i] = t;
        }
    } else {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
        for (int64_t a = 0; a < n; a++)
            for (int64_t b = 0; b < a; b++)
                A[a * n + b] = A[b * n + a];
    }
    for (int64_t a = 0; a < n; a++) {
        const int64_t x = n - 1 - a;
        A[a * n + a] = (float)((dead[x] ? 1.0 : (double)diag0[x]) + damp);
    }
}

/* Scratch of one factorisation: A is the matrix potrf factors (float or double; == work when
 * lent, == H in place), diag0 the saved diag(H) of the in-place path. */
typedef struct hf_scratch {
    void *A, *work;
    float *diag0;
    double *ldiag; /* the factor's diagonal (not in place): read once per element by the unflip */
    int f32, inplace;
} hf_scratch;

static void hf_scratch_free(hf_scratch *w) {
    if (w->A != w->work) free(w->A);
    free(w->diag0);
    free(w->ldiag);
    w->A = NULL;
    w->diag0 = NULL;
    w->ldiag = NULL;
}

static pq_status hf_alloc(pq_ctx *ctx, int64_t n, hf_scratch *w, pq__hfactor *out) {
    out->n = n;
    out->dead = pq__calloc(ctx, (size_t)n, 1, "dead columns");
    out->vdiag = pq__calloc(ctx, (size_t)n, sizeof(float), "hessian factor");
    /* only the strict upper triangle of vs is ever written or read */
    out->vs = w->inplace ? (float *)w->work : pq__big_malloc(ctx, sizeof(float) * (size_t)(n * n), "hessian factor");
    out->vs_borrowed = w->inplace;
    w->diag0 = w->inplace ? pq__malloc(ctx, sizeof(float) * (size_t)n, "hessian diagonal") : NULL;
    w->ldiag = w->inplace ? NULL : pq__malloc(ctx, sizeof(double) * (size_t)n, "hessian factor diagonal");
    const size_t esz = w->f32 ? sizeof(float) : sizeof(double);
    w->A = w->work ? w->work : pq__big_malloc(ctx, (size_t)(n * n) * esz, "hessian factorisation");
    if (!out->dead || !out->vdiag || !out->vs || !w->A || (w->inplace ? !w->diag0 : !w->ldiag)) return PQ_ERR_NOMEM;
    return PQ_OK;
}

/* Dead columns (diag 0), the saved diagonal (in place) and mean(diag) with dead ones as 1. */
static pq_status hf_scan_diag(pq_ctx *ctx, const float *H, int64_t n, const int64_t *perm, hf_scratch *w,
                              pq__hfactor *out, double *mean_out) {
    double mean = 0.0;
    for (int64_t p = 0; p < n; p++) {
        const int64_t h = perm ? perm[p] : p;
        const float d = H[h * n + h];
        if (!isfinite(d))
            return pq__fail(ctx, PQ_ERR_NUMERIC, "hessian: non-finite value at [%lld, %lld]", (long long)h,
                            (long long)h);
        if (w->diag0) w->diag0[p] = d;
        if (d == 0.0f) {
            out->dead[p] = 1;
            out->n_dead++;
        }
        mean += out->dead[p] ? 1.0 : (double)d;
    }
    *mean_out = mean / (double)n;
    return PQ_OK;
}

/* Fills A and factors it, escalating the damping x10 on each Cholesky failure. */
static pq_status hf_factor(pq_ctx *ctx, const float *H, int64_t n, const int64_t *perm, double percdamp, double mean,
                           int nt, hf_scratch *w, pq__hfactor *out) {
    const int prev_threads = pq__blas_threads_push(nt);
    double pd = percdamp;
    pq_status st = PQ_OK;
    for (int attempt = 0;; attempt++) {
        const double damp = pd * mean;
        const int64_t bad = w->inplace ? (fill_inplace(w->A, n, w->diag0, out->dead, damp, attempt == 0, nt), -1)
                                       : fill_flipped(w->A, w->f32, H, n, perm, out->dead, damp, nt);
        if (bad >= 0) {
            st = pq__fail(ctx, PQ_ERR_NUMERIC, "hessian: non-finite value at [%lld, %lld]", (long long)(bad / n),
                          (long long)(bad % n));
            break;
        }
        const int info = pq__potrf_lower(w->f32, n, w->A, n);
        if (info == 0) {
            out->damp = damp;
            out->percdamp = pd;
            break;
        }
        const double next = pd > 0 ? pd * 10.0 : 0.01;
        if (info < 0 || next > PQ_MAX_PERCDAMP * (1.0 + 1e-9)) {
            st = pq__fail(ctx, PQ_ERR_NUMERIC,
                          "hessian: Cholesky factorisation failed with damping %g x mean(diag) (H is not "
                          "positive semi-definite?)",
                          pd);
            break;
        }
        pq__log(ctx, PQ_LOG_WARN,
                "hessian: Cholesky failed (pivot %d of %lld) with damping %g x mean(diag); retrying with %g", info,
                (long long)n, pd, next);
        pd = next;
        out->retries++;
    }
    pq__blas_threads_pop(prev_threads);
    return st;
}

/* Gives the pages of vs's lower triangle and diagonal (never read again, see pq__hfactor)
 * back to the system: in the in-place path they held H and then L, and would stay resident
 * through the sweep, nearly half of the largest matrix of a layer (0.4 GB for 14336 inputs). */
static void release_lower(float *vs, int64_t n) {
    const size_t pg = 4096;
    if ((size_t)(n * n) * sizeof(float) < ((size_t)8 << 20)) return; /* small ones: not worth the calls */
    for (int64_t i = 1; i < n; i++) {
        const uintptr_t lo = ((uintptr_t)(vs + i * n) + pg - 1) / pg * pg, hi = (uintptr_t)(vs + i * n + i) / pg * pg;
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
}

/* V[i,k] = L[n-1-i, n-1-k]: flipping both indices reverses the flat array. */
static void hf_unflip(const hf_scratch *w, int64_t n, int nt, pq__hfactor *out) {
    const void *A = w->A;
    const int f32 = w->f32;
    float *vs = out->vs, *vd = out->vdiag;
    const size_t last = (size_t)(n * n) - 1;
    double *ld = w->ldiag; /* not in place: the diagonal in A's precision for the division below */
    for (int64_t k = 0; k < n; k++) {
        const double d = a_get(A, f32, last - (size_t)(k * n + k));
        vd[k] = (float)d;
        if (ld) ld[k] = d;
    }
    if (w->inplace) {
        /* vs[i, k] (row-major strict upper) from L at last - (i n + k) (row-major strict
         * lower): the writes never touch what is still to be read */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = i + 1; k < n; k++)
                vs[i * n + k] = vs[last - (size_t)(i * n + k)] / vd[k];
        release_lower(vs, n);
        return;
    }
    /* the diagonal gathered once above (its elements lie n + 1 apart), the rows by element type */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
    for (int64_t i = 0; i < n; i++) {
        float *dst = vs + i * n;
        const size_t row = last - (size_t)(i * n); /* element k of the row at row - k */
        if (f32) {
            const float *a = A;
            for (int64_t k = i + 1; k < n; k++)
                dst[k] = (float)((double)a[row - (size_t)k] / ld[k]);
        } else {
            const double *a = A;
            for (int64_t k = i + 1; k < n; k++)
                dst[k] = (float)(a[row - (size_t)k] / ld[k]);
        }
    }
}

pq_status pq__hfactor_compute(pq_ctx *ctx, const float *H, int64_t n, const int64_t *perm, double percdamp,
                              int use_f32, int n_threads, void *work, pq__hfactor *out) {
    memset(out, 0, sizeof *out);
    if (n <= 0 || n > 46340) /* n^2 must fit a LAPACK int */
        return pq__fail(ctx, PQ_ERR_INVALID, "hessian: unsupported size %lld", (long long)n);
    /* in place: H's memory is the work array and then holds vs */
    hf_scratch w = {.work = work, .f32 = use_f32, .inplace = work != NULL && work == (const void *)H};
    if (w.inplace && (perm || !use_f32))
        return pq__fail(ctx, PQ_ERR_INVALID, "hessian: in-place factorisation needs float32 and no permutation");
    const int nt = n_threads > 0 ? n_threads : 1;
    double mean = 0.0;
    pq_status st = hf_alloc(ctx, n, &w, out);
    if (st == PQ_OK) st = hf_scan_diag(ctx, H, n, perm, &w, out, &mean);
    if (st == PQ_OK) st = hf_factor(ctx, H, n, perm, percdamp, mean, nt, &w, out);
    free(w.diag0);
    w.diag0 = NULL;
    if (st != PQ_OK) {
        hf_scratch_free(&w);
        pq__hfactor_free(out);
        return st;
    }
    hf_unflip(&w, n, nt, out);
    hf_scratch_free(&w);
    return PQ_OK;
}

pq_status pq__hfactor_upper_inverse(pq_ctx *ctx, const pq__hfactor *f, double *U) {
    const int64_t n = f->n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++)
            U[i * n + k] = k < i ? 0.0 : k == i ? f->vdiag[k] : (double)f->vs[i * n + k] * f->vdiag[k];
    const int info = pq__dtrtri_upper(n, U, n);
    if (info != 0) return pq__fail(ctx, PQ_ERR_NUMERIC, "hessian: singular factor (pivot %d)", info);
    return PQ_OK;
}

pq_status pq__quad_error(pq_ctx *ctx, const float *D, int64_t rows, int64_t n, const float *H, int n_threads,
                         double *out) {
    /* tr(D H D^T) = sum_ij H_ij G_ij with G = D^T D, built in column panels of the lower
     * triangle (half the flops of D H). */
    const int64_t P = n < 512 ? n : 512;
    float *G = pq__malloc(ctx, sizeof(float) * (size_t)(n * P), "error panel");
    if (!G) return PQ_ERR_NOMEM;
    const int prev_threads = pq__blas_threads_push(n_threads);
    double total = 0.0;
    for (int64_t c0 = 0; c0 < n; c0 += P) {
        const int64_t w = c0 + P <= n ? P : n - c0, m = n - c0;
        /* G[i, j] = (D^T D)[c0 + i, c0 + j], i in [0, m), j in [0, w) */
        pq__sgemm(PQ_TRANS, PQ_NOTRANS, m, w, rows, 1.0f, D + c0, n, D + c0, n, 0.0f, G, w);
        double s = 0.0;
#pragma omp parallel for num_threads(n_threads) reduction(+ : s) schedule(static)
        for (int64_t i = 0; i < m; i++) {
            const float *hrow = H + (c0 + i) * n + c0;
            const float *grow = G + i * w;
            double acc = 0.0;
            for (int64_t j = 0; j < w; j++) {
                if (i < w && j > i) break; /* the panel's diagonal block: lower triangle only */
                const double v = (double)hrow[j] * (double)grow[j];
                acc += (i < w && j == i) ? v : 2.0 * v;
            }
            s += acc;
        }
        total += s;
    }
    pq__blas_threads_pop(prev_threads);
    free(G);
    *out = total;
    return PQ_OK;
}

/* Tiled transpose of [rows, cols] <-> [cols, rows] with a column permutation, for 4-byte
 * (float) or 1-byte elements. gather: dst[p, r] = src[r, perm[p]]; else the inverse. Inside a
 * tile the inner loop always writes consecutive elements: the rows of a tile lie a power of two
 * apart for the usual widths and would share one L1 set if stores walked down them. */
static void transpose(const void *src, int64_t rows, int64_t cols, const int64_t *perm, void *dst, int esz,
                      int gather, int n_threads) {
    enum { TB = 32 };
    const int64_t nrb = (rows + TB - 1) / TB, ncb = (cols + TB - 1) / TB;
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t t = 0; t < nrb * ncb; t++) {
        const int64_t r0 = (t % nrb) * TB, p0 = (t / nrb) * TB;
        const int64_t r1 = r0 + TB < rows ? r0 + TB : rows, p1 = p0 + TB < cols ? p0 + TB : cols;
        if (gather) {
            for (int64_t p = p0; p < p1; p++) {
                const int64_t c = perm ? perm[p] : p;
                if (esz == 4)
                    for (int64_t r = r0; r < r1; r++)
                        ((float *)dst)[p * rows + r] = ((const float *)src)[r * cols + c];
                else
                    for (int64_t r = r0; r < r1; r++)
                        ((uint8_t *)dst)[p * rows + r] = ((const uint8_t *)src)[r * cols + c];
            }
        } else {
            for (int64_t r = r0; r < r1; r++)
                for (int64_t p = p0; p < p1; p++) {
                    const int64_t c = perm ? perm[p] : p;
                    if (esz == 4)
                        ((float *)dst)[r * cols + c] = ((const float *)src)[p * rows + r];
                    else
                        ((uint8_t *)dst)[r * cols + c] = ((const uint8_t *)src)[p * rows + r];
                }
        }
    }
}

void pq__transpose_gather(const float *src, int64_t rows, int64_t cols, const int64_t *perm, float *dst,
                          int n_threads) {
    transpose(src, rows, cols, perm, dst, 4, 1, n_threads);
}
void pq__transpose_scatter(const float *src, int64_t rows, int64_t cols, const int64_t *perm, float *dst,
                           int n_threads) {
    transpose(src, rows, cols, perm, dst, 4, 0, n_threads);
}
void pq__transpose_gather_u8(const uint8_t *src, int64_t rows, int64_t cols, const int64_t *perm, uint8_t *dst,
                             int n_threads) {
    transpose(src, rows, cols, perm, dst, 1, 1, n_threads);
}
void pq__transpose_scatter_u8(const uint8_t *src, int64_t rows, int64_t cols, const int64_t *perm, uint8_t *dst,
                              int n_threads) {
    transpose(src, rows, cols, perm, dst, 1, 0, n_threads);
}

void pq__quad_error_rows(const float *D, int64_t rows, int64_t n, const float *H, int n_threads, float *work,
                         double *out) {
    const int prev = pq__blas_threads_push(n_threads);
    pq__sgemm(PQ_NOTRANS, PQ_NOTRANS, rows, n, n, 1.0f, D, n, H, n, 0.0f, work, n);
    pq__blas_threads_pop(prev);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < n; c++)
            s += (double)D[r * n + c] * (double)work[r * n + c];
        out[r] = s;
    }
}
