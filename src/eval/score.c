/* Log-likelihood scoring of continuations (multiple choice, LAMBADA, partial scoring) and
 * greedy generation with stop strings. A shared context runs once; each choice is scored
 * from a copy of the context's KV state, all choices in one batch. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "kernels/kernels.h"

double pq__log_prob(const float *logits, int64_t V, int32_t target, int *is_max) {
    const pq__lse r = pq__logsumexp(logits, V);
    if (is_max) *is_max = (r.argmax == target) || (logits[target] == r.max);
    return (double)logits[target] - (double)r.max - log(r.sum);
}

pq_status pq__score_shared(pq_ctx *ctx, const pq_model *m, const int32_t *ctx_ids, int64_t n_ctx,
                           const int32_t *const *conts, const int64_t *lens, int n, double *ll, int *greedy) {
    const int64_t V = m->cfg.vocab_size;
    if (n <= 0 || n_ctx <= 0) return pq__fail(ctx, PQ_ERR_INVALID, "score: empty context or no choices");
    int64_t maxlen = 0;
    for (int c = 0; c < n; c++)
        if (lens[c] > maxlen) maxlen = lens[c];
    if (n_ctx + maxlen > m->cfg.max_seq_len)
        return pq__fail(ctx, PQ_ERR_INVALID,
                        "score: %lld context + %lld continuation tokens exceed the context of %lld", (long long)n_ctx,
                        (long long)maxlen, (long long)m->cfg.max_seq_len);
    pq__kv kv;
    pq_status st = pq__kv_init(ctx, &kv, &m->cfg, n, n_ctx + (maxlen > 0 ? maxlen : 1));
    if (st) return st;
    const int64_t nt = maxlen > 1 ? maxlen - 1 : 0;
    float *last = pq__malloc(ctx, (size_t)V * sizeof(float), "logits");
    float *logits = NULL;
    int32_t *batch = NULL;
    if (!last) goto fail;
    if (nt > 0) {
        logits = pq__malloc(ctx, (size_t)(n * nt) * (size_t)V * sizeof(float), "choice logits");
        batch = pq__malloc(ctx, (size_t)(n * nt) * sizeof(int32_t), "choice tokens");
        if (!logits || !batch) goto fail;
    }
    if ((st = pq__forward(ctx, m, &kv, ctx_ids, 1, n_ctx, 0, 1, last))) goto done;
    if (nt > 0) {
        /* copy the context's cache rows of sequence 0 to every other sequence */
        for (int64_t l = 0; l < kv.n_layers; l++)
            for (int c = 1; c < n; c++) {
                size_t src = (size_t)((l * kv.n_seq + 0) * kv.n_ctx) * (size_t)kv.kv_dim;
                size_t dst = (size_t)((l * kv.n_seq + c) * kv.n_ctx) * (size_t)kv.kv_dim;
                memcpy(kv.k + dst, kv.k + src, (size_t)(n_ctx * kv.kv_dim) * sizeof(float));
                memcpy(kv.v + dst, kv.v + src, (size_t)(n_ctx * kv.kv_dim) * sizeof(float));
            }
        /* inputs: tokens 0..len-2 of each continuation, right-padded (causal: padding
         * after a sequence's last real token cannot change its earlier logits) */
        for (int c = 0; c < n; c++)
            for (int64_t j = 0; j < nt; j++)
                batch[c * nt + j] = j < lens[c] - 1 ? conts[c][j] : conts[c][0];
        if ((st = pq__forward(ctx, m, &kv, batch, n, nt, n_ctx, 0, logits))) goto done;
    }
    for (int c = 0; c < n; c++) {
        double s = 0;
        int all = 1;
        for (int64_t j = 0; j < lens[c]; j++) {
            int is_max = 0;
            const float *lg = j == 0 ? last : logits + ((int64_t)c * nt + j - 1) * V;
            s += pq__log_prob(lg, V, conts[c][j], &is_max);
            all &= is_max;
        }
        ll[c] = s;
        if (greedy) greedy[c] = all;
    }
    goto done;
