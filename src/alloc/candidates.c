/* The allocator's candidates (alloc.h): the cross product of a candidate list on top of the
 * shared methods, and the allocation written back as a recipe file with overrides. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/alloc.h"
#include "common/json.h"

#define DEFAULT_CANDIDATES "prune=none,2:4;bits=2..8;group=32,128"
#define MAX_AXIS 64

/* One axis: up to MAX_AXIS values of prune (as pattern/sparsity), bits or group. */
typedef struct axes {
    int np, nb, ng;
    int pn[MAX_AXIS], pm[MAX_AXIS]; /* pattern N:M; 0:0 unstructured or none */
    double sp[MAX_AXIS];            /* sparsity; 0 with pm 0: no pruning */
    int bits[MAX_AXIS];
    int64_t group[MAX_AXIS];
} axes;

static pq_status bad(pq_ctx *ctx, const char *what, const char *v) {
    return pq__fail(ctx, PQ_ERR_INVALID, "candidates: %s (got '%s')", what, v);
}

static pq_status add_prune(pq_ctx *ctx, axes *a, const char *v) {
    if (a->np == MAX_AXIS) return bad(ctx, "more than 64 prune values", v);
    const int k = a->np;
    a->pn[k] = a->pm[k] = 0;
    a->sp[k] = 0;
    if (strcmp(v, "none") && strchr(v, ':')) {
        pq_layer_params t = pq_layer_params_default();
        if (pq_pattern_parse(ctx, v, &t.prune_n, &t.prune_m) != PQ_OK || !(t.prune_n > 0 && t.prune_n < t.prune_m))
            return bad(ctx, "prune values are none, N:M with 0 < N < M, or a sparsity in (0, 1)", v);
        a->pn[k] = t.prune_n, a->pm[k] = t.prune_m;
    } else if (strcmp(v, "none")) {
        char *end;
        errno = 0;
        a->sp[k] = strtod(v, &end);
        if (!*v || *end || errno || !(a->sp[k] > 0 && a->sp[k] < 1))
            return bad(ctx, "prune values are none, N:M with 0 < N < M, or a sparsity in (0, 1)", v);
    }
    a->np++;
    return PQ_OK;
}

/* An integer in [lo, hi], or a range "a..b" of them (bits). */
static pq_status add_ints(pq_ctx *ctx, const char *key, const char *v, int64_t lo, int64_t hi, int64_t *out, int *n) {
    char *end;
    errno = 0;
    const long long a = strtoll(v, &end, 10);
    long long b = a;
    if (end != v && !strncmp(end, "..", 2)) b = strtoll(end + 2, &end, 10);
    if (end == v || *end || errno || a < lo || b > hi || b < a)
        return pq__fail(ctx, PQ_ERR_INVALID, "candidates: %s: '%s' is not an integer or range a..b within %lld..%lld",
                        key, v, (long long)lo, (long long)hi);
    for (long long x = a; x <= b; x++) {
        if (*n == MAX_AXIS) return pq__fail(ctx, PQ_ERR_INVALID, "candidates: %s has more than 64 values", key);
        out[(*n)++] = x;
    }
    return PQ_OK;
}

/* One "key=v1,v2" axis into a (the spec's text, modified in place). */
static pq_status parse_axis(pq_ctx *ctx, char *ax, axes *a, unsigned *seen) {
    char *eq = strchr(ax, '=');
    if (!eq) return bad(ctx, "each axis is key=v1,v2,... with key prune, bits or group", ax);
    *eq = 0;
    const int key = !strcmp(ax, "prune") ? 1 : !strcmp(ax, "bits") ? 2 : !strcmp(ax, "group") ? 4 : 0;
    if (!key) return bad(ctx, "unknown axis (prune, bits, group)", ax);
    if (*seen & (unsigned)key) return bad(ctx, "axis given twice", ax);
    *seen |= (unsigned)key;
    char *save = NULL;
    pq_status st = PQ_OK;
    int64_t tmp[MAX_AXIS];
    int nt = 0;
    for (char *v = strtok_r(eq + 1, ",", &save); v && st == PQ_OK; v = strtok_r(NULL, ",", &save)) {
        while (*v == ' ')
            v++;
        st = key == 1   ? add_prune(ctx, a, v)
             : key == 2 ? add_ints(ctx, "bits", v, 2, 8, tmp, &nt)
                        : add_ints(ctx, "group", v, -1, INT32_MAX, tmp, &nt);
    }
    for (int k = 0; st == PQ_OK && k < nt; k++) {
        if (key == 2) a->bits[a->nb++] = (int)tmp[k];
        if (key == 4 && tmp[k] == 0) return bad(ctx, "group 0 (use -1 for one grid per row)", "0");
        if (key == 4) a->group[a->ng++] = tmp[k];
    }
    if (st == PQ_OK && ((key == 1 && !a->np) || (key == 2 && !a->nb) || (key == 4 && !a->ng)))
        return bad(ctx, "an axis without values", ax);
    return st;
}

