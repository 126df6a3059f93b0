/* Per-linear recipe overrides (prunequant-compress.h): parsed on top of a resolved base recipe,
 * checked with the one key rule and the one set of ranges, and written back as the JSON array
 * of a recipe file. The pipeline compiles the expressions and picks each linear's recipe. */
#include <cjson/cJSON.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/json.h"
#include "prunequant-compress.h"

void pq_recipe_overrides_free(pq_recipe_overrides *o) {
    if (!o) return;
    for (int64_t i = 0; i < o->n; i++)
        free(o->v[i].match);
    free(o->v);
    memset(o, 0, sizeof *o);
}

pq_status pq_recipe_overrides_add(pq_ctx *ctx, pq_recipe_overrides *o, const char *match,
                                  const pq_layer_params *layer, unsigned given) {
    pq_recipe_override *v = realloc(o->v, (size_t)(o->n + 1) * sizeof *v);
    if (!v) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory adding recipe override %lld", (long long)o->n + 1);
    o->v = v;
    char *m = pq__strdup(ctx, match, "an override's match");
    if (!m) return ctx->status;
    v[o->n].match = m;
    v[o->n].layer = *layer;
    v[o->n].given = given;
    o->n++;
    return PQ_OK;
}

/* The text of a JSON value as a flag would give it; NULL for objects, arrays and null. */
static const char *value_text(const cJSON *it, char *buf, size_t n) {
    if (cJSON_IsString(it)) return it->valuestring;
    if (cJSON_IsBool(it)) return cJSON_IsTrue(it) ? "true" : "false";
    if (cJSON_IsNumber(it)) {
        snprintf(buf, n, "%.17g", it->valuedouble);
        return buf;
    }
    return NULL;
}

/* "match": a string that compiles as a POSIX extended regular expression. */
static pq_status check_match(pq_ctx *ctx, const cJSON *m, int64_t k) {
    if (!cJSON_IsString(m) || !m->valuestring[0])
        return pq__fail(ctx, PQ_ERR_INVALID, "overrides[%lld]: needs a non-empty string \"match\"", (long long)k);
    regex_t re;
    const int rc = regcomp(&re, m->valuestring, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char msg[128];
        regerror(rc, &re, msg, sizeof msg);
        return pq__fail(ctx, PQ_ERR_INVALID, "overrides[%lld]: match '%s': %s", (long long)k, m->valuestring, msg);
    }
    regfree(&re);
    return PQ_OK;
}

/* One entry: the base recipe with the entry's keys; the key rule without the whole-recipe
 * defaults (inherited values stay as the base has them), then the ranges. */
static pq_status parse_entry(pq_ctx *ctx, const cJSON *e, int64_t k, const pq_layer_params *base,
                             pq_recipe_overrides *out) {
    if (!cJSON_IsObject(e)) return pq__fail(ctx, PQ_ERR_INVALID, "overrides[%lld]: not an object", (long long)k);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "match");
    pq_status st = check_match(ctx, m, k);
    pq_layer_params p = *base;
    unsigned given = 0;
    for (const cJSON *it = e->child; it && st == PQ_OK; it = it->next) {
        if (!strcmp(it->string, "match")) continue;
        char num[32];
        const char *v = value_text(it, num, sizeof num);
        const unsigned key = pq_recipe_key_parse(it->string);
        if (!key || !v)
            return pq__fail(ctx, PQ_ERR_INVALID, "overrides[%lld]: %s '%s'", (long long)k,
                            key ? "bad value for key" : "unknown recipe key", it->string);
        if ((st = pq_recipe_set(ctx, &p, it->string, v, 0)) != PQ_OK)
            return pq__fail_prefix(ctx, st, "overrides[%lld]", (long long)k);
        given |= key;
    }
    if (st != PQ_OK) return st;
    if ((given & PQ_KEY_SPARSITY) && (given & PQ_KEY_PATTERN))
        return pq__fail(ctx, PQ_ERR_INVALID, "overrides[%lld]: give sparsity or pattern, not both", (long long)k);
    const unsigned unused = pq_recipe_unused(&p, given), low = unused & (0u - unused);
    if (low)
        return pq__fail(ctx, PQ_ERR_INVALID, "overrides[%lld] (match '%s'): key '%s' has no effect under its recipe",
                        (long long)k, m->valuestring, pq_recipe_key_name(low, 0));
    if (p.prune == PQ_PRUNE_NONE && p.quant == PQ_QUANT_NONE)
        return pq__fail(ctx, PQ_ERR_INVALID, "overrides[%lld] (match '%s'): compresses nothing (use --skip)",
                        (long long)k, m->valuestring);
    if ((st = pq_layer_params_validate(ctx, &p, 0)) != PQ_OK)
        return pq__fail_prefix(ctx, st, "overrides[%lld] (match '%s')", (long long)k, m->valuestring);
    return pq_recipe_overrides_add(ctx, out, m->valuestring, &p, given);
}

