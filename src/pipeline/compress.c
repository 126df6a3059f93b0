/* The layer-wise sequential pipeline (docs/ALGORITHMS.md §1): calibration windows flow
 * through the model one block at a time; each block's linears are compressed on the
 * Hessians of their inputs, and the block's output with the compressed weights becomes the
 * next block's input, so that it sees the errors of the ones before it (a second pass of the
 * block, or, true-sequential, the stages' own results: block.c, hessians.c). Output goes to a temp folder, one
 * safetensors shard per block (memory holds one block's compressed weights at a time), and
 * the folder is renamed into place at the end. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib/calib.h"
#include "pipeline/pipeline.h"
#include "recipe/recipe.h"
#include "tokenizer/tokenizer.h"

pq_compress_params pq_compress_params_default(void) {
    pq_compress_params p;
    memset(&p, 0, sizeof p);
    p.layer = pq_layer_params_default();
    p.nsamples = 32;
    p.packed = 2;
    p.dtype = PQ_DTYPE_F32;
    return p;
}

int64_t pq_compress_default_seqlen(const pq_model *m) {
    const int64_t max = m->cfg.max_seq_len;
    return max < 512 ? max : 512;
}

/* Resolves the defaults and checks the request against the model before any work. */
static pq_status check_params(pq_ctx *ctx, const pq_model *m, int64_t n_tokens, pq_compress_params *p,
                              pq_layer_params *down) {
    const pq__config *c = &m->cfg;
    if (p->seqlen <= 0) p->seqlen = pq_compress_default_seqlen(m);
    if (p->chunk <= 0) p->chunk = 4;
    if (p->chunk > p->nsamples) p->chunk = p->nsamples;
    if (p->dtype != PQ_DTYPE_F32 && p->dtype != PQ_DTYPE_F16 && p->dtype != PQ_DTYPE_BF16)
        return pq__fail(ctx, PQ_ERR_INVALID, "compress: output dtype must be f32, f16 or bf16");
    if (p->seqlen > c->max_seq_len)
        return pq__fail(ctx, PQ_ERR_INVALID, "compress: seqlen %lld exceeds the model's context %lld",
                        (long long)p->seqlen, (long long)c->max_seq_len);
    if (n_tokens < p->seqlen)
        return pq__fail(ctx, PQ_ERR_INVALID,
                        "compress: calibration %s has %lld tokens, fewer than one window of %lld (a longer text, "
                        "or a smaller --seqlen)",
                        p->calib_name ? p->calib_name : "text", (long long)n_tokens, (long long)p->seqlen);
    /* down_proj's input (hidden_dim) is often not a multiple of the group size (stories260K:
     * 172) when dim is: that layer falls back to one grid per row instead of failing. */
    const int64_t F = c->hidden_dim, in_cols[3] = {c->dim, c->n_heads * c->head_dim, F};
    *down = p->layer;
    for (int i = 0; i < 3; i++) {
        pq_status st = pq_layer_params_validate(ctx, &p->layer, in_cols[i]);
        if (st && i == 2 && p->layer.quant != PQ_QUANT_NONE && p->layer.group_size > 0 && F % p->layer.group_size) {
            down->group_size = -1;
            down->static_groups = 0;
            st = pq_layer_params_validate(ctx, down, F);
            if (!st)
                pq__log(ctx, PQ_LOG_WARN,
                        "group size %lld does not divide hidden_dim %lld: down_proj uses one grid "
                        "per row",
                        (long long)p->layer.group_size, (long long)F);
        }
        if (st) return st;
    }
    return PQ_OK;
}

