/* The output folder of the pipeline (shard.h): the list of tensors of one shard (borrowed
 * or owned data, or streamed from the source model piece by piece), the shard writer, and
 * config.json (the HF config with the recipe's quantization_config). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dtype.h"
#include "io/hf.h"
#include "model/packed.h"
#include "pipeline/shard.h"
#include "recipe/recipe.h"
#include "tokenizer/tokenizer.h"

static pq_status tl_own(pq_ctx *ctx, pq__tlist *t, void *p) {
    if (t->n_owned == t->cap_owned) {
        int64_t cap = t->cap_owned ? 2 * t->cap_owned : 32;
        void **o = realloc(t->owned, (size_t)cap * sizeof *o);
        if (!o) {
            free(p);
            return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the output's buffer list",
                            (size_t)cap * sizeof *o);
        }
        t->owned = o;
        t->cap_owned = cap;
    }
    t->owned[t->n_owned++] = p;
    return PQ_OK;
}

pq_status pq__tl_add(pq_ctx *ctx, pq__tlist *t, const char *name, pq_dtype dt, int n_dims, int64_t d0, int64_t d1,
                     const void *data, size_t nbytes) {
    if (t->n == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 32;
        pq__st_entry *e = realloc(t->e, (size_t)cap * sizeof *e);
        if (!e)
            return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the output's tensor list",
                            (size_t)cap * sizeof *e);
        t->e = e;
        t->cap = cap;
    }
    char *nm = pq__strdup(ctx, name, "a tensor name");
    if (!nm) return ctx->status;
    pq_status st = tl_own(ctx, t, nm);
    if (st) return st;
    pq__st_entry *e = &t->e[t->n++];
    memset(e, 0, sizeof *e);
    e->name = nm;
    e->dtype = dt;
    e->n_dims = n_dims;
    e->shape[0] = d0;
    e->shape[1] = d1;
    e->data = data;
    e->nbytes = nbytes;
    return PQ_OK;
}

/* Adds a float tensor (cols 0: vector) in dtype, q/k rows permuted to HF's layout when
 * rope_heads > 0 and the model is interleaved. */
pq_status pq__tl_add_f32(pq_ctx *ctx, pq__tlist *t, const pq__config *cfg, const char *name, const float *w,
                         int64_t rows, int64_t cols, int64_t rope_heads, pq_dtype dt) {
    if (!w) return PQ_OK;
    const int64_t c = cols ? cols : 1, numel = rows * c;
    const float *src = w;
    if (rope_heads && !cfg->rope_halfsplit) {
        float *perm = pq__malloc(ctx, (size_t)numel * sizeof(float), name);
        if (!perm || tl_own(ctx, t, perm)) return ctx->status;
        pq__permute_rope_rows(w, perm, rope_heads, cfg->head_dim, (size_t)c * sizeof(float), 1);
        src = perm;
    }
    const size_t nb = pq__dtype_nbytes(dt, numel);
    const void *data = src;
    if (dt != PQ_DTYPE_F32) {
        void *buf = pq__malloc(ctx, nb, name);
        if (!buf || tl_own(ctx, t, buf)) return ctx->status;
        pq__from_f32(dt, src, buf, numel);
        data = buf;
    }
    return pq__tl_add(ctx, t, name, dt, cols ? 2 : 1, rows, cols, data, nb);
}

/* A [rows, cols] weight of the source model written in dtype piece by piece from the stored
 * tensor (embeddings and lm_head: never whole in memory, even when the model defers weights). */
typedef struct {
    const pq_model *m;
    const char *tensor;
    int64_t cols;
    pq_dtype dt;
    float *tmp; /* [rows per piece, cols] */
} stream_src;

static pq_status stream_fill(pq_ctx *ctx, void *user, size_t off, void *dst, size_t n) {
    stream_src *s = user;
    const size_t rb = pq__dtype_nbytes(s->dt, s->cols);
    const int64_t r0 = (int64_t)(off / rb), nr = (int64_t)(n / rb);
    pq_status st = pq__progress(ctx, "compress", 0, s->m->cfg.n_layers);
    if (st == PQ_OK) st = pq__model_rows_f32(ctx, s->m, s->tensor, r0, nr, s->tmp);
    if (st == PQ_OK) pq__from_f32(s->dt, s->tmp, dst, nr * s->cols);
    return st;
}

