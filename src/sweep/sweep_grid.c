/* Grid expansion: the cross product of a GRID.json, normalised so that keys a recipe does
 * not use cannot make two identical runs look different, then validated and deduplicated
 * by the hash of the canonical recipe. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "prunequant-alloc.h"
#include "prunequant-eval.h"
#include "prunequant-sweep.h"

pq_sweep_calib pq_sweep_calib_default(void) {
    pq_sweep_calib c = {32, 0, 0};
    return c;
}

/* Numbers are printed with 10 significant digits: enough to tell grid values apart and
 * short enough that 0.1 stays "0.1" (the hash must not depend on float noise). */
char *pq_sweep_recipe_json(const pq_layer_params *p, const pq_sweep_calib *calib) {
    char buf[640];
    size_t n = 0;
#define PUT(...) n += (size_t)snprintf(buf + n, n < sizeof buf ? sizeof buf - n : 0, __VA_ARGS__)
    int pruned = p->prune != PQ_PRUNE_NONE, quant = p->quant != PQ_QUANT_NONE;
    PUT("{\"prune\":\"%s\"", pq_prune_method_name(p->prune));
    if (pruned) {
        if (p->prune_m > 0)
            PUT(",\"pattern\":\"%d:%d\"", p->prune_n, p->prune_m);
        else
            PUT(",\"sparsity\":%.10g", p->sparsity);
    }
    PUT(",\"quant\":\"%s\"", pq_quant_method_name(p->quant));
    if (quant) {
        PUT(",\"bits\":%d,\"group\":%lld,\"sym\":%s", p->bits, (long long)p->group_size, p->sym ? "true" : "false");
        if (p->quant == PQ_QUANT_GPTQ) PUT(",\"act_order\":%s", p->act_order ? "true" : "false");
    }
    if (pruned && quant) PUT(",\"joint\":\"%s\"", pq_joint_mode_name(p->joint));
    /* mode a re-masks by default since keep_mask became 1: a new hash, so that a resumed sweep
     * never reuses a mode-a result computed without the re-masking */
    if (pruned && quant && p->joint == PQ_JOINT_A) PUT(",\"keep_mask\":%s", p->keep_mask ? "true" : "false");
    PUT(",\"nsamples\":%lld", (long long)calib->nsamples);
    /* seqlen 0 means "the model's default": compress --recipe takes no 0, so leave it out */
    if (calib->seqlen > 0) PUT(",\"seqlen\":%lld", (long long)calib->seqlen);
    PUT(",\"seed\":%llu}", (unsigned long long)calib->seed);
#undef PUT
    if (n >= sizeof buf) return NULL;
    return strdup(buf);
}

void pq_sweep_hash(const char *recipe, char hash[17]) {
    uint64_t h = pq__fnv1a(recipe, strlen(recipe), PQ_FNV_INIT);
    snprintf(hash, 17, "%016llx", (unsigned long long)h);
}

void pq_sweep_grid_free(pq_sweep_grid *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n; i++) {
        free(g->configs[i].recipe);
        free(g->configs[i].alloc_candidates);
    }
    free(g->configs);
    memset(g, 0, sizeof *g);
}

/* The values of one grid key: a list or a single value; NULL item list when absent. */
typedef struct axis {
    const char *key;
    cJSON *items[64];
    int n;
    cJSON *def; /* owned default value when the key is absent */
} axis;

static pq_status axis_get(pq_ctx *ctx, cJSON *root, axis *a, const char *key, cJSON *def) {
    a->key = key;
    a->n = 0;
    a->def = NULL;
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) {
        a->def = def;
        a->items[a->n++] = def;
        return PQ_OK;
    }
    cJSON_Delete(def);
    if (cJSON_IsArray(v)) {
        for (cJSON *it = v->child; it; it = it->next) {
            if (a->n == 64) return pq__fail(ctx, PQ_ERR_INVALID, "grid: key '%s' has more than 64 values", key);
            a->items[a->n++] = it;
        }
        if (!a->n) return pq__fail(ctx, PQ_ERR_INVALID, "grid: key '%s' is an empty list", key);
    } else {
        a->items[a->n++] = v;
    }
    return PQ_OK;
}

