/* Hugging Face folder tests: tiny synthesized folders (Llama tied and untied, Mistral with
 * GQA and shards, Qwen2 with biases; F32/F16/BF16 weights) load into the expected config
 * and tensors; config.json written by pq__hf_write_config reads back the same; and broken
 * folders (config fields, architecture, JSON, missing or mis-shaped tensors, index.json,
 * tokenizer) fail with a one-line message naming what is wrong. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/dtype.h"
#include "io/hf.h"
#include "io/safetensors.h"
#include "failalloc.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

static char tmpdir[256];
static int folder_no;

/* ---------------------------------------------------------------- synthetic folders */

typedef struct spec {
    pq__arch arch;
    int64_t dim, hidden, layers, heads, kv, head_dim, vocab;
    int tied, bias;
    pq_dtype dtype;
} spec;

typedef struct tlist {
    pq__st_entry *e; /* [n] */
    float **f32;     /* [n] reference values (before rounding to dtype) */
    void **buf;      /* [n] stored bytes */
    char **names;    /* [n] */
    int n;
} tlist;

static void tl_add(tlist *l, const char *name, pq_dtype dt, int nd, int64_t d0, int64_t d1) {
    int i = l->n++;
    l->e = realloc(l->e, (size_t)l->n * sizeof *l->e);
    l->f32 = realloc(l->f32, (size_t)l->n * sizeof *l->f32);
    l->buf = realloc(l->buf, (size_t)l->n * sizeof *l->buf);
    l->names = realloc(l->names, (size_t)l->n * sizeof *l->names);
    l->names[i] = strdup(name);
    int64_t numel = nd == 1 ? d0 : d0 * d1;
    l->f32[i] = malloc((size_t)numel * sizeof(float) + 1);
    for (int64_t k = 0; k < numel; k++)
        l->f32[i][k] = (float)((k * 37 + i * 11) % 101 - 50) / 64.0f;
    l->buf[i] = malloc(pq__dtype_nbytes(dt, numel) + 1);
    pq__from_f32(dt, l->f32[i], l->buf[i], numel);
    l->e[i] = (pq__st_entry){l->names[i], dt,   nd, {d0, nd == 2 ? d1 : 0}, l->buf[i], pq__dtype_nbytes(dt, numel),
                             NULL,        NULL, 0};
}

static int tl_find(const tlist *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], name)) return i;
    return -1;
}

static void tl_remove(tlist *l, const char *name) {
    int i = tl_find(l, name);
    if (i < 0) return;
    free(l->names[i]);
    free(l->f32[i]);
    free(l->buf[i]);
    for (int k = i; k + 1 < l->n; k++) {
        l->e[k] = l->e[k + 1];
        l->f32[k] = l->f32[k + 1];
        l->buf[k] = l->buf[k + 1];
        l->names[k] = l->names[k + 1];
    }
    l->n--;
}

static void tl_free(tlist *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->names[i]);
        free(l->f32[i]);
        free(l->buf[i]);
    }
    free(l->e);
    free(l->f32);
    free(l->buf);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static void tl_build(tlist *l, const spec *s) {
    memset(l, 0, sizeof *l);
    const int64_t D = s->dim, F = s->hidden, QD = s->heads * s->head_dim, KD = s->kv * s->head_dim;
    char n[128];
    tl_add(l, "model.embed_tokens.weight", s->dtype, 2, s->vocab, D);
    for (int64_t i = 0; i < s->layers; i++) {
#define NAME(x) (snprintf(n, sizeof n, "model.layers.%lld.%s", (long long)i, x), n)
        tl_add(l, NAME("input_layernorm.weight"), s->dtype, 1, D, 0);
        tl_add(l, NAME("self_attn.q_proj.weight"), s->dtype, 2, QD, D);
        tl_add(l, NAME("self_attn.k_proj.weight"), s->dtype, 2, KD, D);
        tl_add(l, NAME("self_attn.v_proj.weight"), s->dtype, 2, KD, D);
        if (s->bias) {
            tl_add(l, NAME("self_attn.q_proj.bias"), s->dtype, 1, QD, 0);
            tl_add(l, NAME("self_attn.k_proj.bias"), s->dtype, 1, KD, 0);
            tl_add(l, NAME("self_attn.v_proj.bias"), s->dtype, 1, KD, 0);
        }
        tl_add(l, NAME("self_attn.o_proj.weight"), s->dtype, 2, D, QD);
        tl_add(l, NAME("post_attention_layernorm.weight"), s->dtype, 1, D, 0);
        tl_add(l, NAME("mlp.gate_proj.weight"), s->dtype, 2, F, D);
        tl_add(l, NAME("mlp.up_proj.weight"), s->dtype, 2, F, D);
        tl_add(l, NAME("mlp.down_proj.weight"), s->dtype, 2, D, F);
#undef NAME
    }
    tl_add(l, "model.norm.weight", s->dtype, 1, D, 0);
    if (!s->tied) tl_add(l, "lm_head.weight", s->dtype, 2, s->vocab, D);
}

