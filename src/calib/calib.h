/* Calibration data for the pipeline: seeded random windows of a token stream, and the
 * accumulation of a linear layer's Hessian H = 2 X^T X / N over chunks of inputs. */
#ifndef PQ_CALIB_H
#define PQ_CALIB_H

#include "common/common.h"

/* Draws n windows of len tokens at seeded-random starts in [0, n_tokens - len].
 * *windows [n * len] and *starts [n] are malloc'ed. */
pq_status pq__calib_windows(pq_ctx *ctx, const int32_t *tokens, int64_t n_tokens, int64_t n, int64_t len,
                            uint64_t seed, int32_t **windows, int64_t **starts);

/* X^T X summed in double (each chunk is multiplied in float, one panel of columns at a time,
 * then added), its lower triangle packed row after row. */
typedef struct pq__hacc {
    int64_t cols, n;
    int n_threads; /* BLAS threads of pq__hacc_add: the ctx's at init (1 for small products) */
    double flop;   /* floating-point operations of the products so far */
    double *sum;   /* [cols (cols + 1) / 2]: row i's columns 0..i from i (i + 1) / 2 */
    float *tmp;    /* [cols, panel] */
} pq__hacc;

pq_status pq__hacc_init(pq_ctx *ctx, pq__hacc *a, int64_t cols);
/* Adds x [n, cols]; cannot fail (buffers are allocated by init). */
void pq__hacc_add(pq__hacc *a, const float *x, int64_t n);
/* H = 2 sum / N as a full symmetric float matrix [cols, cols] (malloc'ed), built in place in
 * the accumulator's memory (the packed float64 triangle has the float matrix's size, so a large
 * H never needs both at once): the accumulator is consumed (free it afterwards as usual). */
pq_status pq__hacc_finish(pq_ctx *ctx, pq__hacc *a, float **H);
void pq__hacc_free(pq__hacc *a);

#endif