/* --skip: a pattern that matches no linear is a typo, not a recipe: fail before any work. */
static pq_status compile_skip(pq__pipe *P) {
    const char *skip = P->p.skip;
    if (!skip || !skip[0]) return PQ_OK;
    int rc = regcomp(&P->skip, skip, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char msg[128];
        regerror(rc, &P->skip, msg, sizeof msg);
        return pq__fail(P->ctx, PQ_ERR_INVALID, "compress: --skip '%s': %s", skip, msg);
    }
    P->have_skip = 1;
    int hits = 0;
    for (int64_t l = 0; l < P->m->cfg.n_layers && !hits; l++)
        for (int j = 0; j < PQ_BLOCK_LINEARS && !hits; j++) {
            char nm[128];
            pq__linear_name(nm, sizeof nm, l, j);
            hits = regexec(&P->skip, nm, 0, NULL, 0) == 0;
        }
    if (!hits)
        return pq__fail(P->ctx, PQ_ERR_INVALID,
                        "compress: --skip '%s' matches no linear layer (names are like model.layers.0.mlp.down_proj)",
                        skip);
    return PQ_OK;
}

/* Shard 1: embeddings, final norm, lm_head. */
static pq_status write_head_shard(pq__pipe *P) {
    if (P->gguf) return pq__gguf_out_head(P);
    pq_ctx *ctx = P->ctx;
    const pq__config *c = &P->m->cfg;
    const pq_dtype dt = P->p.dtype;
    pq_status st;
    if ((st = pq__tl_add_stream(ctx, &P->tl, P->m, "model.embed_tokens.weight", c->vocab_size, c->dim, dt)) ||
        (st = pq__tl_add_f32(ctx, &P->tl, c, "model.norm.weight", P->m->out_norm, c->dim, 0, 0, dt)) ||
        (!c->tied && (st = pq__tl_add_stream(ctx, &P->tl, P->m, "lm_head.weight", c->vocab_size, c->dim, dt))) ||
        (st = pq__write_shard(ctx, P->tmp, &P->tl, 0, P->n_shards, P->map, &P->total)))
        return st;
    pq__tl_clear(&P->tl);
    return PQ_OK;
}

/* Every block in turn: compress its linears, run it compressed (the next block's input),
 * write its shard. */
static pq_status run_blocks(pq__pipe *P) {
    const pq__config *c = &P->m->cfg;
    for (int64_t l = 0; l < c->n_layers; l++) {
        pq__block b = P->m->blocks[l];
        const double t0 = pq__now();
        P->times = P->p.phases ? &P->p.phases[l] : NULL;
        P->r.times = P->times;
        pq_status st = pq__compress_block(P, l, &b, l + 1 < c->n_layers);
        if (st == PQ_OK) st = pq__write_block_shard(P, l, &b);
        if (P->times) P->times->total_s = pq__now() - t0;
        P->times = P->p.phases ? &P->p.phases[c->n_layers] : NULL;
        P->r.times = NULL;
        if (st) return st;
    }
    if (P->moved_total)
        pq__log(P->ctx, PQ_LOG_INFO, "joint mode a: GPTQ moved %lld pruned weights off zero in all; %s",
                (long long)P->moved_total,
                P->p.layer.keep_mask ? "re-masked, so the stored pattern and sparsity are the requested ones"
                                     : "kept (--no-keep-mask): the stored sparsity is below the request");
    return pq__progress(P->ctx, "compress", c->n_layers, c->n_layers);
}

/* The sparsity of all linear weights and the bits of the kept ones, each linear with the
 * recipe it took (skipped ones dense: 0 and 16), so that 1 - (1 - s) q / 16 is the
 * parameter-weighted TCr of a recipe with overrides. */
static void weighted_metrics(const pq__pipe *P, double out[2]) {
    const pq__config *c = &P->m->cfg;
    double n_all = 0, pruned = 0, kept = 0, kept_bits = 0;
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int i = 0; i < PQ_BLOCK_LINEARS; i++) {
            char name[128];
            pq__linear_name(name, sizeof name, l, i);
            const pq_layer_params *lp = pq__pipe_recipe(P, l, i, NULL);
            if (P->have_skip && regexec(&P->skip, name, 0, NULL, 0) == 0) lp = NULL;
            const double n = (double)pq__linear_dim(c, pq__block_linear[i].rows) *
                             (double)pq__linear_dim(c, pq__block_linear[i].cols);
            const double s = lp ? pq__recipe_sparsity(lp) : 0.0;
            n_all += n;
            pruned += n * s;
            kept += n * (1 - s);
            kept_bits += n * (1 - s) * (lp ? pq__recipe_bits(lp) : 16);
        }
    out[0] = n_all > 0 ? pruned / n_all : 0;
    out[1] = kept > 0 ? kept_bits / kept : 16;
}