/* One grid value through the recipe's parser (pq_recipe_set: the one set of names and ranges)
 * into t. Sparsity also takes "N:M" strings (the recipe's "pattern"); a sparsity of 1 prunes
 * everything, which no grid means. */
static pq_status item_set(pq_ctx *ctx, const char *key, const cJSON *it, pq_layer_params *t) {
    char num[32];
    const char *text = NULL;
    if (cJSON_IsString(it))
        text = it->valuestring;
    else if (cJSON_IsBool(it))
        text = cJSON_IsTrue(it) ? "true" : "false";
    else if (cJSON_IsNumber(it) && snprintf(num, sizeof num, "%.17g", it->valuedouble) > 0)
        text = num;
    if (!text)
        return pq__fail(ctx, PQ_ERR_INVALID, "grid: key '%s': values must be strings, numbers or booleans", key);
    const int pattern = !strcmp(key, "sparsity") && strchr(text, ':');
    if (pq_recipe_set(ctx, t, pattern ? "pattern" : key, text, 0) != PQ_OK)
        return pq__fail_prefix(ctx, ctx->status, "grid");
    if (pattern) t->sparsity = t->prune_m > 0 ? (double)t->prune_n / (double)t->prune_m : 0;
    if (!strcmp(key, "sparsity") && !(t->sparsity < 1))
        return pq__fail(ctx, PQ_ERR_INVALID, "grid: sparsity %g is not in [0, 1)", t->sparsity);
    return PQ_OK;
}

/* The given keys that act in the combination p (the grid's "sparsity" also holds N:M patterns). */
static unsigned keys_acting(const pq_layer_params *p, unsigned given) {
    unsigned g = given;
    if ((g & PQ_KEY_SPARSITY) && p->prune_m > 0) g = (g & ~(unsigned)PQ_KEY_SPARSITY) | PQ_KEY_PATTERN;
    unsigned used = g & ~pq_recipe_unused(p, g);
    if (used & PQ_KEY_PATTERN) used = (used & ~(unsigned)PQ_KEY_PATTERN) | PQ_KEY_SPARSITY;
    return used;
}

static const char *unused_reason(unsigned key) {
    switch (key) {
    case PQ_KEY_SPARSITY: return "prune is none in every one";
    case PQ_KEY_BITS:
    case PQ_KEY_GROUP:
    case PQ_KEY_SYM: return "quant is none in every one";
    case PQ_KEY_ACT_ORDER: return "it needs quant gptq";
    case PQ_KEY_JOINT: return "no combination both prunes and quantizes";
    default: return "see compress --help";
    }
}

enum { AX_PRUNE, AX_SPARSITY, AX_QUANT, AX_BITS, AX_GROUP, AX_SYM, AX_ACT, AX_JOINT, AX_N };

static pq_status add_config(pq_ctx *ctx, pq_sweep_grid *g, int64_t *cap, const pq_layer_params *lp,
                            const pq_sweep_calib *calib) {
    pq_layer_params p = *lp;
    pq_layer_params def = pq_layer_params_default();
    int pruned = p.prune != PQ_PRUNE_NONE, quant = p.quant != PQ_QUANT_NONE;
    /* normalise what this recipe does not use, so that its hash ignores it */
    if (!pruned) {
        p.sparsity = def.sparsity;
        p.prune_n = p.prune_m = 0;
    }
    if (!quant) {
        p.bits = def.bits;
        p.group_size = def.group_size;
        p.sym = 0;
    }
    if (p.quant != PQ_QUANT_GPTQ) p.act_order = 0;
    if (!(pruned && quant)) p.joint = def.joint;
    /* nothing to do (that is the base model), or pruning nothing */
    if ((!pruned && !quant) || (pruned && p.prune_m == 0 && p.sparsity == 0)) {
        g->n_invalid++;
        return PQ_OK;
    }
    pq_ctx quiet; /* an invalid combination is dropped, not an error */
    pq__quiet_begin(ctx, &quiet);
    int bad = pq_layer_params_validate(&quiet, &p, 0) != PQ_OK;
    if (bad) pq__log(ctx, PQ_LOG_DEBUG, "grid: dropped an invalid combination: %s", quiet.error);
    if (bad) {
        g->n_invalid++;
        return PQ_OK;
    }
    char *recipe = pq_sweep_recipe_json(&p, calib);
    if (!recipe)
        return pq__fail(ctx, PQ_ERR_NOMEM,
                        "out of memory copying the canonical recipe of a combination (under 640 bytes)");
    char hash[17];
    pq_sweep_hash(recipe, hash);
    for (int64_t i = 0; i < g->n; i++)
        if (!strcmp(g->configs[i].hash, hash)) {
            free(recipe);
            g->n_duplicate++;
            return PQ_OK;
        }
    if (g->n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 16;
        pq_sweep_config *c = realloc(g->configs, (size_t)nc * sizeof *c);
        if (!c) {
            free(recipe);
            return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the grid's configs",
                            (size_t)nc * sizeof *c);
        }
        g->configs = c;
        *cap = nc;
    }
    pq_sweep_config *c = &g->configs[g->n++];
    memset(c, 0, sizeof *c);
    c->alloc_of = -1;
    c->layer = p;
    c->sparsity = !pruned ? 0 : p.prune_m > 0 ? pq_metrics_nm_sparsity(p.prune_n, p.prune_m) : p.sparsity;
    c->bits = quant ? p.bits : 16;
    c->tcr = pq_metrics_tcr(c->sparsity, c->bits);
    c->recipe = recipe;
    memcpy(c->hash, hash, sizeof hash);
    return PQ_OK;
}

