/* The layer-wise sequential pipeline (docs/ALGORITHMS.md §1): calibration windows flow
 * through the model one block at a time; each block's linears are compressed on the
 * Hessians of their inputs, then the block is rerun with the compressed weights so that the
 * next block sees the errors of the ones before it. Output goes to a temp folder, one
 * safetensors shard per block (memory holds one block's compressed weights at a time), and
 * the folder is renamed into place at the end. */
#include "joint/pipeline.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib/calib.h"
#include "io/hf.h"
#include "io/safetensors.h"
#include "model/packed.h"
#include "tokenizer/tokenizer.h"

/* input group of each linear (the capture callback's `which`) */
static const int lin_group[7] = {0, 0, 0, 1, 2, 2, 3};

void pq__block_linears(pq__block *b, pq__linear *out[7]) {
    out[0] = &b->q;
    out[1] = &b->k;
    out[2] = &b->v;
    out[3] = &b->o;
    out[4] = &b->gate;
    out[5] = &b->up;
    out[6] = &b->down;
}

pq_compress_params pq_compress_params_default(void) {
    pq_compress_params p;
    memset(&p, 0, sizeof p);
    p.layer = pq_layer_params_default();
    p.nsamples = 32;
    p.packed = 1;
    p.dtype = PQ_DTYPE_F32;
    return p;
}

/* ---------------------------------------------------------------- block runs */

typedef struct {
    pq__hacc acc[4];
    int want[4];
} capture_state;

static void capture(void *user, int64_t layer, int which, const float *x, int64_t n, int64_t cols) {
    capture_state *s = user;
    if (which >= 0 && which < 4 && s->want[which]) pq__hacc_add(&s->acc[which], x, n);
}

typedef struct {
    const pq_model *m;
    float *X;       /* [ns * L, dim] hidden states entering the current block */
    float *scratch; /* [chunk * L, dim] */
    pq__kv kv;      /* one layer, chunk sequences */
    int64_t ns, L, chunk;
} runner;

/* Runs block l over all windows; with update the outputs replace X, else X is kept (only the
 * captures matter). */
static pq_status run_block(pq_ctx *ctx, runner *r, int64_t l, const pq__block *b, capture_state *cs, int update) {
    const int64_t D = r->m->cfg.dim;
    for (int64_t s0 = 0; s0 < r->ns; s0 += r->chunk) {
        const int64_t n = r->ns - s0 < r->chunk ? r->ns - s0 : r->chunk;
        /* a cancel point per chunk: a Ctrl-C is honoured within one chunk's forward pass */
        pq_status pst = pq__progress(ctx, "compress", l, r->m->cfg.n_layers);
        if (pst) return pst;
        float *x = update ? r->X + s0 * r->L * D : r->scratch;
        if (!update) memcpy(x, r->X + s0 * r->L * D, (size_t)(n * r->L * D) * sizeof(float));
        pq_status st = pq__block_forward(ctx, r->m, l, b, &r->kv, x, n, r->L, 0, cs ? capture : NULL, cs);
        if (st) return st;
    }
    return PQ_OK;
}

/* ---------------------------------------------------------------- report and recipe text */

static void recipe_text(const pq_layer_params *p, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    if (p->prune != PQ_PRUNE_NONE) {
        if (p->prune_m)
            k += (size_t)snprintf(buf + k, n - k, "%s %d:%d", pq_prune_method_name(p->prune), p->prune_n, p->prune_m);
        else
            k += (size_t)snprintf(buf + k, n - k, "%s %.4g", pq_prune_method_name(p->prune), p->sparsity);
    }
    if (p->quant != PQ_QUANT_NONE && k < n)
        k += (size_t)snprintf(buf + k, n - k, "%s%s %db g%lld %s%s", k ? " + " : "", pq_quant_method_name(p->quant),
                              p->bits, (long long)p->group_size, p->sym ? "sym" : "asym",
                              p->act_order ? " act-order" : "");
    if (p->prune != PQ_PRUNE_NONE && p->quant != PQ_QUANT_NONE && k < n)
        snprintf(buf + k, n - k, " joint %s", pq_joint_mode_name(p->joint));
    if (!buf[0]) snprintf(buf, n, "none");
}

