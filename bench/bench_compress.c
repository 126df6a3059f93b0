/* Memory and time of the whole compression pipeline on a model of real width.
 *
 *   bench_compress make DIR [layers [dim ffn heads kv vocab]]
 *       writes a synthetic bf16 Hugging Face folder (default: 2 blocks with Llama-3-8B
 *       dimensions: hidden 4096, ffn 14336, 32 heads, 8 kv heads, vocab 128256), streamed
 *       tensor by tensor so that making it needs little memory.
 *   bench_compress alloc DIR OUT.json [nsamples seqlen]
 *       the allocation (prunequant allocate) at the bytes of run's recipe on the same tokens:
 *       its time against run's (acceptance: within 1.5x).
 *   bench_compress run DIR OUT [nsamples seqlen [true-sequential [gptq|2:4]]]
 *       loads DIR with deferred weights (as `prunequant compress` does), compresses it with
 *       GPTQ 4-bit g128 (2:4: SparseGPT 2:4 fused with it, the recipe of issue 14's first
 *       measurement) on random calibration tokens (default 32 x 512) into OUT, and prints
 *       the time, the peak resident set (VmHWM) and the budget of the memory target (per-layer
 *       seconds and errors go to OUT.layers.jsonl): one
 *       block in f32 + the calibration activations + the largest Hessian (its float64
 *       accumulator) + 25 %.
 *       Per block: seconds and achieved GFLOP/s of each phase (pq_compress_phases: forward,
 *       Hessians, factorisations, sweeps, I/O) and the block's arithmetic bound: one forward
 *       pass, the Hessians as symmetric rank-k products, one factorisation per input and one
 *       sweep per linear, at the rate of the faster of OpenBLAS's sgemm and the library's own
 *       GEMM microkernel, both measured before and after the run (with the load average).
 *       Last line: {"name": "compress_total", "seconds", "bound_seconds", "bound_ratio",
 *       "peak_rss_mib"}.
 * Run `make` first; the two steps are separate processes so the peak RSS of `run` is the
 * pipeline's own. */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "io/hf.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "kernels/qmat_impl.h"
#include "model/model.h"
#include "prunequant-alloc.h"
#include "prunequant-pipeline.h"
#include "synth.h"
#include "bench_util.h"

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
    static int64_t last = -1;
    if (done == last) return 0; /* one line per block */
    last = done;
    fprintf(stderr, "  %s %lld/%lld at %.0f s, RSS %ld MB\n", stage, (long long)done, (long long)total,
            now_s() - *(double *)user, vm_kb("VmRSS:") / 1024);
    return 0;
}

/* The yardsticks, measured in this run: OpenBLAS's sgemm (the kernel it picked for this CPU)
 * and the library's own AVX-512 / AVX2 GEMM microkernel (kernels/qmat_gemm.c) on float32
 * weights, Y [n, k] = X [n, k] W^T with k = dim; best of 3 each. */
typedef struct rates {
    double blas, own, best;
    const char *own_isa;
} rates;

static rates measure_rates(pq_ctx *ctx, int threads, int64_t k) {
    const int64_t n = 2048;
    float *x = malloc(sizeof(float) * (size_t)(n * k)), *w = malloc(sizeof(float) * (size_t)(k * k)),
          *y = malloc(sizeof(float) * (size_t)(n * k));
    uint64_t st = 5;
    for (int64_t i = 0; i < k * k; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (float)(st >> 40) / 16777216.0f - 0.5f;
        if (i < n * k) x[i] = w[i] * 0.5f;
    }
    const pq__qmat q = pq__qmat_f32(k, k, w);
    const pq__isa isa = pq__qmat_isa();
    rates r = {0, 0, 0, pq__isa_name(isa)};
    const double flop = 2.0 * (double)n * (double)k * (double)k;
    for (int rep = 0; rep < 4; rep++) { /* the first of each is a warm-up */
        double t = now_s();
        pq__matmul_wt(x, w, NULL, y, n, k, k, threads);
        const double blas = flop / (now_s() - t) / 1e9;
        t = now_s();
        pq__qmat_gemm(ctx, &q, x, NULL, y, n, threads, isa);
        const double own = flop / (now_s() - t) / 1e9;
        if (rep && blas > r.blas) r.blas = blas;
        if (rep && own > r.own) r.own = own;
    }
    r.best = r.blas > r.own ? r.blas : r.own;
    free(x);
    free(w);
    free(y);
    return r;
}

