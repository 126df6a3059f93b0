/* Model loading: format dispatch, checks of every tensor against the config, float32 views
 * of the weights (zero-copy for aligned F32, converted otherwise), RoPE tables. */
#include "kernels/dtype.h"
#include "kernels/ggml_types.h"
#include "kernels/kernels.h"
#include "model/model.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/packed.h"
#include "tokenizer/tokenizer.h"

pq_load_params pq_load_params_default(void) {
    pq_load_params p = {NULL, 1, 0};
    return p;
}

static pq_status keep(pq_ctx *ctx, pq_model *m, void *p) {
    if (m->n_owned == m->cap_owned) {
        int64_t cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **n = realloc(m->owned, (size_t)cap * sizeof *n);
        if (!n) {
            free(p);
            return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        }
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return PQ_OK;
}

/* Finds tensor `name` with the expected shape (cols == 0: vector) and checks its size; *out
 * is NULL for a missing optional tensor. */
static pq_status find_checked(pq_ctx *ctx, const pq_model *m, const char *name, int64_t rows, int64_t cols,
                              int optional, const pq__tensor **out) {
    *out = NULL;
    const pq__tensor *t = pq__source_find(&m->src, name);
    if (!t) {
        if (optional) return PQ_OK;
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: missing tensor '%s'", m->src.path, name);
    }
    int want_dims = cols ? 2 : 1;
    if (t->n_dims != want_dims || t->shape[0] != rows || (cols && t->shape[1] != cols))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s': shape %lldx%lld, expected %lldx%lld", m->src.path, name,
                        (long long)t->shape[0], (long long)(t->n_dims > 1 ? t->shape[1] : 1), (long long)rows,
                        (long long)(cols ? cols : 1));
    int64_t n = pq__tensor_numel(t);
    size_t need = pq__dtype_nbytes(t->dtype, n);
    if (!need || t->nbytes < need)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s': %zu bytes for %lld %s elements", m->src.path, name,
                        t->nbytes, (long long)n, pq_dtype_name(t->dtype));
    float probe;
    if (!pq__to_f32(t->dtype, t->data, &probe, 0))
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be used as weights", m->src.path,
                        name, pq_dtype_name(t->dtype));
    *out = t;
    return PQ_OK;
}

/* Finds tensor `name` with the expected shape (cols == 0: vector) and returns float32 data
 * (NULL for a missing optional tensor). */
static pq_status get_f32(pq_ctx *ctx, pq_model *m, const char *name, int64_t rows, int64_t cols, int optional,
                         const float **out) {
    *out = NULL;
    const pq__tensor *t;
    pq_status st = find_checked(ctx, m, name, rows, cols, optional, &t);
    if (st || !t) return st;
    const int64_t n = pq__tensor_numel(t);
    if (t->dtype == PQ_DTYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return PQ_OK;
    }
    float *buf = pq__calloc(ctx, (size_t)n, sizeof(float), name);
    if (!buf) return ctx->status;
    if (!pq__to_f32(t->dtype, t->data, buf, n)) {
        free(buf);
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be used as weights", m->src.path,
                        name, pq_dtype_name(t->dtype));
    }
    st = keep(ctx, m, buf);
    if (st == PQ_OK) *out = buf;
    return st;
}

/* Matrix `name` [rows, cols] as the kernels take it: F16 and BF16 in place (the forward pass
 * multiplies by them as stored), F32 in place when aligned, anything else converted to float32
 * once. No data while the model defers weights. */