static const char *arch_class(pq__arch a) {
    return a == PQ_ARCH_LLAMA ? "LlamaForCausalLM" : a == PQ_ARCH_MISTRAL ? "MistralForCausalLM" : "Qwen2ForCausalLM";
}

/* The usual config.json of s, with extra ("\"key\": value, ...") spliced in before the end. */
static void config_text(char *buf, size_t n, const spec *s, const char *extra) {
    snprintf(buf, n,
             "{\n  \"architectures\": [\"%s\"],\n  \"hidden_size\": %lld,\n  \"intermediate_size\": %lld,\n"
             "  \"num_hidden_layers\": %lld,\n  \"num_attention_heads\": %lld,\n  \"num_key_value_heads\": %lld,\n"
             "  \"vocab_size\": %lld,\n  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"float32\"%s%s\n}\n",
             arch_class(s->arch), (long long)s->dim, (long long)s->hidden, (long long)s->layers, (long long)s->heads,
             (long long)s->kv, (long long)s->vocab, s->tied ? "true" : "false", extra && *extra ? ",\n  " : "",
             extra ? extra : "");
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static void new_folder(char *dir, size_t n) {
    snprintf(dir, n, "%s/m%d", tmpdir, folder_no++);
    mkdir(dir, 0755);
}

/* Writes a folder: config (from s and extra) plus the weights of l (sharded when
 * shard_bytes > 0). */
static void write_folder(char *dir, size_t n, const spec *s, const char *extra, const tlist *l, size_t shard_bytes) {
    new_folder(dir, n);
    char cfg[4096];
    config_text(cfg, sizeof cfg, s, extra);
    write_text(dir, "config.json", cfg);
    pq_ctx *ctx = pq_ctx_new();
    CHECK_MSG(pq__safetensors_write_sharded(ctx, dir, l->e, l->n, shard_bytes, NULL) == PQ_OK, "%s",
              pq_ctx_error(ctx));
    pq_ctx_free(ctx);
}

/* ---------------------------------------------------------------- checks */

static char last_warn[1024];
static void on_log(void *user, pq_log_level level, const char *msg) {
    (void)user;
    if (level == PQ_LOG_WARN) snprintf(last_warn, sizeof last_warn, "%s", msg);
}

static void check_tensors(const pq__source *src, const tlist *l) {
    CHECK_MSG(src->n_tensors == l->n, "%lld tensors, want %d", (long long)src->n_tensors, l->n);
    for (int i = 0; i < l->n; i++) {
        const pq__tensor *t = pq__source_find(src, l->names[i]);
        CHECK_MSG(t != NULL, "missing %s", l->names[i]);
        if (!t) continue;
        CHECK(t->dtype == l->e[i].dtype);
        CHECK(t->n_dims == l->e[i].n_dims);
        CHECK(t->shape[0] == l->e[i].shape[0]);
        if (t->n_dims == 2) CHECK(t->shape[1] == l->e[i].shape[1]);
        int64_t numel = pq__tensor_numel(t);
        float *f = malloc((size_t)numel * sizeof(float) + 1);
        CHECK(pq__to_f32(t->dtype, t->data, f, numel));
        /* the test values are multiples of 1/64 in [-50/64, 50/64]: exact in every dtype */
        int same = 1;
        for (int64_t k = 0; k < numel; k++)
            same &= f[k] == l->f32[i][k];
        CHECK_MSG(same, "values of %s", l->names[i]);
        free(f);
    }
}

/* Loads dir; expects failure with status want (any if PQ_OK) and a one-line message
 * containing needle. */
static void expect_load_fail(const char *dir, pq_status want, const char *needle) {
    pq_ctx *ctx = pq_ctx_new();
    pq__source src;
    pq__source_init(&src);
    pq_status st = pq__hf_load(ctx, dir, 1, &src);
    const char *m = pq_ctx_error(ctx);
    CHECK_MSG(st != PQ_OK, "%s: loaded, expected failure with '%s'", dir, needle);
    if (want != PQ_OK) CHECK_MSG(st == want, "status %d, want %d: %s", st, want, m);
    CHECK_MSG(m[0] && !strchr(m, '\n'), "message: '%s'", m);
    CHECK_MSG(strstr(m, needle) != NULL, "'%s' lacks '%s'", m, needle);
    pq__source_free(&src);
    pq_ctx_free(ctx);
}

static pq_status load(const char *dir, pq__source *src, pq_ctx *ctx) {
    pq__source_init(src);
    pq_status st = pq__hf_load(ctx, dir, 1, src);
    CHECK_MSG(st == PQ_OK, "%s: %s", dir, pq_ctx_error(ctx));
    return st;
}

/* ---------------------------------------------------------------- good folders */

static void test_llama_untied(void) {
    spec s = {PQ_ARCH_LLAMA, 16, 40, 2, 4, 4, 4, 32, 0, 0, PQ_DTYPE_F32};
    tlist l;
    tl_build(&l, &s);
    char dir[512];
    write_folder(
        dir, sizeof dir, &s,
        "\"bos_token_id\": 1, \"eos_token_id\": 2, \"rms_norm_eps\": 1e-05, \"max_position_embeddings\": 512, "
        "\"hidden_act\": \"silu\", \"rope_scaling\": null, \"attention_bias\": false",
        &l, 0);
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_log(ctx, on_log, NULL);
    last_warn[0] = 0;
    pq__source src;
    if (load(dir, &src, ctx) == PQ_OK) {
        const pq__config *c = &src.cfg;
        CHECK(c->arch == PQ_ARCH_LLAMA);
        CHECK(c->dim == 16 && c->hidden_dim == 40 && c->n_layers == 2 && c->n_heads == 4 && c->n_kv_heads == 4);
        CHECK(c->head_dim == 4 && c->vocab_size == 32 && c->max_seq_len == 512);
        CHECK(c->norm_eps == 1e-5f);
        CHECK(c->rope_theta == 10000.0f); /* default */
        CHECK(c->rope_halfsplit == 1);
        CHECK(c->tied == 0 && c->qkv_bias == 0 && c->rope_scaling == 0);
        CHECK(c->bos_id == 1 && c->eos_id == 2);
        CHECK(!strcmp(src.format, "hf"));
        CHECK(src.path && !strcmp(src.path, dir));
        CHECK(src.tok == NULL);
        CHECK(src.n_files == 1);
        check_tensors(&src, &l);
        CHECK(pq__source_check_llama(ctx, &src) == PQ_OK);
    }
    CHECK(strstr(last_warn, "tokenizer") == NULL); /* no tokenizer file: info, not a warning */
    pq__source_free(&src);

    /* without mmap too */
    pq__source_init(&src);
    CHECK(pq__hf_load(ctx, dir, 0, &src) == PQ_OK);
    check_tensors(&src, &l);
    pq__source_free(&src);

    /* a broken tokenizer.json beside the weights is an error naming it */
    write_text(dir, "tokenizer.json", "{}");
    pq__source_init(&src);
    CHECK(pq__hf_load(ctx, dir, 1, &src) != PQ_OK);
    CHECK_MSG(strstr(pq_ctx_error(ctx), "tokenizer.json") != NULL, "error: '%s'", pq_ctx_error(ctx));
    pq__source_free(&src);
    {
        char p[600];
        snprintf(p, sizeof p, "%s/tokenizer.json", dir);
        unlink(p);
    }

    /* tokenizer.model beside the weights is loaded */
    {
        const char *pieces[] = {"<unk>", "<s>", "</s>", " a", "b"};
        size_t lens[] = {5, 3, 4, 2, 1};
        float scores[] = {0, 0, 0, -1, -2};
        pq_tokenizer *tok = NULL;
        char p[600];
        snprintf(p, sizeof p, "%s/tokenizer.model", dir);
        CHECK(pq__tokenizer_new_spm(ctx, 5, pieces, lens, scores, NULL, 1, 2, 0, 1, &tok) == PQ_OK);
        CHECK_MSG(tok && pq__tokenizer_save_spm_model(ctx, tok, p) == PQ_OK, "%s", pq_ctx_error(ctx));
        pq_tokenizer_free(tok);
        if (load(dir, &src, ctx) == PQ_OK) {
            CHECK(src.tok != NULL);
            CHECK(pq_tokenizer_n_vocab(src.tok) == 5);
        }
        pq__source_free(&src);
    }

    /* a broken tokenizer.model is an error */
    write_text(dir, "tokenizer.model", "\xff\xff\xff");
    pq__source_init(&src);
    CHECK(pq__hf_load(ctx, dir, 1, &src) != PQ_OK);
    CHECK(strstr(pq_ctx_error(ctx), "tokenizer.model") != NULL);
    pq__source_free(&src);
    pq_ctx_free(ctx);
    tl_free(&l);
}

static void test_llama_tied_f16_llama3(void) {
    spec s = {PQ_ARCH_LLAMA, 16, 24, 1, 2, 1, 8, 20, 1, 0, PQ_DTYPE_F16};
    tlist l;
    tl_build(&l, &s);
    char dir[512];
    write_folder(dir, sizeof dir, &s,
                 "\"rope_theta\": 500000.0, \"eos_token_id\": [128001, 128009], \"bos_token_id\": null, "
                 "\"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                 "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}",
                 &l, 0);
    pq_ctx *ctx = pq_ctx_new();
    pq__source src;
    if (load(dir, &src, ctx) == PQ_OK) {
        const pq__config *c = &src.cfg;
        CHECK(c->tied == 1);
        CHECK(c->n_kv_heads == 1 && c->head_dim == 8);
        CHECK(c->max_seq_len == 2048 && c->norm_eps == 1e-6f);
        CHECK(c->rope_theta == 500000.0f);
        CHECK(c->rope_scaling == 1 && c->rope_factor == 8.0f && c->rope_low_freq_factor == 1.0f);
        CHECK(c->rope_high_freq_factor == 4.0f && c->rope_orig_max_pos == 8192);
        CHECK(c->bos_id == -1 && c->eos_id == 128001);
        CHECK(pq__source_find(&src, "lm_head.weight") == NULL);
        check_tensors(&src, &l);
    }
    pq__source_free(&src);

    /* "type" instead of "rope_type", linear and default scaling */
    write_folder(dir, sizeof dir, &s, "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", &l, 0);
    if (load(dir, &src, ctx) == PQ_OK) CHECK(src.cfg.rope_scaling == 2 && src.cfg.rope_factor == 2.0f);
    pq__source_free(&src);
    write_folder(dir, sizeof dir, &s, "\"rope_scaling\": {\"rope_type\": \"default\"}", &l, 0);
    if (load(dir, &src, ctx) == PQ_OK) CHECK(src.cfg.rope_scaling == 0);
    pq__source_free(&src);

    /* tied, but an lm_head is stored anyway: accepted when its shape is right */
    tl_add(&l, "lm_head.weight", PQ_DTYPE_F16, 2, s.vocab, s.dim);
    write_folder(dir, sizeof dir, &s, NULL, &l, 0);
    if (load(dir, &src, ctx) == PQ_OK) CHECK(src.cfg.tied == 1);
    pq__source_free(&src);
    pq_ctx_free(ctx);
    tl_free(&l);
}

