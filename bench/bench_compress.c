/* Memory and time of the whole compression pipeline on a model of real width.
 *
 *   bench_compress make DIR [layers [dim ffn heads kv vocab]]
 *       writes a synthetic bf16 Hugging Face folder (default: 2 blocks with Llama-3-8B
 *       dimensions: hidden 4096, ffn 14336, 32 heads, 8 kv heads, vocab 128256), streamed
 *       tensor by tensor so that making it needs little memory.
 *   bench_compress run DIR OUT [nsamples seqlen [true-sequential]]
 *       loads DIR with deferred weights (as `prunequant compress` does), compresses it with
 *       GPTQ 4-bit g128 on random calibration tokens (default 32 x 512) into OUT, and prints
 *       the time, the peak resident set (VmHWM) and the budget of the memory target (per-layer
 *       seconds and errors go to OUT.layers.jsonl): one
 *       block in f32 + the calibration activations + the largest Hessian (its float64
 *       accumulator) + 25 %.
 * Run `make` first; the two steps are separate processes so the peak RSS of `run` is the
 * pipeline's own. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "io/hf.h"
#include "io/safetensors.h"
#include "prunequant-pipeline.h"
#include "synth.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static long vm_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) v = strtol(line + strlen(key), NULL, 10);
    if (f) fclose(f);
    return v;
}

/* Random bf16 values (uniform, scale s) or a constant, produced piece by piece. */
typedef struct {
    uint64_t state;
    float scale, constant;
} gen;

static pq_status fill_bf16(pq_ctx *ctx, void *user, size_t off, void *dst, size_t n) {
    (void)ctx; /* the generator cannot fail, and continues its stream at any offset */
    (void)off;
    gen *g = user;
    uint16_t *o = dst;
    for (size_t i = 0; i < n / 2; i++) {
        float v = g->constant;
        if (g->scale != 0.0f) {
            g->state = g->state * 6364136223846793005ull + 1442695040888963407ull;
            v = g->scale * ((float)(g->state >> 40) / 16777216.0f - 0.5f);
        }
        uint32_t u;
        memcpy(&u, &v, 4);
        o[i] = (uint16_t)(u >> 16);
    }
    return PQ_OK;
}