fail:
    st = ctx->status;
done:
    free(last);
    free(logits);
    free(batch);
    pq__kv_free(&kv);
    return st;
}

pq_status pq__score_partial(pq_ctx *ctx, const pq_model *m, const int32_t *const *ctxs, const int64_t *ctx_lens,
                            const int32_t *cont, int64_t n_cont, int n, double *ll, int *greedy) {
    const int64_t V = m->cfg.vocab_size;
    int64_t L = 0;
    for (int c = 0; c < n; c++) {
        if (ctx_lens[c] <= 0) return pq__fail(ctx, PQ_ERR_INVALID, "score: empty context");
        if (ctx_lens[c] + n_cont > L) L = ctx_lens[c] + n_cont;
    }
    if (L > m->cfg.max_seq_len)
        return pq__fail(ctx, PQ_ERR_INVALID, "score: %lld tokens exceed the context of %lld", (long long)L,
                        (long long)m->cfg.max_seq_len);
    int32_t *batch = pq__malloc(ctx, (size_t)(n * L) * sizeof(int32_t), "tokens");
    float *logits = batch ? pq__malloc(ctx, (size_t)(n * L) * (size_t)V * sizeof(float), "logits") : NULL;
    pq_status st = PQ_OK;
    if (!logits) {
        st = ctx->status;
        goto done;
    }
    for (int c = 0; c < n; c++)
        for (int64_t j = 0; j < L; j++) {
            int64_t k = j - ctx_lens[c];
            batch[c * L + j] = j < ctx_lens[c] ? ctxs[c][j] : k < n_cont ? cont[k] : cont[0];
        }
    if ((st = pq__forward(ctx, m, NULL, batch, n, L, 0, 0, logits))) goto done;
    for (int c = 0; c < n; c++) {
        double s = 0;
        int all = 1;
        for (int64_t j = 0; j < n_cont; j++) {
            int is_max = 0;
            s += pq__log_prob(logits + ((int64_t)c * L + ctx_lens[c] + j - 1) * V, V, cont[j], &is_max);
            all &= is_max;
        }
        ll[c] = s;
        if (greedy) greedy[c] = all;
    }
done:
    free(batch);
    free(logits);
    return st;
}

int pq__mc_pick(const double *ll, const int64_t *chars, int n) {
    int best = 0;
    double bv = -INFINITY;
    for (int c = 0; c < n; c++) {
        double v = chars ? ll[c] / (double)(chars[c] > 0 ? chars[c] : 1) : ll[c];
        if (v > bv) {
            bv = v;
            best = c;
        }
    }
    return best;
}

