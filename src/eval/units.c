/* Per-unit results as JSON, for the base-result cache and the messages between MPI ranks. */
#include "eval/units.h"

#include <stdlib.h>
#include <string.h>

#include "common/json.h"

void pq__units_to_json(cJSON *o, const pq_units *u) {
    cJSON_AddNumberToObject(o, "unit_kind", (double)u->kind);
    cJSON *v = cJSON_AddArrayToObject(o, "units"), *w = u->weight ? cJSON_AddArrayToObject(o, "unit_weights") : NULL;
    for (int64_t i = 0; v && i < u->n; i++) {
        cJSON_AddItemToArray(v, pq__json_num(u->value[i]));
        if (w) cJSON_AddItemToArray(w, pq__json_num(u->weight[i]));
    }
}

int pq__units_from_json(const cJSON *o, pq_units *u) {
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "unit_kind"),
                *v = cJSON_GetObjectItemCaseSensitive(o, "units");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "unit_weights");
    if (!cJSON_IsNumber(k) || !cJSON_IsArray(v)) return 0;
    const int64_t n = cJSON_GetArraySize(v);
    if (w && (!cJSON_IsArray(w) || cJSON_GetArraySize(w) != n)) return 0;
    memset(u, 0, sizeof *u);
    u->kind = k->valueint == PQ_UNITS_PPL ? PQ_UNITS_PPL : PQ_UNITS_MEAN;
    if (n == 0) return 1;
    u->value = malloc((size_t)n * sizeof *u->value);
    u->weight = w ? malloc((size_t)n * sizeof *u->weight) : NULL;
    if (!u->value || (w && !u->weight)) {
        pq_units_clear(u);
        return 0;
    }
    int64_t i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e)) {
            pq_units_clear(u);
            return 0;
        }
        u->value[i] = e->valuedouble;
    }
    i = 0;
    for (const cJSON *e = w ? w->child : NULL; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e)) {
            pq_units_clear(u);
            return 0;
        }
        u->weight[i] = e->valuedouble;
    }
    u->n = n;
    return 1;
}
