/* The decoder forward pass: a batched fast path (every linear layer multiplied as stored by the
 * kernels of kernels/qmat.h: BLAS for float32, GEMV / packed-panel GEMM for float16, bfloat16
 * and packed codes; threads over sequences x heads x tokens for attention) and a readable
 * reference path that follows llama2.c's run.c one token at a time. Tests hold the first to
 * the second. A block of the fast path is the composition of its sub-stages (model/stages.h),
 * which the compression pipeline also runs one at a time. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "model/stages.h"

pq_status pq__linear_apply(pq_ctx *ctx, const pq__linear *lin, const float *x, float *y, int64_t n) {
    if (pq__qmat_matmul_act(ctx, &lin->w, x, lin->b, y, n, pq__threads(ctx), PQ_ISA_AUTO, ctx->int8_act))
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory for the work buffers of a %lld x %lld product",
                        (long long)lin->rows, (long long)lin->cols);
    return PQ_OK;
}

pq_status pq__linears_apply(pq_ctx *ctx, int k, const pq__linear *const *lins, const float *x, float *const *ys,
                            int64_t n) {
    const pq__qmat *w[PQ_QMAT_MANY_MAX];
    const float *b[PQ_QMAT_MANY_MAX];
    if (k > PQ_QMAT_MANY_MAX) return pq__fail(ctx, PQ_ERR_INVALID, "pq__linears_apply: %d linears", k);
    for (int j = 0; j < k; j++)
        w[j] = &lins[j]->w, b[j] = lins[j]->b;
    if (pq__qmat_matmul_many(ctx, k, w, b, x, ys, n, pq__threads(ctx), PQ_ISA_AUTO, ctx->int8_act))
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory for the work buffers of a %lld x %lld product",
                        (long long)lins[0]->rows, (long long)lins[0]->cols);
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

/* New tokens per sequence up to which attention runs row by row (no GEMM per head). Above, all
 * of a head's queries go through one pair of GEMMs: tiles of queries (skipping the masked half
 * of a causal prompt, about 1.5 % of a 512-token prompt's arithmetic on a 1B model) change
 * OpenBLAS's Haswell rounding and with it compress's bytes (tests/cli_golden.sh). */
#define PQ_ATTEND_ROWS 4

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

/* scratch: the buffer is the context's activation scratch (kept for the next block; one
 * such work set at a time), else its own allocation, in large pages like the scratch's (compress
 * allocates a 338 MiB set per pass over a Llama-3-8B block, five passes a block, each touched
 * fresh: on a VM the kernel's fault entry went from 2.9 to 1.95 % of bench_compress's CPU
 * samples with 2 MiB pages; zeroing the pages stays). */
static pq_status ws_init(pq_ctx *ctx, pq__block_ws *ws, const pq__config *c, int64_t n_seq, int64_t n_tok,
                         int64_t n_ctx, int scratch) {
    memset(ws, 0, sizeof *ws);
    const int nt = pq__threads(ctx);
    const int64_t N = n_seq * n_tok, D = c->dim, F = c->hidden_dim, HD = c->head_dim, half = HD / 2;
    const int64_t QD = c->n_heads * HD, KD = c->n_kv_heads * HD;
    const size_t nbuf = (size_t)(N * (D + QD + 2 * KD + QD + 2 * F) + n_tok * HD + (int64_t)nt * n_tok * n_ctx);
    float *buf = scratch ? pq__scratch(ctx, PQ_SCRATCH_ACT, nbuf * sizeof(float))
                         : pq__big_malloc(ctx, nbuf * sizeof(float), "activations");
    if (!buf) return ctx->status;
    *ws =
        (pq__block_ws){.n_seq = n_seq, .n_tok = n_tok, .n_ctx = n_ctx, .n_threads = nt, .buf = scratch ? NULL : buf};
    ws->xb = buf;
    ws->q = ws->xb + N * D;
    ws->k = ws->q + N * QD;
    ws->v = ws->k + N * KD;
    ws->att = ws->v + N * KD;
    ws->hb = ws->att + N * QD;
    ws->hb2 = ws->hb + N * F;
    ws->cs = ws->hb2 + N * F;
    ws->sn = ws->cs + n_tok * half;
    ws->scores = ws->sn + n_tok * half;
    return PQ_OK;
}

pq_status pq__block_ws_init(pq_ctx *ctx, pq__block_ws *ws, const pq__config *c, int64_t n_seq, int64_t n_tok,
                            int64_t n_ctx) {
    return ws_init(ctx, ws, c, n_seq, n_tok, n_ctx, 0);
}

