/* One block of the pipeline (pipeline.h): its linears compressed stage by stage on the
 * Hessians of their inputs (true-sequential: q/k/v, then o on the compressed attention, then
 * gate/up, then down), each snapped to what the output stores so that later stages and blocks
 * see exactly the stored weights; then the block's shard. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "joint/joint.h"
#include "kernels/ggml_types.h"
#include "model/packed.h"
#include "pipeline/pipeline.h"
#include "recipe/recipe.h"

void pq__block_work_free(pq__block_work *w) {
    if (!w) return;
    for (int i = 0; i < PQ_BLOCK_LINEARS; i++) {
        free(w->w[i]);
        free(w->mask[i]);
        pq_qcodes_free(&w->codes[i]);
    }
    memset(w, 0, sizeof *w);
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
static pq_status compress_linear(pq__pipe *P, int64_t l, int i, const pq__linear *lin, float *H, int last_user) {
    pq_ctx *ctx = P->ctx;
    pq__block_work *w = &P->w;
    char name[128];
    pq__linear_name(name, sizeof name, l, i);
    pq_status st = pq__progress(ctx, "compress", l, P->m->cfg.n_layers);
    if (st) return st;
    const int64_t rows = lin->rows, cols = lin->cols;
    if (P->p.layer.prune != PQ_PRUNE_NONE && !(w->mask[i] = pq__malloc(ctx, (size_t)(rows * cols), name)))
        return ctx->status;
    const int is_down = pq__block_linear[i].cols == PQ_DIM_FFN;
    const pq_layer_params *lp = is_down ? &P->down : &P->p.layer;
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
    st = last_user ? pq__layer_compress_scratch_h(ctx, lp, w->w[i], rows, cols, H, w->mask[i], &w->codes[i], &res)
                   : pq_layer_compress(ctx, lp, w->w[i], rows, cols, H, w->mask[i], &w->codes[i], &res);
    if (st) return pq__fail_prefix(ctx, st, "%s", name);
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
    return report_line(ctx, P->rep, name, rows, cols,
                       P->gguf   ? gguf_recipe
                       : is_down ? P->recipe_down
                                 : P->recipe,
                       lp, &res);
}

/* Stage s: the Hessians of its inputs from the block as compressed so far, then its linears;
 * each Hessian is freed after its last reader. */
static pq_status compress_stage(pq__pipe *P, int64_t l, pq__block *b, int s) {
    int want[PQ_BLOCK_INPUTS] = {0}, any = 0;
    for (int i = 0; i < PQ_BLOCK_LINEARS; i++)
        if (P->w.done[i] && in_stage(P, i, s)) want[pq__block_linear[i].input] = any = 1;
    if (!any) return PQ_OK;
    float *H[PQ_BLOCK_INPUTS] = {0};
    pq_status st = pq__collect_hessians(P->ctx, &P->r, l, b, want, H);
    for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++) {
        if (!P->w.done[i] || !in_stage(P, i, s)) continue;
        const int g = pq__block_linear[i].input;
        int last_user = 1;
        for (int j = i + 1; j < PQ_BLOCK_LINEARS; j++)
            if (P->w.done[j] && pq__block_linear[j].input == g && in_stage(P, j, s)) last_user = 0;
        st = compress_linear(P, l, i, pq__block_linear_get(b, i), H[g], last_user);
        if (last_user) {
            free(H[g]);
            H[g] = NULL;
        }
    }
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++)
        free(H[g]);
    return st;
}

pq_status pq__compress_block(pq__pipe *P, int64_t l, pq__block *b) {
    pq_ctx *ctx = P->ctx;
    pq_status st = pq__progress(ctx, "compress", l, P->m->cfg.n_layers);
    for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++) {
        pq__linear *lin = pq__block_linear_at(b, i);
        char name[128];
        pq__linear_name(name, sizeof name, l, i);
        /* the working copy comes from the stored tensor, so that a model loaded with deferred
         * weights is converted (or decoded) one block at a time */
        st = pq__model_linear_f32(ctx, P->m, name, lin->rows, lin->cols, &P->w.w[i]);
        lin->w = pq__qmat_f32(lin->rows, lin->cols, P->w.w[i]);
        P->w.done[i] = P->compressing && !(P->have_skip && regexec(&P->skip, name, 0, NULL, 0) == 0);
    }
    const int n_stages = P->p.true_sequential ? PQ_BLOCK_INPUTS : 1;
    for (int s = 0; s < n_stages && st == PQ_OK; s++)
        st = compress_stage(P, l, b, s);
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
        return pq__tl_add_f32(ctx, &P->tl, c, n, P->w.w[i], rows, cols, heads, P->p.dtype);
    }
    if (heads && !c->rope_halfsplit && (st = permute_work(ctx, &P->w, i, heads, c->head_dim, cols))) return st;
    if ((st = pq__packed_encode(ctx, base, P->w.w[i], rows, cols, P->w.mask[i], &P->w.codes[i], P->p.packed, pk)))
        return st;
    for (int k = 0; k < pk->n && st == PQ_OK; k++)
        st = pq__tl_add(ctx, &P->tl, pk->e[k].name, pk->e[k].dtype, pk->e[k].n_dims, pk->e[k].shape[0],
                        pk->e[k].shape[1], pk->e[k].data, pk->e[k].nbytes);
    return st;
}

pq_status pq__write_block_shard(pq__pipe *P, int64_t l, const pq__block *b) {
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
    pq__block_work_free(&P->w);
    return st;
}