static const char *const grid_keys[AX_N] = {"prune", "sparsity", "quant",     "bits",
                                            "group", "sym",      "act_order", "joint"};

/* Every key of the grid is one of grid_keys, or "allocate". */
static pq_status check_keys(pq_ctx *ctx, const cJSON *root) {
    for (const cJSON *it = root->child; it; it = it->next) {
        int known = !strcmp(it->string, "allocate");
        for (int k = 0; k < AX_N; k++)
            known |= !strcmp(it->string, grid_keys[k]);
        if (!known)
            return pq__fail(ctx, PQ_ERR_INVALID,
                            "grid: unknown key '%s' (expected prune, sparsity, quant, bits, group, sym, act_order, "
                            "joint, allocate)",
                            it->string);
    }
    return PQ_OK;
}

/* An allocated config for config i (appended): its identity names config i and the
 * allocation's settings, its hash is config i's with 6 hex digits of those. */
static pq_status add_allocated(pq_ctx *ctx, pq_sweep_grid *g, int64_t *cap, int64_t i, const char *cands) {
    if (g->n == *cap) {
        const int64_t nc = *cap * 2;
        pq_sweep_config *c = realloc(g->configs, (size_t)nc * sizeof *c);
        if (!c) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory growing the grid");
        g->configs = c;
        *cap = nc;
    }
    const pq_sweep_config *u = &g->configs[i];
    pq__buf id = {0};
    pq_status st = pq__buf_printf(ctx, &id, "an allocated config", "{\"allocate\":{\"budget_of\":\"%s\"", u->hash);
    if (st == PQ_OK && cands) st = pq__buf_printf(ctx, &id, "an allocated config", ",\"candidates\":\"%s\"", cands);
    if (st == PQ_OK) st = pq__buf_printf(ctx, &id, "an allocated config", "}}");
    char *cc = st == PQ_OK && cands ? pq__strdup(ctx, cands, "the candidate list") : NULL;
    if (st != PQ_OK || (cands && !cc)) {
        pq__buf_free(&id);
        return ctx->status;
    }
    pq_sweep_config *c = &g->configs[g->n++];
    *c = *u;
    c->recipe = pq__buf_take(&id);
    c->alloc_of = i;
    c->alloc_candidates = cc;
    const uint64_t h = pq__fnv1a(c->recipe, strlen(c->recipe), PQ_FNV_INIT);
    snprintf(c->hash, sizeof c->hash, "%.16s.%06llx", u->hash, (unsigned long long)(h & 0xffffff));
    return PQ_OK;
}

