/* Quantization grids (ALGORITHMS.md §3): fitting a grid per row of a group of columns, and
 * quantizing one value. Tiles are transposed: a group's columns are given as pointers to T
 * consecutive rows each, so every loop runs over rows and vectorises.
 * Q = scale * (code - zero), code in [0, 2^bits - 1]. */
#ifndef PQ_KERNELS_GRID_H
#define PQ_KERNELS_GRID_H

#include <math.h>
#include <stdint.h>

typedef enum pq__grid_kind {
    PQ_GRID_ASYM = 0,    /* min-max with 0 included; zero = round(-min/scale) */
    PQ_GRID_SYM_REF = 1, /* reference symmetric: scale = 2*absmax/maxq, zero = 2^(b-1) */
    PQ_GRID_SYM_MSE = 2  /* zero = 2^(b-1), scale searched for least squared error */
} pq__grid_kind;

/* Rows per tile the fitting functions accept. */
#define PQ_TILE 256

/* Fits one grid per row r < T for the group's values cols[c][r], c < nc, counting only the
 * values with keep[c][r] != 0 (keep NULL: all). T <= PQ_TILE. */
void pq__grid_fit_tile(pq__grid_kind kind, int bits, const float *const *cols, const uint8_t *const *keep, int64_t nc,
                       int64_t T, float *scale, uint8_t *zero);
/* Its reference (a kernel twin: tests hold the two to bit equality). */
void pq__grid_fit_tile_ref(pq__grid_kind kind, int bits, const float *const *cols, const uint8_t *const *keep,
                           int64_t nc, int64_t T, float *scale, uint8_t *zero);

/* Scale/zero of one grid from the group's min(., 0) and max(., 0) (ASYM and SYM_REF). */
void pq__grid_from_range(pq__grid_kind kind, int bits, float xmin, float xmax, float *scale, uint8_t *zero);

/* Quantizes x; *code receives the integer code (as float). Same float operations as the
 * reference: clamp(round_half_even(x / scale) + zero, 0, maxq). */
static inline float pq__quantize(float x, float scale, float zero, float maxq, float *code) {
    float c = rintf(x / scale) + zero;
    c = c < 0.0f ? 0.0f : c;
    c = c > maxq ? maxq : c;
    *code = c;
    return scale * (c - zero);
}

#endif