static void test_mistral_gqa_sharded(void) {
    spec s = {PQ_ARCH_MISTRAL, 32, 48, 3, 8, 2, 4, 40, 0, 0, PQ_DTYPE_BF16};
    tlist l;
    tl_build(&l, &s);
    char dir[512];
    write_folder(dir, sizeof dir, &s,
                 "\"rope_theta\": 1000000.0, \"sliding_window\": 4096, \"max_position_embeddings\": 32768", &l, 3000);
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    CHECK(pq__file_exists(p));
    pq_ctx *ctx = pq_ctx_new();
    pq__source src;
    if (load(dir, &src, ctx) == PQ_OK) {
        const pq__config *c = &src.cfg;
        CHECK(c->arch == PQ_ARCH_MISTRAL);
        CHECK(c->n_heads == 8 && c->n_kv_heads == 2 && c->head_dim == 4);
        CHECK(c->rope_theta == 1000000.0f);
        CHECK(c->max_seq_len == 4096); /* limited to the sliding window */
        CHECK(src.n_files > 2);
        check_tensors(&src, &l);
    }
    pq__source_free(&src);

    /* head_dim given explicitly, q_dim != hidden_size (as in Mistral-Nemo) */
    spec s2 = {PQ_ARCH_MISTRAL, 24, 32, 1, 4, 2, 8, 16, 0, 0, PQ_DTYPE_F32};
    tlist l2;
    tl_build(&l2, &s2);
    write_folder(dir, sizeof dir, &s2, "\"head_dim\": 8, \"sliding_window\": null", &l2, 0);
    if (load(dir, &src, ctx) == PQ_OK) {
        CHECK(src.cfg.head_dim == 8 && src.cfg.max_seq_len == 2048);
        check_tensors(&src, &l2);
    }
    pq__source_free(&src);
    tl_free(&l2);
    pq_ctx_free(ctx);
    tl_free(&l);
}

