/* The BLAS thread scope (kernels.h): the only place that reads or sets OpenBLAS's
 * process-wide thread count. */
#include "kernels/kernels.h"

#include <cblas.h>

int pq__blas_threads_push(int n) {
    const int prev = openblas_get_num_threads();
    openblas_set_num_threads(n > 0 ? n : 1);
    return prev;
}

void pq__blas_threads_pop(int prev) {
    openblas_set_num_threads(prev > 0 ? prev : 1);
}