/* The 1-minute load average (a shared machine: other work slows every number down). */
static const char *loadavg(char *buf, size_t n) {
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f || !fgets(buf, (int)n, f)) snprintf(buf, n, "?");
    if (f) fclose(f);
    buf[strcspn(buf, " \n")] = 0;
    return buf;
}

static double gfs(double flop, double s) {
    return s > 0 ? flop / s / 1e9 : 0.0;
}

/* The arithmetic a block needs (floating-point operations, from the shapes): one forward pass
 * over the calibration tokens, the Hessian of each input group as a symmetric rank-k product
 * (n c (c + 1)), one Cholesky factorisation per input group (c^3 / 3) and one GPTQ sweep per
 * linear (rows c (c - 1)). */
typedef struct arith {
    double forward, hessian, factor, sweep;
} arith;

static arith block_arith(const pq_model_info *in, int64_t ns, int64_t L) {
    const double D = (double)in->dim, F = (double)in->hidden_dim, QD = (double)(in->n_heads * in->head_dim),
                 KD = (double)(in->n_kv_heads * in->head_dim), N = (double)(ns * L);
    const double rows[7] = {QD, KD, KD, D, F, F, D}, cols[7] = {D, D, D, QD, D, D, F}, in_cols[4] = {D, QD, D, F};
    arith a = {4.0 * (double)ns * (double)in->n_heads * (double)L * (double)L * (double)in->head_dim, 0, 0, 0};
    for (int i = 0; i < 7; i++) {
        a.forward += 2.0 * N * rows[i] * cols[i];
        a.sweep += rows[i] * cols[i] * (cols[i] - 1.0);
    }
    for (int g = 0; g < 4; g++) {
        a.hessian += N * in_cols[g] * (in_cols[g] + 1.0);
        a.factor += in_cols[g] * in_cols[g] * in_cols[g] / 3.0;
    }
    return a;
}

/* One line per block: seconds and achieved GFLOP/s of each phase, and the block's bound. */
static double print_phases(int64_t l, const pq_compress_phases *ph, const arith *a, double rate) {
    const double named = ph->forward_s + ph->hessian_s + ph->factor_s + ph->sweep_s + ph->io_s;
    const double bound = (a->forward + a->hessian + a->factor + a->sweep) / (rate * 1e9);
    printf("{\"name\": \"block\", \"block\": %lld, \"seconds\": %.1f, \"bound_seconds\": %.1f, "
           "\"forward\": {\"seconds\": %.1f, \"gflops\": %.1f, \"tflop\": %.2f, \"needed_tflop\": %.2f}, "
           "\"hessian\": {\"seconds\": %.1f, \"gflops\": %.1f, \"tflop\": %.2f}, "
           "\"factorisation\": {\"seconds\": %.1f, \"gflops\": %.1f, \"tflop\": %.2f, \"needed_tflop\": %.2f}, "
           "\"sweep\": {\"seconds\": %.1f, \"gflops\": %.1f, \"tflop\": %.2f}, \"io_seconds\": %.1f, "
           "\"other_seconds\": %.1f}\n",
           (long long)l, ph->total_s, bound, ph->forward_s, gfs(ph->forward_flop, ph->forward_s),
           ph->forward_flop / 1e12, a->forward / 1e12, ph->hessian_s, gfs(ph->hessian_flop, ph->hessian_s),
           ph->hessian_flop / 1e12, ph->factor_s, gfs(ph->factor_flop, ph->factor_s), ph->factor_flop / 1e12,
           a->factor / 1e12, ph->sweep_s, gfs(ph->sweep_flop, ph->sweep_s), ph->sweep_flop / 1e12, ph->io_s,
           ph->total_s - named);
    return bound;
}