static pq_status parse_spec(pq_ctx *ctx, const char *spec, axes *a) {
    memset(a, 0, sizeof *a);
    char *text = pq__strdup(ctx, spec, "the candidate list");
    if (!text) return ctx->status;
    unsigned seen = 0;
    pq_status st = PQ_OK;
    char *save = NULL;
    for (char *ax = strtok_r(text, ";", &save); ax && st == PQ_OK; ax = strtok_r(NULL, ";", &save))
        st = parse_axis(ctx, ax, a, &seen);
    free(text);
    return st;
}

/* Candidate (k-th prune value, bits b, group g) on top of base; 1 when new in out[0..n). */
static int make(const axes *a, int k, int b, int64_t g, const pq_layer_params *base, const pq_layer_params *out,
                int64_t n, pq_layer_params *c) {
    *c = *base;
    c->quant = base->quant != PQ_QUANT_NONE ? base->quant : PQ_QUANT_GPTQ;
    c->bits = b;
    c->group_size = g;
    const int pruned = a->pm[k] > 0 || a->sp[k] > 0;
    c->prune = !pruned ? PQ_PRUNE_NONE : base->prune != PQ_PRUNE_NONE ? base->prune : PQ_PRUNE_SPARSEGPT;
    c->prune_n = a->pn[k], c->prune_m = a->pm[k];
    c->sparsity = a->pm[k] ? base->sparsity : a->sp[k];
    for (int64_t i = 0; i < n; i++)
        if (out[i].prune == c->prune && out[i].prune_n == c->prune_n && out[i].prune_m == c->prune_m &&
            out[i].sparsity == c->sparsity && out[i].bits == c->bits && out[i].group_size == c->group_size)
            return 0;
    return 1;
}

pq_status pq_alloc_candidates(pq_ctx *ctx, const char *spec, const pq_layer_params *base, pq_layer_params **out,
                              int64_t *n) {
    axes d, a;
    *out = NULL;
    *n = 0;
    pq_status st = parse_spec(ctx, DEFAULT_CANDIDATES, &d);
    if (st == PQ_OK && spec) st = parse_spec(ctx, spec, &a);
    if (st != PQ_OK) return st;
    if (!spec) a = d;
    if (!a.np)
        a.np = d.np, memcpy(a.pn, d.pn, sizeof a.pn), memcpy(a.pm, d.pm, sizeof a.pm),
        memcpy(a.sp, d.sp, sizeof a.sp);
    if (!a.nb) a.nb = d.nb, memcpy(a.bits, d.bits, sizeof a.bits);
    if (!a.ng) a.ng = d.ng, memcpy(a.group, d.group, sizeof a.group);
    pq_layer_params *v = pq__malloc(ctx, sizeof *v * (size_t)(a.np * a.nb * a.ng), "candidates");
    if (!v) return ctx->status;
    pq_layer_params c;
    for (int k = 0; k < a.np && st == PQ_OK; k++)
        for (int b = 0; b < a.nb && st == PQ_OK; b++)
            for (int g = 0; g < a.ng && st == PQ_OK; g++)
                if (make(&a, k, a.bits[b], a.group[g], base, v, *n, &c)) {
                    if ((st = pq_layer_params_validate(ctx, &c, 0)) != PQ_OK)
                        st = pq__fail_prefix(ctx, st, "candidates");
                    v[(*n)++] = c;
                }
    if (st != PQ_OK) {
        free(v);
        *n = 0;
        return st;
    }
    *out = v;
    return PQ_OK;
}

/* ---------------------------------------------------------------- the recipe file */

/* The keys of candidate c that differ across candidates (prune, pattern or sparsity, bits,
 * group; joint and keep_mask where both act) into o; shared keys (sym, percdamp, blocksize,
 * act_order) when all is set (the base recipe). The key rule holds: only keys that act. */