static void test_qwen2_bias(void) {
    spec s = {PQ_ARCH_QWEN2, 16, 32, 2, 4, 2, 4, 24, 1, 1, PQ_DTYPE_BF16};
    tlist l;
    tl_build(&l, &s);
    char dir[512];
    write_folder(dir, sizeof dir, &s,
                 "\"use_sliding_window\": false, \"sliding_window\": 64, \"rms_norm_eps\": 1e-06", &l, 0);
    pq_ctx *ctx = pq_ctx_new();
    pq__source src;
    if (load(dir, &src, ctx) == PQ_OK) {
        CHECK(src.cfg.arch == PQ_ARCH_QWEN2);
        CHECK(src.cfg.qkv_bias == 1 && src.cfg.tied == 1);
        CHECK(src.cfg.max_seq_len == 2048); /* sliding window off */
        CHECK(pq__source_find(&src, "model.layers.1.self_attn.k_proj.bias") != NULL);
        check_tensors(&src, &l);
    }
    pq__source_free(&src);

    /* a missing bias is named */
    tl_remove(&l, "model.layers.1.self_attn.v_proj.bias");
    write_folder(dir, sizeof dir, &s, NULL, &l, 0);
    expect_load_fail(dir, PQ_ERR_FORMAT, "model.layers.1.self_attn.v_proj.bias");
    pq_ctx_free(ctx);
    tl_free(&l);
}

