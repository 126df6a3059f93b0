/* Seeded random data for the compression tests and benchmarks (splitmix64 + Box-Muller).
 * Define RANDGEN_SEED before including to pick the stream. Header-only. */
#ifndef PQ_TEST_RANDGEN_H
#define PQ_TEST_RANDGEN_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef RANDGEN_SEED
#define RANDGEN_SEED 0x9e3779b97f4a7c15ULL
#endif

static uint64_t rng = RANDGEN_SEED;

/* Uniform in (0, 1). */
static inline double urand(void) {
    rng += 0x9e3779b97f4a7c15ULL;
    uint64_t z = rng;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

/* Standard normal. */
static inline float nrand(void) {
    return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand()));
}

/* W [rows, cols] ~ N(0, 0.05^2). */
static inline float *make_w(int64_t rows, int64_t cols) {
    float *W = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++)
        W[i] = 0.05f * nrand();
    return W;
}

static inline float *copy_f(const float *x, int64_t n) {
    float *y = malloc(sizeof(float) * (size_t)n);
    memcpy(y, x, sizeof(float) * (size_t)n);
    return y;
}

#endif
