#include "common/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void exact_text(double v, char *buf, size_t n) {
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, n, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

cJSON *pq__json_num(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char buf[40];
    exact_text(v, buf, sizeof buf);
    return cJSON_CreateRaw(buf);
}

cJSON *pq__json_add_num(cJSON *obj, const char *key, double v) {
    cJSON *item = pq__json_num(v);
    if (item && !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

void pq__json_add_interval(cJSON *obj, const char *key, const double ci[2]) {
    if (!isfinite(ci[0]) || !isfinite(ci[1])) {
        cJSON_AddNullToObject(obj, key);
        return;
    }
    cJSON *a = cJSON_AddArrayToObject(obj, key);
    cJSON_AddItemToArray(a, pq__json_num(ci[0]));
    cJSON_AddItemToArray(a, pq__json_num(ci[1]));
}