static int add_keys(cJSON *o, const pq_layer_params *c, int all) {
    const pq_layer_params d = pq_layer_params_default();
    const int pruned = c->prune != PQ_PRUNE_NONE, quant = c->quant != PQ_QUANT_NONE;
    const int obs = c->quant == PQ_QUANT_GPTQ || c->prune == PQ_PRUNE_SPARSEGPT;
    char pat[32];
    snprintf(pat, sizeof pat, "%d:%d", c->prune_n, c->prune_m);
    int ok = cJSON_AddStringToObject(o, "prune", pq_prune_method_name(c->prune)) != NULL;
    if (pruned && c->prune_m) ok = ok && cJSON_AddStringToObject(o, "pattern", pat);
    if (pruned && !c->prune_m) ok = ok && pq__json_add_num(o, "sparsity", c->sparsity);
    ok = ok && cJSON_AddStringToObject(o, "quant", pq_quant_method_name(c->quant));
    if (quant)
        ok = ok && cJSON_AddNumberToObject(o, "bits", c->bits) &&
             cJSON_AddNumberToObject(o, "group", (double)c->group_size);
    if (pruned && quant) ok = ok && cJSON_AddStringToObject(o, "joint", pq_joint_mode_name(c->joint));
    if (pruned && quant && c->joint == PQ_JOINT_A && !c->keep_mask)
        ok = ok && cJSON_AddBoolToObject(o, "keep_mask", 0);
    if (!all) return ok;
    if (quant && c->sym) ok = ok && cJSON_AddBoolToObject(o, "sym", 1);
    if (c->quant == PQ_QUANT_GPTQ && c->act_order) ok = ok && cJSON_AddBoolToObject(o, "act_order", 1);
    if (obs && c->percdamp != d.percdamp) ok = ok && pq__json_add_num(o, "percdamp", c->percdamp);
    if (obs && c->blocksize != d.blocksize) ok = ok && cJSON_AddNumberToObject(o, "blocksize", (double)c->blocksize);
    return ok;
}

/* "^model\.layers\.(0\.self_attn\.q_proj|...)$": exactly the linears that chose c. */
static char *match_of(const pq_alloc_result *r, int c) {
    pq__buf b = {0};
    pq_ctx *ctx = pq_ctx_new(); /* only for the buffer's messages */
    const char *pre = "model.layers.";
    int ok = ctx && pq__buf_printf(ctx, &b, "match", "^model\\.layers\\.(") == PQ_OK;
    int first = 1;
    for (int64_t i = 0; ok && i < r->n_linears; i++) {
        if (r->linears[i].choice != c) continue;
        ok = !first ? pq__buf_append(ctx, &b, "|", 1, "match") == PQ_OK : 1;
        first = 0;
        for (const char *s = r->linears[i].name + strlen(pre); ok && *s; s++)
            ok = (*s == '.' ? pq__buf_append(ctx, &b, "\\.", 2, "match") : pq__buf_append(ctx, &b, s, 1, "match")) ==
                 PQ_OK;
    }
    ok = ok && pq__buf_append(ctx, &b, ")$", 2, "match") == PQ_OK;
    pq_ctx_free(ctx);
    if (!ok) pq__buf_free(&b);
    return ok ? pq__buf_take(&b) : NULL;
}

/* The most frequent choice (ties: the lower candidate), the recipe the file's base gets. */
static int base_choice(const pq_alloc_result *r) {
    int best = r->linears[0].choice;
    int64_t best_n = 0;
    for (int64_t c = 0; c < r->n_candidates; c++) {
        int64_t n = 0;
        for (int64_t i = 0; i < r->n_linears; i++)
            n += r->linears[i].choice == c;
        if (n > best_n) best_n = n, best = (int)c;
    }
    return best;
}

/* One override per other choice, in candidate order. */
static int add_overrides(cJSON *root, const pq_alloc_result *r, int base) {
    cJSON *a = cJSON_AddArrayToObject(root, "overrides");
    int ok = a != NULL;
    for (int64_t c = 0; ok && c < r->n_candidates; c++) {
        int used = 0;
        for (int64_t i = 0; i < r->n_linears && !used; i++)
            used = r->linears[i].choice == c;
        if (c == base || !used) continue;
        char *m = match_of(r, (int)c);
        cJSON *o = m ? cJSON_CreateObject() : NULL;
        ok = o && cJSON_AddItemToArray(a, o) && cJSON_AddStringToObject(o, "match", m) &&
             add_keys(o, &r->candidates[c], 0);
        if (!o) ok = 0;
        free(m);
    }
    return ok;
}

