#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

void pq__blas_threads(int n) {
    openblas_set_num_threads(n);
}

void pq__matmul_wt(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t rows, int64_t cols,
                   int n_threads) {
    /* small products lose more to waking threads than they gain (tiny models, decoding) */
    pq__blas_threads((double)n * (double)rows * (double)cols < PQ_PAR_MIN_FLOPS ? 1 : n_threads);
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)cols, 1.0f, w, (int)cols, x, 1, 0.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, 1.0f, x, (int)cols, w,
                    (int)cols, 0.0f, y, (int)rows);
    if (b)
        for (int64_t i = 0; i < n; i++)
            for (int64_t r = 0; r < rows; r++)
                y[i * rows + r] += b[r];
}

void pq__matmul_wt_ref(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t rows,
                       int64_t cols) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < rows; r++) {
            float s = 0.0f;
            for (int64_t c = 0; c < cols; c++)
                s += w[r * cols + c] * x[i * cols + c];
            y[i * rows + r] = s + (b ? b[r] : 0.0f);
        }
}

void pq__rmsnorm_ref(float *out, const float *x, const float *weight, int64_t dim, float eps) {
    float ss = 0.0f;
    for (int64_t j = 0; j < dim; j++)
        ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int64_t j = 0; j < dim; j++)
        out[j] = weight[j] * (ss * x[j]);
}

void pq__rmsnorm(float *out, const float *x, const float *weight, int64_t n, int64_t dim, float eps, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n * dim >= PQ_PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++)
        pq__rmsnorm_ref(out + i * dim, x + i * dim, weight, dim, eps);
}

/* The exp loop is written for SIMD: with -fno-math-errno GCC calls glibc's vector expf
 * (libmvec), which the attention of small models spends most of its time in. */
void pq__softmax(float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        x[i] /= s; /* division, as llama2.c */
}
