/* The decoder forward pass: a batched fast path (every linear layer multiplied as stored by the
 * kernels of kernels/qmat.h: BLAS for float32, GEMV / packed-panel GEMM for float16, bfloat16
 * and packed codes; threads over sequences x heads x tokens for attention) and a readable
 * reference path that follows llama2.c's run.c one token at a time. Tests hold the first to
 * the second. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"

pq_status pq__linear_apply(pq_ctx *ctx, const pq__linear *lin, const float *x, float *y, int64_t n) {
    if (pq__qmat_matmul(&lin->w, x, lin->b, y, n, pq__threads(ctx), PQ_ISA_AUTO))
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory for the work buffers of a %lld x %lld product",
                        (long long)lin->rows, (long long)lin->cols);
    return PQ_OK;
}

/* Token rows of the embedding as float32 into x [n, dim]. */
static void embed_rows(const pq_model *m, const int32_t *tokens, int64_t n, float *x) {
    for (int64_t i = 0; i < n; i++)
        pq__qmat_rows_f32(&m->embed, tokens[i], 1, x + i * m->cfg.dim);
}

pq_status pq__kv_init(pq_ctx *ctx, pq__kv *kv, const pq__config *cfg, int64_t n_seq, int64_t n_ctx) {
    memset(kv, 0, sizeof *kv);
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->n_layers = cfg->n_layers;
    kv->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    size_t n;
    if (!pq__mul_ok((size_t)(kv->n_layers * n_seq), (size_t)(n_ctx * kv->kv_dim), &n))
        return pq__fail(ctx, PQ_ERR_NOMEM,
                        "KV cache of %lld layers x %lld sequences x %lld positions x %lld floats: size overflow",
                        (long long)kv->n_layers, (long long)n_seq, (long long)n_ctx, (long long)kv->kv_dim);
    kv->k = pq__calloc(ctx, n, sizeof(float), "KV cache");
    kv->v = kv->k ? pq__calloc(ctx, n, sizeof(float), "KV cache") : NULL;
    if (!kv->v) {
        pq__kv_free(kv);
        return ctx->status;
    }
    return PQ_OK;
}

void pq__kv_free(pq__kv *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

/* Cache row of (layer, sequence, position). A one-layer cache serves every layer. */
static inline size_t kv_off(const pq__kv *kv, int64_t layer, int64_t s, int64_t pos) {
    if (kv->n_layers == 1) layer = 0;
    return (size_t)(((layer * kv->n_seq + s) * kv->n_ctx + pos) * kv->kv_dim);
}

/* Rotates the pairs of every head of v [n_heads * hd] by the angles of one position. */
static inline void rope_apply(float *v, int64_t n_heads, int64_t hd, int halfsplit, const float *cs,
                              const float *sn) {
    const int64_t half = hd / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *p = v + h * hd;
        for (int64_t i = 0; i < half; i++) {
            float *a = halfsplit ? &p[i] : &p[2 * i];
            float *b = halfsplit ? &p[i + half] : &p[2 * i + 1];
            float v0 = *a, v1 = *b;
            *a = v0 * cs[i] - v1 * sn[i];
            *b = v0 * sn[i] + v1 * cs[i];
        }
    }
}

static void rope_table(const pq_model *m, int64_t pos, float *cs, float *sn) {
    for (int64_t i = 0; i < m->cfg.head_dim / 2; i++) {
        float val = (float)pos * m->inv_freq[i];
        cs[i] = cosf(val);
        sn[i] = sinf(val);
    }
}