static void report_line(FILE *f, const char *name, int64_t rows, int64_t cols, const char *recipe,
                        const pq_layer_result *res) {
    if (!f) return;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", name);
    cJSON_AddNumberToObject(j, "rows", (double)rows);
    cJSON_AddNumberToObject(j, "cols", (double)cols);
    cJSON_AddStringToObject(j, "recipe", recipe);
    if (isfinite(res->error))
        cJSON_AddNumberToObject(j, "error", res->error);
    else
        cJSON_AddNullToObject(j, "error");
    cJSON_AddNumberToObject(j, "sparsity", res->sparsity);
    cJSON_AddNumberToObject(j, "damping", res->damp);
    cJSON_AddNumberToObject(j, "percdamp", res->percdamp);
    cJSON_AddNumberToObject(j, "seconds", res->seconds);
    cJSON_AddNumberToObject(j, "moved_off_zero", (double)res->moved_off_zero);
    char *s = cJSON_PrintUnformatted(j);
    if (s) fprintf(f, "%s\n", s);
    free(s);
    cJSON_Delete(j);
}

/* ---------------------------------------------------------------- output */

typedef struct {
    pq__st_entry *e;
    int64_t n, cap;
    void **owned;
    int64_t n_owned, cap_owned;
} tlist;

static pq_status tl_own(pq_ctx *ctx, tlist *t, void *p) {
    if (t->n_owned == t->cap_owned) {
        int64_t cap = t->cap_owned ? 2 * t->cap_owned : 32;
        void **o = realloc(t->owned, (size_t)cap * sizeof *o);
        if (!o) {
            free(p);
            return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        }
        t->owned = o;
        t->cap_owned = cap;
    }
    t->owned[t->n_owned++] = p;
    return PQ_OK;
}

