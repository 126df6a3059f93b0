/* Per-unit results (pq_units) in JSON objects: "unit_kind", "units": [...] and, with
 * weights, "unit_weights": [...], every number exact (common/json.h), so that a cached or
 * transmitted result equals the one computed. */
#ifndef PQ_EVAL_UNITS_H
#define PQ_EVAL_UNITS_H

#include <cjson/cJSON.h>

#include "prunequant-eval.h"

/* Adds u's fields to the object o. */
void pq__units_to_json(cJSON *o, const pq_units *u);
/* Reads them into *u (malloc'ed; pq_units_clear frees); 0 when absent or malformed. */
int pq__units_from_json(const cJSON *o, pq_units *u);

#endif