pq_status pq__block_forward(pq_ctx *ctx, const pq_model *m, int64_t layer, const pq__block *b, pq__kv *kv, float *x,
                            int64_t n_seq, int64_t n_tok, int64_t pos0, pq__capture_fn capture, void *user) {
    const pq__config *c = &m->cfg;
    const int nt = pq__threads(ctx);
    const int64_t N = n_seq * n_tok, D = c->dim, F = c->hidden_dim, HD = c->head_dim, half = HD / 2;
    const int64_t QD = c->n_heads * HD, KD = c->n_kv_heads * HD, T = pos0 + n_tok;
    const int64_t group = c->n_heads / c->n_kv_heads;
    if (T > kv->n_ctx || n_seq > kv->n_seq) return pq__fail(ctx, PQ_ERR_INVALID, "forward: context overflow");

    size_t nbuf = (size_t)(N * (D + QD + 2 * KD + QD + 2 * F) + n_tok * HD + (int64_t)nt * n_tok * T);
    float *buf = pq__malloc(ctx, nbuf * sizeof(float), "activations");
    if (!buf) return ctx->status;
    float *xb = buf, *q = xb + N * D, *k = q + N * QD, *v = k + N * KD, *att = v + N * KD, *hb = att + N * QD;
    float *hb2 = hb + N * F, *cs = hb2 + N * F, *sn = cs + n_tok * half, *scores = sn + n_tok * half;

    /* attention */
    pq__rmsnorm(xb, x, b->attn_norm, N, D, c->norm_eps, nt);
    if (capture) capture(user, layer, 0, xb, N, D);
    pq_status st;
    if ((st = pq__linear_apply(ctx, &b->q, xb, q, N)) || (st = pq__linear_apply(ctx, &b->k, xb, k, N)) ||
        (st = pq__linear_apply(ctx, &b->v, xb, v, N))) {
        free(buf);
        return st;
    }
    for (int64_t t = 0; t < n_tok; t++)
        rope_table(m, pos0 + t, cs + t * half, sn + t * half);
#pragma omp parallel for num_threads(nt) schedule(static) if (N * QD >= PQ_PAR_MIN_ELEMS)
    for (int64_t i = 0; i < N; i++) {
        const int64_t s = i / n_tok, t = i % n_tok;
        rope_apply(q + i * QD, c->n_heads, HD, c->rope_halfsplit, cs + t * half, sn + t * half);
        rope_apply(k + i * KD, c->n_kv_heads, HD, c->rope_halfsplit, cs + t * half, sn + t * half);
        memcpy(kv->k + kv_off(kv, layer, s, pos0 + t), k + i * KD, (size_t)KD * sizeof(float));
        memcpy(kv->v + kv_off(kv, layer, s, pos0 + t), v + i * KD, (size_t)KD * sizeof(float));
    }
    /* attention per (sequence, head) as two GEMMs over the cached keys/values; rows past the
     * causal limit are masked before the softmax */
    const float scale = 1.0f / sqrtf((float)HD);
    const int prev_threads = pq__blas_threads_push(1); /* threads run over jobs, BLAS on one each */
#pragma omp parallel for num_threads(nt)                                                                             \
    schedule(dynamic, 1) if (n_seq * c->n_heads * n_tok * T * HD >= PQ_PAR_MIN_ELEMS)
    for (int64_t job = 0; job < n_seq * c->n_heads; job++) {
        const int64_t s = job / c->n_heads, h = job % c->n_heads, kvh = h / group;
        float *sc = scores + (int64_t)omp_get_thread_num() * n_tok * T;
        const float *qh = q + s * n_tok * QD + h * HD;
        const float *kh = kv->k + kv_off(kv, layer, s, 0) + kvh * HD,
                    *vh = kv->v + kv_off(kv, layer, s, 0) + kvh * HD;
        pq__sgemm(PQ_NOTRANS, PQ_TRANS, n_tok, T, HD, scale, qh, QD, kh, KD, 0.0f, sc, T);
        for (int64_t t = 0; t < n_tok; t++) {
            const int64_t len = pos0 + t + 1;
            pq__softmax(sc + t * T, len);
            memset(sc + t * T + len, 0, (size_t)(T - len) * sizeof(float));
        }
        pq__sgemm(PQ_NOTRANS, PQ_NOTRANS, n_tok, HD, T, 1.0f, sc, T, vh, KD, 0.0f, att + s * n_tok * QD + h * HD, QD);
    }
    pq__blas_threads_pop(prev_threads);
    if (capture) capture(user, layer, 1, att, N, QD);
    if ((st = pq__linear_apply(ctx, &b->o, att, xb, N))) {
        free(buf);
        return st;
    }
    for (int64_t i = 0; i < N * D; i++)
        x[i] += xb[i];

    /* SwiGLU feed-forward */
    pq__rmsnorm(xb, x, b->ffn_norm, N, D, c->norm_eps, nt);
    if (capture) capture(user, layer, 2, xb, N, D);
    if ((st = pq__linear_apply(ctx, &b->gate, xb, hb, N)) || (st = pq__linear_apply(ctx, &b->up, xb, hb2, N))) {
        free(buf);
        return st;
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (N * F >= PQ_PAR_MIN_ELEMS)
    for (int64_t i = 0; i < N * F; i++) {
        float g = hb[i];
        hb[i] = g * (1.0f / (1.0f + expf(-g))) * hb2[i];
    }
    if (capture) capture(user, layer, 3, hb, N, F);
    if ((st = pq__linear_apply(ctx, &b->down, hb, xb, N))) {
        free(buf);
        return st;
    }
    for (int64_t i = 0; i < N * D; i++)
        x[i] += xb[i];
    free(buf);
    return PQ_OK;
}

static pq_status check_tokens(pq_ctx *ctx, const pq_model *m, const int32_t *tokens, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return pq__fail(ctx, PQ_ERR_INVALID, "token id %d out of range (vocab %lld)", tokens[i],
                            (long long)m->cfg.vocab_size);
    return PQ_OK;
}

pq_status pq__forward(pq_ctx *ctx, const pq_model *m, pq__kv *kv, const int32_t *tokens, int64_t n_seq, int64_t n_tok,
                      int64_t pos0, int last_only, float *logits) {
    if (m->deferred) return pq__model_require_weights(ctx, m, "the forward pass");
    const pq__config *c = &m->cfg;
    const int64_t N = n_seq * n_tok, D = c->dim;
    if (n_seq <= 0 || n_tok <= 0) return pq__fail(ctx, PQ_ERR_INVALID, "forward: empty batch");
    pq_status st = check_tokens(ctx, m, tokens, N);
    if (st) return st;
    pq__kv tmp = {0};
    if (!kv) {
        if (pos0 != 0) return pq__fail(ctx, PQ_ERR_INVALID, "forward: pos0 > 0 needs a KV cache");
        pq__config one = *c;
        one.n_layers = 1; /* the whole sequence is processed at once: one layer's cache suffices */
        if ((st = pq__kv_init(ctx, &tmp, &one, n_seq, n_tok))) return st;
        kv = &tmp;
    }
    float *x = pq__malloc(ctx, (size_t)(N * D) * sizeof(float), "hidden states");
    if (!x) {
        pq__kv_free(&tmp);
        return ctx->status;
    }
    embed_rows(m, tokens, N, x);
    for (int64_t l = 0; l < c->n_layers && st == PQ_OK; l++)
        st = pq__block_forward(ctx, m, l, &m->blocks[l], kv, x, n_seq, n_tok, pos0, NULL, NULL);
    if (st == PQ_OK) {
        const int nt = pq__threads(ctx);
        int64_t rows = N;
        if (last_only) {
            for (int64_t s = 0; s < n_seq; s++)
                memmove(x + s * D, x + (s * n_tok + n_tok - 1) * D, (size_t)D * sizeof(float));
            rows = n_seq;
        }
        pq__rmsnorm(x, x, m->out_norm, rows, D, c->norm_eps, nt);
        st = pq__linear_apply(ctx, &m->lm_head, x, logits, rows);
    }
    free(x);
    pq__kv_free(&tmp);
    return st;
}

pq_status pq__forward_reference(pq_ctx *ctx, const pq_model *m, const int32_t *tokens, int64_t n_tok, float *logits) {
    if (m->deferred) return pq__model_require_weights(ctx, m, "the forward pass");
    const pq__config *c = &m->cfg;
    const int64_t D = c->dim, F = c->hidden_dim, HD = c->head_dim, half = HD / 2;
    const int64_t QD = c->n_heads * HD, KD = c->n_kv_heads * HD, group = c->n_heads / c->n_kv_heads;
    pq_status st = check_tokens(ctx, m, tokens, n_tok);
    if (st) return st;
    size_t cache = (size_t)(c->n_layers * n_tok * KD);
    float *kc = pq__calloc(ctx, cache, sizeof(float), "cache"), *vc = pq__calloc(ctx, cache, sizeof(float), "cache");
    float *x = pq__calloc(ctx, (size_t)(D * 2 + QD * 2 + KD * 2 + F * 2 + n_tok + HD), sizeof(float), "state");
    if (!kc || !vc || !x) {
        free(kc);
        free(vc);
        free(x);
        return ctx->status;
    }
    float *xb = x + D, *q = xb + D, *att = q + QD, *k = att + QD, *v = k + KD, *hb = v + KD, *hb2 = hb + F;
    float *sc = hb2 + F, *cs = sc + n_tok, *sn = cs + half;
    for (int64_t pos = 0; pos < n_tok; pos++) {
        embed_rows(m, tokens + pos, 1, x);
        for (int64_t i = 0; i < half; i++) {
            float val = (float)pos * m->inv_freq[i];
            cs[i] = cosf(val);
            sn[i] = sinf(val);
        }
        for (int64_t l = 0; l < c->n_layers; l++) {
            const pq__block *b = &m->blocks[l];
            float *kl = kc + (size_t)(l * n_tok * KD), *vl = vc + (size_t)(l * n_tok * KD);
            pq__rmsnorm_ref(xb, x, b->attn_norm, D, c->norm_eps);
            pq__qmat_matmul_ref(&b->q.w, xb, b->q.b, q, 1);
            pq__qmat_matmul_ref(&b->k.w, xb, b->k.b, k, 1);
            pq__qmat_matmul_ref(&b->v.w, xb, b->v.b, v, 1);
            rope_apply(q, c->n_heads, HD, c->rope_halfsplit, cs, sn);
            rope_apply(k, c->n_kv_heads, HD, c->rope_halfsplit, cs, sn);
            memcpy(kl + pos * KD, k, (size_t)KD * sizeof(float));
            memcpy(vl + pos * KD, v, (size_t)KD * sizeof(float));
            for (int64_t h = 0; h < c->n_heads; h++) {
                const int64_t kvh = h / group;
                for (int64_t j = 0; j <= pos; j++) {
                    float dot = 0.0f;
                    for (int64_t d = 0; d < HD; d++)
                        dot += q[h * HD + d] * kl[j * KD + kvh * HD + d];
                    sc[j] = dot / sqrtf((float)HD);
                }
                pq__softmax(sc, pos + 1);
                for (int64_t d = 0; d < HD; d++) {
                    float o = 0.0f;
                    for (int64_t j = 0; j <= pos; j++)
                        o += sc[j] * vl[j * KD + kvh * HD + d];
                    att[h * HD + d] = o;
                }
            }
            pq__qmat_matmul_ref(&b->o.w, att, b->o.b, xb, 1);
            for (int64_t i = 0; i < D; i++)
                x[i] += xb[i];
            pq__rmsnorm_ref(xb, x, b->ffn_norm, D, c->norm_eps);
            pq__qmat_matmul_ref(&b->gate.w, xb, b->gate.b, hb, 1);
            pq__qmat_matmul_ref(&b->up.w, xb, b->up.b, hb2, 1);
            for (int64_t i = 0; i < F; i++)
                hb[i] = hb[i] * (1.0f / (1.0f + expf(-hb[i]))) * hb2[i];
            pq__qmat_matmul_ref(&b->down.w, hb, b->down.b, xb, 1);
            for (int64_t i = 0; i < D; i++)
                x[i] += xb[i];
        }
        pq__rmsnorm_ref(x, x, m->out_norm, D, c->norm_eps);
        pq__qmat_matmul_ref(&m->lm_head.w, x, NULL, logits + pos * c->vocab_size, 1);
    }
    free(kc);
    free(vc);
    free(x);
    return PQ_OK;
}

pq_status pq_model_logits(pq_ctx *ctx, const pq_model *m, const int32_t *tokens, int64_t n_seq, int64_t n_tok,
                          int reference, float *logits) {
    if (n_tok > m->cfg.max_seq_len)
        return pq__fail(ctx, PQ_ERR_INVALID, "%lld tokens exceed the model's context of %lld", (long long)n_tok,
                        (long long)m->cfg.max_seq_len);
    if (!reference) return pq__forward(ctx, m, NULL, tokens, n_seq, n_tok, 0, 0, logits);
    for (int64_t s = 0; s < n_seq; s++) {
        pq_status st =
            pq__forward_reference(ctx, m, tokens + s * n_tok, n_tok, logits + s * n_tok * m->cfg.vocab_size);
        if (st) return st;
    }
    return PQ_OK;
}
