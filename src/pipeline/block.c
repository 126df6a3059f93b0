/* One block of the pipeline (pipeline.h): its linears compressed stage by stage on the
 * Hessians of their inputs (true-sequential: q/k/v, then o on the compressed attention, then
 * gate/up, then down), each snapped to what the output stores so that later stages and blocks
 * see exactly the stored weights; then the block's shard. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "joint/joint.h"
#include "kernels/dtype.h"
#include "kernels/ggml_types.h"
#include "model/packed.h"
#include "pipeline/pipeline.h"
#include "recipe/recipe.h"

void pq__block_work_next(pq__block_work *w) {
    float *spare[PQ_BLOCK_LINEARS];
    int64_t spare_n[PQ_BLOCK_LINEARS];
    for (int i = 0; i < PQ_BLOCK_LINEARS; i++) {
        free(w->spare[i]);
        w->spare[i] = NULL;
        spare[i] = w->w[i];
        spare_n[i] = w->w[i] ? w->n[i] : 0;
        w->w[i] = NULL;
    }
    pq__block_work_free(w);
    memcpy(w->spare, spare, sizeof spare);
    memcpy(w->spare_n, spare_n, sizeof spare_n);
}

void pq__block_work_free(pq__block_work *w) {
    if (!w) return;
    for (int i = 0; i < PQ_BLOCK_LINEARS; i++) {
        free(w->w[i]);
        free(w->spare[i]);
        free(w->mask[i]);
        pq_qcodes_free(&w->codes[i]);
        pq__packed_linear_free(&w->pk[i]);
    }
    memset(w, 0, sizeof *w);
}

pq_status pq__block_work_load(pq_ctx *ctx, const pq_model *m, pq__block_work *w, int i, const char *name,
                              int64_t rows, int64_t cols) {
    float *reuse = w->spare_n[i] == rows * cols ? w->spare[i] : NULL;
    if (!reuse) free(w->spare[i]);
    w->spare[i] = NULL;
    w->spare_n[i] = 0;
    w->n[i] = rows * cols;
    return pq__model_linear_f32_into(ctx, m, name, rows, cols, reuse, &w->w[i]);
}

/* Time of the I/O phase (the block's weights loaded, packed and its shard written). */
static void add_io(pq__pipe *P, double t0) {
    if (P->times) P->times->io_s += pq__now() - t0;
}

/* Linear i's packed output, encoded now that it is compressed, its byte-per-weight mask and
 * codes freed: they would otherwise stay until the block's shard (2:4 + 4-bit on the
 * Llama-3-8B shape: 290 MB at down_proj's sweep, the pipeline's peak). q and k, whose rows
 * the shard permutes to HF's rope layout while later stages still read them, wait for it. */
static pq_status encode_early(pq__pipe *P, int64_t l, int i, const pq__linear *lin) {
    const pq__config *c = &P->m->cfg;
    if (!P->p.packed || P->gguf || (pq__linear_rope_heads(c, i) && !c->rope_halfsplit)) return PQ_OK;
    const double t0 = pq__now();
    char base[128];
    pq__linear_name(base, sizeof base, l, i);
    pq__block_work *w = &P->w;
    const pq_status st = pq__packed_encode(P->ctx, base, w->w[i], lin->rows, lin->cols, w->mask[i], &w->codes[i],
                                           P->p.packed, &w->pk[i]);
    if (st == PQ_OK) {
        w->encoded[i] = 1;
        free(w->mask[i]);
        w->mask[i] = NULL;
        pq_qcodes_free(&w->codes[i]);
    }
    add_io(P, t0);
    return st;
}