static int run(const char *dir, const char *out, int64_t ns, int64_t L, int true_seq, const char *recipe) {
    const int nm = !strcmp(recipe, "2:4");
    if (!nm && strcmp(recipe, "gptq")) {
        fprintf(stderr, "bench_compress: recipe '%s': gptq or 2:4\n", recipe);
        return 2;
    }
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
    char load0[64], load1[64];
    loadavg(load0, sizeof load0);
    const rates r0 = measure_rates(ctx, pq_ctx_threads(ctx), info.dim);
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
    if (nm) {
        p.layer.prune = PQ_PRUNE_SPARSEGPT;
        p.layer.prune_n = 2;
        p.layer.prune_m = 4;
        p.layer.joint = PQ_JOINT_FUSED;
    }
    p.dtype = PQ_DTYPE_F16;
    char report[1024];
    snprintf(report, sizeof report, "%s.layers.jsonl", out); /* per linear: error, seconds */
    p.report = report;
    pq_compress_phases *ph = calloc((size_t)(info.n_layers + 1), sizeof *ph);
    p.phases = ph;
    t0 = now_s();
    pq_status st = pq_compress_model(ctx, m, tok, ns * L + L, &p, out);
    const double secs = now_s() - t0;
    if (st) fprintf(stderr, "%s\n", pq_ctx_error(ctx));
    loadavg(load1, sizeof load1);
    const rates r1 = measure_rates(ctx, pq_ctx_threads(ctx), info.dim);
    const double rate = r0.best > r1.best ? r0.best : r1.best; /* load only ever slows a rate down */
    printf("{\"name\": \"sgemm\", \"blas_core\": \"%s\", \"blas_gflops\": [%.1f, %.1f], "
           "\"own_%s_gflops\": [%.1f, %.1f], \"bound_gflops\": %.1f, \"load\": [\"%s\", \"%s\"], "
           "\"note\": \"[before, after] the run; the bound uses the fastest\"}\n",
           openblas_get_corename(), r0.blas, r1.blas, r0.own_isa, r0.own, r1.own, rate, load0, load1);
    const arith a = block_arith(&info, ns, L);
    double bound = 0.0;
    for (int64_t l = 0; l < info.n_layers; l++)
        bound += print_phases(l, &ph[l], &a, rate);
    printf("{\"name\": \"rest\", \"seconds\": %.1f, \"note\": \"calibration embeddings, embeddings, lm_head and "
           "metadata written\"}\n",
           ph[info.n_layers].total_s);
    const double D = (double)info.dim, F = (double)info.hidden_dim, QD = (double)(info.n_heads * info.head_dim),
                 KD = (double)(info.n_kv_heads * info.head_dim);
    const double block = 4.0 * (D * QD * 2 + D * KD * 2 + 3 * D * F), acts = 4.0 * (double)(ns * L) * D;
    const double maxc = F > D ? F : D, hess = 8.0 * maxc * maxc;
    const double budget = 1.25 * (block + acts + hess);
    const long peak = vm_kb("VmHWM:");
    printf("{\"model\":\"%s\",\"layers\":%lld,\"nsamples\":%lld,\"seqlen\":%lld,\"true_sequential\":%d,"
           "\"recipe\":\"%s\",\"seconds\":%.1f,\"rss_after_load_mb\":%ld,\"peak_rss_mb\":%ld,"
           "\"budget_mb\":%.0f,\"block_f32_mb\":%.0f,\"activations_mb\":%.0f,\"largest_H_f64_mb\":%.0f,"
           "\"within_budget\":%s,\"ok\":%s}\n",
           dir, (long long)info.n_layers, (long long)ns, (long long)L, true_seq,
           nm ? "sparsegpt 2:4 + gptq 4-bit g128, fused" : "gptq 4-bit g128", secs, rss_loaded / 1024, peak / 1024,
           budget / 1048576, block / 1048576, acts / 1048576, hess / 1048576,
           (double)peak * 1024 <= budget ? "true" : "false", st == PQ_OK ? "true" : "false");
    printf("{\"name\": \"compress_total\", \"seconds\": %.1f, \"bound_seconds\": %.1f, \"bound_ratio\": %.2f, "
           "\"peak_rss_mib\": %ld}\n",
           secs, bound, secs / bound, peak / 1024);
    free(ph);
    free(tok);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return st != PQ_OK;
}

