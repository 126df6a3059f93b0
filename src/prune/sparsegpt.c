/* SparseGPT (Frantar & Alistarh 2023) configured on the shared OBS column sweep: the mask is
 * chosen per block of columns (unstructured) or per N:M cell on the updated weights, and the
 * pruned weights' error is spread over the later columns (ALGORITHMS.md §5). */
#include "prune/prune.h"

pq__obs_mask pq__sparsegpt_mask(const pq_layer_params *p) {
    return (p->prune_n > 0 && p->prune_m > 0) ? PQ_OBS_MASK_NM : PQ_OBS_MASK_UNSTRUCT;
}

pq__obs_pass pq__sparsegpt_pass(const pq_layer_params *p) {
    const pq__obs_pass pass = {"sparsegpt", 1, 0, pq__sparsegpt_mask(p), 0, 0, 0};
    return pass;
}
