/* Whole-model compression pipeline (public API in prunequant-pipeline.h). Names of the
 * seven linear layers of a block, shared with the statistics code. */
#ifndef PQ_JOINT_PIPELINE_H
#define PQ_JOINT_PIPELINE_H

#include "model/model.h"
#include "prunequant-pipeline.h"

/* The seven linears of a block in the order of pq__linear_names. */
void pq__block_linears(pq__block *b, pq__linear *out[7]);

/* Hessians with more inputs than this may be factored in their own memory (below). */
#define PQ_INPLACE_MIN_COLS 4096

/* pq_layer_compress for a caller that no longer needs H (full, symmetric) afterwards: when
 * the recipe allows (one sweep in natural order, error from the sweep) and cols exceeds
 * PQ_INPLACE_MIN_COLS, H is factored in float32 in its own memory and destroyed. */
pq_status pq__layer_compress_scratch_h(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                                       float *H, uint8_t *mask_out, pq_qcodes *codes_out, pq_layer_result *res_out);

#endif
