/* The recipe's parser (prunequant-compress.h, pq_recipe_set): one key from its text, the
 * same for compress and layer flags, JSON recipe files and sweep grid entries, with the one
 * set of ranges (those of pq_layer_params_validate where it checks a value alone). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "linalg/linalg.h"
#include "prunequant-compress.h"

static pq_status bad_value(pq_ctx *ctx, const char *name, const char *what, const char *v) {
    return pq__fail(ctx, PQ_ERR_INVALID, "%s: %s (got '%s')", name, what, v);
}

static pq_status parse_i64(pq_ctx *ctx, const char *name, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    const long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        char what[96];
        snprintf(what, sizeof what, "must be an integer %lld..%lld", (long long)lo, (long long)hi);
        return bad_value(ctx, name, what, v);
    }
    *out = x;
    return PQ_OK;
}

static pq_status parse_f64(pq_ctx *ctx, const char *name, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    const double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi)) {
        char what[96];
        snprintf(what, sizeof what, "must be a number in [%g, %g]", lo, hi);
        return bad_value(ctx, name, what, v);
    }
    *out = x;
    return PQ_OK;
}

static pq_status parse_bool(pq_ctx *ctx, const char *name, const char *v, int *out) {
    if (!strcmp(v, "true") || !strcmp(v, "1")) {
        *out = 1;
    } else if (!strcmp(v, "false") || !strcmp(v, "0")) {
        *out = 0;
    } else {
        return bad_value(ctx, name, "must be true or false", v);
    }
    return PQ_OK;
}

/* prune, quant, joint: a method name. */
static pq_status set_name(pq_ctx *ctx, pq_layer_params *p, unsigned key, const char *name, const char *v) {
    int bad = 0;
    if (key == PQ_KEY_PRUNE) bad = pq_prune_method_parse(v, &p->prune) != 0;
    if (key == PQ_KEY_QUANT) bad = pq_quant_method_parse(v, &p->quant) != 0;
    if (key == PQ_KEY_JOINT) bad = pq_joint_mode_parse(v, &p->joint) != 0;
    if (!bad) return PQ_OK;
    return pq__fail(ctx, PQ_ERR_INVALID, "%s: unknown %s '%s'", name,
                    key == PQ_KEY_PRUNE   ? "prune method (none, magnitude, wanda, sparsegpt)"
                    : key == PQ_KEY_QUANT ? "quant method (none, rtn, gptq)"
                                          : "joint mode (a, b, fused)",
                    v);
}

pq_status pq_recipe_set(pq_ctx *ctx, pq_layer_params *p, const char *key, const char *v, int flags) {
    const unsigned k = pq_recipe_key_parse(key);
    if (!k) return pq__fail(ctx, PQ_ERR_INVALID, "unknown recipe key '%s'", key);
    if (!v) v = "";
    const char *name = pq_recipe_key_name(k, flags);
    int64_t i64 = 0;
    pq_status st = PQ_OK;
    switch (k) {
    case PQ_KEY_PRUNE:
    case PQ_KEY_QUANT:
    case PQ_KEY_JOINT: return set_name(ctx, p, k, name, v);
    case PQ_KEY_SPARSITY:
        if ((st = parse_f64(ctx, name, v, 0, 1, &p->sparsity)) == PQ_OK) p->prune_n = p->prune_m = 0;
        return st;
    case PQ_KEY_PATTERN:
        if (pq_pattern_parse(ctx, v, &p->prune_n, &p->prune_m) != PQ_OK)
            return pq__fail_prefix(ctx, ctx->status, "%s", name);
        return PQ_OK;
    case PQ_KEY_BITS:
        if ((st = parse_i64(ctx, name, v, 2, 8, &i64)) == PQ_OK) p->bits = (int)i64;
        return st;
    case PQ_KEY_GROUP: return parse_i64(ctx, name, v, -1, INT32_MAX, &p->group_size);
    case PQ_KEY_PERCDAMP: return parse_f64(ctx, name, v, 0, PQ_MAX_PERCDAMP, &p->percdamp);
    case PQ_KEY_BLOCKSIZE: return parse_i64(ctx, name, v, 1, INT32_MAX, &p->blocksize);
    case PQ_KEY_SYM: return parse_bool(ctx, name, v, &p->sym);
    case PQ_KEY_ACT_ORDER: return parse_bool(ctx, name, v, &p->act_order);
    case PQ_KEY_STATIC_GROUPS: return parse_bool(ctx, name, v, &p->static_groups);
    case PQ_KEY_KEEP_MASK: return parse_bool(ctx, name, v, &p->keep_mask);
    }
    return pq__fail(ctx, PQ_ERR_INTERNAL, "recipe key '%s' has no parser", key);
}
