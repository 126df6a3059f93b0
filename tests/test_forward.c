/* The fast batched forward pass against the readable reference path, on synthetic Llama,
 * Mistral (GQA) and Qwen2 (q/k/v biases) models, tied and untied, both RoPE layouts,
 * several rope_theta; plus KV-cache consistency and HF round trips through files. */
#include <stdlib.h>
#include <unistd.h>

#include "synth.h"
#include "test.h"

static float max_abs_diff(const float *a, const float *b, int64_t n) {
    float m = 0;
    for (int64_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

static void random_tokens(int32_t *t, int64_t n, int64_t vocab, uint64_t seed) {
    uint64_t s = seed + 7;
    for (int64_t i = 0; i < n; i++)
        t[i] = (int32_t)(synth_rng(&s) % (uint64_t)vocab);
}

/* fast vs reference on n_seq sequences of n_tok tokens */
static void check_model(pq_ctx *ctx, const pq_model *m, const char *what) {
    const int64_t n_seq = 3, n_tok = 19, V = m->cfg.vocab_size;
    int32_t *tok = malloc(sizeof(int32_t) * n_seq * n_tok);
    float *fast = malloc(sizeof(float) * n_seq * n_tok * V), *ref = malloc(sizeof(float) * n_seq * n_tok * V);
    random_tokens(tok, n_seq * n_tok, V, 42);
    CHECK(pq_model_logits(ctx, m, tok, n_seq, n_tok, 0, fast) == PQ_OK);
    CHECK(pq_model_logits(ctx, m, tok, n_seq, n_tok, 1, ref) == PQ_OK);
    float d = max_abs_diff(fast, ref, n_seq * n_tok * V);
    CHECK_MSG(d <= 1e-4f, "%s: fast vs reference max abs diff %g", what, d);

    /* KV cache: prefill 11 tokens then 8 single steps == full forward */
    pq__kv kv;
    CHECK(pq__kv_init(ctx, &kv, &m->cfg, 1, n_tok) == PQ_OK);
    float *step = malloc(sizeof(float) * V * n_tok);
    CHECK(pq__forward(ctx, m, &kv, tok, 1, 11, 0, 0, step) == PQ_OK);
    for (int64_t p = 11; p < n_tok; p++)
        CHECK(pq__forward(ctx, m, &kv, tok + p, 1, 1, p, 1, step + p * V) == PQ_OK);
    d = max_abs_diff(step, ref, n_tok * V);
    CHECK_MSG(d <= 1e-4f, "%s: KV-cache steps vs reference max abs diff %g", what, d);
    pq__kv_free(&kv);
    free(step);
    free(tok);
    free(fast);
    free(ref);
}

static void check_roundtrip(pq_ctx *ctx, const pq_model *m, const char *what) {
    char dir[] = "/tmp/pq_test_fwdXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const char *names[3] = {"hf", "model.gguf", "hf16"};
    const pq_format fmts[3] = {PQ_FORMAT_HF, PQ_FORMAT_GGUF, PQ_FORMAT_HF};
    const pq_dtype dts[3] = {PQ_DTYPE_F32, PQ_DTYPE_F32, PQ_DTYPE_F16};
    const int64_t n_tok = 9, V = m->cfg.vocab_size;
    int32_t tok[9];
    random_tokens(tok, n_tok, V, 3);
    float *a = malloc(sizeof(float) * n_tok * V), *b = malloc(sizeof(float) * n_tok * V);
    CHECK(pq_model_logits(ctx, m, tok, 1, n_tok, 0, a) == PQ_OK);
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        pq_status st = pq_model_save(ctx, m, fmts[i], path, dts[i]);
        CHECK_MSG(st == PQ_OK, "%s: save %s: %s", what, names[i], pq_ctx_error(ctx));
        pq_model *r = NULL;
        st = pq_model_load(ctx, path, NULL, &r);
        CHECK_MSG(st == PQ_OK, "%s: load %s: %s", what, names[i], pq_ctx_error(ctx));
        if (!r) continue;
        CHECK(r->cfg.n_kv_heads == m->cfg.n_kv_heads && r->cfg.tied == m->cfg.tied &&
              r->cfg.qkv_bias == m->cfg.qkv_bias && r->cfg.rope_theta == m->cfg.rope_theta);
        CHECK(pq_model_logits(ctx, r, tok, 1, n_tok, 0, b) == PQ_OK);
        float d = max_abs_diff(a, b, n_tok * V);
        float tol = dts[i] == PQ_DTYPE_F32 ? 1e-4f : 5e-2f;
        CHECK_MSG(d <= tol, "%s: %s round trip logits differ by %g", what, names[i], d);
        pq_model_free(r);
    }
    free(a);
    free(b);
    pq__rmtree(dir);
}

int main(void) {
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, 2);
    struct {
        const char *name;
        pq__arch arch;
        int64_t dim, hidden, layers, heads, kv, vocab;
        int tied, halfsplit;
        float theta;
    } cases[] = {
        {"llama untied", PQ_ARCH_LLAMA, 64, 160, 2, 4, 4, 97, 0, 1, 10000.0f},
        {"llama tied interleaved", PQ_ARCH_LLAMA, 64, 172, 2, 8, 4, 128, 1, 0, 10000.0f},
        {"mistral gqa", PQ_ARCH_MISTRAL, 96, 256, 3, 6, 2, 111, 0, 1, 1000000.0f},
        {"qwen2 biases tied", PQ_ARCH_QWEN2, 64, 128, 2, 4, 2, 90, 1, 1, 1000000.0f},
        {"qwen2 biases untied", PQ_ARCH_QWEN2, 128, 200, 2, 8, 8, 77, 0, 1, 500000.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pq__config c = synth_config(cases[i].arch, cases[i].dim, cases[i].hidden, cases[i].layers, cases[i].heads,
                                    cases[i].kv, cases[i].vocab);
        c.tied = cases[i].tied;
        c.rope_halfsplit = cases[i].halfsplit;
        c.rope_theta = cases[i].theta;
        pq_model *m = synth_model(ctx, &c, 1000 + i);
        CHECK_MSG(m != NULL, "%s: %s", cases[i].name, pq_ctx_error(ctx));
        if (!m) continue;
        check_model(ctx, m, cases[i].name);
        check_roundtrip(ctx, m, cases[i].name);
        pq_model_free(m);
    }
    /* llama3 rope scaling changes the frequencies but fast == reference still */
    pq__config c = synth_config(PQ_ARCH_LLAMA, 64, 128, 1, 4, 2, 50);
    c.rope_scaling = 1;
    c.rope_factor = 8;
    c.rope_low_freq_factor = 1;
    c.rope_high_freq_factor = 4;
    c.rope_orig_max_pos = 64;
    pq_model *m = synth_model(ctx, &c, 5);
    CHECK(m != NULL);
    if (m) {
        check_model(ctx, m, "llama3 rope scaling");
        pq_model_free(m);
    }
    pq_ctx_free(ctx);
    return test_end("test_forward");
}