/* Llama with attention_bias: q/k/v biases; an o_proj bias is accepted only when zero. */
static void test_llama_attention_bias(void) {
    spec s = {PQ_ARCH_LLAMA, 8, 16, 1, 2, 2, 4, 10, 1, 1, PQ_DTYPE_F32};
    tlist l;
    tl_build(&l, &s);
    tl_add(&l, "model.layers.0.self_attn.o_proj.bias", PQ_DTYPE_F32, 1, 8, 0);
    char dir[512];
    write_folder(dir, sizeof dir, &s, "\"attention_bias\": true", &l, 0);
    expect_load_fail(dir, PQ_ERR_UNSUPPORTED, "o_proj.bias");
    int i = tl_find(&l, "model.layers.0.self_attn.o_proj.bias");
    memset(l.buf[i], 0, l.e[i].nbytes);
    write_folder(dir, sizeof dir, &s, "\"attention_bias\": true", &l, 0);
    pq_ctx *ctx = pq_ctx_new();
    pq__source src;
    if (load(dir, &src, ctx) == PQ_OK) CHECK(src.cfg.qkv_bias == 1);
    pq__source_free(&src);
    pq_ctx_free(ctx);
    tl_free(&l);
}

/* config.json written by pq__hf_write_config reads back to the same config. */
static void test_write_config(void) {
    spec s = {PQ_ARCH_LLAMA, 16, 24, 1, 4, 2, 4, 20, 0, 0, PQ_DTYPE_F32};
    tlist l;
    tl_build(&l, &s);
    pq__config cfgs[3];
    memset(cfgs, 0, sizeof cfgs);
    for (int k = 0; k < 3; k++) {
        pq__config *c = &cfgs[k];
        c->arch = k == 0 ? PQ_ARCH_LLAMA : k == 1 ? PQ_ARCH_MISTRAL : PQ_ARCH_QWEN2;
        c->dim = 16, c->hidden_dim = 24, c->n_layers = 1, c->n_heads = 4, c->n_kv_heads = 2, c->head_dim = 4;
        c->vocab_size = 20, c->max_seq_len = 1024, c->norm_eps = 1e-5f, c->rope_theta = 500000.0f;
        c->rope_halfsplit = 1, c->tied = k == 2, c->qkv_bias = k == 2;
        c->rope_scaling = k == 0 ? 1 : k == 1 ? 2 : 0;
        c->rope_factor = k == 2 ? 1.0f : 8.0f, c->rope_low_freq_factor = k == 0 ? 1.0f : 0.0f;
        c->rope_high_freq_factor = k == 0 ? 4.0f : 0.0f, c->rope_orig_max_pos = k == 0 ? 8192 : 0;
        c->bos_id = k == 1 ? -1 : 1, c->eos_id = 2;
    }
    pq_ctx *ctx = pq_ctx_new();
    for (int k = 0; k < 3; k++) {
        const pq__config *c = &cfgs[k];
        spec sk = s;
        sk.arch = c->arch;
        sk.tied = c->tied;
        sk.bias = c->qkv_bias;
        tlist lk;
        tl_build(&lk, &sk);
        char dir[512], p[600];
        new_folder(dir, sizeof dir);
        snprintf(p, sizeof p, "%s/config.json", dir);
        CHECK_MSG(pq__hf_write_config(ctx, c, p, k == 1 ? NULL : "bfloat16") == PQ_OK, "%s", pq_ctx_error(ctx));
        CHECK(pq__safetensors_write_sharded(ctx, dir, lk.e, lk.n, 0, NULL) == PQ_OK);
        char *text = NULL;
        CHECK(pq__read_text(ctx, p, 1 << 20, &text, NULL) == PQ_OK);
        if (text) {
            CHECK_MSG(strstr(text, "1e-05") != NULL, "eps written as shortest: %s", text);
            CHECK(strstr(text, arch_class(c->arch)) != NULL);
            CHECK((strstr(text, "bfloat16") != NULL) == (k != 1));
            cJSON *root = cJSON_Parse(text);
            CHECK(root != NULL);
            cJSON_Delete(root);
        }
        free(text);
        pq__source src;
        if (load(dir, &src, ctx) == PQ_OK) {
            const pq__config *r = &src.cfg;
            CHECK(r->arch == c->arch && r->dim == c->dim && r->hidden_dim == c->hidden_dim);
            CHECK(r->n_layers == c->n_layers && r->n_heads == c->n_heads && r->n_kv_heads == c->n_kv_heads);
            CHECK(r->head_dim == c->head_dim && r->vocab_size == c->vocab_size && r->max_seq_len == c->max_seq_len);
            CHECK(r->norm_eps == c->norm_eps && r->rope_theta == c->rope_theta);
            CHECK(r->tied == c->tied && r->qkv_bias == c->qkv_bias && r->rope_scaling == c->rope_scaling);
            if (c->rope_scaling) CHECK(r->rope_factor == c->rope_factor);
            if (c->rope_scaling == 1) {
                CHECK(r->rope_low_freq_factor == c->rope_low_freq_factor);
                CHECK(r->rope_high_freq_factor == c->rope_high_freq_factor);
                CHECK(r->rope_orig_max_pos == c->rope_orig_max_pos);
            }
            CHECK(r->bos_id == c->bos_id && r->eos_id == c->eos_id);
        }
        pq__source_free(&src);
        tl_free(&lk);
    }
    /* bad arguments: nothing written */
    char dir[512], p[600];
    new_folder(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    pq__config bad = cfgs[0];
    bad.norm_eps = INFINITY;
    CHECK(pq__hf_write_config(ctx, &bad, p, NULL) == PQ_ERR_INVALID);
    CHECK(!pq__file_exists(p));
    pq_ctx_free(ctx);
    tl_free(&l);
}

/* ---------------------------------------------------------------- broken folders */

static void test_config_errors(void) {
    spec s = {PQ_ARCH_LLAMA, 8, 16, 1, 2, 2, 4, 10, 1, 0, PQ_DTYPE_F32};
    tlist l;
    tl_build(&l, &s);
    char dir[512];
    write_folder(dir, sizeof dir, &s, NULL, &l, 0);

    static const struct {
        const char *config;
        pq_status st;
        const char *needle;
    } cases[] = {
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"intermediate_size\": 16, \"num_hidden_layers\": 1, "
         "\"num_attention_heads\": 2, \"vocab_size\": 10}",
         PQ_ERR_FORMAT, "config.json: field 'hidden_size': missing"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"8\", \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10}",
         PQ_ERR_FORMAT, "'hidden_size'"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 0, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10}",
         PQ_ERR_FORMAT, "'intermediate_size'"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1.5, \"num_attention_heads\": 2, \"vocab_size\": 10}",
         PQ_ERR_FORMAT, "'num_hidden_layers'"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"vocab_size\": 10}",
         PQ_ERR_FORMAT, "'num_attention_heads': missing"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 3, \"vocab_size\": 10}",
         PQ_ERR_FORMAT, "'num_key_value_heads'"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1e12, \"num_attention_heads\": 2, \"vocab_size\": 10}",
         PQ_ERR_FORMAT, "'num_hidden_layers'"},
        {"{\"architectures\": [\"GPT2LMHeadModel\"], \"hidden_size\": 8}", PQ_ERR_UNSUPPORTED, "GPT2LMHeadModel"},
        {"{\"hidden_size\": 8}", PQ_ERR_FORMAT, "'architectures': missing"},
        {"{\"architectures\": \"LlamaForCausalLM\"}", PQ_ERR_FORMAT, "'architectures'"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, ", PQ_ERR_FORMAT, "JSON"},
        {"[1, 2]", PQ_ERR_FORMAT, "config.json"},
        {"", PQ_ERR_FORMAT, "JSON"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10, "
         "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}",
         PQ_ERR_UNSUPPORTED, "yarn"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10, "
         "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}}",
         PQ_ERR_FORMAT, "rope_scaling.low_freq_factor"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10, \"rope_scaling\": 3}",
         PQ_ERR_FORMAT, "rope_scaling"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10, \"rms_norm_eps\": -1}",
         PQ_ERR_FORMAT, "rms_norm_eps"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10, \"tie_word_embeddings\": "
         "\"yes\"}",
         PQ_ERR_FORMAT, "tie_word_embeddings"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10, \"hidden_act\": \"gelu\"}",
         PQ_ERR_UNSUPPORTED, "gelu"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10, "
         "\"quantization_config\": {\"bits\": 4}}",
         PQ_ERR_UNSUPPORTED, "quantization_config"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 9, \"intermediate_size\": 16, "
         "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10}",
         PQ_ERR_FORMAT, "head_dim"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(dir, "config.json", cases[i].config);
        expect_load_fail(dir, cases[i].st, cases[i].needle);
    }
    /* wrong sizes in an otherwise fine config: caught by the shape check */
    spec big = s;
    big.vocab = 11;
    char cfg[4096];
    config_text(cfg, sizeof cfg, &big, NULL);
    write_text(dir, "config.json", cfg);
    expect_load_fail(dir, PQ_ERR_FORMAT, "model.embed_tokens.weight");

    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    expect_load_fail(dir, PQ_ERR_IO, "config.json");
    snprintf(p, sizeof p, "%s/none", tmpdir);
    expect_load_fail(p, PQ_ERR_IO, "none");
    tl_free(&l);
}

static void test_tensor_errors(void) {
    spec s = {PQ_ARCH_LLAMA, 8, 16, 2, 2, 1, 4, 10, 0, 0, PQ_DTYPE_F16};
    tlist l;
    char dir[512];

    tl_build(&l, &s);
    tl_remove(&l, "model.layers.1.mlp.up_proj.weight");
    write_folder(dir, sizeof dir, &s, NULL, &l, 0);
    expect_load_fail(dir, PQ_ERR_FORMAT, "'model.layers.1.mlp.up_proj.weight': missing");
    tl_free(&l);

    tl_build(&l, &s);
    tl_remove(&l, "lm_head.weight");
    write_folder(dir, sizeof dir, &s, NULL, &l, 0);
    expect_load_fail(dir, PQ_ERR_FORMAT, "lm_head.weight");
    tl_free(&l);

    /* k_proj with the q shape (GQA ignored) */
    tl_build(&l, &s);
    int i = tl_find(&l, "model.layers.0.self_attn.k_proj.weight");
    l.e[i].shape[0] = 8;
    l.e[i].shape[1] = 4; /* same byte count, wrong shape */
    write_folder(dir, sizeof dir, &s, NULL, &l, 0);
    expect_load_fail(dir, PQ_ERR_FORMAT, "'model.layers.0.self_attn.k_proj.weight': shape [8, 4], expected [4, 8]");
    tl_free(&l);

    /* a norm stored as a 2-D tensor */
    tl_build(&l, &s);
    i = tl_find(&l, "model.norm.weight");
    l.e[i].n_dims = 2;
    l.e[i].shape[0] = 1;
    l.e[i].shape[1] = 8;
    write_folder(dir, sizeof dir, &s, NULL, &l, 0);
    expect_load_fail(dir, PQ_ERR_FORMAT, "'model.norm.weight': shape [1, 8]");
    tl_free(&l);

    /* integer weights */
    tl_build(&l, &s);
    i = tl_find(&l, "model.layers.0.input_layernorm.weight");
    l.e[i].dtype = PQ_DTYPE_I16;
    write_folder(dir, sizeof dir, &s, NULL, &l, 0);
    expect_load_fail(dir, PQ_ERR_UNSUPPORTED, "model.layers.0.input_layernorm.weight");
    tl_free(&l);

    /* no weights at all; pickle only */
    new_folder(dir, sizeof dir);
    char cfg[4096];
    config_text(cfg, sizeof cfg, &s, NULL);
    write_text(dir, "config.json", cfg);
    expect_load_fail(dir, PQ_ERR_IO, "model.safetensors");
    write_text(dir, "pytorch_model.bin", "PK");
    expect_load_fail(dir, PQ_ERR_UNSUPPORTED, "pytorch_model.bin");

    /* a corrupt model.safetensors is named */
    write_text(dir, "model.safetensors", "\x10\0\0\0\0\0\0\0{\"a\":1}");
    expect_load_fail(dir, PQ_ERR_FORMAT, "model.safetensors");
}

static void test_index_errors(void) {
    spec s = {PQ_ARCH_LLAMA, 8, 16, 2, 2, 2, 4, 10, 1, 0, PQ_DTYPE_F32};
    tlist l;
    tl_build(&l, &s);
    char dir[512], p[600];
    write_folder(dir, sizeof dir, &s, NULL, &l, 1500); /* < 10 shards */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    char *good = NULL;
    pq_ctx *ctx = pq_ctx_new();
    CHECK(pq__read_text(ctx, p, 1 << 20, &good, NULL) == PQ_OK);
    pq__source src;
    if (load(dir, &src, ctx) == PQ_OK) check_tensors(&src, &l);
    pq__source_free(&src);

    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {");
    expect_load_fail(dir, PQ_ERR_FORMAT, "JSON");
    write_text(dir, "model.safetensors.index.json", "{\"metadata\": {}}");
    expect_load_fail(dir, PQ_ERR_FORMAT, "weight_map");
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {}}");
    expect_load_fail(dir, PQ_ERR_FORMAT, "weight_map");
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"model.norm.weight\": 3}}");
    expect_load_fail(dir, PQ_ERR_FORMAT, "model.norm.weight");
    write_text(dir, "model.safetensors.index.json",
               "{\"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}");
    expect_load_fail(dir, PQ_ERR_FORMAT, "../x.safetensors");
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"model.norm.weight\": \"/etc/passwd\"}}");
    expect_load_fail(dir, PQ_ERR_FORMAT, "/etc/passwd");
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"model.norm.weight\": \"\"}}");
    expect_load_fail(dir, PQ_ERR_FORMAT, "model.norm.weight");
    write_text(dir, "model.safetensors.index.json",
               "{\"weight_map\": {\"model.norm.weight\": \"gone.safetensors\"}}");
    expect_load_fail(dir, PQ_ERR_IO, "gone.safetensors");

    /* a tensor listed in the wrong shard (model.norm.weight sits in the last one), and one
     * listed that does not exist */
    const char *key = "\"model.norm.weight\": \"model-0000";
    char *at = good ? strstr(good, key) : NULL;
    CHECK(at != NULL);
    if (at) {
        char *bad = strdup(good);
        bad[(at - good) + strlen(key)] = '1';
        write_text(dir, "model.safetensors.index.json", bad);
        expect_load_fail(dir, PQ_ERR_FORMAT, "'model.norm.weight': not found in shard 'model-00001-of-");
        char shard[64];
        snprintf(shard, sizeof shard, "%.32s", at + strlen(key) - 10);
        char ghost[256];
        snprintf(ghost, sizeof ghost, "{\"weight_map\": {\"model.ghost.weight\": \"%s\"}}", shard);
        write_text(dir, "model.safetensors.index.json", ghost);
        expect_load_fail(dir, PQ_ERR_FORMAT, "'model.ghost.weight': not found in shard 'model-");
        free(bad);
    }
    free(good);

    /* the same tensor in two shards */
    write_folder(dir, sizeof dir, &s, NULL, &l, 1500); /* < 10 shards */
    pq__st_entry dup = l.e[0];
    snprintf(p, sizeof p, "%s/extra.safetensors", dir);
    CHECK(pq__safetensors_write(ctx, p, &dup, 1, NULL) == PQ_OK);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    good = NULL;
    CHECK(pq__read_text(ctx, p, 1 << 20, &good, NULL) == PQ_OK);
    if (good) {
        char *w = strstr(good, "\"weight_map\": {");
        size_t pre = (size_t)(w - good) + strlen("\"weight_map\": {");
        char *t = malloc(strlen(good) + 100);
        memcpy(t, good, pre);
        strcpy(t + pre, "\"x\": \"extra.safetensors\",");
        strcat(t, good + pre);
        write_text(dir, "model.safetensors.index.json", t);
        expect_load_fail(dir, PQ_ERR_FORMAT, "duplicate");
        free(t);
    }
    free(good);
    pq_ctx_free(ctx);
    tl_free(&l);
}