/* One line of --report (JSON), or PQ_ERR_NOMEM with a message. */
static pq_status report_line(pq_ctx *ctx, FILE *f, const char *name, int64_t rows, int64_t cols, const char *recipe,
                             const pq_layer_params *lp, const pq_layer_result *res) {
    if (!f) return PQ_OK;
    cJSON *j = cJSON_CreateObject();
    int ok = j && cJSON_AddStringToObject(j, "name", name);
    ok = ok && cJSON_AddNumberToObject(j, "rows", (double)rows);
    ok = ok && cJSON_AddNumberToObject(j, "cols", (double)cols);
    ok = ok && cJSON_AddStringToObject(j, "recipe", recipe);
    /* the linear's own bits and pruning pattern (per-linear recipes differ): the report's heat map */
    if (!lp->gguf_type) {
        char pat[32];
        snprintf(pat, sizeof pat, "%d:%d", lp->prune_n, lp->prune_m);
        ok = ok && cJSON_AddNumberToObject(j, "bits", lp->quant != PQ_QUANT_NONE ? lp->bits : 16);
        ok = ok && cJSON_AddNumberToObject(j, "group", lp->quant != PQ_QUANT_NONE ? (double)lp->group_size : 0);
        ok = ok && (lp->prune != PQ_PRUNE_NONE && lp->prune_m ? cJSON_AddStringToObject(j, "pattern", pat) != NULL
                                                              : cJSON_AddNullToObject(j, "pattern") != NULL);
    }
    ok = ok && (isfinite(res->error) ? cJSON_AddNumberToObject(j, "error", res->error) != NULL
                                     : cJSON_AddNullToObject(j, "error") != NULL);
    ok = ok && cJSON_AddNumberToObject(j, "sparsity", res->sparsity);
    ok = ok && cJSON_AddNumberToObject(j, "damping", res->damp);
    ok = ok && cJSON_AddNumberToObject(j, "percdamp", res->percdamp);
    ok = ok && cJSON_AddNumberToObject(j, "seconds", res->seconds);
    ok = ok && cJSON_AddNumberToObject(j, "moved_off_zero", (double)res->moved_off_zero);
    if (lp->gguf_type) { /* GGUF output: the linear's ggml type; pruned weights a grid without 0 stores non-zero */
        ok = ok && cJSON_AddStringToObject(j, "gguf_type", pq_dtype_name(lp->gguf_type));
        ok = ok && cJSON_AddNumberToObject(j, "pruned_nonzero", (double)res->pruned_nonzero);
    }
    char *s = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!s) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory writing its report line", name);
    const int w = fprintf(f, "%s\n", s);
    free(s);
    return w < 0 ? pq__fail(ctx, PQ_ERR_IO, "%s: cannot write its report line", name) : PQ_OK;
}

/* Linear i belongs to stage s (one stage when not true-sequential). */
static int in_stage(const pq__pipe *P, int i, int s) {
    return !P->p.true_sequential || pq__block_linear[i].input == s;
}

/* Compresses linear i of block l on H (its input's Hessian); last_user: no later linear of
 * this stage reads H, so its memory may become the factorisation's. */