/* The allocation at the bytes of the uniform run's recipe (GPTQ 4-bit g128: 4.1875 bpw) on the
 * same random calibration tokens, with the default candidates, sample and sensitivity: its time
 * against run's is the allocator's cost. */
static int alloc(const char *dir, const char *out, int64_t ns, int64_t L) {
    pq_ctx *ctx = pq_ctx_new();
    double t0 = now_s();
    pq_ctx_set_progress(ctx, progress, &t0);
    pq_load_params lp = pq_load_params_default();
    pq_model *m = NULL;
    pq_alloc_params ap = pq_alloc_params_default();
    lp.defer_weights = !ap.sensitivity; /* the sensitivity passes run the stored model */
    if (pq_model_load(ctx, dir, &lp, &m) != PQ_OK) {
        fprintf(stderr, "%s\n", pq_ctx_error(ctx));
        return 1;
    }
    pq_model_info info;
    pq_model_get_info(m, &info);
    int32_t *tok = malloc((size_t)(ns * L + L) * sizeof *tok);
    uint64_t s = 1;
    for (int64_t i = 0; i < ns * L + L; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)info.vocab_size);
    }
    ap.compress.nsamples = ns;
    ap.compress.seqlen = L;
    ap.budget_bpw = 4.1875;
    pq_alloc_result *r = NULL;
    t0 = now_s();
    pq_status st = pq_allocate(ctx, m, tok, ns * L + L, &ap, &r);
    const double secs = now_s() - t0;
    if (st == PQ_OK) st = pq_alloc_recipe_write(ctx, r, &ap, out);
    if (st) fprintf(stderr, "%s\n", pq_ctx_error(ctx));
    printf("{\"model\":\"%s\",\"layers\":%lld,\"nsamples\":%lld,\"seqlen\":%lld,\"budget_bpw\":4.1875,"
           "\"candidates\":%lld,\"seconds\":%.1f,\"sweep_seconds\":%.1f,\"sensitivity_seconds\":%.1f,"
           "\"bpw\":%.4f,\"gap\":%.4g,\"peak_rss_mb\":%ld,\"ok\":%s}\n",
           dir, (long long)info.n_layers, (long long)ns, (long long)L, r ? (long long)r->n_candidates : 0LL, secs,
           r ? r->sweep_seconds : 0.0, r ? r->sens_seconds : 0.0,
           r ? 8.0 * (double)r->total_bytes / (double)r->n_weights : 0.0,
           r && r->total_damage > 0 ? (r->total_damage - r->lower_bound) / r->total_damage : 0.0,
           vm_kb("VmHWM:") / 1024, st == PQ_OK ? "true" : "false");
    pq_alloc_result_free(r);
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
                   argc > 6 ? atoi(argv[6]) : 0, argc > 7 ? argv[7] : "gptq");
    if (argc >= 4 && !strcmp(argv[1], "alloc"))
        return alloc(argv[2], argv[3], argc > 5 ? atoll(argv[4]) : 32, argc > 5 ? atoll(argv[5]) : 512);
    fprintf(stderr, "usage: bench_compress make DIR [layers [dim ffn heads kv vocab]]\n"
                    "       bench_compress run DIR OUT [nsamples seqlen [true-sequential [gptq|2:4]]]\n"
                    "       bench_compress alloc DIR OUT.json [nsamples seqlen]\n");
    return 2;
}