/* "allocate": true or a candidate list: an allocated config for each config. */
static pq_status add_allocations(pq_ctx *ctx, const cJSON *root, pq_sweep_grid *g) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "allocate");
    if (!a || cJSON_IsFalse(a)) return PQ_OK;
    if (!cJSON_IsTrue(a) && !(cJSON_IsString(a) && a->valuestring[0]))
        return pq__fail(ctx, PQ_ERR_INVALID, "grid: 'allocate' is true, false or a candidate list");
    pq_layer_params *cands = NULL; /* the list checked before any run */
    int64_t nc = 0;
    pq_status st =
        pq_alloc_candidates(ctx, cJSON_IsString(a) ? a->valuestring : NULL, &g->configs[0].layer, &cands, &nc);
    free(cands);
    if (st != PQ_OK) return pq__fail_prefix(ctx, st, "grid: allocate");
    const int64_t n = g->n;
    int64_t cap = n;
    for (int64_t i = 0; i < n && st == PQ_OK; i++)
        st = add_allocated(ctx, g, &cap, i, cJSON_IsString(a) ? a->valuestring : NULL);
    return st;
}

/* The values of every axis; an absent key takes the default of the recipe. */
static pq_status get_axes(pq_ctx *ctx, cJSON *root, const pq_layer_params *def, axis ax[AX_N]) {
    memset(ax, 0, AX_N * sizeof *ax);
    cJSON *defs[AX_N] = {cJSON_CreateString("none"),
                         cJSON_CreateNumber(def->sparsity),
                         cJSON_CreateString("none"),
                         cJSON_CreateNumber(def->bits),
                         cJSON_CreateNumber((double)def->group_size),
                         cJSON_CreateBool(0),
                         cJSON_CreateBool(0),
                         cJSON_CreateString(pq_joint_mode_name(def->joint))};
    pq_status st = PQ_OK;
    for (int k = 0; k < AX_N; k++) {
        if (st == PQ_OK)
            st = axis_get(ctx, root, &ax[k], grid_keys[k], defs[k]);
        else
            cJSON_Delete(defs[k]);
    }
    return st;
}

/* Every value of every axis, parsed once. */
typedef struct grid_values {
    pq_prune_method prune[64];
    pq_quant_method quant[64];
    pq_joint_mode joint[64];
    double sp[64];
    int pn[64], pm[64], sym[64], act[64];
    int64_t bits[64], group[64];
} grid_values;

/* Parses every value once, up front, so that errors name the value and not a combination. */
static pq_status parse_values(pq_ctx *ctx, const axis ax[AX_N], grid_values *v) {
    for (int k = 0; k < AX_N; k++)
        for (int i = 0; i < ax[k].n; i++) {
            pq_layer_params t = pq_layer_params_default();
            pq_status st = item_set(ctx, grid_keys[k], ax[k].items[i], &t);
            if (st) return st;
            switch (k) {
            case AX_PRUNE: v->prune[i] = t.prune; break;
            case AX_SPARSITY:
                v->sp[i] = t.sparsity;
                v->pn[i] = t.prune_n;
                v->pm[i] = t.prune_m;
                break;
            case AX_QUANT: v->quant[i] = t.quant; break;
            case AX_BITS: v->bits[i] = t.bits; break;
            case AX_GROUP: v->group[i] = t.group_size; break;
            case AX_SYM: v->sym[i] = t.sym; break;
            case AX_ACT: v->act[i] = t.act_order; break;
            case AX_JOINT: v->joint[i] = t.joint; break;
            }
        }
    return PQ_OK;
}

/* The cross product (an odometer over the axes, last key fastest) into out; *acted gets the
 * given keys that act in at least one combination. */
static pq_status cross_product(pq_ctx *ctx, const axis ax[AX_N], const grid_values *v, const pq_layer_params *def,
                               const pq_sweep_calib *cal, unsigned given, unsigned *acted, pq_sweep_grid *out) {
    int64_t cap = 0;
    int idx[AX_N] = {0};
    pq_status st = PQ_OK;
    while (st == PQ_OK) {
        pq_layer_params p = *def;
        p.prune = v->prune[idx[AX_PRUNE]];
        p.sparsity = v->sp[idx[AX_SPARSITY]];
        p.prune_n = v->pn[idx[AX_SPARSITY]];
        p.prune_m = v->pm[idx[AX_SPARSITY]];
        p.quant = v->quant[idx[AX_QUANT]];
        p.bits = (int)v->bits[idx[AX_BITS]];
        p.group_size = v->group[idx[AX_GROUP]];
        p.sym = v->sym[idx[AX_SYM]];
        p.act_order = v->act[idx[AX_ACT]];
        p.joint = v->joint[idx[AX_JOINT]];
        *acted |= keys_acting(&p, given);
        st = add_config(ctx, out, &cap, &p, cal);
        int k = AX_N - 1;
        while (k >= 0 && ++idx[k] == ax[k].n)
            idx[k--] = 0;
        if (k < 0) break;
    }
    return st;
}