char *pq_alloc_recipe_json(const pq_alloc_result *r, const pq_alloc_params *p) {
    if (!r || r->n_linears <= 0) return NULL;
    const pq_compress_params *cp = &p->compress;
    const int base = base_choice(r);
    cJSON *root = cJSON_CreateObject();
    int ok = root && add_keys(root, &r->candidates[base], 1);
    ok = ok && cJSON_AddNumberToObject(root, "nsamples", (double)cp->nsamples);
    if (cp->seqlen > 0) ok = ok && cJSON_AddNumberToObject(root, "seqlen", (double)cp->seqlen);
    ok = ok && cJSON_AddNumberToObject(root, "seed", (double)cp->seed);
    ok = ok && cJSON_AddStringToObject(root, "format", cp->packed >= 2 ? "packed" : "packed-v1");
    ok = ok && cJSON_AddNumberToObject(root, "budget_bytes", (double)r->budget);
    ok = ok && add_overrides(root, r, base);
    char *s = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return s;
}

pq_status pq_alloc_recipe_write(pq_ctx *ctx, const pq_alloc_result *r, const pq_alloc_params *p, const char *path) {
    char *s = pq_alloc_recipe_json(r, p);
    if (!s) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory printing the recipe", path);
    pq__atomic a;
    pq_status st = pq__atomic_open(ctx, path, &a);
    if (st == PQ_OK) st = pq__atomic_write(ctx, &a, s, strlen(s));
    if (st == PQ_OK) st = pq__atomic_write(ctx, &a, "\n", 1);
    if (st == PQ_OK)
        st = pq__atomic_commit(ctx, &a);
    else
        pq__atomic_abort(&a);
    free(s);
    return st;
}

void pq_alloc_label(const pq_layer_params *c, char *buf, size_t n) {
    char pr[32] = "";
    if (c->prune != PQ_PRUNE_NONE && c->prune_m)
        snprintf(pr, sizeof pr, "%d:%d", c->prune_n, c->prune_m);
    else if (c->prune != PQ_PRUNE_NONE)
        snprintf(pr, sizeof pr, "%.3g%%", 100.0 * c->sparsity);
    if (c->quant == PQ_QUANT_NONE)
        snprintf(buf, n, "%s only", pr[0] ? pr : "none");
    else
        snprintf(buf, n, "%s%s%db g%lld", pr, pr[0] ? "+" : "", c->bits, (long long)c->group_size);
}

/* The keys add_keys writes for candidate c without the shared ones, as a PQ_KEY_* set. */
static unsigned keys_of(const pq_layer_params *c) {
    const int pruned = c->prune != PQ_PRUNE_NONE, quant = c->quant != PQ_QUANT_NONE;
    unsigned k = PQ_KEY_PRUNE | PQ_KEY_QUANT;
    if (pruned) k |= c->prune_m ? PQ_KEY_PATTERN : PQ_KEY_SPARSITY;
    if (quant) k |= PQ_KEY_BITS | PQ_KEY_GROUP;
    if (pruned && quant) k |= PQ_KEY_JOINT;
    if (pruned && quant && c->joint == PQ_JOINT_A && !c->keep_mask) k |= PQ_KEY_KEEP_MASK;
    return k;
}

pq_status pq_alloc_compress_params(pq_ctx *ctx, const pq_alloc_result *r, const pq_alloc_params *p,
                                   pq_compress_params *out, pq_recipe_overrides *ov) {
    memset(ov, 0, sizeof *ov);
    *out = p->compress;
    const int base = base_choice(r);
    out->layer = r->candidates[base];
    out->budget_bytes = r->budget;
    pq_status st = PQ_OK;
    for (int64_t c = 0; c < r->n_candidates && st == PQ_OK; c++) {
        int used = 0;
        for (int64_t i = 0; i < r->n_linears && !used; i++)
            used = r->linears[i].choice == c;
        if (c == base || !used) continue;
        char *m = match_of(r, (int)c);
        st = m ? pq_recipe_overrides_add(ctx, ov, m, &r->candidates[c], keys_of(&r->candidates[c]))
               : pq__fail(ctx, PQ_ERR_NOMEM, "out of memory writing an override's match");
        free(m);
    }
    if (st != PQ_OK) pq_recipe_overrides_free(ov);
    out->overrides = ov->v;
    out->n_overrides = ov->n;
    return st;
}