/* The check on sources built by other loaders. */
static void test_check_llama(void) {
    pq_ctx *ctx = pq_ctx_new();
    pq__source src;
    pq__source_init(&src);
    snprintf(src.format, sizeof src.format, "gguf");
    src.cfg.dim = 8;
    CHECK(pq__source_check_llama(ctx, &src) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "gguf") != NULL);
    src.cfg = (pq__config){
        .dim = 8, .hidden_dim = 16, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2, .head_dim = 4, .vocab_size = 10};
    CHECK(pq__source_check_llama(ctx, &src) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "model.embed_tokens.weight") != NULL);
    src.cfg.n_kv_heads = 3;
    CHECK(pq__source_check_llama(ctx, &src) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "n_kv_heads") != NULL);
    pq__source_free(&src);
    pq_ctx_free(ctx);
}

static void rmtree(const char *p) {
    pq__rmtree(p);
}

/* ---------------------------------------------------------------- allocation failures */

/* Every allocation of the folder reader (config.json, index, shards, tokenizer) and of
 * pq_model_load on the folder fails in turn (tests/failalloc.h). */
typedef struct hf_case {
    const char *dir;
    int model;         /* 1: pq_model_load, 0: pq__hf_load */
    int64_t n_tensors; /* expected of pq__hf_load */
} hf_case;

