/* Dense linear algebra of the layer Hessian: preparation (dead columns, damping), the
 * factorisation the column sweeps use, and the quadratic error tr(D H D^T).
 *
 * GPTQ/SparseGPT use U, the upper Cholesky factor of Hd^-1 (Hd = damped H). Instead of
 * inverting (potrf + potri + potrf: 4/3 n^3 flops) we use V = U^-1, which is the "upper
 * times its transpose" factor Hd = V V^T: V = J chol(J Hd J) J with J the exchange matrix
 * (n^3/3 flops, no inverse, better conditioned). The sweep then runs on V: see
 * obs/obs.h for the update it implies. */
#ifndef PQ_LINALG_H
#define PQ_LINALG_H

#include "common/common.h"
#include "kernels/kernels.h" /* pq__big_malloc, the BLAS thread scope */

/* Largest damping (as a fraction of mean(diag H)) the escalation tries. */
#define PQ_MAX_PERCDAMP 100.0

typedef struct pq__hfactor {
    int64_t n;
    float *vs;     /* [n, n] row-major, strictly upper: V[i,k] / V[k,k]; the rest unset (never read; in
                      the in-place route its pages are given back) */
    float *vdiag;  /* [n] V[k,k] = 1 / U[k,k] */
    uint8_t *dead; /* [n] 1 where diag(H) == 0, in sweep order */
    int64_t n_dead;
    double damp;     /* absolute damping added to the diagonal */
    double percdamp; /* damping / mean(diag), after escalation */
    int retries;     /* escalations (x10 each) */
    int vs_borrowed; /* vs is the caller's H (in-place factorisation): not freed here */
} pq__hfactor;

/* Factors Hd = P (H + dead fix) P^T + damp I where P puts column perm[p] at position p
 * (perm NULL = identity). Accumulates and factors in float64 (use_f32 = 0) or float32.
 * Non-finite H -> PQ_ERR_NUMERIC; Cholesky failure -> damping x10 (logged) until
 * PQ_MAX_PERCDAMP, then PQ_ERR_NUMERIC. */
/* work: optional scratch of n*n doubles (floats with use_f32) for the factorisation, so that
 * a caller can lend memory it uses later anyway. work == H (float32, perm NULL, H full and
 * symmetric): factors in H's own memory, which then holds vs (H is destroyed): the largest
 * Hessians need one n^2 buffer instead of three. */
pq_status pq__hfactor_compute(pq_ctx *ctx, const float *H, int64_t n, const int64_t *perm, double percdamp,
                              int use_f32, int n_threads, void *work, pq__hfactor *out);
void pq__hfactor_free(pq__hfactor *f);

/* U [n, n] row-major upper = V^-1, the factor the published algorithm uses (Hd^-1 = U^T U).
 * For tests and inspection: n^3/3 extra flops. */
pq_status pq__hfactor_upper_inverse(pq_ctx *ctx, const pq__hfactor *f, double *U);

/* tr(D H D^T) for D [rows, n] row-major and H [n, n] symmetric, computed directly in panels
 * (float products, double sums): about rows * n^2 flops. */
pq_status pq__quad_error(pq_ctx *ctx, const float *D, int64_t rows, int64_t n, const float *H, int n_threads,
                         double *out);

/* d_r H d_r^T of every row r of D [rows, n] into out [rows] (double sums), from one product D H
 * (about 2 rows n^2 flops; work [rows, n] floats, the caller's). */
void pq__quad_error_rows(const float *D, int64_t rows, int64_t n, const float *H, int n_threads, float *work,
                         double *out);

/* Out-of-place transpose with a column gather: dst[p, r] = src[r, perm[p]] (perm NULL =
 * identity), src [rows, cols], dst [cols, rows]. */
void pq__transpose_gather(const float *src, int64_t rows, int64_t cols, const int64_t *perm, float *dst,
                          int n_threads);
/* Inverse of the above: dst[r, perm[p]] = src[p, r]. */
void pq__transpose_scatter(const float *src, int64_t rows, int64_t cols, const int64_t *perm, float *dst,
                           int n_threads);
/* Same for uint8 matrices. */
void pq__transpose_scatter_u8(const uint8_t *src, int64_t rows, int64_t cols, const int64_t *perm, uint8_t *dst,
                              int n_threads);
void pq__transpose_gather_u8(const uint8_t *src, int64_t rows, int64_t cols, const int64_t *perm, uint8_t *dst,
                             int n_threads);

#endif