int64_t pq__utf8_len(const char *s) {
    int64_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static const pq_tokenizer *need_tok(pq_ctx *ctx, const pq_model *m) {
    const pq_tokenizer *t = pq_model_tokenizer(m);
    if (!t) pq__fail(ctx, PQ_ERR_INVALID, "eval: the model has no tokenizer (give one with --tokenizer)");
    return t;
}

/* Drops the oldest tokens after position 0 (BOS) so that n + room fits in max. */
static void truncate_left(int32_t *ids, int64_t *n, int64_t room, int64_t max) {
    if (*n + room <= max) return;
    int64_t keep = max - room - 1; /* tokens kept after ids[0] */
    if (keep < 0) keep = 0;
    memmove(ids + 1, ids + *n - keep, (size_t)keep * sizeof(int32_t));
    *n = keep + 1;
}

/* Continuation tokens of (context + sep + cont) after the n_ctx tokens of context, the
 * harness's split. Falls back to tokenizing cont alone when the split leaves nothing. */
static pq_status split_cont(pq_ctx *ctx, const pq_tokenizer *t, const char *context, int64_t n_ctx, const char *cont,
                            int32_t **out, int64_t *n_out) {
    size_t lc = strlen(context), lx = strlen(cont);
    char *whole = pq__malloc(ctx, lc + lx + 2, "text");
    if (!whole) return ctx->status;
    memcpy(whole, context, lc);
    whole[lc] = ' ';
    memcpy(whole + lc + 1, cont, lx + 1);
    int32_t *ids = NULL;
    int64_t n = 0;
    pq_status st = pq_tokenize(ctx, t, whole, lc + lx + 1, 1, &ids, &n);
    free(whole);
    if (st) return st;
    if (n > n_ctx) {
        memmove(ids, ids + n_ctx, (size_t)(n - n_ctx) * sizeof(int32_t));
        *out = ids;
        *n_out = n - n_ctx;
        return PQ_OK;
    }
    free(ids);
    return pq_tokenize(ctx, t, cont, lx, 0, out, n_out);
}

/* Frees v[n] token lists and v (NULL is a no-op). */
static void free_token_lists(int32_t **v, int n) {
    for (int c = 0; v && c < n; c++)
        free(v[c]);
    free(v);
}

pq_status pq__score_mc_text(pq_ctx *ctx, const pq_model *m, const char *context, const char *const *choices, int n,
                            double *ll, int64_t *chars, int *greedy) {
    const pq_tokenizer *t = need_tok(ctx, m);
    if (!t) return ctx->status;
    int32_t *cids = NULL, **conts = pq__calloc(ctx, (size_t)n, sizeof *conts, "the tokens of the choices");
    int64_t nc = 0, *lens = conts ? pq__calloc(ctx, (size_t)n, sizeof *lens, "the lengths of the choices") : NULL;
    int64_t maxlen = 0;
    pq_status st = PQ_OK;
    if (!lens) {
        st = ctx->status;
        goto done;
    }
    if ((st = pq_tokenize(ctx, t, context, strlen(context), 1, &cids, &nc))) goto done;
    for (int c = 0; c < n; c++) {
        if ((st = split_cont(ctx, t, context, nc, choices[c], &conts[c], &lens[c]))) goto done;
        const int64_t cap = m->cfg.max_seq_len - 2;
        if (lens[c] > cap) lens[c] = cap;
        if (lens[c] > maxlen) maxlen = lens[c];
        if (chars) chars[c] = 1 + pq__utf8_len(choices[c]);
    }
    truncate_left(cids, &nc, maxlen, m->cfg.max_seq_len);
    st = pq__score_shared(ctx, m, cids, nc, (const int32_t *const *)conts, lens, n, ll, greedy);
done:
    free_token_lists(conts, n);
    free(lens);
    free(cids);
    return st;
}

pq_status pq__score_partial_text(pq_ctx *ctx, const pq_model *m, const char *const *contexts, int n, const char *cont,
                                 double *ll) {
    const pq_tokenizer *t = need_tok(ctx, m);
    if (!t) return ctx->status;
    int32_t **cids = pq__calloc(ctx, (size_t)n, sizeof *cids, "the tokens of the contexts"), *ct = NULL;
    int64_t *cl = cids ? pq__calloc(ctx, (size_t)n, sizeof *cl, "the lengths of the contexts") : NULL, n_ct = 0;
    pq_status st = PQ_OK;
    if (!cl) {
        st = ctx->status;
        goto done;
    }
    /* the continuation split is taken against the first context (the harness tokenizes
     * each pair; for SentencePiece the split is the same when contexts end in a word) */
    for (int c = 0; c < n; c++)
        if ((st = pq_tokenize(ctx, t, contexts[c], strlen(contexts[c]), 1, &cids[c], &cl[c]))) goto done;
    if ((st = split_cont(ctx, t, contexts[0], cl[0], cont, &ct, &n_ct))) goto done;
    if (n_ct > m->cfg.max_seq_len - 2) n_ct = m->cfg.max_seq_len - 2;
    for (int c = 0; c < n; c++)
        truncate_left(cids[c], &cl[c], n_ct, m->cfg.max_seq_len);
    st = pq__score_partial(ctx, m, (const int32_t *const *)cids, cl, ct, n_ct, n, ll, NULL);
done:
    free_token_lists(cids, n);
    free(cl);
    free(ct);
    return st;
}

/* ---------------------------------------------------------------- generation */

typedef struct gen_state {
    pq__str text;
    const char *const *stops;
    int n_stops;
    size_t cut; /* (size_t)-1 while no stop seen */
    int oom;
} gen_state;

static int on_gen_token(void *user, int32_t id, const char *piece, size_t len) {
    (void)id; /* a pq_token_fn: the text is what is scored */
    gen_state *g = user;
    size_t old = g->text.len;
    if (!pq__str_add(&g->text, piece, len)) {
        g->oom = 1;
        return 1;
    }
    for (int i = 0; i < g->n_stops; i++) {
        size_t sl = strlen(g->stops[i]);
        if (!sl) continue;
        size_t from = old >= sl ? old - sl + 1 : 0;
        const char *hit = strstr(g->text.p + from, g->stops[i]);
        if (hit && (size_t)(hit - g->text.p) < g->cut) g->cut = (size_t)(hit - g->text.p);
    }
    return g->cut != (size_t)-1;
}

pq_status pq__generate_text(pq_ctx *ctx, const pq_model *m, const char *prompt, const char *const *stops, int n_stops,
                            int64_t max_tokens, char **out) {
    *out = NULL;
    const pq_tokenizer *t = need_tok(ctx, m);
    if (!t) return ctx->status;
    int32_t *ids = NULL;
    int64_t n = 0;
    pq_status st = pq_tokenize(ctx, t, prompt, strlen(prompt), 1, &ids, &n);
    if (st) return st;
    const int64_t max = m->cfg.max_seq_len;
    int64_t room = max_tokens < max / 2 ? max_tokens : max / 2;
    if (room < 1) room = 1;
    if (n == 0) {
        free(ids);
        return pq__fail(ctx, PQ_ERR_INVALID, "generate: empty prompt");
    }
    truncate_left(ids, &n, room, max);
    pq_gen_params gp = pq_gen_params_default();
    gp.temperature = 0;
    gp.n_predict = max_tokens < max - n ? max_tokens : max - n;
    gen_state g = {{NULL, 0, 0}, stops, n_stops, (size_t)-1, 0};
    pq__str_add(&g.text, "", 0);
    st = pq_generate(ctx, m, ids, n, &gp, on_gen_token, &g);
    free(ids);
    if (!st && (g.oom || !g.text.p))
        st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory growing the generated text beyond %zu bytes", g.text.cap);
    if (st) {
        free(g.text.p);
        return st;
    }
    if (g.cut != (size_t)-1) g.text.p[g.cut] = 0;
    *out = g.text.p;
    return PQ_OK;
}

/* ---------------------------------------------------------------- strings, rng */

int pq__str_add(pq__str *s, const char *t, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *p = realloc(s->p, cap);
        if (!p) return 0;
        s->p = p;
        s->cap = cap;
    }
    if (n) memcpy(s->p + s->len, t, n);
    s->len += n;
    s->p[s->len] = 0;
    return 1;
}

int pq__str_adds(pq__str *s, const char *t) {
    return pq__str_add(s, t, strlen(t));
}

int pq__str_addf(pq__str *s, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k < 0) return 0;
    if ((size_t)k < sizeof buf) return pq__str_add(s, buf, (size_t)k);
    char *big = malloc((size_t)k + 1);
    if (!big) return 0;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    int ok = pq__str_add(s, big, (size_t)k);
    free(big);
    return ok;
}

uint64_t pq__rng_next(uint64_t *s) {
    if (!*s) *s = 0x9E3779B97F4A7C15ull;
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}
