/* The layer compressor behind pq_layer_compress (prunequant-compress.h): the three ways of
 * joining pruning and quantization (ALGORITHMS.md §6). */
#ifndef PQ_JOINT_H
#define PQ_JOINT_H

#include "prunequant-compress.h"

/* Hessians with more inputs than this may be factored in their own memory (below). */
#define PQ_INPLACE_MIN_COLS 4096

/* pq_layer_compress for a caller that no longer needs H (full, symmetric) afterwards: when
 * the recipe allows (one sweep in natural order, error from the sweep) and cols exceeds
 * PQ_INPLACE_MIN_COLS, H is factored in float32 in its own memory and destroyed. */
pq_status pq__layer_compress_scratch_h(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                                       float *H, uint8_t *mask_out, pq_qcodes *codes_out, pq_layer_result *res_out);

#endif