static pq_status get_qmat(pq_ctx *ctx, pq_model *m, const char *name, int64_t rows, int64_t cols, pq__qmat *out,
                          int *in_place) {
    const pq__tensor *t;
    *out = pq__qmat_f32(rows, cols, NULL);
    *in_place = 0;
    pq_status st = find_checked(ctx, m, name, rows, cols, 0, &t);
    if (st || m->deferred) return st;
    if (t->dtype == PQ_DTYPE_F16 || t->dtype == PQ_DTYPE_BF16) {
        out->kind = t->dtype == PQ_DTYPE_F16 ? PQ_QMAT_F16 : PQ_QMAT_BF16;
        out->data = t->data;
        *in_place = 1;
        return PQ_OK;
    }
    void *own[3];
    const int g =
        pq__ggml_to_qmat(t->dtype, t->data, rows, cols, pq__threads(ctx), out, own); /* Q4_0 / Q5_0 / Q8_0 */
    if (g < 0) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory re-laying tensor '%s'", m->src.path, name);
    if (g > 0) {
        *in_place = 1; /* the same codes and scales, in the kernels' order */
        for (int i = 0; i < 3; i++)
            if ((st = keep(ctx, m, own[i]))) {
                for (int k = i + 1; k < 3; k++)
                    free(own[k]);
                return st;
            }
        pq__source_release(&m->src, t->data, t->nbytes); /* the file's blocks are read again only on demand */
        return PQ_OK;
    }
    const float *f;
    if ((st = get_f32(ctx, m, name, rows, cols, 0, &f))) return st;
    out->data = f;
    *in_place = f == t->data;
    if (!*in_place) pq__source_release(&m->src, t->data, t->nbytes); /* converted: as above */
    return PQ_OK;
}

static pq_status get_linear(pq_ctx *ctx, pq_model *m, const char *base, int64_t rows, int64_t cols, int bias,
                            pq__linear *lin) {
    char name[160];
    lin->rows = rows;
    lin->cols = cols;
    lin->w = pq__qmat_f32(rows, cols, NULL);
    snprintf(name, sizeof name, "%s.weight", base);
    pq_status st;
    int in_place = 0;
    if (pq__source_has_packed(&m->src, base)) { /* docs/PACKED.md: kept packed where the kernels run it */
        if (!m->deferred) {
            void *own[4] = {NULL, NULL, NULL, NULL};
            st = pq__packed_qmat(ctx, &m->src, base, rows, cols, &lin->w, own);
            in_place = lin->w.kind == PQ_QMAT_CODES; /* act-order: re-laid codes, still codes */
            for (int i = 0; i < 4; i++)
                if (own[i] && st == PQ_OK)
                    st = keep(ctx, m, own[i]);
                else if (own[i])
                    free(own[i]);
            if (st) return st;
        }
    } else if ((st = get_qmat(ctx, m, name, rows, cols, &lin->w, &in_place))) {
        return st;
    }
    m->n_native += in_place;
    snprintf(name, sizeof name, "%s.bias", base);
    return get_f32(ctx, m, name, rows, 0, !bias, &lin->b);
}

/* RoPE inverse frequencies, in float as llama2.c computes them, with HF rope_scaling. */
static void rope_freqs(const pq__config *c, float *inv) {
    int64_t half = c->head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        if (c->rope_scaling == 2) {
            f /= c->rope_factor;
        } else if (c->rope_scaling == 1) { /* "llama3": scale long wavelengths, keep short ones */
            double wavelen = 2 * M_PI / f;
            double lo_wl = (double)c->rope_orig_max_pos / c->rope_low_freq_factor;
            double hi_wl = (double)c->rope_orig_max_pos / c->rope_high_freq_factor;
            if (wavelen > lo_wl) {
                f = f / c->rope_factor;
            } else if (wavelen >= hi_wl) {
                double smooth = ((double)c->rope_orig_max_pos / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (float)((1 - smooth) * f / c->rope_factor + smooth * f);
            }
        }
        inv[i] = f;
    }
}

