/* Attention of one query row over a head's cached keys and values (kernels.h): the decoding
 * step, where a GEMM per head costs more in calls than in arithmetic. */
#include "kernels/kernels.h"

void pq__attend_row(const float *q, const float *K, const float *V, int64_t ld, int64_t T, int64_t hd, float scale,
                    float *scores, float *out) {
    for (int64_t t = 0; t < T; t++) {
        const float *k = K + t * ld;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < hd; d++)
            s += q[d] * k[d];
        scores[t] = s * scale;
    }
    pq__softmax(scores, T);
    for (int64_t d = 0; d < hd; d++)
        out[d] = 0.0f;
    for (int64_t t = 0; t < T; t++) {
        const float p = scores[t], *v = V + t * ld;
#pragma omp simd
        for (int64_t d = 0; d < hd; d++)
            out[d] += p * v[d];
    }
}

void pq__attend_row_ref(const float *q, const float *K, const float *V, int64_t ld, int64_t T, int64_t hd,
                        float scale, float *scores, float *out) {
    for (int64_t t = 0; t < T; t++) {
        float s = 0.0f;
        for (int64_t d = 0; d < hd; d++)
            s += q[d] * K[t * ld + d];
        scores[t] = s * scale;
    }
    pq__softmax_ref(scores, T);
    for (int64_t d = 0; d < hd; d++) {
        float o = 0.0f;
        for (int64_t t = 0; t < T; t++)
            o += scores[t] * V[t * ld + d];
        out[d] = o;
    }
}