static pq_status compress_linear(pq__pipe *P, int64_t l, int i, const pq__linear *lin, float *H, int last_user,
                                 pq__obs_share *share) {
    pq_ctx *ctx = P->ctx;
    pq__block_work *w = &P->w;
    char name[128];
    pq__linear_name(name, sizeof name, l, i);
    pq_status st = pq__progress(ctx, "compress", l, P->m->cfg.n_layers);
    if (st) return st;
    const int64_t rows = lin->rows, cols = lin->cols;
    const char *recipe = NULL;
    const pq_layer_params *lp = pq__pipe_recipe(P, l, i, &recipe);
    if (!lp) return pq__fail(ctx, PQ_ERR_INTERNAL, "%s: compressed without a recipe", name);
    if (lp->prune != PQ_PRUNE_NONE && !(w->mask[i] = pq__malloc(ctx, (size_t)(rows * cols), name)))
        return ctx->status;
    pq_layer_params lg;
    if (P->gguf) { /* onto the preset's type for this tensor; its float fallbacks keep float weights */
        lg = P->p.layer;
        const pq_dtype t = pq__gguf_out_type(P, l, i);
        if (pq__ggml_info_of(t))
            lg.gguf_type = t;
        else
            lg.quant = PQ_QUANT_NONE;
        lp = &lg;
    }
    if (P->imat && (st = pq__imatrix_record(P, l, i, H, cols))) return st;
    pq_layer_result res;
    st = pq__layer_compress_h(ctx, lp, w->w[i], rows, cols, H, last_user, share, w->mask[i], &w->codes[i], &res);
    if (st) return pq__fail_prefix(ctx, st, "%s", name);
    if (P->times) {
        P->times->factor_s += res.factor_seconds;
        P->times->sweep_s += res.seconds - res.factor_seconds + res.error_seconds;
        P->times->factor_flop += res.factor_flop;
        P->times->sweep_flop += res.sweep_flop;
    }
    /* the next layers must see exactly the weights the output will hold */
    if (!w->codes[i].gguf_blocks) pq__packed_snap(w->w[i], rows, cols, w->mask[i], &w->codes[i]);
    pq__log(ctx, PQ_LOG_INFO, "%s: error %.6g, sparsity %.4f, damping %.3g (%.3g of mean diag)%s", name, res.error,
            res.sparsity, res.damp, res.percdamp, res.chol_retries ? ", raised" : "");
    if (res.moved_off_zero) /* joint mode a: GPTQ's feedback refilled pruned weights */
        pq__log(ctx, PQ_LOG_INFO, "%s: %lld pruned weights moved off zero by GPTQ, %s", name,
                (long long)res.moved_off_zero,
                lp->keep_mask ? "re-masked (the pattern holds)" : "kept (--no-keep-mask)");
    P->moved_total += res.moved_off_zero;
    if (res.pruned_nonzero) /* a GGUF type with a min has no exact 0: the nearest code stands in */
        pq__log(ctx, PQ_LOG_INFO, "%s: %lld pruned weights stored non-zero (%s has no exact zero)", name,
                (long long)res.pruned_nonzero, pq_dtype_name(lp->gguf_type));
    char gguf_recipe[160];
    if (P->gguf) pq__recipe_text(lp, gguf_recipe, sizeof gguf_recipe); /* this linear's type */
    st = report_line(ctx, P->rep, name, rows, cols, P->gguf ? gguf_recipe : recipe, lp, &res);
    return st == PQ_OK ? encode_early(P, l, i, lin) : st;
}

/* Input group g feeds a linear to compress in stage s. */
static int group_wanted(const pq__pipe *P, int g, int s) {
    for (int i = 0; i < PQ_BLOCK_LINEARS; i++)
        if (P->w.done[i] && in_stage(P, i, s) && pq__block_linear[i].input == g) return 1;
    return 0;
}

/* The linears of stage s on the Hessians H of their inputs, the linears of one input on one
 * factorisation of its H; each Hessian and factor is freed after its last reader (which may
 * factor H in place), the others at the end. */
static pq_status compress_linears(pq__pipe *P, int64_t l, pq__block *b, int s, float *H[PQ_BLOCK_INPUTS]) {
    pq__obs_share share[PQ_BLOCK_INPUTS];
    memset(share, 0, sizeof share);
    pq_status st = PQ_OK;
    for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++) {
        if (!P->w.done[i] || !in_stage(P, i, s)) continue;
        const int g = pq__block_linear[i].input;
        int last_user = 1;
        for (int j = i + 1; j < PQ_BLOCK_LINEARS; j++)
            if (P->w.done[j] && pq__block_linear[j].input == g && in_stage(P, j, s)) last_user = 0;
        st = compress_linear(P, l, i, pq__block_linear_get(b, i), H[g], last_user, &share[g]);
        if (last_user) {
            free(H[g]);
            H[g] = NULL;
            pq__obs_share_free(&share[g]);
        }
    }
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++) {
        free(H[g]);
        H[g] = NULL;
        pq__obs_share_free(&share[g]);
    }
    return st;
}