pq_status pq_sweep_grid_expand(pq_ctx *ctx, const char *json, size_t len, const pq_sweep_calib *calib,
                               pq_sweep_grid *out) {
    memset(out, 0, sizeof *out);
    pq_sweep_calib cal = calib ? *calib : pq_sweep_calib_default();
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pq__fail(ctx, PQ_ERR_FORMAT, "grid: not a JSON object");
    }
    const pq_layer_params def = pq_layer_params_default();
    axis ax[AX_N];
    grid_values v;
    memset(ax, 0, sizeof ax);
    pq_status st = check_keys(ctx, root);
    if (st == PQ_OK) st = get_axes(ctx, root, &def, ax);
    if (st == PQ_OK) st = parse_values(ctx, ax, &v);
    /* the keys the grid gives, as recipe keys: one that acts in none of the combinations is an
     * error (the rule of compress and layer), not silently normalised away */
    unsigned given = 0, acted = 0;
    for (int k = 0; k < AX_N; k++)
        if (!ax[k].def) given |= pq_recipe_key_parse(grid_keys[k]);
    if (st == PQ_OK) st = cross_product(ctx, ax, &v, &def, &cal, given, &acted, out);
    if (st == PQ_OK && (given & ~acted)) {
        const unsigned k = given & ~acted & (0u - (given & ~acted)); /* the lowest such key */
        st = pq__fail(ctx, PQ_ERR_INVALID, "grid: key '%s' has no effect in any combination (%s)",
                      pq_recipe_key_name(k, 0), unused_reason(k));
    }
    if (st == PQ_OK && out->n > 0) st = add_allocations(ctx, root, out);
    for (int k = 0; k < AX_N; k++)
        cJSON_Delete(ax[k].def);
    cJSON_Delete(root);
    if (st != PQ_OK) pq_sweep_grid_free(out);
    return st;
}

void pq_sweep_grid_filter_tcr(pq_sweep_grid *g, const double *tcr, int64_t n) {
    if (!g) return;
    int64_t k = 0;
    /* the configs allocated from come first, so their new places are known for the others */
    int64_t *at = malloc(sizeof *at * (size_t)(g->n ? g->n : 1));
    for (int64_t i = 0; i < g->n; i++) {
        pq_sweep_config *c = &g->configs[i];
        int keep = 0;
        for (int64_t j = 0; j < n && !keep && c->alloc_of < 0; j++)
            keep = fabs(c->tcr - tcr[j]) <= 1e-9;
        if (c->alloc_of >= 0) keep = at && at[c->alloc_of] >= 0;
        if (at) at[i] = keep ? k : -1;
        if (keep && c->alloc_of >= 0) c->alloc_of = at[c->alloc_of];
        if (keep) {
            g->configs[k++] = *c;
        } else {
            free(c->recipe);
            free(c->alloc_candidates);
        }
    }
    free(at);
    g->n = k;
}

pq_status pq_sweep_parse_list(pq_ctx *ctx, const char *s, double **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    int64_t cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == ',';
    double *v = pq__malloc(ctx, (size_t)cap * sizeof *v, "list");
    if (!v) return ctx->status;
    const char *c = s;
    for (int64_t i = 0; i < cap; i++) {
        char *end;
        errno = 0;
        v[i] = strtod(c, &end);
        if (errno || end == c || (*end != ',' && *end) || !isfinite(v[i])) {
            free(v);
            return pq__fail(ctx, PQ_ERR_INVALID, "'%s' is not a comma-separated list of numbers", s);
        }
        c = *end ? end + 1 : end;
    }
    *out = v;
    *n = cap;
    return PQ_OK;
}
