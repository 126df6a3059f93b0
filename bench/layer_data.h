/* The synthetic layer of the per-layer benchmarks (bench_layer, bench_gguf_layer): inputs with
 * correlated channels (low-rank X plus noise, a few outlier channels) and Gaussian weights.
 * Drawn from tests/randgen.h's stream (seed 42): the data depend on what the program drew
 * before. Header-only. */
#ifndef PQ_BENCH_LAYER_DATA_H
#define PQ_BENCH_LAYER_DATA_H

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define RANDGEN_SEED 42
#include "randgen.h"

/* *H [cols, cols] = 2 X X^T / tokens (both triangles) with X [cols, tokens] = A Z + 0.5 noise,
 * A [cols, rank], Z [rank, tokens], every 97th channel (from 13) x20; then *W0 [rows, cols]
 * ~ N(0, 0.02^2). Returns 0 (nothing allocated) when out of memory. */
static inline int layer_data(int64_t rows, int64_t cols, int64_t tokens, int64_t rank, float **H, float **W0) {
    float *X = malloc(sizeof(float) * (size_t)(cols * tokens)), *A = malloc(sizeof(float) * (size_t)(cols * rank)),
          *Z = malloc(sizeof(float) * (size_t)(rank * tokens));
    *H = malloc(sizeof(float) * (size_t)(cols * cols));
    *W0 = malloc(sizeof(float) * (size_t)(rows * cols));
    if (!X || !A || !Z || !*H || !*W0) {
        free(X), free(A), free(Z), free(*H), free(*W0);
        *H = *W0 = NULL;
        return 0;
    }
    for (int64_t i = 0; i < cols * rank; i++)
        A[i] = nrand();
    for (int64_t i = 0; i < rank * tokens; i++)
        Z[i] = nrand() / sqrtf((float)rank);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cols, (int)tokens, (int)rank, 1.0f, A, (int)rank, Z,
                (int)tokens, 0.0f, X, (int)tokens);
    for (int64_t i = 0; i < cols; i++) {
        const float boost = (i % 97 == 13) ? 20.0f : 1.0f;
        for (int64_t t = 0; t < tokens; t++)
            X[i * tokens + t] = boost * (X[i * tokens + t] + 0.5f * nrand());
    }
    cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)cols, (int)tokens, 2.0f / (float)tokens, X, (int)tokens,
                0.0f, *H, (int)cols);
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = i + 1; j < cols; j++)
            (*H)[i * cols + j] = (*H)[j * cols + i];
    free(X), free(A), free(Z);
    for (int64_t i = 0; i < rows * cols; i++)
        (*W0)[i] = 0.02f * nrand();
    return 1;
}

#endif
