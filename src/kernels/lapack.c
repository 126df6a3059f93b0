/* LAPACK factorisations (kernels.h): every LAPACKE call of the library, each beside a
 * textbook reference. Row-major lower L is column-major upper L^T, hence the 'U'/'L' swaps. */
#include "kernels/kernels.h"

#include <lapacke.h>
#include <math.h>

int pq__potrf_lower(int f32, int64_t n, void *A, int64_t lda) {
    /* column-major 'U' on the row-major lower triangle: A = L L^T, L row-major lower */
    return f32 ? (int)LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, A, (lapack_int)lda)
               : (int)LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, A, (lapack_int)lda);
}

/* Cholesky-Banachiewicz, row by row, in the working precision of A. */
#define POTRF_REF(T, SQRT)                                                                                           \
    for (int64_t i = 0; i < n; i++) {                                                                                \
        for (int64_t j = 0; j <= i; j++) {                                                                           \
            T s = a[i * lda + j];                                                                                    \
            for (int64_t k = 0; k < j; k++)                                                                          \
                s -= a[i * lda + k] * a[j * lda + k];                                                                \
            if (j < i) {                                                                                             \
                a[i * lda + j] = s / a[j * lda + j];                                                                 \
            } else {                                                                                                 \
                if (!(s > 0)) return (int)(i + 1);                                                                   \
                a[i * lda + i] = SQRT(s);                                                                            \
            }                                                                                                        \
        }                                                                                                            \
    }

int pq__potrf_lower_ref(int f32, int64_t n, void *A, int64_t lda) {
    if (n < 0 || lda < n) return -1;
    if (f32) {
        float *a = A;
        POTRF_REF(float, sqrtf)
    } else {
        double *a = A;
        POTRF_REF(double, sqrt)
    }
    return 0;
}

int pq__dtrtri_upper(int64_t n, double *U, int64_t lda) {
    /* row-major upper U is column-major lower U^T; its inverse is U^-T, i.e. U^-1 row-major */
    return (int)LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', (lapack_int)n, U, (lapack_int)lda);
}

/* Column by column from the right: X = U^-1 is upper, X[j,j] = 1/U[j,j] and, for i < j,
 * X[i,j] = -(sum_{i<k<=j} U[i,k] X[k,j]) / U[i,i], which only needs column j of X below row
 * i (already computed) and U (still intact left of column j). */
int pq__dtrtri_upper_ref(int64_t n, double *U, int64_t lda) {
    if (n < 0 || lda < n) return -1;
    for (int64_t j = 0; j < n; j++)
        if (U[j * lda + j] == 0.0) return (int)(j + 1);
    for (int64_t j = n - 1; j >= 0; j--) {
        U[j * lda + j] = 1.0 / U[j * lda + j];
        for (int64_t i = j - 1; i >= 0; i--) {
            double s = 0.0;
            for (int64_t k = i + 1; k <= j; k++)
                s += U[i * lda + k] * U[k * lda + j];
            U[i * lda + j] = -s / U[i * lda + i];
        }
    }
    return 0;
}