/* The index, config.json and the tokenizer into the temp folder. */
static pq_status write_metadata(pq__pipe *P, cJSON *index, const int64_t *starts, const char *out_dir) {
    if (P->gguf) return pq__gguf_out_finish(P, out_dir);
    pq_ctx *ctx = P->ctx;
    char *itext = cJSON_AddNumberToObject(cJSON_GetObjectItem(index, "metadata"), "total_size", P->total)
                      ? cJSON_Print(index)
                      : NULL;
    pq_status st = itext ? pq__write_text(ctx, P->tmp, "model.safetensors.index.json", itext)
                         : pq__fail(ctx, PQ_ERR_NOMEM, "out of memory printing the shard index of %s", out_dir);
    free(itext);
    double weighted[2];
    weighted_metrics(P, weighted);
    if (st || (st = pq__write_config(ctx, P->m, P->tmp, &P->p, starts, weighted))) return st;
    if (P->m->tok) return pq__tokenizer_save_dir(ctx, P->m->tok, P->tmp);
    pq__log(ctx, PQ_LOG_WARN, "%s: the model has no tokenizer; none written", out_dir);
    return PQ_OK;
}

/* Calibration windows, the report, the runner and the temp folder, then the blocks; the
 * report and the folder go into place at the end. */
static pq_status run(pq__pipe *P, const int32_t *tokens, int64_t n_tokens, const char *out_dir) {
    pq_ctx *ctx = P->ctx;
    const pq_compress_params *p = &P->p;
    int32_t *win = NULL;
    int64_t *starts = NULL;
    pq__atomic rep_a; /* the report is written atomically too: nothing of it is left on failure */
    int imat_written = 0;
    memset(&rep_a, 0, sizeof rep_a);
    cJSON *index = cJSON_CreateObject();
    pq_status st = index ? PQ_OK : pq__fail(ctx, PQ_ERR_NOMEM, "out of memory creating the shard index");
    if (st) goto done;
    if (!cJSON_AddObjectToObject(index, "metadata") || !(P->map = cJSON_AddObjectToObject(index, "weight_map"))) {
        st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory creating the shard index");
        goto done;
    }
    if ((st = pq__calib_windows(ctx, tokens, n_tokens, p->nsamples, p->seqlen, p->seed, &win, &starts))) goto done;
    pq__log(ctx, PQ_LOG_INFO, "calibration: %lld windows of %lld tokens (of %lld), seed %llu, first start %lld",
            (long long)p->nsamples, (long long)p->seqlen, (long long)n_tokens, (unsigned long long)p->seed,
            (long long)starts[0]);
    if (p->report) {
        if ((st = pq__atomic_open(ctx, p->report, &rep_a))) goto done;
        P->rep = rep_a.f;
    }
    if ((st = pq__runner_init(ctx, &P->r, P->m, win, p->nsamples, p->seqlen, p->chunk))) goto done;
    if (!P->gguf && (st = pq__tmpdir_create(ctx, out_dir, &P->tmp))) goto done;
    P->n_shards = P->m->cfg.n_layers + 1;
    if ((st = write_head_shard(P)) || (st = run_blocks(P)) || (P->imat && (st = pq__imatrix_save(P)))) goto done;
    /* a recipe made under a byte budget: the real bytes, now known, must keep it */
    /* (the budget counts packed bytes: a dense output of the same recipe is not held to it) */
    if (p->budget_bytes > 0 && !P->gguf && p->packed && P->linear_bytes > p->budget_bytes) {
        st = pq__fail(
            ctx, PQ_ERR_INVALID,
            "compress: the linear weights take %lld bytes, over the recipe's budget of %lld; nothing written",
            (long long)P->linear_bytes, (long long)p->budget_bytes);
        goto done;
    }
    if (p->budget_bytes > 0 && !P->gguf && p->packed)
        pq__log(ctx, PQ_LOG_INFO, "the linear weights take %lld bytes of the recipe's budget of %lld (%.2f%%)",
                (long long)P->linear_bytes, (long long)p->budget_bytes,
                100.0 * (double)P->linear_bytes / (double)p->budget_bytes);
    imat_written = P->imat != NULL; /* taken away again if the model does not go into place */
    if ((st = write_metadata(P, index, starts, out_dir))) goto done;
    /* the report goes first (its commit may be cancelled too); a model that then fails to
     * go into place takes it away again */
    if (P->rep) {
        P->rep = NULL;
        if ((st = pq__atomic_commit(ctx, &rep_a))) goto done;
    }
    if (!P->gguf && (st = pq__tmpdir_commit(ctx, P->tmp, out_dir)) && p->report) unlink(p->report);
done:
    if (st && P->tmp) pq__rmtree(P->tmp);
    if (st && imat_written) unlink(p->imatrix_out);
    if (P->rep) pq__atomic_abort(&rep_a);
    free(win);
    free(starts);
    cJSON_Delete(index);
    return st;
}