void pq__block_ws_free(pq__block_ws *ws) {
    if (!ws) return;
    free(ws->buf);
    memset(ws, 0, sizeof *ws);
}

void pq__block_attn_norm(const pq_model *m, const pq__block *b, pq__block_ws *ws, int64_t n_seq, const float *x) {
    pq__rmsnorm(ws->xb, x, b->attn_norm, n_seq * ws->n_tok, m->cfg.dim, m->cfg.norm_eps, ws->n_threads);
}

void pq__block_ffn_norm(const pq_model *m, const pq__block *b, pq__block_ws *ws, int64_t n_seq, const float *x) {
    pq__rmsnorm(ws->xb, x, b->ffn_norm, n_seq * ws->n_tok, m->cfg.dim, m->cfg.norm_eps, ws->n_threads);
}

/* Causal attention per (sequence, head) of q [N, QD] over the cached keys/values: for a few new
 * tokens (decoding) one row at a time, else as two GEMMs, rows past the causal limit masked
 * before the softmax. */
static void attend(const pq_model *m, int64_t layer, const pq__kv *kv, pq__block_ws *ws, int64_t n_seq, int64_t pos0,
                   float *att) {
    const pq__config *c = &m->cfg;
    const int nt = ws->n_threads;
    const int64_t n_tok = ws->n_tok, HD = c->head_dim, QD = c->n_heads * HD, KD = c->n_kv_heads * HD;
    const int64_t T = pos0 + n_tok, group = c->n_heads / c->n_kv_heads;
    const float scale = 1.0f / sqrtf((float)HD);
    const int prev_threads = pq__blas_threads_push(1); /* threads run over jobs, BLAS on one each */
#pragma omp parallel for num_threads(nt)                                                                             \
    schedule(dynamic, 1) if (n_seq * c->n_heads * n_tok * T * HD >= PQ_PAR_MIN_ELEMS)
    for (int64_t job = 0; job < n_seq * c->n_heads; job++) {
        const int64_t s = job / c->n_heads, h = job % c->n_heads, kvh = h / group;
        float *sc = ws->scores + (int64_t)omp_get_thread_num() * n_tok * T;
        const float *qh = ws->q + s * n_tok * QD + h * HD;
        const float *kh = kv->k + kv_off(kv, layer, s, 0) + kvh * HD,
                    *vh = kv->v + kv_off(kv, layer, s, 0) + kvh * HD;
        float *out = att + s * n_tok * QD + h * HD;
        if (n_tok <= PQ_ATTEND_ROWS) {
            for (int64_t t = 0; t < n_tok; t++)
                pq__attend_row(qh + t * QD, kh, vh, KD, pos0 + t + 1, HD, scale, sc, out + t * QD);
            continue;
        }
        pq__sgemm(PQ_NOTRANS, PQ_TRANS, n_tok, T, HD, scale, qh, QD, kh, KD, 0.0f, sc, T);
        for (int64_t t = 0; t < n_tok; t++) {
            const int64_t len = pos0 + t + 1;
            pq__softmax(sc + t * T, len);
            memset(sc + t * T + len, 0, (size_t)(T - len) * sizeof(float));
        }
        pq__sgemm(PQ_NOTRANS, PQ_NOTRANS, n_tok, HD, T, 1.0f, sc, T, vh, KD, 0.0f, out, QD);
    }
    pq__blas_threads_pop(prev_threads);
}

pq_status pq__block_attention(pq_ctx *ctx, const pq_model *m, int64_t layer, const pq__block *b, pq__kv *kv,
                              pq__block_ws *ws, int64_t n_seq, int64_t pos0, float *att) {
    const pq__config *c = &m->cfg;
    const int64_t n_tok = ws->n_tok, N = n_seq * n_tok, HD = c->head_dim, half = HD / 2;
    const int64_t QD = c->n_heads * HD, KD = c->n_kv_heads * HD;
    if (pos0 + n_tok > kv->n_ctx || pos0 + n_tok > ws->n_ctx || n_seq > kv->n_seq || n_seq > ws->n_seq)
        return pq__fail(ctx, PQ_ERR_INVALID, "forward: context overflow");
    pq_status st;
    const pq__linear *qkv[3] = {&b->q, &b->k, &b->v};
    float *const out[3] = {ws->q, ws->k, ws->v};
    if ((st = pq__linears_apply(ctx, 3, qkv, ws->xb, out, N))) return st;
    float *cs = ws->cs, *sn = ws->sn, *q = ws->q, *k = ws->k, *v = ws->v;
    for (int64_t t = 0; t < n_tok; t++)
        rope_table(m, pos0 + t, cs + t * half, sn + t * half);
#pragma omp parallel for num_threads(ws->n_threads) schedule(static) if (N * QD >= PQ_PAR_MIN_ELEMS)
    for (int64_t i = 0; i < N; i++) {
        const int64_t s = i / n_tok, t = i % n_tok;
        rope_apply(q + i * QD, c->n_heads, HD, c->rope_halfsplit, cs + t * half, sn + t * half);
        rope_apply(k + i * KD, c->n_kv_heads, HD, c->rope_halfsplit, cs + t * half, sn + t * half);
        memcpy(kv->k + kv_off(kv, layer, s, pos0 + t), k + i * KD, (size_t)KD * sizeof(float));
        memcpy(kv->v + kv_off(kv, layer, s, pos0 + t), v + i * KD, (size_t)KD * sizeof(float));
    }
    attend(m, layer, kv, ws, n_seq, pos0, att);
    return PQ_OK;
}

