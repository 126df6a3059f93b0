/* GPTQ (Frantar et al. 2022) configured on the shared OBS column sweep: error feedback
 * through H's inverse factor, optional act-order (ALGORITHMS.md §4). */
#include <stdlib.h>

#include "common/common.h"
#include "quant/gptq.h"

pq__obs_pass pq__gptq_pass(const pq_layer_params *p) {
    const pq__obs_pass pass = {"gptq", 1, p->act_order, PQ_OBS_MASK_NONE, 1, 0, 0};
    return pass;
}

static int cmp_diag_desc(const void *a, const void *b, void *arg) {
    const double *d = arg;
    const int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    if (d[i] != d[j]) return d[i] > d[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

pq_status pq__gptq_act_order(pq_ctx *ctx, const float *H, int64_t cols, int64_t **perm) {
    int64_t *pm = pq__malloc(ctx, sizeof(int64_t) * (size_t)cols, "act-order permutation");
    double *diag = pm ? pq__malloc(ctx, sizeof(double) * (size_t)cols, "act-order") : NULL;
    if (!diag) {
        free(pm);
        return PQ_ERR_NOMEM;
    }
    for (int64_t c = 0; c < cols; c++) {
        pm[c] = c;
        diag[c] = H[c * cols + c] == 0.0f ? 1.0 : (double)H[c * cols + c];
    }
    qsort_r(pm, (size_t)cols, sizeof(int64_t), cmp_diag_desc, diag);
    free(diag);
    *perm = pm;
    return PQ_OK;
}
