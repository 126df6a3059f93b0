/* Whole-model compression pipeline (public API in prunequant-pipeline.h). Names of the
 * seven linear layers of a block, shared with the statistics code. */
#ifndef PQ_JOINT_PIPELINE_H
#define PQ_JOINT_PIPELINE_H

#include "model/model.h"
#include "prunequant-pipeline.h"

extern const char *const pq__linear_names[7]; /* "self_attn.q_proj", ... "mlp.down_proj" */

/* The seven linears of a block in the order of pq__linear_names. */
void pq__block_linears(pq__block *b, pq__linear *out[7]);

#endif
