/* Synthetic Llama-family models with fixed seeds, built in memory (no files), for tests and
 * benchmarks. Header-only; includes internal headers. */
#ifndef PQ_TEST_SYNTH_H
#define PQ_TEST_SYNTH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/source.h"
#include "model/model.h"

static inline uint64_t synth_rng(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-1, 1). */
static inline float synth_unif(uint64_t *s) {
    return (float)((synth_rng(s) >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static inline int synth_add(pq_ctx *ctx, pq__source *src, uint64_t *rng, const char *name, int64_t rows, int64_t cols,
                            float scale, float offset) {
    int64_t n = rows * (cols ? cols : 1);
    float *w = malloc((size_t)n * sizeof(float));
    if (!w) return 0;
    for (int64_t i = 0; i < n; i++)
        w[i] = offset + scale * synth_unif(rng);
    int64_t shape[2] = {rows, cols};
    pq__tensor *t = pq__source_add(ctx, src, name, PQ_DTYPE_F32, cols ? 2 : 1, shape, w, (size_t)n * 4);
    if (!t) {
        free(w);
        return 0;
    }
    t->owned = w;
    return 1;
}

/* Fills src with random weights for cfg (weights scaled ~1/sqrt(fan_in)). Returns 1 on success. */
static inline int synth_source(pq_ctx *ctx, pq__source *src, const pq__config *cfg, uint64_t seed) {
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    pq__source_init(src);
    src->path = strdup("synthetic");
    snprintf(src->format, sizeof src->format, "hf");
    src->cfg = *cfg;
    const int64_t D = cfg->dim, F = cfg->hidden_dim, QD = cfg->n_heads * cfg->head_dim;
    const int64_t KD = cfg->n_kv_heads * cfg->head_dim;
    const float sd = 1.7f / sqrtf((float)D), sf = 1.7f / sqrtf((float)F), sq = 1.7f / sqrtf((float)QD);
    int ok = synth_add(ctx, src, &rng, "model.embed_tokens.weight", cfg->vocab_size, D, 1.0f, 0.0f);
    char n[160];
    for (int64_t l = 0; l < cfg->n_layers && ok; l++) {
#define NAME(s) (snprintf(n, sizeof n, "model.layers.%lld.%s", (long long)l, s), n)
        ok = ok && synth_add(ctx, src, &rng, NAME("input_layernorm.weight"), D, 0, 0.2f, 1.0f);
        ok = ok && synth_add(ctx, src, &rng, NAME("self_attn.q_proj.weight"), QD, D, sd, 0);
        ok = ok && synth_add(ctx, src, &rng, NAME("self_attn.k_proj.weight"), KD, D, sd, 0);
        ok = ok && synth_add(ctx, src, &rng, NAME("self_attn.v_proj.weight"), KD, D, sd, 0);
        if (cfg->qkv_bias) {
            ok = ok && synth_add(ctx, src, &rng, NAME("self_attn.q_proj.bias"), QD, 0, 0.1f, 0);
            ok = ok && synth_add(ctx, src, &rng, NAME("self_attn.k_proj.bias"), KD, 0, 0.1f, 0);
            ok = ok && synth_add(ctx, src, &rng, NAME("self_attn.v_proj.bias"), KD, 0, 0.1f, 0);
        }
        ok = ok && synth_add(ctx, src, &rng, NAME("self_attn.o_proj.weight"), D, QD, sq, 0);
        ok = ok && synth_add(ctx, src, &rng, NAME("post_attention_layernorm.weight"), D, 0, 0.2f, 1.0f);
        ok = ok && synth_add(ctx, src, &rng, NAME("mlp.gate_proj.weight"), F, D, sd, 0);
        ok = ok && synth_add(ctx, src, &rng, NAME("mlp.up_proj.weight"), F, D, sd, 0);
        ok = ok && synth_add(ctx, src, &rng, NAME("mlp.down_proj.weight"), D, F, sf, 0);
#undef NAME
    }
    ok = ok && synth_add(ctx, src, &rng, "model.norm.weight", D, 0, 0.2f, 1.0f);
    if (!cfg->tied) ok = ok && synth_add(ctx, src, &rng, "lm_head.weight", cfg->vocab_size, D, sd, 0);
    return ok;
}

static inline pq__config synth_config(pq__arch arch, int64_t dim, int64_t hidden, int64_t layers, int64_t heads,
                                      int64_t kv_heads, int64_t vocab) {
    pq__config c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    c.dim = dim;
    c.hidden_dim = hidden;
    c.n_layers = layers;
    c.n_heads = heads;
    c.n_kv_heads = kv_heads;
    c.head_dim = dim / heads;
    c.vocab_size = vocab;
    c.max_seq_len = 256;
    c.norm_eps = 1e-6f;
    c.rope_theta = 10000.0f;
    c.rope_halfsplit = 1;
    c.qkv_bias = arch == PQ_ARCH_QWEN2;
    c.bos_id = 1;
    c.eos_id = 2;
    return c;
}

static inline pq_model *synth_model(pq_ctx *ctx, const pq__config *cfg, uint64_t seed) {
    pq__source src;
    if (!synth_source(ctx, &src, cfg, seed)) {
        pq__source_free(&src);
        return NULL;
    }
    pq_model *m = NULL;
    if (pq__model_from_source(ctx, &src, &m) != PQ_OK) return NULL;
    return m;
}

#endif