static pq_status check_config(pq_ctx *ctx, const char *path, const pq__config *c) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->vocab_size <= 0 || c->head_dim <= 0 || c->max_seq_len <= 0)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: config: non-positive dimension", path);
    if (c->n_heads % c->n_kv_heads)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: config: n_heads %lld not a multiple of n_kv_heads %lld", path,
                        (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->head_dim % 2)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: config: odd head_dim %lld", path, (long long)c->head_dim);
    if (!(c->norm_eps > 0) || !(c->rope_theta > 0))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: config: norm_eps and rope_theta must be positive", path);
    if (c->rope_scaling == 1 && !(c->rope_factor > 0 && c->rope_high_freq_factor > c->rope_low_freq_factor &&
                                  c->rope_low_freq_factor > 0 && c->rope_orig_max_pos > 0))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: config: rope_scaling llama3 parameters invalid", path);
    if (c->rope_scaling == 2 && !(c->rope_factor > 0))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: config: rope_scaling factor invalid", path);
    return PQ_OK;
}

/* Bytes and dtypes as stored; the parameter count is the model's own (a packed linear
 * counts rows x cols, not the bytes of its codes; tables a file may carry, such as
 * llama2.c's RoPE frequencies, are not parameters). */
static void dtype_summary(pq_model *m) {
    int64_t count[PQ_DTYPE_COUNT] = {0};
    const pq__config *c = &m->cfg;
    m->weight_bytes = 0;
    m->n_ggml_blocks = 0;
    for (int64_t i = 0; i < m->src.n_tensors; i++) {
        const pq__tensor *t = &m->src.tensors[i];
        if ((unsigned)t->dtype < PQ_DTYPE_COUNT) count[t->dtype]++;
        m->weight_bytes += t->nbytes;
        m->n_ggml_blocks += pq__ggml_info_of(t->dtype) != NULL;
    }
    int64_t packed = 0;
    m->n_params = c->vocab_size * c->dim * (c->tied ? 1 : 2) + c->dim;
    for (int64_t l = 0; l < c->n_layers; l++) {
        const pq__block *b = &m->blocks[l];
        m->n_params += 2 * c->dim;
        for (int j = 0; j < PQ_BLOCK_LINEARS; j++) {
            const pq__linear *lin = pq__block_linear_get(b, j);
            char base[128];
            pq__linear_name(base, sizeof base, l, j);
            m->n_params += lin->rows * lin->cols + (lin->b ? lin->rows : 0);
            packed += pq__source_has_packed(&m->src, base);
        }
    }
    size_t k = 0;
    m->dtypes[0] = 0;
    for (int i = 0; i < PQ_DTYPE_COUNT; i++)
        if (count[i] && k < sizeof m->dtypes)
            k += (size_t)snprintf(m->dtypes + k, sizeof m->dtypes - k, "%s%s:%lld", k ? " " : "", pq_dtype_name(i),
                                  (long long)count[i]);
    m->n_packed = packed;
    if (packed && k < sizeof m->dtypes)
        snprintf(m->dtypes + k, sizeof m->dtypes - k, " (%lld linears packed)", (long long)packed);
}

pq_status pq__model_linear_f32(pq_ctx *ctx, const pq_model *m, const char *base, int64_t rows, int64_t cols,
                               float **out) {
    return pq__model_linear_f32_into(ctx, m, base, rows, cols, NULL, out);
}