/* Every Hessian from the block as loaded, every linear on them, then (advance) the block run
 * compressed for the next block's input. */
static pq_status compress_all(pq__pipe *P, int64_t l, pq__block *b, int advance) {
    int want[PQ_BLOCK_INPUTS], any = 0;
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++)
        any |= want[g] = group_wanted(P, g, 0);
    float *H[PQ_BLOCK_INPUTS] = {0};
    pq_status st = any ? pq__collect_hessians(P->ctx, &P->r, l, b, want, H) : PQ_OK;
    if (st == PQ_OK) st = compress_linears(P, l, b, 0, H);
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++)
        free(H[g]);
    if (st == PQ_OK && advance) st = pq__runner_advance(P->ctx, &P->r, l, b);
    return st;
}

/* True-sequential group g: its Hessian on the block as compressed so far, its linears, then
 * its output into the runner's X when a later group or the next block reads it. */
static pq_status compress_group(pq__pipe *P, int64_t l, pq__block *b, int g, int advance) {
    const int want = group_wanted(P, g, g);
    int later = advance;
    for (int h = g + 1; h < PQ_BLOCK_INPUTS; h++)
        later |= group_wanted(P, h, h);
    const int out = (g == 1 || g == 3) && later;
    if (!want && !out) return PQ_OK;
    float *H[PQ_BLOCK_INPUTS] = {0};
    pq_status st = pq__runner_stage(P->ctx, &P->r, l, b, g, want ? &H[g] : NULL, out);
    if (st == PQ_OK && want) st = compress_linears(P, l, b, g, H);
    if (st == PQ_OK && want && out) st = pq__runner_stage_out(P->ctx, &P->r, l, b, g);
    pq__runner_release(&P->r);
    free(H[g]);
    return st;
}

pq_status pq__compress_block(pq__pipe *P, int64_t l, pq__block *b, int advance) {
    pq_ctx *ctx = P->ctx;
    pq_status st = pq__progress(ctx, "compress", l, P->m->cfg.n_layers);
    const double t0 = pq__now();
    for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++) {
        pq__linear *lin = pq__block_linear_at(b, i);
        char name[128];
        pq__linear_name(name, sizeof name, l, i);
        /* the working copy comes from the stored tensor, so that a model loaded with deferred
         * weights is converted (or decoded) one block at a time */
        st = pq__block_work_load(ctx, P->m, &P->w, i, name, lin->rows, lin->cols);
        lin->w = pq__qmat_f32(lin->rows, lin->cols, P->w.w[i]);
        P->w.done[i] = pq__pipe_recipe(P, l, i, NULL) && !(P->have_skip && regexec(&P->skip, name, 0, NULL, 0) == 0);
    }
    add_io(P, t0);
    if (!P->p.true_sequential) return st == PQ_OK ? compress_all(P, l, b, advance) : st;
    for (int g = 0; g < PQ_BLOCK_INPUTS && st == PQ_OK; g++)
        st = compress_group(P, l, b, g, advance);
    return st;
}

/* Permutes the rows of a compressed q/k layer (weights, mask, codes, grids) to HF's layout. */
static pq_status permute_work(pq_ctx *ctx, pq__block_work *w, int i, int64_t heads, int64_t hd, int64_t cols) {
    const int64_t rows = heads * hd;
    struct {
        void **p;
        size_t row_bytes;
    } arr[5] = {{(void **)&w->w[i], (size_t)cols * sizeof(float)},
                {(void **)&w->mask[i], (size_t)cols},
                {(void **)&w->codes[i].codes, (size_t)cols},
                {(void **)&w->codes[i].scales, (size_t)w->codes[i].n_groups * sizeof(float)},
                {(void **)&w->codes[i].zeros, (size_t)w->codes[i].n_groups}};
    for (int k = 0; k < 5; k++) {
        if (!*arr[k].p || !arr[k].row_bytes) continue;
        void *dst = pq__malloc(ctx, (size_t)rows * arr[k].row_bytes, "permutation");
        if (!dst) return ctx->status;
        pq__permute_rope_rows(*arr[k].p, dst, heads, hd, arr[k].row_bytes, 1);
        free(*arr[k].p);
        *arr[k].p = dst;
    }
    return PQ_OK;
}