/* Outside the blocks the run reads the calibration embeddings and writes embeddings, lm_head
 * and metadata: all of that counts as I/O. */
static void rest_phase(pq_compress_phases *ph, int64_t n_layers, double total) {
    for (int64_t l = 0; l < n_layers; l++)
        total -= ph[l].total_s;
    ph[n_layers].total_s = ph[n_layers].io_s = total;
}

pq_status pq_compress_model(pq_ctx *ctx, const pq_model *m, const int32_t *tokens, int64_t n_tokens,
                            const pq_compress_params *pin, const char *out_dir) {
    pq__pipe P;
    memset(&P, 0, sizeof P);
    P.ctx = ctx;
    P.m = m;
    P.p = *pin;
    pq_status st = check_params(ctx, m, n_tokens, &P.p, &P.down);
    if (st) return st;
    /* bad output paths fail before the calibration, naming the path given */
    st = pq__check_output_path(ctx, out_dir, !P.p.gguf_type);
    if (st == PQ_OK && P.p.report) st = pq__check_output_path(ctx, P.p.report, 0);
    if (st == PQ_OK) st = pq__progress(ctx, "compress", 0, m->cfg.n_layers);
    if (st) return st;
    if (P.p.gguf_type && P.p.layer.quant == PQ_QUANT_NONE)
        st = pq__fail(ctx, PQ_ERR_INVALID, "compress: --gguf-type needs a quantizer (--quant gptq or rtn)");
    if (st == PQ_OK && P.p.gguf_type) st = pq__gguf_out_begin(&P, out_dir);
    if (st == PQ_OK && P.p.imatrix_out && (st = pq__check_output_path(ctx, P.p.imatrix_out, 0)) == PQ_OK &&
        !(P.imat = pq__calloc(ctx, (size_t)(m->cfg.n_layers * PQ_BLOCK_LINEARS), sizeof *P.imat, "imatrix")))
        st = PQ_ERR_NOMEM;
    if (st == PQ_OK && (st = compile_skip(&P)) == PQ_OK && (st = pq__pipe_overrides(&P)) == PQ_OK) {
        pq__recipe_text(&P.p.layer, P.recipe, sizeof P.recipe);
        pq__recipe_text(&P.down, P.recipe_down, sizeof P.recipe_down);
        const double t0 = pq__now();
        if (P.p.phases) memset(P.p.phases, 0, (size_t)(m->cfg.n_layers + 1) * sizeof *P.p.phases);
        st = run(&P, tokens, n_tokens, out_dir);
        if (P.p.phases) rest_phase(P.p.phases, m->cfg.n_layers, pq__now() - t0);
    }
    free(P.tmp);
    pq__block_work_free(&P.w);
    pq__tl_free(&P.tl);
    pq__runner_free(&P.r);
    if (P.have_skip) regfree(&P.skip);
    pq__pipe_overrides_free(&P);
    pq__gguf_out_free(&P);
    for (int64_t j = 0; P.imat && j < m->cfg.n_layers * PQ_BLOCK_LINEARS; j++)
        free(P.imat[j]);
    free(P.imat);
    return st;
}