/* x [N, dim] += lin(in), through ws->xb; the sums serially (the order of the block's). */
static pq_status linear_residual(pq_ctx *ctx, const pq__linear *lin, pq__block_ws *ws, int64_t n_seq, const float *in,
                                 float *x) {
    const int64_t n = n_seq * ws->n_tok * lin->rows;
    const pq_status st = pq__linear_apply(ctx, lin, in, ws->xb, n_seq * ws->n_tok);
    if (st == PQ_OK)
        for (int64_t i = 0; i < n; i++)
            x[i] += ws->xb[i];
    return st;
}

pq_status pq__block_attn_out(pq_ctx *ctx, const pq__block *b, pq__block_ws *ws, int64_t n_seq, const float *att,
                             float *x) {
    return linear_residual(ctx, &b->o, ws, n_seq, att, x);
}

pq_status pq__block_ffn_act(pq_ctx *ctx, const pq__block *b, pq__block_ws *ws, int64_t n_seq, float *hb) {
    const int64_t N = n_seq * ws->n_tok, F = b->gate.rows;
    float *hb2 = ws->hb2;
    pq_status st;
    const pq__linear *gu[2] = {&b->gate, &b->up};
    float *const out[2] = {hb, hb2};
    if ((st = pq__linears_apply(ctx, 2, gu, ws->xb, out, N))) return st;
#pragma omp parallel for num_threads(ws->n_threads) schedule(static) if (N * F >= PQ_PAR_MIN_ELEMS)
    for (int64_t i = 0; i < N * F; i++) {
        float g = hb[i];
        hb[i] = g * (1.0f / (1.0f + expf(-g))) * hb2[i];
    }
    return PQ_OK;
}

pq_status pq__block_ffn_out(pq_ctx *ctx, const pq__block *b, pq__block_ws *ws, int64_t n_seq, const float *hb,
                            float *x) {
    return linear_residual(ctx, &b->down, ws, n_seq, hb, x);
}

/* The stages in order (model/stages.h), with the activation captures between them. */
pq_status pq__block_forward(pq_ctx *ctx, const pq_model *m, int64_t layer, const pq__block *b, pq__kv *kv, float *x,
                            int64_t n_seq, int64_t n_tok, int64_t pos0, pq__capture_fn capture, void *user) {
    const pq__config *c = &m->cfg;
    const int64_t N = n_seq * n_tok, D = c->dim, F = c->hidden_dim, QD = c->n_heads * c->head_dim;
    if (pos0 + n_tok > kv->n_ctx || n_seq > kv->n_seq)
        return pq__fail(ctx, PQ_ERR_INVALID, "forward: context overflow");
    pq__block_ws ws;
    pq_status st = ws_init(ctx, &ws, c, n_seq, n_tok, pos0 + n_tok, 1); /* kept for the next block */
    if (st) return st;
    pq__block_attn_norm(m, b, &ws, n_seq, x);
    if (capture) capture(user, layer, 0, ws.xb, N, D);
    st = pq__block_attention(ctx, m, layer, b, kv, &ws, n_seq, pos0, ws.att);
    if (st == PQ_OK && capture) capture(user, layer, 1, ws.att, N, QD);
    if (st == PQ_OK) st = pq__block_attn_out(ctx, b, &ws, n_seq, ws.att, x);
    if (st == PQ_OK) {
        pq__block_ffn_norm(m, b, &ws, n_seq, x);
        if (capture) capture(user, layer, 2, ws.xb, N, D);
        st = pq__block_ffn_act(ctx, b, &ws, n_seq, ws.hb);
    }
    if (st == PQ_OK && capture) capture(user, layer, 3, ws.hb, N, F);
    if (st == PQ_OK) st = pq__block_ffn_out(ctx, b, &ws, n_seq, ws.hb, x);
    pq__block_ws_free(&ws);
    return st;
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