static int make(const char *dir, int64_t layers, int64_t D, int64_t F, int64_t H, int64_t KV, int64_t V) {
    pq_ctx *ctx = pq_ctx_new();
    mkdir(dir, 0755);
    pq__config c = synth_config(PQ_ARCH_LLAMA, D, F, layers, H, KV, V); /* Llama-3: long context, theta */
    c.max_seq_len = 8192;
    c.norm_eps = 1e-5f;
    c.rope_theta = 500000.0f;
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (pq__hf_write_config(ctx, &c, path, "bfloat16") != PQ_OK) {
        fprintf(stderr, "%s\n", pq_ctx_error(ctx));
        return 1;
    }
    const int64_t n_t = 3 + 9 * layers;
    pq__st_entry *e = calloc((size_t)n_t, sizeof *e);
    gen *g = calloc((size_t)n_t, sizeof *g);
    char(*names)[128] = calloc((size_t)n_t, sizeof *names);
    int64_t k = 0;
#define ADD(nm, r, cc, sc, cst)                                                                                      \
    do {                                                                                                             \
        snprintf(names[k], sizeof names[k], "%s", nm);                                                               \
        g[k] = (gen){0x9E3779B97F4A7C15ull * (uint64_t)(k + 1), (float)(sc), (float)(cst)};                          \
        e[k] = (pq__st_entry){names[k],    PQ_DTYPE_BF16, (cc) ? 2 : 1,                                              \
                              {(r), (cc)}, NULL,          (size_t)(r) * (size_t)((cc) ? (cc) : 1) * 2,               \
                              fill_bf16,   &g[k],         0};                                                        \
        k++;                                                                                                         \
    } while (0)
    ADD("model.embed_tokens.weight", V, D, 0.04, 0);
    for (int64_t l = 0; l < layers; l++) {
        char b[128];
        const int64_t QD = H * (D / H), KD = KV * (D / H);
        static const char *const nm[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                          "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                          "mlp.down_proj"};
        const int64_t rows[7] = {QD, KD, KD, D, F, F, D}, cols[7] = {D, D, D, QD, D, D, F};
        snprintf(b, sizeof b, "model.layers.%lld.input_layernorm.weight", (long long)l);
        ADD(b, D, 0, 0, 1.0);
        snprintf(b, sizeof b, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
        ADD(b, D, 0, 0, 1.0);
        for (int i = 0; i < 7; i++) {
            snprintf(b, sizeof b, "model.layers.%lld.%s.weight", (long long)l, nm[i]);
            ADD(b, rows[i], cols[i], 2.0 / __builtin_sqrt((double)cols[i]), 0);
        }
    }
    ADD("model.norm.weight", D, 0, 0, 1.0);
    ADD("lm_head.weight", V, D, 0.04, 0);
#undef ADD
    const double t0 = now_s();
    pq_status st = pq__safetensors_write_sharded(ctx, dir, e, k, (size_t)2 << 30, NULL);
    if (st)
        fprintf(stderr, "%s\n", pq_ctx_error(ctx));
    else
        printf("{\"made\":\"%s\",\"layers\":%lld,\"dim\":%lld,\"ffn\":%lld,\"vocab\":%lld,\"seconds\":%.1f}\n", dir,
               (long long)layers, (long long)D, (long long)F, (long long)V, now_s() - t0);
    free(e);
    free(g);
    free(names);
    pq_ctx_free(ctx);
    return st != PQ_OK;
}

static int progress(void *user, const char *stage, int64_t done, int64_t total) {
    if (strcmp(stage, "compress")) return 0;
    fprintf(stderr, "  %s %lld/%lld at %.0f s, RSS %ld MB\n", stage, (long long)done, (long long)total,
            now_s() - *(double *)user, vm_kb("VmRSS:") / 1024);
    return 0;
}

static int run(const char *dir, const char *out, int64_t ns, int64_t L, int true_seq) {
    pq_ctx *ctx = pq_ctx_new();
    double t0 = now_s();
    pq_ctx_set_progress(ctx, progress, &t0);
    pq_load_params lp = pq_load_params_default();
    lp.defer_weights = 1;
    pq_model *m = NULL;
    if (pq_model_load(ctx, dir, &lp, &m) != PQ_OK) {
        fprintf(stderr, "%s\n", pq_ctx_error(ctx));
        return 1;
    }
    pq_model_info info;
    pq_model_get_info(m, &info);
    const long rss_loaded = vm_kb("VmRSS:");
    int32_t *tok = malloc((size_t)(ns * L + L) * sizeof *tok);
    uint64_t s = 1;
    for (int64_t i = 0; i < ns * L + L; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)info.vocab_size);
    }
    pq_compress_params p = pq_compress_params_default();
    p.nsamples = ns;
    p.seqlen = L;
    p.true_sequential = true_seq;
    p.layer.quant = PQ_QUANT_GPTQ;
    p.layer.bits = 4;
    p.layer.group_size = 128;
    p.dtype = PQ_DTYPE_F16;
    char report[1024];
    snprintf(report, sizeof report, "%s.layers.jsonl", out); /* per linear: error, seconds */
    p.report = report;
    t0 = now_s();
    pq_status st = pq_compress_model(ctx, m, tok, ns * L + L, &p, out);
    const double secs = now_s() - t0;
    if (st) fprintf(stderr, "%s\n", pq_ctx_error(ctx));
    const double D = (double)info.dim, F = (double)info.hidden_dim, QD = (double)(info.n_heads * info.head_dim),
                 KD = (double)(info.n_kv_heads * info.head_dim);
    const double block = 4.0 * (D * QD * 2 + D * KD * 2 + 3 * D * F), acts = 4.0 * (double)(ns * L) * D;
    const double maxc = F > D ? F : D, hess = 8.0 * maxc * maxc;
    const double budget = 1.25 * (block + acts + hess);
    const long peak = vm_kb("VmHWM:");
    printf("{\"model\":\"%s\",\"layers\":%lld,\"nsamples\":%lld,\"seqlen\":%lld,\"true_sequential\":%d,"
           "\"recipe\":\"gptq 4-bit g128\",\"seconds\":%.1f,\"rss_after_load_mb\":%ld,\"peak_rss_mb\":%ld,"
           "\"budget_mb\":%.0f,\"block_f32_mb\":%.0f,\"activations_mb\":%.0f,\"largest_H_f64_mb\":%.0f,"
           "\"within_budget\":%s,\"ok\":%s}\n",
           dir, (long long)info.n_layers, (long long)ns, (long long)L, true_seq, secs, rss_loaded / 1024, peak / 1024,
           budget / 1048576, block / 1048576, acts / 1048576, hess / 1048576,
           (double)peak * 1024 <= budget ? "true" : "false", st == PQ_OK ? "true" : "false");
    free(tok);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return st != PQ_OK;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "make")) {
        const int64_t layers = argc > 3 ? atoll(argv[3]) : 2;
        if (argc > 8)
            return make(argv[2], layers, atoll(argv[4]), atoll(argv[5]), atoll(argv[6]), atoll(argv[7]),
                        atoll(argv[8]));
        return make(argv[2], layers, 4096, 14336, 32, 8, 128256);
    }
    if (argc >= 4 && !strcmp(argv[1], "run"))
        return run(argv[2], argv[3], argc > 5 ? atoll(argv[4]) : 32, argc > 5 ? atoll(argv[5]) : 512,
                   argc > 6 ? atoi(argv[6]) : 0);
    fprintf(stderr, "usage: bench_compress make DIR [layers [dim ffn heads kv vocab]]\n"
                    "       bench_compress run DIR OUT [nsamples seqlen [true-sequential]]\n");
    return 2;
}