pq_status pq__model_linear_f32_into(pq_ctx *ctx, const pq_model *m, const char *base, int64_t rows, int64_t cols,
                                    float *reuse, float **out) {
    *out = NULL;
    if (pq__source_has_packed(&m->src, base)) {
        free(reuse);
        return pq__packed_decode(ctx, &m->src, base, rows, cols, out);
    }
    char name[160];
    snprintf(name, sizeof name, "%s.weight", base);
    const pq__tensor *t;
    pq_status st = find_checked(ctx, m, name, rows, cols, 0, &t);
    if (st) {
        free(reuse);
        return st;
    }
    float *w = reuse ? reuse : pq__big_malloc(ctx, (size_t)(rows * cols) * sizeof(float), name);
    if (!w) return ctx->status;
    /* in pieces of one large page of floats (whole blocks of every block dtype) on the threads:
     * the first touch of the fresh memory (the kernel zeroing its pages) and of the source's
     * pages dominates the conversion */
    const int64_t n = rows * cols, piece = (int64_t)1 << 19, np = (n + piece - 1) / piece;
#pragma omp parallel for num_threads(pq__threads(ctx)) schedule(static) if (np > 1)
    for (int64_t p = 0; p < np; p++) /* dtype checked by find_checked */
        pq__to_f32(t->dtype, (const uint8_t *)t->data + pq__dtype_nbytes(t->dtype, p * piece), w + p * piece,
                   n - p * piece < piece ? n - p * piece : piece);
    pq__source_release(&m->src, t->data, t->nbytes);
    *out = w;
    return PQ_OK;
}

/* The plain 2-D tensor name whose rows can be read one by one (*row_bytes each), when rows
 * [r0, r1) are within it. */
static pq_status rows_tensor(pq_ctx *ctx, const pq_model *m, const char *name, int64_t r0, int64_t r1,
                             const pq__tensor **out, size_t *row_bytes) {
    const pq__tensor *t = pq__source_find(&m->src, name);
    if (!t) return pq__fail(ctx, PQ_ERR_INVALID, "%s: tensor '%s' missing", m->src.path, name);
    if (t->n_dims != 2)
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: tensor '%s': %d dimensions, not 2", m->src.path, name, t->n_dims);
    if (r0 < 0 || r1 < r0 || r1 > t->shape[0])
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: tensor '%s': rows %lld..%lld out of range", m->src.path, name,
                        (long long)r0, (long long)r1);
    const int64_t cols = t->shape[1];
    *row_bytes = pq__dtype_nbytes(t->dtype, cols);
    if (!*row_bytes || (size_t)r1 * *row_bytes > t->nbytes ||
        pq__dtype_nbytes(t->dtype, cols * r1) != (size_t)r1 * *row_bytes)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s': rows of %s cannot be read one by one", m->src.path,
                        name, pq_dtype_name(t->dtype));
    *out = t;
    return PQ_OK;
}

static pq_status rows_dtype_fail(pq_ctx *ctx, const pq_model *m, const char *name, const pq__tensor *t) {
    return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be used as weights", m->src.path, name,
                    pq_dtype_name(t->dtype));
}

pq_status pq__model_rows_f32(pq_ctx *ctx, const pq_model *m, const char *name, int64_t r0, int64_t n, float *dst) {
    const pq__tensor *t;
    size_t row_bytes;
    pq_status st = rows_tensor(ctx, m, name, r0, n < 0 ? r0 - 1 : r0 + n, &t, &row_bytes);
    if (st) return st;
    const uint8_t *src = (const uint8_t *)t->data + (size_t)r0 * row_bytes;
    if (!pq__to_f32(t->dtype, src, dst, n * t->shape[1])) return rows_dtype_fail(ctx, m, name, t);
    pq__source_release(&m->src, src, (size_t)n * row_bytes);
    return PQ_OK;
}

pq_status pq__model_gather_f32(pq_ctx *ctx, const pq_model *m, const char *name, const int32_t *ids, int64_t n,
                               float *dst) {
    int64_t lo = n ? ids[0] : 0, hi = lo;
    for (int64_t i = 0; i < n; i++) {
        lo = ids[i] < lo ? ids[i] : lo;
        hi = ids[i] > hi ? ids[i] : hi;
    }
    const pq__tensor *t;
    size_t row_bytes;
    pq_status st = rows_tensor(ctx, m, name, lo, n ? hi + 1 : 0, &t, &row_bytes);
    if (st || !n) return st;
    const int64_t cols = t->shape[1];
    const uint8_t *src = t->data;
    if (!pq__to_f32(t->dtype, src + (size_t)ids[0] * row_bytes, dst, cols)) return rows_dtype_fail(ctx, m, name, t);
#pragma omp parallel for num_threads(pq__threads(ctx)) schedule(static) if (n * cols >= PQ_PAR_MIN_ELEMS)
    for (int64_t i = 1; i < n; i++)
        pq__to_f32(t->dtype, src + (size_t)ids[i] * row_bytes, dst + i * cols, cols);
    pq__source_release(&m->src, src + (size_t)lo * row_bytes, (size_t)(hi + 1 - lo) * row_bytes);
    return PQ_OK;
}

