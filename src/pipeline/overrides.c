/* Per-linear recipes of a compress run (pipeline.h): the overrides' expressions compiled once,
 * each checked against the shapes of the linears it matches, and the recipe each linear takes. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"
#include "recipe/recipe.h"

const pq_layer_params *pq__pipe_recipe(const pq__pipe *P, int64_t l, int i, const char **text) {
    const int ov = P->lin_ov ? P->lin_ov[l * PQ_BLOCK_LINEARS + i] : -1;
    const int is_down = pq__block_linear[i].cols == PQ_DIM_FFN;
    const pq_layer_params *lp = ov >= 0 ? &P->p.overrides[ov].layer : is_down ? &P->down : &P->p.layer;
    if (text) *text = ov >= 0 ? P->ov_text[ov] : is_down ? P->recipe_down : P->recipe;
    return lp->prune != PQ_PRUNE_NONE || lp->quant != PQ_QUANT_NONE ? lp : NULL;
}

void pq__pipe_overrides_free(pq__pipe *P) {
    for (int64_t k = 0; P->ov_re && k < P->p.n_overrides; k++)
        regfree(&P->ov_re[k]);
    free(P->ov_re);
    free(P->lin_ov);
    free(P->ov_text);
    P->ov_re = NULL;
    P->lin_ov = NULL;
    P->ov_text = NULL;
}

/* Override k against linear i of block l (it matches it first): the recipe must suit the shape. */
static pq_status check_fit(pq__pipe *P, int64_t k, int64_t l, int i) {
    const pq__config *c = &P->m->cfg;
    const int64_t cols = pq__linear_dim(c, pq__block_linear[i].cols);
    const pq_status st = pq_layer_params_validate(P->ctx, &P->p.overrides[k].layer, cols);
    if (st == PQ_OK) return PQ_OK;
    char name[128];
    pq__linear_name(name, sizeof name, l, i);
    return pq__fail_prefix(P->ctx, st, "compress: override %lld (match '%s') on %s", (long long)k,
                           P->p.overrides[k].match, name);
}

/* The first override each linear matches (-1: none); every override must match one. */
static pq_status assign(pq__pipe *P) {
    const pq__config *c = &P->m->cfg;
    const int64_t n = P->p.n_overrides;
    int64_t *hits = pq__calloc(P->ctx, (size_t)n, sizeof *hits, "override matches");
    if (!hits) return P->ctx->status;
    pq_status st = PQ_OK;
    for (int64_t l = 0; l < c->n_layers && st == PQ_OK; l++)
        for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++) {
            char name[128];
            pq__linear_name(name, sizeof name, l, i);
            int32_t *ov = &P->lin_ov[l * PQ_BLOCK_LINEARS + i];
            *ov = -1;
            for (int64_t k = 0; k < n && *ov < 0; k++)
                if (regexec(&P->ov_re[k], name, 0, NULL, 0) == 0) *ov = (int32_t)k;
            if (*ov >= 0 && (st = check_fit(P, *ov, l, i)) == PQ_OK) hits[*ov]++;
        }
    for (int64_t k = 0; k < n && st == PQ_OK; k++)
        if (!hits[k])
            st = pq__fail(P->ctx, PQ_ERR_INVALID,
                          "compress: override %lld (match '%s') matches no linear that an earlier one does not "
                          "(names are like model.layers.0.mlp.down_proj)",
                          (long long)k, P->p.overrides[k].match);
    free(hits);
    return st;
}

pq_status pq__pipe_overrides(pq__pipe *P) {
    pq_ctx *ctx = P->ctx;
    const int64_t n = P->p.n_overrides, nl = P->m->cfg.n_layers * PQ_BLOCK_LINEARS;
    if (n <= 0) return PQ_OK;
    if (n > INT32_MAX) return pq__fail(ctx, PQ_ERR_INVALID, "compress: too many overrides (%lld)", (long long)n);
    if (P->p.gguf_type)
        return pq__fail(ctx, PQ_ERR_INVALID, "compress: per-linear overrides are not supported with GGUF output");
    P->ov_re = pq__calloc(ctx, (size_t)n, sizeof *P->ov_re, "override expressions");
    P->lin_ov = P->ov_re ? pq__calloc(ctx, (size_t)nl, sizeof *P->lin_ov, "override per linear") : NULL;
    P->ov_text = P->lin_ov ? pq__calloc(ctx, (size_t)n, sizeof *P->ov_text, "override recipes") : NULL;
    if (!P->ov_text) return ctx->status;
    for (int64_t k = 0; k < n; k++) {
        const int rc = regcomp(&P->ov_re[k], P->p.overrides[k].match, REG_EXTENDED | REG_NOSUB);
        if (rc) {
            char msg[128];
            regerror(rc, &P->ov_re[k], msg, sizeof msg);
            for (int64_t j = 0; j < k; j++)
                regfree(&P->ov_re[j]);
            free(P->ov_re);
            P->ov_re = NULL;
            return pq__fail(ctx, PQ_ERR_INVALID, "compress: override %lld: match '%s': %s", (long long)k,
                            P->p.overrides[k].match, msg);
        }
        pq__recipe_text(&P->p.overrides[k].layer, P->ov_text[k], sizeof P->ov_text[k]);
    }
    return assign(P);
}
