/* The recipe's writers (recipe.h): the one-line text of reports and logs, and the
 * quantization_config object of an output's config.json. */
#include <stdio.h>
#include <stdlib.h>

#include "common/json.h"
#include "recipe/recipe.h"

void pq__recipe_text(const pq_layer_params *p, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    if (p->prune != PQ_PRUNE_NONE) {
        if (p->prune_m)
            k += (size_t)snprintf(buf + k, n - k, "%s %d:%d", pq_prune_method_name(p->prune), p->prune_n, p->prune_m);
        else
            k += (size_t)snprintf(buf + k, n - k, "%s %.4g", pq_prune_method_name(p->prune), p->sparsity);
    }
    if (p->quant != PQ_QUANT_NONE && p->gguf_type && k < n) /* onto a ggml type's block grids */
        k += (size_t)snprintf(buf + k, n - k, "%s%s onto %s", k ? " + " : "", pq_quant_method_name(p->quant),
                              pq_dtype_name(p->gguf_type));
    else if (p->quant != PQ_QUANT_NONE && k < n)
        k += (size_t)snprintf(buf + k, n - k, "%s%s %db g%lld %s%s", k ? " + " : "", pq_quant_method_name(p->quant),
                              p->bits, (long long)p->group_size, p->sym ? "sym" : "asym",
                              p->act_order ? " act-order" : "");
    if (p->prune != PQ_PRUNE_NONE && p->quant != PQ_QUANT_NONE && k < n)
        snprintf(buf + k, n - k, " joint %s", pq_joint_mode_name(p->joint));
    if (!buf[0]) snprintf(buf, n, "none");
}

double pq__recipe_sparsity(const pq_layer_params *p) {
    return p->prune == PQ_PRUNE_NONE ? 0.0 : p->prune_m ? (double)p->prune_n / p->prune_m : p->sparsity;
}

int pq__recipe_bits(const pq_layer_params *p) {
    return p->quant == PQ_QUANT_NONE ? 16 : p->bits;
}

/* "overrides" and "param_weighted" of a recipe with per-linear overrides. */
static int add_overrides(cJSON *q, const pq_compress_params *p, const double weighted[2]) {
    const pq_recipe_overrides ov = {(pq_recipe_override *)p->overrides, p->n_overrides};
    char *text = pq_recipe_overrides_json(&ov);
    cJSON *a = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!a || !cJSON_AddItemToObject(q, "overrides", a)) {
        cJSON_Delete(a);
        return 0;
    }
    cJSON *w = cJSON_AddObjectToObject(q, "param_weighted");
    return w && pq__json_add_num(w, "sparsity", weighted[0]) && pq__json_add_num(w, "bits", weighted[1]);
}

int pq__recipe_quant_config(cJSON *config, const pq_compress_params *p, const int64_t *starts,
                            const double weighted[2]) {
    const pq_layer_params *l = &p->layer;
    cJSON *q = cJSON_AddObjectToObject(config, "quantization_config");
    if (!q) return 0;
    int ok = cJSON_AddStringToObject(q, "quant_method", "prunequant") != NULL;
    ok &= cJSON_AddStringToObject(q, "format",
                                  p->packed >= 2 ? "packed-v2"
                                  : p->packed    ? "packed-v1"
                                                 : "dense") != NULL;
    ok &= cJSON_AddStringToObject(q, "prune", pq_prune_method_name(l->prune)) != NULL;
    ok &= cJSON_AddNumberToObject(q, "sparsity", pq__recipe_sparsity(l)) != NULL;
    if (l->prune_m) {
        char pat[32];
        snprintf(pat, sizeof pat, "%d:%d", l->prune_n, l->prune_m);
        ok &= cJSON_AddStringToObject(q, "pattern", pat) != NULL;
    } else {
        ok &= cJSON_AddNullToObject(q, "pattern") != NULL;
    }
    ok &= cJSON_AddStringToObject(q, "quant", pq_quant_method_name(l->quant)) != NULL;
    ok &= cJSON_AddNumberToObject(q, "bits", l->bits) != NULL;
    ok &= cJSON_AddNumberToObject(q, "group_size", (double)l->group_size) != NULL;
    ok &= cJSON_AddBoolToObject(q, "sym", l->sym) != NULL;
    ok &= cJSON_AddBoolToObject(q, "act_order", l->act_order) != NULL;
    ok &= cJSON_AddStringToObject(q, "joint", pq_joint_mode_name(l->joint)) != NULL;
    if (l->joint == PQ_JOINT_A && l->prune != PQ_PRUNE_NONE && l->quant != PQ_QUANT_NONE)
        ok &= cJSON_AddBoolToObject(q, "keep_mask", l->keep_mask) != NULL;
    if (p->skip) ok &= cJSON_AddStringToObject(q, "skip", p->skip) != NULL;
    if (p->n_overrides > 0) ok &= add_overrides(q, p, weighted);
    cJSON *c = cJSON_AddObjectToObject(q, "calibration");
    if (!c) return 0;
    ok &= cJSON_AddStringToObject(c, "file", p->calib_name ? p->calib_name : "") != NULL;
    ok &= cJSON_AddNumberToObject(c, "nsamples", (double)p->nsamples) != NULL;
    ok &= cJSON_AddNumberToObject(c, "seqlen", (double)p->seqlen) != NULL;
    ok &= cJSON_AddNumberToObject(c, "seed", (double)p->seed) != NULL;
    cJSON *s = cJSON_AddArrayToObject(c, "starts");
    for (int64_t i = 0; s && i < p->nsamples; i++) {
        cJSON *n = cJSON_CreateNumber((double)starts[i]);
        if (!n || !cJSON_AddItemToArray(s, n)) {
            cJSON_Delete(n);
            return 0;
        }
    }
    return ok && s;
}