pq_status pq__model_require_weights(pq_ctx *ctx, const pq_model *m, const char *what) {
    if (!m->deferred) return PQ_OK;
    return pq__fail(ctx, PQ_ERR_INVALID, "%s: %s needs a model loaded without defer_weights", m->src.path, what);
}

static pq_status model_from_source(pq_ctx *ctx, pq__source *src, int deferred, pq_model **out);

pq_status pq__model_from_source(pq_ctx *ctx, pq__source *src, pq_model **out) {
    return model_from_source(ctx, src, 0, out);
}

static pq_status model_from_source(pq_ctx *ctx, pq__source *src, int deferred, pq_model **out) {
    *out = NULL;
    pq_model *m = pq__calloc(ctx, 1, sizeof *m, "model");
    if (!m) {
        pq__source_free(src);
        return ctx->status;
    }
    m->src = *src;
    m->deferred = deferred;
    memset(src, 0, sizeof *src);
    m->cfg = m->src.cfg;
    m->tok = m->src.tok;
    m->src.tok = NULL;
    const pq__config *c = &m->cfg;
    const char *path = m->src.path ? m->src.path : "model";
    pq_status st = check_config(ctx, path, c);
    if (st) goto fail;
    const int64_t D = c->dim;
    int in_place;
    if ((st = get_qmat(ctx, m, "model.embed_tokens.weight", c->vocab_size, D, &m->embed, &in_place))) goto fail;
    if ((st = get_f32(ctx, m, "model.norm.weight", D, 0, 0, &m->out_norm))) goto fail;
    m->lm_head.rows = c->vocab_size;
    m->lm_head.cols = D;
    if (c->tied) {
        m->lm_head.w = m->embed;
    } else if ((st = get_qmat(ctx, m, "lm_head.weight", c->vocab_size, D, &m->lm_head.w, &in_place))) {
        goto fail;
    }
    m->blocks = pq__calloc(ctx, (size_t)c->n_layers, sizeof *m->blocks, "blocks");
    m->inv_freq = pq__calloc(ctx, (size_t)c->head_dim / 2, sizeof(float), "rope");
    if (!m->blocks || !m->inv_freq) {
        st = ctx->status;
        goto fail;
    }
    rope_freqs(c, m->inv_freq);
    for (int64_t l = 0; l < c->n_layers; l++) {
        pq__block *b = &m->blocks[l];
        char base[128], name[160];
        snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
        if ((st = get_f32(ctx, m, name, D, 0, 0, &b->attn_norm))) goto fail;
        snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        if ((st = get_f32(ctx, m, name, D, 0, 0, &b->ffn_norm))) goto fail;
        for (int i = 0; i < PQ_BLOCK_LINEARS; i++) {
            const pq__linear_desc *d = &pq__block_linear[i];
            pq__linear_name(base, sizeof base, l, i);
            if ((st = get_linear(ctx, m, base, pq__linear_dim(c, d->rows), pq__linear_dim(c, d->cols),
                                 c->qkv_bias && d->bias, pq__block_linear_at(b, i))))
                goto fail;
        }
    }
    dtype_summary(m);
    *out = m;
    return PQ_OK;
fail:
    pq_model_free(m);
    return st;
}