static pq_status hf_body(pq_ctx *ctx, void *user) {
    const hf_case *c = user;
    if (c->model) {
        pq_model *m = NULL;
        const pq_load_params lp = pq_load_params_default();
        const pq_status st = pq_model_load(ctx, c->dir, &lp, &m);
        failalloc_stop();
        pq_model_info info;
        if (st == PQ_OK) CHECK(m && pq_model_get_info(m, &info) == PQ_OK && info.n_layers == 2);
        pq_model_free(m);
        return st;
    }
    pq__source src;
    pq__source_init(&src);
    const pq_status st = pq__hf_load(ctx, c->dir, 1, &src);
    if (st == PQ_OK) CHECK(src.n_tensors == c->n_tensors && src.tok != NULL);
    pq__source_free(&src);
    return st;
}

static void test_alloc_failures(void) {
    /* Mistral with GQA, bf16 weights in 3 shards (an index), a tokenizer.json */
    spec s = {PQ_ARCH_MISTRAL, 16, 32, 2, 4, 2, 4, 16, 0, 0, PQ_DTYPE_BF16};
    tlist l;
    tl_build(&l, &s);
    char dir[512];
    write_folder(dir, sizeof dir, &s, "\"bos_token_id\": 1, \"eos_token_id\": 2, \"rms_norm_eps\": 1e-05", &l, 2500);
    static const char *tok =
        "{\"added_tokens\":[{\"id\":1,\"content\":\"<s>\",\"special\":true},{\"id\":2,\"content\":\"</s>\","
        "\"special\":true}],\"normalizer\":null,\"pre_tokenizer\":null,\"decoder\":null,"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"<s>\":1,\"</s>\":2,\"b\":3,\"ab\":4,\"c\":5,\"d\":6,"
        "\"e\":7,\"f\":8,\"g\":9,\"h\":10,\"i\":11,\"j\":12,\"k\":13,\"l\":14,\"m\":15},\"merges\":[\"a b\"]}}";
    write_text(dir, "tokenizer.json", tok);
    hf_case c = {.dir = dir, .n_tensors = l.n};
    failalloc_run("hf folder (pq__hf_load)", hf_body, &c, 1, 20000);
    c.model = 1;
    failalloc_run("pq_model_load (hf folder)", hf_body, &c, 1, 20000);
    tl_free(&l);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pq_test_hf_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_llama_untied();
    test_llama_tied_f16_llama3();
    test_mistral_gqa_sharded();
    test_qwen2_bias();
    test_llama_attention_bias();
    test_write_config();
    test_config_errors();
    test_tensor_errors();
    test_index_errors();
    test_check_llama();
    test_alloc_failures();
    rmtree(tmpdir);
    return test_end("test_hf");
}