pq_status pq_recipe_overrides_parse(pq_ctx *ctx, const char *json, size_t len, const pq_layer_params *base,
                                    pq_recipe_overrides *out) {
    memset(out, 0, sizeof *out);
    cJSON *j = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return pq__fail(ctx, PQ_ERR_INVALID, "overrides: not a JSON array of {\"match\": REGEX, recipe keys...}");
    }
    pq_status st = PQ_OK;
    int64_t k = 0;
    for (const cJSON *e = j->child; e && st == PQ_OK; e = e->next, k++)
        st = parse_entry(ctx, e, k, base, out);
    cJSON_Delete(j);
    if (st != PQ_OK) pq_recipe_overrides_free(out);
    return st;
}

/* Key `key` of p as a JSON value, as pq_recipe_set reads it back. */
static int add_key(cJSON *o, const pq_layer_params *p, unsigned key) {
    const char *name = pq_recipe_key_name(key, 0);
    char pat[32];
    switch (key) {
    case PQ_KEY_PRUNE: return cJSON_AddStringToObject(o, name, pq_prune_method_name(p->prune)) != NULL;
    case PQ_KEY_QUANT: return cJSON_AddStringToObject(o, name, pq_quant_method_name(p->quant)) != NULL;
    case PQ_KEY_JOINT: return cJSON_AddStringToObject(o, name, pq_joint_mode_name(p->joint)) != NULL;
    case PQ_KEY_PATTERN:
        snprintf(pat, sizeof pat, "%d:%d", p->prune_n, p->prune_m);
        return cJSON_AddStringToObject(o, name, pat) != NULL;
    case PQ_KEY_SPARSITY: return pq__json_add_num(o, name, p->sparsity) != NULL;
    case PQ_KEY_BITS: return cJSON_AddNumberToObject(o, name, p->bits) != NULL;
    case PQ_KEY_GROUP: return cJSON_AddNumberToObject(o, name, (double)p->group_size) != NULL;
    case PQ_KEY_PERCDAMP: return pq__json_add_num(o, name, p->percdamp) != NULL;
    case PQ_KEY_BLOCKSIZE: return cJSON_AddNumberToObject(o, name, (double)p->blocksize) != NULL;
    case PQ_KEY_SYM: return cJSON_AddBoolToObject(o, name, p->sym) != NULL;
    case PQ_KEY_ACT_ORDER: return cJSON_AddBoolToObject(o, name, p->act_order) != NULL;
    case PQ_KEY_STATIC_GROUPS: return cJSON_AddBoolToObject(o, name, p->static_groups) != NULL;
    case PQ_KEY_KEEP_MASK: return cJSON_AddBoolToObject(o, name, p->keep_mask) != NULL;
    }
    return 0;
}

char *pq_recipe_overrides_json(const pq_recipe_overrides *ov) {
    cJSON *a = cJSON_CreateArray();
    int ok = a != NULL;
    for (int64_t i = 0; ok && i < ov->n; i++) {
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(a, o) && cJSON_AddStringToObject(o, "match", ov->v[i].match);
        for (unsigned key = 1; ok && key <= PQ_KEY_BLOCKSIZE; key <<= 1)
            if (ov->v[i].given & key) ok = add_key(o, &ov->v[i].layer, key);
    }
    char *s = ok ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}