void pq_model_free(pq_model *m) {
    if (!m) return;
    for (int64_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->blocks);
    free(m->inv_freq);
    pq_tokenizer_free(m->tok);
    pq__source_free(&m->src);
    free(m);
}

/* llama2.c checkpoints carry no tokenizer: look beside the model for tok<vocab>.bin/.model,
 * tokenizer.bin or tokenizer.model whose vocabulary size matches. */
/* A llama2.c checkpoint's tokenizer beside it (tok<vocab>.bin/.model, tokenizer.bin/.model),
 * best effort: a candidate that does not load or does not fit is passed over; only running
 * out of memory is an error. */
static pq_status find_sibling_tokenizer(pq_ctx *ctx, pq_model *m) {
    const char *path = m->src.path;
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 0;
    char dir[4096];
    if (dl >= sizeof dir) return PQ_OK;
    memcpy(dir, path, dl);
    dir[dl] = 0;
    if (!dl) snprintf(dir, sizeof dir, ".");
    char cand[4][64];
    snprintf(cand[0], sizeof cand[0], "tok%lld.bin", (long long)m->cfg.vocab_size);
    snprintf(cand[1], sizeof cand[1], "tok%lld.model", (long long)m->cfg.vocab_size);
    snprintf(cand[2], sizeof cand[2], "tokenizer.bin");
    snprintf(cand[3], sizeof cand[3], "tokenizer.model");
    for (int i = 0; i < 4; i++) {
        char *p = pq__path_join(dir, cand[i]);
        if (!p) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory joining %s and %s", path, dir, cand[i]);
        if (pq__file_exists(p)) {
            pq_ctx quiet = *ctx; /* a non-matching candidate is not an error of this load */
            pq_tokenizer *t = NULL;
            const pq_status st = pq_tokenizer_load(&quiet, p, &t);
            if (st == PQ_OK && pq_tokenizer_n_vocab(t) == m->cfg.vocab_size) {
                pq__log(ctx, PQ_LOG_INFO, "%s: using tokenizer %s", path, p);
                m->tok = t;
                free(p);
                return PQ_OK;
            }
            pq_tokenizer_free(t);
            if (st == PQ_ERR_NOMEM) {
                const pq_status e = pq__fail(ctx, st, "%s: tokenizer %s: %s", path, p, pq_ctx_error(&quiet));
                free(p);
                return e;
            }
        }
        free(p);
    }
    return PQ_OK;
}