static pq_status tl_add(pq_ctx *ctx, tlist *t, const char *name, pq_dtype dt, int n_dims, int64_t d0, int64_t d1,
                        const void *data, size_t nbytes) {
    if (t->n == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 32;
        pq__st_entry *e = realloc(t->e, (size_t)cap * sizeof *e);
        if (!e) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        t->e = e;
        t->cap = cap;
    }
    char *nm = strdup(name);
    if (!nm) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
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
static pq_status tl_add_f32(pq_ctx *ctx, tlist *t, const pq__config *cfg, const char *name, const float *w,
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
    return tl_add(ctx, t, name, dt, cols ? 2 : 1, rows, cols, data, nb);
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

static pq_status tl_add_stream(pq_ctx *ctx, tlist *t, const pq_model *m, const char *name, int64_t rows, int64_t cols,
                               pq_dtype dt) {
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
    pq_status st = tl_add(ctx, t, name, dt, 2, rows, cols, NULL, nb);
    if (st) return st;
    pq__st_entry *e = &t->e[t->n - 1];
    e->fill = stream_fill;
    e->user = s;
    e->chunk = (size_t)per * pq__dtype_nbytes(dt, cols);
    return PQ_OK;
}

static void tl_clear(tlist *t) {
    for (int64_t i = 0; i < t->n_owned; i++)
        free(t->owned[i]);
    t->n_owned = 0;
    t->n = 0;
}

static void tl_free(tlist *t) {
    tl_clear(t);
    free(t->e);
    free(t->owned);
}

/* Writes one shard and records its tensors in the index's weight map. */
static pq_status write_shard(pq_ctx *ctx, const char *dir, const tlist *t, int64_t k, int64_t n_shards, cJSON *map,
                             double *total) {
    char fn[64];
    snprintf(fn, sizeof fn, "model-%05lld-of-%05lld.safetensors", (long long)k + 1, (long long)n_shards);
    char *p = pq__path_join(dir, fn);
    if (!p) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    pq_status st = pq__safetensors_write(ctx, p, t->e, t->n, NULL);
    free(p);
    for (int64_t i = 0; i < t->n && st == PQ_OK; i++) {
        cJSON_AddStringToObject(map, t->e[i].name, fn);
        *total += (double)t->e[i].nbytes;
    }
    return st;
}

static pq_status write_text(pq_ctx *ctx, const char *dir, const char *name, const char *text) {
    char *p = pq__path_join(dir, name);
    if (!p) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    FILE *f = fopen(p, "w");
    int ok = f && fputs(text, f) >= 0;
    if (f && fclose(f)) ok = 0;
    pq_status st = ok ? PQ_OK : pq__fail(ctx, PQ_ERR_IO, "%s: cannot write", p);
    free(p);
    return st;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static pq_status write_config(pq_ctx *ctx, const pq_model *m, const char *dir, const pq_compress_params *p,
                              const int64_t *starts) {
    pq__config cfg = m->cfg;
    cfg.rope_halfsplit = 1;
    if (m->tok) {
        cfg.bos_id = pq_tokenizer_bos(m->tok);
        cfg.eos_id = pq_tokenizer_eos(m->tok);
    }
    char *path = pq__path_join(dir, "config.json");
    if (!path) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    pq_status st = pq__hf_write_config(ctx, &cfg, path,
                                       p->dtype == PQ_DTYPE_F16    ? "float16"
                                       : p->dtype == PQ_DTYPE_BF16 ? "bfloat16"
                                                                   : "float32");
    char *text = st ? NULL : read_text(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    if (!st && !root) st = pq__fail(ctx, PQ_ERR_IO, "%s: cannot read back", path);
    if (!st) {
        const pq_layer_params *l = &p->layer;
        cJSON *q = cJSON_AddObjectToObject(root, "quantization_config");
        cJSON_AddStringToObject(q, "quant_method", "prunequant");
        cJSON_AddStringToObject(q, "format", p->packed ? "packed-v1" : "dense");
        cJSON_AddStringToObject(q, "prune", pq_prune_method_name(l->prune));
        cJSON_AddNumberToObject(q, "sparsity",
                                l->prune == PQ_PRUNE_NONE ? 0.0
                                : l->prune_m              ? (double)l->prune_n / l->prune_m
                                                          : l->sparsity);
        if (l->prune_m) {
            char pat[32];
            snprintf(pat, sizeof pat, "%d:%d", l->prune_n, l->prune_m);
            cJSON_AddStringToObject(q, "pattern", pat);
        } else {
            cJSON_AddNullToObject(q, "pattern");
        }
        cJSON_AddStringToObject(q, "quant", pq_quant_method_name(l->quant));
        cJSON_AddNumberToObject(q, "bits", l->bits);
        cJSON_AddNumberToObject(q, "group_size", (double)l->group_size);
        cJSON_AddBoolToObject(q, "sym", l->sym);
        cJSON_AddBoolToObject(q, "act_order", l->act_order);
        cJSON_AddStringToObject(q, "joint", pq_joint_mode_name(l->joint));
        if (l->joint == PQ_JOINT_A && l->prune != PQ_PRUNE_NONE && l->quant != PQ_QUANT_NONE)
            cJSON_AddBoolToObject(q, "keep_mask", l->keep_mask);
        if (p->skip) cJSON_AddStringToObject(q, "skip", p->skip);
        cJSON *c = cJSON_AddObjectToObject(q, "calibration");
        cJSON_AddStringToObject(c, "file", p->calib_name ? p->calib_name : "");
        cJSON_AddNumberToObject(c, "nsamples", (double)p->nsamples);
        cJSON_AddNumberToObject(c, "seqlen", (double)p->seqlen);
        cJSON_AddNumberToObject(c, "seed", (double)p->seed);
        cJSON *s = cJSON_AddArrayToObject(c, "starts");
        for (int64_t i = 0; i < p->nsamples; i++)
            cJSON_AddItemToArray(s, cJSON_CreateNumber((double)starts[i]));
        char *out = cJSON_Print(root);
        st = out ? write_text(ctx, dir, "config.json", out) : pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        free(out);
    }
    cJSON_Delete(root);
    free(text);
    free(path);
    return st;
}

/* ---------------------------------------------------------------- the pipeline */

typedef struct {
    float *w[7];
    uint8_t *mask[7];
    pq_qcodes codes[7];
    int done[7]; /* compressed (not skipped) */
} block_work;

static void work_free(block_work *w) {
    for (int i = 0; i < 7; i++) {
        free(w->w[i]);
        free(w->mask[i]);
        pq_qcodes_free(&w->codes[i]);
    }
    memset(w, 0, sizeof *w);
}

/* Permutes the rows of a compressed q/k layer (weights, mask, codes, grids) to HF's layout. */
static pq_status permute_work(pq_ctx *ctx, block_work *w, int i, int64_t heads, int64_t hd, int64_t cols) {
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

int64_t pq_compress_default_seqlen(const pq_model *m) {
    const int64_t max = m->cfg.max_seq_len;
    return max < 512 ? max : 512;
}

pq_status pq_compress_model(pq_ctx *ctx, const pq_model *m, const int32_t *tokens, int64_t n_tokens,
                            const pq_compress_params *pin, const char *out_dir) {
    pq_compress_params p = *pin;
    const pq__config *c = &m->cfg;
    const int64_t D = c->dim, F = c->hidden_dim, QD = c->n_heads * c->head_dim;
    if (p.seqlen <= 0) p.seqlen = pq_compress_default_seqlen(m);
    if (p.chunk <= 0) p.chunk = 4;
    if (p.chunk > p.nsamples) p.chunk = p.nsamples;
    if (p.dtype != PQ_DTYPE_F32 && p.dtype != PQ_DTYPE_F16 && p.dtype != PQ_DTYPE_BF16)
        return pq__fail(ctx, PQ_ERR_INVALID, "compress: output dtype must be f32, f16 or bf16");
    if (p.seqlen > c->max_seq_len)
        return pq__fail(ctx, PQ_ERR_INVALID, "compress: seqlen %lld exceeds the model's context %lld",
                        (long long)p.seqlen, (long long)c->max_seq_len);
    if (n_tokens < p.seqlen)
        return pq__fail(ctx, PQ_ERR_INVALID,
                        "compress: calibration %s has %lld tokens, fewer than one window of %lld (a longer text, "
                        "or a smaller --seqlen)",
                        p.calib_name ? p.calib_name : "text", (long long)n_tokens, (long long)p.seqlen);
    const int64_t in_cols[3] = {D, QD, F};
    /* down_proj's input (hidden_dim) is often not a multiple of the group size (stories260K:
     * 172) when dim is: that layer falls back to one grid per row instead of failing. */
    pq_layer_params down = p.layer;
    for (int i = 0; i < 3; i++) {
        pq_status st = pq_layer_params_validate(ctx, &p.layer, in_cols[i]);
        if (st && i == 2 && p.layer.quant != PQ_QUANT_NONE && p.layer.group_size > 0 && F % p.layer.group_size) {
            down.group_size = -1;
            down.static_groups = 0;
            st = pq_layer_params_validate(ctx, &down, F);
            if (!st)
                pq__log(ctx, PQ_LOG_WARN,
                        "group size %lld does not divide hidden_dim %lld: down_proj uses one grid "
                        "per row",
                        (long long)p.layer.group_size, (long long)F);
        }
        if (st) return st;
    }
    /* bad output paths fail before the calibration, naming the path given */
    pq_status pst = pq__check_output_path(ctx, out_dir, 1);
    if (pst == PQ_OK && p.report) pst = pq__check_output_path(ctx, p.report, 0);
    if (pst == PQ_OK) pst = pq__progress(ctx, "compress", 0, c->n_layers);
    if (pst) return pst;
    const int compressing = p.layer.prune != PQ_PRUNE_NONE || p.layer.quant != PQ_QUANT_NONE;
    regex_t re;
    int have_re = 0;
    if (p.skip && p.skip[0]) {
        int rc = regcomp(&re, p.skip, REG_EXTENDED | REG_NOSUB);
        if (rc) {
            char msg[128];
            regerror(rc, &re, msg, sizeof msg);
            return pq__fail(ctx, PQ_ERR_INVALID, "compress: --skip '%s': %s", p.skip, msg);
        }
        have_re = 1;
        /* a pattern that matches no linear is a typo, not a recipe: fail before any work */
        int hits = 0;
        for (int64_t l = 0; l < c->n_layers && !hits; l++)
            for (int j = 0; j < 7 && !hits; j++) {
                char nm[128];
                snprintf(nm, sizeof nm, "model.layers.%lld.%s", (long long)l, pq__linear_names[j]);
                hits = regexec(&re, nm, 0, NULL, 0) == 0;
            }
        if (!hits) {
            regfree(&re);
            return pq__fail(
                ctx, PQ_ERR_INVALID,
                "compress: --skip '%s' matches no linear layer (names are like model.layers.0.mlp.down_proj)",
                p.skip);
        }
    }

    pq_status st = PQ_OK;
    int32_t *win = NULL;
    int64_t *starts = NULL;
    char *tmp = NULL;
    pq__atomic rep_a; /* the report is written atomically too: nothing of it is left on failure */
    memset(&rep_a, 0, sizeof rep_a);
    FILE *rep = NULL;
    runner r = {0};
    tlist tl = {0};
    block_work w = {0};
    capture_state cs = {0};
    float *H[4] = {0};
    cJSON *index = cJSON_CreateObject(), *map = NULL;
    double total = 0;
    int64_t moved_total = 0; /* joint mode a: pruned weights GPTQ moved off zero */
    char recipe[160], recipe_down[160];
    recipe_text(&p.layer, recipe, sizeof recipe);
    recipe_text(&down, recipe_down, sizeof recipe_down);
    if (!index) {
        st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        goto done;
    }
    cJSON_AddObjectToObject(index, "metadata");
    map = cJSON_AddObjectToObject(index, "weight_map");

    if ((st = pq__calib_windows(ctx, tokens, n_tokens, p.nsamples, p.seqlen, p.seed, &win, &starts))) goto done;
    pq__log(ctx, PQ_LOG_INFO, "calibration: %lld windows of %lld tokens (of %lld), seed %llu, first start %lld",
            (long long)p.nsamples, (long long)p.seqlen, (long long)n_tokens, (unsigned long long)p.seed,
            (long long)starts[0]);
    if (p.report) {
        if ((st = pq__atomic_open(ctx, p.report, &rep_a))) goto done;
        rep = rep_a.f;
    }
    r.m = m;
    r.ns = p.nsamples;
    r.L = p.seqlen;
    r.chunk = p.chunk;
    const int64_t NT = r.ns * r.L;
    r.X = pq__malloc(ctx, (size_t)(NT * D) * sizeof(float), "hidden states");
    r.scratch = r.X ? pq__malloc(ctx, (size_t)(r.chunk * r.L * D) * sizeof(float), "hidden states") : NULL;
    if (!r.scratch) {
        st = ctx->status;
        goto done;
    }
    pq__config one = *c;
    one.n_layers = 1; /* a chunk runs whole windows through one block: one layer's cache suffices */
    if ((st = pq__kv_init(ctx, &r.kv, &one, r.chunk, r.L))) goto done;
    for (int64_t i = 0; i < NT; i++) {
        if (win[i] < 0 || win[i] >= c->vocab_size) {
            st = pq__fail(ctx, PQ_ERR_INVALID, "calibration: token id %d out of range", win[i]);
            goto done;
        }
        if ((st = pq__model_rows_f32(ctx, m, "model.embed_tokens.weight", win[i], 1, r.X + i * D))) goto done;
    }

    if ((st = pq__tmpdir_create(ctx, out_dir, &tmp))) goto done;
    const int64_t n_shards = c->n_layers + 1;
    /* shard 1: embeddings, final norm, lm_head */
    if ((st = tl_add_stream(ctx, &tl, m, "model.embed_tokens.weight", c->vocab_size, D, p.dtype)) ||
        (st = tl_add_f32(ctx, &tl, c, "model.norm.weight", m->out_norm, D, 0, 0, p.dtype)) ||
        (!c->tied && (st = tl_add_stream(ctx, &tl, m, "lm_head.weight", c->vocab_size, D, p.dtype))) ||
        (st = write_shard(ctx, tmp, &tl, 0, n_shards, map, &total)))
        goto done;
    tl_clear(&tl);

    static const int stage_of_seq[7] = {0, 0, 0, 1, 2, 2, 3};
    const int n_stages = p.true_sequential ? 4 : 1;
    for (int64_t l = 0; l < c->n_layers; l++) {
        if ((st = pq__progress(ctx, "compress", l, c->n_layers))) goto done;
        pq__block b = m->blocks[l];
        pq__linear *lin[7];
        pq__block_linears(&b, lin);
        char names[7][128];
        for (int i = 0; i < 7; i++) {
            snprintf(names[i], sizeof names[i], "model.layers.%lld.%s", (long long)l, pq__linear_names[i]);
            /* the working copy comes from the stored tensor, so that a model loaded with deferred
             * weights is converted (or decoded) one block at a time */
            if ((st = pq__model_linear_f32(ctx, m, names[i], lin[i]->rows, lin[i]->cols, &w.w[i]))) goto done;
            lin[i]->w = w.w[i];
            w.done[i] = compressing && !(have_re && regexec(&re, names[i], 0, NULL, 0) == 0);
        }
        for (int s = 0; s < n_stages; s++) {
            memset(cs.want, 0, sizeof cs.want);
            int any = 0;
            for (int i = 0; i < 7; i++)
                if (w.done[i] && (n_stages == 1 || stage_of_seq[i] == s)) cs.want[lin_group[i]] = any = 1;
            if (!any) continue;
            const int64_t gcols[4] = {D, QD, D, F};
            for (int g = 0; g < 4; g++)
                if (cs.want[g] && (st = pq__hacc_init(ctx, &cs.acc[g], gcols[g]))) goto done;
            if ((st = run_block(ctx, &r, l, &b, &cs, 0))) goto done;
            for (int g = 0; g < 4; g++)
                if (cs.want[g]) {
                    st = pq__hacc_finish(ctx, &cs.acc[g], &H[g]);
                    pq__hacc_free(&cs.acc[g]);
                    if (st) goto done;
                }
            for (int i = 0; i < 7; i++) {
                if (!w.done[i] || (n_stages > 1 && stage_of_seq[i] != s)) continue;
                if ((st = pq__progress(ctx, "compress", l, c->n_layers))) goto done;
                const int64_t rows = lin[i]->rows, cols = lin[i]->cols;
                if (p.layer.prune != PQ_PRUNE_NONE &&
                    !(w.mask[i] = pq__malloc(ctx, (size_t)(rows * cols), names[i]))) {
                    st = ctx->status;
                    goto done;
                }
                /* the last linear of this stage reading H[g] may use its memory; then it goes */
                int last_user = 1;
                for (int j = i + 1; j < 7; j++)
                    if (w.done[j] && lin_group[j] == lin_group[i] && (n_stages == 1 || stage_of_seq[j] == s))
                        last_user = 0;
                pq_layer_result res;
                const pq_layer_params *lp = i == 6 ? &down : &p.layer;
                float *Hg = H[lin_group[i]];
                if ((st = last_user
                              ? pq__layer_compress_scratch_h(ctx, lp, w.w[i], rows, cols, Hg, w.mask[i], &w.codes[i],
                                                             &res)
                              : pq_layer_compress(ctx, lp, w.w[i], rows, cols, Hg, w.mask[i], &w.codes[i], &res))) {
                    char msg[512];
                    snprintf(msg, sizeof msg, "%s", pq_ctx_error(ctx));
                    pq__fail(ctx, st, "%s: %s", names[i], msg);
                    goto done;
                }
                /* the next layers must see exactly the weights the output will hold */
                pq__packed_snap(w.w[i], rows, cols, w.mask[i], &w.codes[i]);
                pq__log(ctx, PQ_LOG_INFO, "%s: error %.6g, sparsity %.4f, damping %.3g (%.3g of mean diag)%s",
                        names[i], res.error, res.sparsity, res.damp, res.percdamp,
                        res.chol_retries ? ", raised" : "");
                if (res.moved_off_zero) /* joint mode a: GPTQ's feedback refilled pruned weights */
                    pq__log(ctx, PQ_LOG_INFO, "%s: %lld pruned weights moved off zero by GPTQ, %s", names[i],
                            (long long)res.moved_off_zero,
                            lp->keep_mask ? "re-masked (the pattern holds)" : "kept (--no-keep-mask)");
                moved_total += res.moved_off_zero;
                report_line(rep, names[i], rows, cols, i == 6 ? recipe_down : recipe, &res);
                if (last_user) {
                    free(H[lin_group[i]]);
                    H[lin_group[i]] = NULL;
                }
            }
            for (int g = 0; g < 4; g++) {
                free(H[g]);
                H[g] = NULL;
            }
        }
        if (l + 1 < c->n_layers && (st = run_block(ctx, &r, l, &b, NULL, 1))) goto done;

        /* shard of block l */
        char n[1024];
        snprintf(n, sizeof n, "model.layers.%lld.input_layernorm.weight", (long long)l);
        if ((st = tl_add_f32(ctx, &tl, c, n, b.attn_norm, D, 0, 0, p.dtype))) goto done;
        snprintf(n, sizeof n, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        if ((st = tl_add_f32(ctx, &tl, c, n, b.ffn_norm, D, 0, 0, p.dtype))) goto done;
        const int64_t heads[7] = {c->n_heads, c->n_kv_heads, 0, 0, 0, 0, 0};
        pq__packed_linear pk[7];
        memset(pk, 0, sizeof pk);
        for (int i = 0; i < 7 && st == PQ_OK; i++) {
            const int64_t rows = lin[i]->rows, cols = lin[i]->cols;
            if (lin[i]->b) {
                snprintf(n, sizeof n, "%s.bias", names[i]);
                if ((st = tl_add_f32(ctx, &tl, c, n, lin[i]->b, rows, 0, heads[i], p.dtype))) break;
            }
            if (!(p.packed && w.done[i])) {
                snprintf(n, sizeof n, "%s.weight", names[i]);
                st = tl_add_f32(ctx, &tl, c, n, w.w[i], rows, cols, heads[i], p.dtype);
                continue;
            }
            if (heads[i] && !c->rope_halfsplit && (st = permute_work(ctx, &w, i, heads[i], c->head_dim, cols))) break;
            if ((st = pq__packed_encode(ctx, names[i], w.w[i], rows, cols, w.mask[i], &w.codes[i], &pk[i]))) break;
            for (int k = 0; k < pk[i].n && st == PQ_OK; k++) {
                st = tl_add(ctx, &tl, pk[i].e[k].name, pk[i].e[k].dtype, pk[i].e[k].n_dims, pk[i].e[k].shape[0],
                            pk[i].e[k].shape[1], pk[i].e[k].data, pk[i].e[k].nbytes);
            }
        }
        if (st == PQ_OK) st = pq__progress(ctx, "compress", l, c->n_layers);
        if (st == PQ_OK) st = write_shard(ctx, tmp, &tl, l + 1, n_shards, map, &total);
        for (int i = 0; i < 7; i++)
            pq__packed_linear_free(&pk[i]);
        tl_clear(&tl);
        work_free(&w);
        if (st) goto done;
    }
    if (moved_total)
        pq__log(ctx, PQ_LOG_INFO, "joint mode a: GPTQ moved %lld pruned weights off zero in all; %s",
                (long long)moved_total,
                p.layer.keep_mask ? "re-masked, so the stored pattern and sparsity are the requested ones"
                                  : "kept (--no-keep-mask): the stored sparsity is below the request");
    if ((st = pq__progress(ctx, "compress", c->n_layers, c->n_layers))) goto done;
    cJSON_AddNumberToObject(cJSON_GetObjectItem(index, "metadata"), "total_size", total);
    char *itext = cJSON_Print(index);
    st = itext ? write_text(ctx, tmp, "model.safetensors.index.json", itext)
               : pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    free(itext);
    if (st || (st = write_config(ctx, m, tmp, &p, starts))) goto done;
    if (m->tok) {
        if ((st = pq__tokenizer_save_dir(ctx, m->tok, tmp))) goto done;
    } else {
        pq__log(ctx, PQ_LOG_WARN, "%s: the model has no tokenizer; none written", out_dir);
    }
    /* the report goes first (its commit may be cancelled too); a model that then fails to
     * go into place takes it away again */
    if (rep) {
        rep = NULL;
        if ((st = pq__atomic_commit(ctx, &rep_a))) goto done;
    }
    if ((st = pq__tmpdir_commit(ctx, tmp, out_dir)) && p.report) unlink(p.report);
done:
    if (st && tmp) pq__rmtree(tmp);
    free(tmp);
    if (rep) pq__atomic_abort(&rep_a);
    for (int g = 0; g < 4; g++) {
        pq__hacc_free(&cs.acc[g]);
        free(H[g]);
    }
    work_free(&w);
    tl_free(&tl);
    pq__kv_free(&r.kv);
    free(r.X);
    free(r.scratch);
    free(win);
    free(starts);
    cJSON_Delete(index);
    if (have_re) regfree(&re);
    return st;
}

/* ---------------------------------------------------------------- statistics */

/* Smallest count of zeros over the cells of M consecutive inputs (-1 if M does not divide cols). */
static int64_t min_cell_zeros(const float *w, int64_t rows, int64_t cols, int M) {
    if (cols % M) return -1;
    int64_t best = M;
    for (int64_t r = 0; r < rows && best > 0; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += M) {
            int64_t z = 0;
            for (int k = 0; k < M; k++)
                z += w[r * cols + c0 + k] == 0.0f;
            if (z < best) best = z;
        }
    return best;
}

/* A model loaded with deferred weights is decoded one linear at a time (the summary of a
 * compress run reads its output so, in the memory of one linear). */
pq_status pq_model_sparsity(pq_ctx *ctx, const pq_model *m, pq_sparsity_report *out) {
    memset(out, 0, sizeof *out);
    const pq__config *c = &m->cfg;
    out->layers = pq__calloc(ctx, (size_t)(7 * c->n_layers), sizeof *out->layers, "sparsity report");
    if (!out->layers) return ctx->status;
    double stored = 0, fp16 = 0, params = 0;
    for (int64_t l = 0; l < c->n_layers; l++) {
        pq__block b = m->blocks[l];
        pq__linear *lin[7];
        pq__block_linears(&b, lin);
        for (int i = 0; i < 7; i++) {
            pq_sparsity_entry *e = &out->layers[out->n_layers++];
            snprintf(e->name, sizeof e->name, "model.layers.%lld.%s", (long long)l, pq__linear_names[i]);
            const int64_t rows = lin[i]->rows, cols = lin[i]->cols, n = rows * cols;
            e->rows = rows;
            e->cols = cols;
            float *own = NULL;
            const float *w = lin[i]->w;
            if (m->deferred) {
                pq_status st = pq__model_linear_f32(ctx, m, e->name, rows, cols, &own);
                if (st) {
                    pq_sparsity_report_free(out);
                    return st;
                }
                w = own;
            }
            int64_t z = 0;
            for (int64_t k = 0; k < n; k++)
                z += w[k] == 0.0f;
            e->sparsity = n ? (double)z / (double)n : 0;
            static const int Ms[2] = {4, 8};
            for (int k = 0; k < 2 && !e->pattern_m; k++) {
                int64_t mz = min_cell_zeros(w, rows, cols, Ms[k]);
                if (mz > 0) {
                    e->pattern_n = (int)mz;
                    e->pattern_m = Ms[k];
                    e->pattern_ok = 1;
                }
            }
            free(own);
            e->bytes = (int64_t)pq__linear_stored_bytes(&m->src, e->name, n);
            out->packed |= pq__packed_present(&m->src, e->name);
            stored += (double)e->bytes;
            fp16 += 2.0 * (double)n;
            params += (double)n;
        }
    }
    out->acr = fp16 > 0 ? 1 - stored / fp16 : 0;
    out->bpw = params > 0 ? 8 * stored / params : 0;
    return PQ_OK;
}

void pq_sparsity_report_free(pq_sparsity_report *r) {
    if (!r) return;
    free(r->layers);
    memset(r, 0, sizeof *r);
}