pq_status pq__tl_add_stream(pq_ctx *ctx, pq__tlist *t, const pq_model *m, const char *name, int64_t rows,
                            int64_t cols, pq_dtype dt) {
    const int64_t per = 1024; /* rows per piece */
    stream_src *s = pq__calloc(ctx, 1, sizeof *s, name);
    if (!s || tl_own(ctx, t, s)) return ctx->status;
    s->tmp = pq__malloc(ctx, (size_t)(per * cols) * sizeof(float), name);
    if (!s->tmp || tl_own(ctx, t, s->tmp)) return ctx->status;
    s->m = m;
    s->tensor = name;
    s->cols = cols;
    s->dt = dt;
    const size_t nb = pq__dtype_nbytes(dt, rows * cols);
    pq_status st = pq__tl_add(ctx, t, name, dt, 2, rows, cols, NULL, nb);
    if (st) return st;
    pq__st_entry *e = &t->e[t->n - 1];
    e->fill = stream_fill;
    e->user = s;
    e->chunk = (size_t)per * pq__dtype_nbytes(dt, cols);
    return PQ_OK;
}

void pq__tl_clear(pq__tlist *t) {
    for (int64_t i = 0; i < t->n_owned; i++)
        free(t->owned[i]);
    t->n_owned = 0;
    t->n = 0;
}

void pq__tl_free(pq__tlist *t) {
    pq__tl_clear(t);
    free(t->e);
    free(t->owned);
}

/* Writes one shard and records its tensors in the index's weight map. */
pq_status pq__write_shard(pq_ctx *ctx, const char *dir, const pq__tlist *t, int64_t k, int64_t n_shards, cJSON *map,
                          double *total) {
    char fn[64];
    snprintf(fn, sizeof fn, "model-%05lld-of-%05lld.safetensors", (long long)k + 1, (long long)n_shards);
    char *p = pq__path_join(dir, fn);
    if (!p) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory joining %s and %s", dir, fn);
    pq_status st = pq__safetensors_write(ctx, p, t->e, t->n, NULL);
    free(p);
    for (int64_t i = 0; i < t->n && st == PQ_OK; i++) {
        if (!cJSON_AddStringToObject(map, t->e[i].name, fn))
            st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory adding %s to the weight map", t->e[i].name);
        *total += (double)t->e[i].nbytes;
    }
    return st;
}

pq_status pq__write_text(pq_ctx *ctx, const char *dir, const char *name, const char *text) {
    char *p = pq__path_join(dir, name);
    if (!p) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory joining %s and %s", dir, name);
    FILE *f = fopen(p, "w");
    int ok = f && fputs(text, f) >= 0;
    if (f && fclose(f)) ok = 0;
    pq_status st = ok ? PQ_OK : pq__fail(ctx, PQ_ERR_IO, "%s: cannot write", p);
    free(p);
    return st;
}

pq_status pq__write_config(pq_ctx *ctx, const pq_model *m, const char *dir, const pq_compress_params *p,
                           const int64_t *starts, const double weighted[2]) {
    pq__config cfg = m->cfg;
    cfg.rope_halfsplit = 1;
    if (m->tok) {
        cfg.bos_id = pq_tokenizer_bos(m->tok);
        cfg.eos_id = pq_tokenizer_eos(m->tok);
    }
    char *path = pq__path_join(dir, "config.json");
    if (!path) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory joining %s and config.json", dir);
    pq_status st = pq__hf_write_config(ctx, &cfg, path,
                                       p->dtype == PQ_DTYPE_F16    ? "float16"
                                       : p->dtype == PQ_DTYPE_BF16 ? "bfloat16"
                                                                   : "float32");
    char *text = NULL;
    size_t len = 0;
    if (!st) st = pq__read_text(ctx, path, (size_t)1 << 26, &text, &len);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    if (!st && !root) st = pq__fail(ctx, PQ_ERR_IO, "%s: cannot read back (or out of memory parsing it)", path);
    if (!st && !pq__recipe_quant_config(root, p, starts, weighted))
        st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory adding quantization_config to %s", path);
    if (!st) {
        char *out = cJSON_Print(root);
        st = out ? pq__write_text(ctx, dir, "config.json", out)
                 : pq__fail(ctx, PQ_ERR_NOMEM, "out of memory printing %s", path);
        free(out);
    }
    cJSON_Delete(root);
    free(text);
    free(path);
    return st;
}
