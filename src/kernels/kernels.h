/* The small set of kernels every stage calls, and the only code that calls BLAS/LAPACK or
 * sets the BLAS thread count. Each kernel has a portable reference twin (*_ref) beside it:
 * plain loops, obviously correct; tests/test_kernels.c holds the fast one to it within an
 * error bound derived in the test. All matrices are row-major.
 *
 *   gemm.c     pq__matmul_wt, pq__sgemm, pq__strsm_lutu        (BLAS level 2/3)
 *   lapack.c   pq__potrf_lower, pq__dtrtri_upper               (LAPACK)
 *   attn.c     pq__attend_row                                   (one query row, decoding)
 *   norm.c     pq__rmsnorm
 *   softmax.c  pq__softmax, pq__logsumexp, pq__log_softmax
 *   threads.c  pq__blas_threads_push / _pop                     (the BLAS thread scope)
 *   alloc.c    pq__big_malloc
 * Quantization kernels live beside their formats: the grid fit in quant/grid.c
 * (pq__grid_fit_tile_ref), the packed-v1 bit streams in model/packed.c (pq__bits_*_ref). */
#ifndef PQ_KERNELS_H
#define PQ_KERNELS_H

#include <stdint.h>

#include "common/common.h"

/* Below these sizes loops and BLAS calls run on one thread: on small work the cost of
 * waking and spinning threads exceeds the arithmetic. */
#define PQ_PAR_MIN_FLOPS (64.0 * 1024 * 1024)
#define PQ_PAR_MIN_ELEMS (64 * 1024)

/* ---- thread policy ---------------------------------------------------------------------
 * OpenBLAS keeps one process-wide thread count. A library call that wants another count
 * opens a scope and closes it before returning, so no global state stays changed:
 *     const int prev = pq__blas_threads_push(n);  ...BLAS calls...  pq__blas_threads_pop(prev);
 * push sets the count to n (n <= 0: 1) and returns the previous one. Not from inside an
 * OpenMP parallel region (the count is global): push before it, pop after. With OpenBLAS's
 * OpenMP build (the one CMake links) the count also becomes the calling thread's OpenMP
 * default (omp_set_num_threads): every parallel loop of the library names its thread count,
 * so that default is never what one runs on. */
int pq__blas_threads_push(int n);
void pq__blas_threads_pop(int prev);

/* ---- allocation ------------------------------------------------------------------------ */
/* malloc for large work arrays: pq__huge_alloc's memory (from 4 MiB on 2 MiB aligned and marked
 * for transparent huge pages, which cuts the page-fault cost of first touch several times). Free
 * with free(). Reports OOM on ctx (bytes and what). */
void *pq__big_malloc(pq_ctx *ctx, size_t n, const char *what);

/* ---- products -------------------------------------------------------------------------- */
/* Y [n, rows] = X [n, cols] W^T (+ b [rows]), W [rows, cols]; BLAS sgemv (n == 1) or sgemm,
 * on n_threads BLAS threads (1 for small products) inside its own thread scope. */
void pq__matmul_wt(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t rows, int64_t cols,
                   int n_threads);
void pq__matmul_wt_ref(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t rows,
                       int64_t cols);

typedef enum pq__trans { PQ_NOTRANS = 0, PQ_TRANS = 1 } pq__trans;

/* C [m, n] = alpha op(A) op(B) + beta C with op(A) [m, k], op(B) [k, n]; A is [m, k] (lda)
 * or, transposed, [k, m]; likewise B. cblas_sgemm on the current BLAS thread count (callers
 * in a parallel region push 1 first). beta == 0: C is not read. */
void pq__sgemm(pq__trans ta, pq__trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void pq__sgemm_ref(pq__trans ta, pq__trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Solves A^T X = alpha B in place of B [m, n] (ldb), A [m, m] (lda) upper triangular with a
 * unit diagonal (A's diagonal and lower part are not read): "left, upper, transposed, unit". */
void pq__strsm_lutu(int64_t m, int64_t n, float alpha, const float *A, int64_t lda, float *B, int64_t ldb);
void pq__strsm_lutu_ref(int64_t m, int64_t n, float alpha, const float *A, int64_t lda, float *B, int64_t ldb);

/* ---- factorisations -------------------------------------------------------------------- */
/* Cholesky A = L L^T in place of the lower triangle of A [n, n] (lda); the strict upper
 * triangle is neither read nor written. A is float (f32 = 1) or double. Returns 0, or j > 0
 * when the leading minor of order j is not positive definite (LAPACK's info), < 0 on a bad
 * argument. */
int pq__potrf_lower(int f32, int64_t n, void *A, int64_t lda);
int pq__potrf_lower_ref(int f32, int64_t n, void *A, int64_t lda);

/* Inverse in place of the upper triangular U [n, n] (lda, non-unit diagonal); the strict lower
 * triangle is not touched. Returns 0, or j > 0 when U[j-1, j-1] == 0. */
int pq__dtrtri_upper(int64_t n, double *U, int64_t lda);
int pq__dtrtri_upper_ref(int64_t n, double *U, int64_t lda);

/* ---- attention ------------------------------------------------------------------------- */
/* out [hd] = softmax(scale q K^T) V for one query q [hd] over T cached rows of K and V (row
 * stride ld); scores [T] is scratch. */
void pq__attend_row(const float *q, const float *K, const float *V, int64_t ld, int64_t T, int64_t hd, float scale,
                    float *scores, float *out);
void pq__attend_row_ref(const float *q, const float *K, const float *V, int64_t ld, int64_t T, int64_t hd,
                        float scale, float *scores, float *out);

/* ---- normalisation and softmax --------------------------------------------------------- */
/* out [n, dim] = x / rms(x) * weight, per row. out may equal x. */
void pq__rmsnorm(float *out, const float *x, const float *weight, int64_t n, int64_t dim, float eps, int n_threads);
void pq__rmsnorm_ref(float *out, const float *x, const float *weight, int64_t dim, float eps);

/* In-place softmax of x [n] (float32; the exp loop vectorises). */
void pq__softmax(float *x, int64_t n);
void pq__softmax_ref(float *x, int64_t n);

/* Max-shifted log-sum-exp of logits x [n] (n >= 1), exp and sum in double:
 * lse = log(sum) + max, sum = sum_i exp(x_i - max); argmax is the first maximum. */
typedef struct pq__lse {
    double lse, sum;
    float max;
    int64_t argmax;
} pq__lse;
pq__lse pq__logsumexp(const float *x, int64_t n);
pq__lse pq__logsumexp_ref(const float *x, int64_t n);

/* lp [n] = x - logsumexp(x) in double; returns the log-sum-exp (for its argmax). */
pq__lse pq__log_softmax(const float *x, int64_t n, double *lp);
pq__lse pq__log_softmax_ref(const float *x, int64_t n, double *lp);

#endif
