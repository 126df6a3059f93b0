/* Text generation with a KV cache and llama2.c's sampler (xorshift RNG, temperature,
 * top-p), so that seeds reproduce run.c's samples. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"

pq_gen_params pq_gen_params_default(void) {
    pq_gen_params p = {256, 1.0f, 0.9f, 0};
    return p;
}

static uint32_t rng_u32(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (uint32_t)((*s * 0x2545F4914F6CDD1Dull) >> 32);
}

static float rng_f32(uint64_t *s) {
    return (float)(rng_u32(s) >> 8) / 16777216.0f;
}

/* Greedy: the first (lowest id) maximum. */
static int32_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

typedef struct {
    float prob;
    int32_t index;
} prob_index;

static int cmp_prob(const void *a, const void *b) {
    const prob_index *x = a, *y = b;
    if (x->prob > y->prob) return -1;
    if (x->prob < y->prob) return 1;
    return 0;
}

static int32_t sample_mult(const float *p, int64_t n, float coin) {
    float cdf = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf) return (int32_t)i;
    }
    return (int32_t)(n - 1);
}

/* Nucleus sampling as llama2.c: candidates above (1-topp)/(n-1), sorted, cut at topp. */
static int32_t sample_topp(const float *p, int64_t n, float topp, prob_index *pi, float coin) {
    int64_t n0 = 0;
    const float cutoff = (1.0f - topp) / (float)(n - 1);
    for (int64_t i = 0; i < n; i++)
        if (p[i] >= cutoff) {
            pi[n0].index = (int32_t)i;
            pi[n0].prob = p[i];
            n0++;
        }
    qsort(pi, (size_t)n0, sizeof *pi, cmp_prob);
    float cum = 0.0f;
    int64_t last = n0 - 1;
    for (int64_t i = 0; i < n0; i++) {
        cum += pi[i].prob;
        if (cum > topp) {
            last = i;
            break;
        }
    }
    float r = coin * cum, cdf = 0.0f;
    for (int64_t i = 0; i <= last; i++) {
        cdf += pi[i].prob;
        if (r < cdf) return pi[i].index;
    }
    return pi[last].index;
}

pq_status pq_generate(pq_ctx *ctx, const pq_model *m, const int32_t *prompt, int64_t n_prompt,
                      const pq_gen_params *params, pq_token_fn on_token, void *user) {
    pq_gen_params def = pq_gen_params_default();
    if (!params) params = &def;
    const int64_t V = m->cfg.vocab_size;
    if (n_prompt <= 0) return pq__fail(ctx, PQ_ERR_INVALID, "generate: empty prompt (start with BOS)");
    if (n_prompt >= m->cfg.max_seq_len)
        return pq__fail(ctx, PQ_ERR_INVALID, "generate: prompt of %lld tokens fills the model's context of %lld",
                        (long long)n_prompt, (long long)m->cfg.max_seq_len);
    if (params->temperature < 0 || params->top_p < 0)
        return pq__fail(ctx, PQ_ERR_INVALID, "generate: temperature and top-p must be >= 0");
    int64_t n_ctx = n_prompt + params->n_predict;
    if (n_ctx > m->cfg.max_seq_len) n_ctx = m->cfg.max_seq_len;
    pq__kv kv;
    pq_status st = pq__kv_init(ctx, &kv, &m->cfg, 1, n_ctx);
    if (st) return st;
    float *logits = pq__malloc(ctx, (size_t)V * sizeof(float), "logits");
    prob_index *pi = pq__malloc(ctx, (size_t)V * sizeof *pi, "sampler");
    if (!logits || !pi) {
        st = ctx->status;
        goto done;
    }
    uint64_t rng = params->seed ? params->seed : 0x9E3779B97F4A7C15ull; /* xorshift must not start at 0 */
    const int32_t bos = m->tok ? pq_tokenizer_bos(m->tok) : m->cfg.bos_id;
    const int32_t eos = m->tok ? pq_tokenizer_eos(m->tok) : m->cfg.eos_id;
    if ((st = pq__forward(ctx, m, &kv, prompt, 1, n_prompt, 0, 1, logits))) goto done;
    int32_t prev = prompt[n_prompt - 1];
    for (int64_t pos = n_prompt, made = 0; made < params->n_predict; pos++, made++) {
        int32_t next;
        if (params->temperature == 0.0f) {
            next = argmax(logits, V);
        } else {
            for (int64_t i = 0; i < V; i++)
                logits[i] /= params->temperature;
            pq__softmax(logits, V);
            float coin = rng_f32(&rng);
            next = (params->top_p <= 0 || params->top_p >= 1) ? sample_mult(logits, V, coin)
                                                              : sample_topp(logits, V, params->top_p, pi, coin);
        }
        if (next == bos || next == eos) break;
        if (on_token) {
            char buf[16];
            size_t len = 0;
            const char *piece = m->tok ? pq_token_to_piece(m->tok, prev, next, buf, &len) : "";
            if (on_token(user, next, piece, len)) break;
        }
        prev = next;
        if (pos >= n_ctx || made + 1 >= params->n_predict) break;
        if ((st = pq__forward(ctx, m, &kv, &next, 1, 1, pos, 1, logits))) break;
    }
done:
    free(logits);
    free(pi);
    pq__kv_free(&kv);
    return st;
}
