/* BLAS level 2/3 products (kernels.h): every cblas call of the library, each beside a
 * plain-loop reference (float accumulation in index order). */
#include "kernels/kernels.h"

#include <cblas.h>

static CBLAS_TRANSPOSE cblas_trans(pq__trans t) {
    return t == PQ_TRANS ? CblasTrans : CblasNoTrans;
}

void pq__matmul_wt(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t rows, int64_t cols,
                   int n_threads) {
    /* small products lose more to waking threads than they gain (tiny models, decoding) */
    const int prev =
        pq__blas_threads_push((double)n * (double)rows * (double)cols < PQ_PAR_MIN_FLOPS ? 1 : n_threads);
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)cols, 1.0f, w, (int)cols, x, 1, 0.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, 1.0f, x, (int)cols, w,
                    (int)cols, 0.0f, y, (int)rows);
    pq__blas_threads_pop(prev);
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

void pq__sgemm(pq__trans ta, pq__trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), (int)m, (int)n, (int)k, alpha, A, (int)lda, B,
                (int)ldb, beta, C, (int)ldc);
}

void pq__sgemm_ref(pq__trans ta, pq__trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (int64_t p = 0; p < k; p++) {
                const float a = ta == PQ_TRANS ? A[p * lda + i] : A[i * lda + p];
                const float bv = tb == PQ_TRANS ? B[j * ldb + p] : B[p * ldb + j];
                s += a * bv;
            }
            float *c = &C[i * ldc + j];
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
}

void pq__strsm_lutu(int64_t m, int64_t n, float alpha, const float *A, int64_t lda, float *B, int64_t ldb) {
    cblas_strsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasUnit, (int)m, (int)n, alpha, A, (int)lda, B,
                (int)ldb);
}

/* Forward substitution: A^T is lower triangular, row i of A^T is column i of A. */
void pq__strsm_lutu_ref(int64_t m, int64_t n, float alpha, const float *A, int64_t lda, float *B, int64_t ldb) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float t = alpha * B[i * ldb + j];
            for (int64_t k = 0; k < i; k++)
                t -= A[k * lda + i] * B[k * ldb + j];
            B[i * ldb + j] = t;
        }
}
