/* JSON numbers that read back to the same double. cJSON prints 15 significant digits
 * whenever they round-trip to within DBL_EPSILON, which loses the last bit of some values:
 * a base score read back from the eval cache, or a result sent between MPI ranks, would then
 * differ in the last ulp from the one computed, and a resumed sweep would not be bit-identical. */
#ifndef PQ_JSON_H
#define PQ_JSON_H

#include <cjson/cJSON.h>

/* Adds v as the shortest decimal (15..17 digits) that parses back to exactly v; a NaN or an
 * infinity is added as null. Returns the item, or NULL on allocation failure. */
cJSON *pq__json_add_num(cJSON *obj, const char *key, double v);
/* The same, as an array element or a value. */
cJSON *pq__json_num(double v);
/* Adds [lo, hi] (an interval), or null when either end is not finite. */
void pq__json_add_interval(cJSON *obj, const char *key, const double ci[2]);

#endif
