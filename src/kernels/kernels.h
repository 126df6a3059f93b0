/* Small kernels every stage calls. Each has a portable reference version (*_ref) beside
 * the fast one; tests hold the fast ones to the references. */
#ifndef PQ_KERNELS_H
#define PQ_KERNELS_H

#include <stdint.h>

/* Below these sizes loops and BLAS calls run on one thread: on small work the cost of
 * waking and spinning threads exceeds the arithmetic. */
#define PQ_PAR_MIN_FLOPS (64.0 * 1024 * 1024)
#define PQ_PAR_MIN_ELEMS (64 * 1024)

/* Y [n, rows] = X [n, cols] W^T (+ b), W [rows, cols] row-major; BLAS sgemm. */
void pq__matmul_wt(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t rows, int64_t cols,
                   int n_threads);
void pq__matmul_wt_ref(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t rows,
                       int64_t cols);

/* out [n, dim] = x / rms(x) * weight, per row. out may equal x. */
void pq__rmsnorm(float *out, const float *x, const float *weight, int64_t n, int64_t dim, float eps, int n_threads);
void pq__rmsnorm_ref(float *out, const float *x, const float *weight, int64_t dim, float eps);

/* In-place softmax of n values. */
void pq__softmax(float *x, int64_t n);

/* Sets the BLAS thread count (OpenBLAS). */
void pq__blas_threads(int n);

#endif