pq_status pq_model_load(pq_ctx *ctx, const char *path, const pq_load_params *params, pq_model **out) {
    *out = NULL;
    pq_load_params def = pq_load_params_default();
    if (!params) params = &def;
    pq__source src;
    pq__source_init(&src);
    src.path = strdup(path);
    if (!src.path) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    const char *fmt = pq__detect_format(path);
    pq_status st;
    if (!pq__is_dir(path) && !pq__file_exists(path)) {
        pq__source_free(&src);
        return pq__fail(ctx, PQ_ERR_IO, "%s: no such file or folder", path);
    }
    if (!strcmp(fmt, "hf"))
        st = pq__hf_load(ctx, path, params->use_mmap, &src);
    else if (!strcmp(fmt, "gguf"))
        st = pq__gguf_load(ctx, path, params->use_mmap, &src);
    else
        st = pq__llama2c_load(ctx, path, params->use_mmap, &src);
    if (st != PQ_OK) {
        pq__source_free(&src);
        return st;
    }
    pq_tokenizer *tok = NULL;
    if (params->tokenizer_path) {
        if ((st = pq_tokenizer_load(ctx, params->tokenizer_path, &tok)) != PQ_OK) {
            pq__source_free(&src);
            return st;
        }
    }
    pq_model *m;
    if ((st = model_from_source(ctx, &src, params->defer_weights, &m)) != PQ_OK) {
        pq_tokenizer_free(tok);
        return st;
    }
    if (tok) {
        pq_tokenizer_free(m->tok);
        m->tok = tok;
    } else if (!m->tok && !strcmp(fmt, "llama2c") && (st = find_sibling_tokenizer(ctx, m)) != PQ_OK) {
        pq_model_free(m);
        return st;
    }
    if (m->tok && pq_tokenizer_n_vocab(m->tok) != m->cfg.vocab_size) {
        const long long nt = (long long)pq_tokenizer_n_vocab(m->tok), nv = (long long)m->cfg.vocab_size;
        /* A model's own HF tokenizer may have fewer tokens than the embedding has rows (Qwen2:
         * 151665 tokens, 151936 rows padded for speed): the extra rows are never produced by
         * the tokenizer. A tokenizer given with --tokenizer, or one with more tokens than rows,
         * must match exactly: a smaller foreign vocabulary silently mis-maps every id. */
        if (tok || nt > nv || strcmp(fmt, "hf")) {
            pq_status s = pq__fail(ctx, PQ_ERR_INVALID,
                                   "%s: vocabulary size mismatch: the tokenizer has %lld tokens, the model %lld (%s)",
                                   params->tokenizer_path ? params->tokenizer_path : path, nt, nv,
                                   tok ? "pass the tokenizer the model was trained with"
                                       : "the model's own tokenizer does not fit its embedding");
            pq_model_free(m);
            return s;
        }
        pq__log(ctx, PQ_LOG_INFO,
                "%s: the tokenizer has %lld tokens, the embedding %lld rows: rows %lld..%lld are padding", path, nt,
                nv, nt, nv - 1);
    }
    *out = m;
    return PQ_OK;
}

pq_status pq_model_get_info(const pq_model *m, pq_model_info *info) {
    memset(info, 0, sizeof *info);
    const pq__config *c = &m->cfg;
    snprintf(info->format, sizeof info->format, "%s", m->src.format);
    snprintf(info->arch, sizeof info->arch, "%s", pq__arch_name(c->arch));
    info->dim = c->dim;
    info->hidden_dim = c->hidden_dim;
    info->n_layers = c->n_layers;
    info->n_heads = c->n_heads;
    info->n_kv_heads = c->n_kv_heads;
    info->head_dim = c->head_dim;
    info->vocab_size = c->vocab_size;
    info->max_seq_len = c->max_seq_len;
    info->rope_theta = c->rope_theta;
    info->norm_eps = c->norm_eps;
    info->tied_embeddings = c->tied;
    info->qkv_bias = c->qkv_bias;
    info->rope_halfsplit = c->rope_halfsplit;
    info->n_params = m->n_params;
    info->file_bytes = pq__source_file_bytes(&m->src);
    info->weight_bytes = m->weight_bytes;
    snprintf(info->dtypes, sizeof info->dtypes, "%s", m->dtypes);
    info->has_tokenizer = m->tok != NULL;
    snprintf(info->file_type, sizeof info->file_type, "%s", m->src.file_type);
    info->n_tensors = m->src.n_tensors;
    info->n_ggml_blocks = m->n_ggml_blocks;
    info->n_packed = m->n_packed;
    info->n_linears = c->n_layers * PQ_BLOCK_LINEARS;
    info->n_native = m->n_native;
    snprintf(info->kernels, sizeof info->kernels, "%s", pq__isa_name(pq__qmat_isa()));
    return PQ_OK;
}

pq_status pq_model_tensor(const pq_model *m, int64_t i, pq_tensor_info *out) {
    if (!m || !out || i < 0 || i >= m->src.n_tensors) return PQ_ERR_INVALID;
    const pq__tensor *t = &m->src.tensors[i];
    *out = (pq_tensor_info){.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims, .nbytes = t->nbytes};
    memcpy(out->shape, t->shape, sizeof out->shape);
    return PQ_OK;
}

const pq_tokenizer *pq_model_tokenizer(const pq_model *m) {
    return m ? m->tok : NULL;
}
