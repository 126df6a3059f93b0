/* GPTQ and RTN as passes of the OBS column sweep (obs/pass.h): GPTQ rounds each column onto
 * its grid and spreads the error over the later columns through H's inverse factor; RTN
 * rounds without feedback (ALGORITHMS.md §3-§4). */
#ifndef PQ_QUANT_GPTQ_H
#define PQ_QUANT_GPTQ_H

#include "obs/pass.h"

/* The pass of the recipe's quantizer (p->quant GPTQ or RTN) on its own. */
pq__obs_pass pq__gptq_pass(const pq_layer_params *p);
pq__obs_pass pq__rtn_pass(void);

/* act-order: columns by decreasing diag(H) (a dead input, diag 0, counts as 1), ties by
 * index; perm [cols] out, malloc'ed. */
pq_status pq__gptq_act_order(pq_ctx *ctx, const float *H, int64_t cols, int64_t **perm);

#endif
