/* RMS normalisation (kernels.h). The fast version is the reference run on rows in parallel,
 * so the two agree bit for bit. */
#include "kernels/kernels.h"

#include <math.h>

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