/* Linear i's tensors into the shard list: its bias, then its weight dense or packed. */
static pq_status add_linear(pq__pipe *P, int64_t l, int i, const pq__linear *lin, pq__packed_linear *pk) {
    pq_ctx *ctx = P->ctx;
    const pq__config *c = &P->m->cfg;
    const int64_t rows = lin->rows, cols = lin->cols, heads = pq__linear_rope_heads(c, i);
    char base[128], n[160];
    pq__linear_name(base, sizeof base, l, i);
    pq_status st = PQ_OK;
    if (lin->b) {
        snprintf(n, sizeof n, "%s.bias", base);
        if ((st = pq__tl_add_f32(ctx, &P->tl, c, n, lin->b, rows, 0, heads, P->p.dtype))) return st;
    }
    if (!(P->p.packed && P->w.done[i])) {
        snprintf(n, sizeof n, "%s.weight", base);
        P->linear_bytes += (int64_t)pq__dtype_nbytes(P->p.dtype, rows * cols);
        return pq__tl_add_f32(ctx, &P->tl, c, n, P->w.w[i], rows, cols, heads, P->p.dtype);
    }
    if (P->w.encoded[i]) { /* encoded when it was compressed (freed with the block's work) */
        pk = &P->w.pk[i];
    } else {
        if (heads && !c->rope_halfsplit && (st = permute_work(ctx, &P->w, i, heads, c->head_dim, cols))) return st;
        if ((st = pq__packed_encode(ctx, base, P->w.w[i], rows, cols, P->w.mask[i], &P->w.codes[i], P->p.packed, pk)))
            return st;
    }
    for (int k = 0; k < pk->n && st == PQ_OK; k++) {
        P->linear_bytes += (int64_t)pk->e[k].nbytes;
        st = pq__tl_add(ctx, &P->tl, pk->e[k].name, pk->e[k].dtype, pk->e[k].n_dims, pk->e[k].shape[0],
                        pk->e[k].shape[1], pk->e[k].data, pk->e[k].nbytes);
    }
    return st;
}

static pq_status write_block_shard(pq__pipe *P, int64_t l, const pq__block *b) {
    if (P->gguf) return pq__gguf_out_block(P, l, b);
    pq_ctx *ctx = P->ctx;
    const pq__config *c = &P->m->cfg;
    char n[160];
    snprintf(n, sizeof n, "model.layers.%lld.input_layernorm.weight", (long long)l);
    pq_status st = pq__tl_add_f32(ctx, &P->tl, c, n, b->attn_norm, c->dim, 0, 0, P->p.dtype);
    snprintf(n, sizeof n, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
    if (st == PQ_OK) st = pq__tl_add_f32(ctx, &P->tl, c, n, b->ffn_norm, c->dim, 0, 0, P->p.dtype);
    pq__packed_linear pk[PQ_BLOCK_LINEARS];
    memset(pk, 0, sizeof pk);
    for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++)
        st = add_linear(P, l, i, pq__block_linear_get(b, i), &pk[i]);
    if (st == PQ_OK) st = pq__progress(ctx, "compress", l, c->n_layers);
    if (st == PQ_OK) st = pq__write_shard(ctx, P->tmp, &P->tl, l + 1, P->n_shards, P->map, &P->total);
    for (int i = 0; i < PQ_BLOCK_LINEARS; i++)
        pq__packed_linear_free(&pk[i]);
    pq__tl_clear(&P->tl);
    pq__block_work_next(&P->w);
    return st;
}

pq_status pq__write_block_shard(pq__pipe *P, int64_t l, const pq__block *b) {
    const double t0 = pq__now();
    const pq_status st = write_block_shard(P, l, b);
    add_io(P, t0);
    return st;
}
