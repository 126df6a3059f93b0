/* Round to nearest: the OBS column sweep without feedback (no H needed), the recipe's grids
 * fitted per group as GPTQ fits them (ALGORITHMS.md §3). */
#include "quant/gptq.h"

pq__obs_pass pq__rtn_pass(void) {
    const pq__obs_pass pass = {NULL, 0, 0, PQ_OBS_MASK_NONE, 1, 0, 0};
    return pass;
}
