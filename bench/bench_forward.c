/* Prompt processing of one synthetic Llama-3-8B-shaped decoder block (dim 4096, ffn 14336,
 * 32 heads, 8 kv heads) at batch 512, next to the measured sgemm peak of this machine.
 * Prints one JSON line per measurement. Usage: bench_forward [threads] [batch] [reps] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "synth.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    int64_t batch = argc > 2 ? atoll(argv[2]) : 512;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, threads);
    threads = pq_ctx_threads(ctx);
    openblas_set_num_threads(threads);

    /* sgemm peak: the shapes of the block's largest products */
    const int M = (int)batch, N = 14336, K = 4096;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * (size_t)N * K),
          *c = malloc(sizeof(float) * (size_t)M * N);
    uint64_t s = 1;
    for (int64_t i = 0; i < (int64_t)M * K; i++)
        a[i] = synth_unif(&s);
    for (int64_t i = 0; i < (int64_t)N * K; i++)
        b[i] = synth_unif(&s) * 0.01f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N);
        double t = now() - t0;
        if (t < best) best = t;
    }
    double peak = 2.0 * M * N * K / best / 1e9;
    printf("{\"bench\": \"sgemm_peak\", \"m\": %d, \"n\": %d, \"k\": %d, \"threads\": %d, \"gflops\": %.1f}\n", M, N,
           K, threads, peak);
    free(a);
    free(b);
    free(c);

    /* one Llama-3-8B block */
    pq__config cfg = synth_config(PQ_ARCH_LLAMA, 4096, 14336, 1, 32, 8, 128);
    cfg.max_seq_len = batch;
    cfg.rope_theta = 500000.0f;
    pq_model *m = synth_model(ctx, &cfg, 1);
    if (!m) {
        fprintf(stderr, "bench_forward: %s\n", pq_ctx_error(ctx));
        return 1;
    }
    pq__kv kv;
    pq__config one = cfg;
    one.n_layers = 1;
    if (pq__kv_init(ctx, &kv, &one, 1, batch) != PQ_OK) return 1;
    float *x = malloc(sizeof(float) * batch * cfg.dim);
    for (int64_t i = 0; i < batch * cfg.dim; i++)
        x[i] = synth_unif(&s);
    const double D = (double)cfg.dim, F = (double)cfg.hidden_dim, QD = 4096, KD = 1024, T = (double)batch;
    /* linear layers + attention (QK^T and PV over the causal half) */
    double flops = 2 * T * (D * QD + 2 * D * KD + QD * D + 3 * D * F) + 2 * 2 * (T * (T + 1) / 2) * 128 * 32;
    best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now();
        pq__block_forward(ctx, m, 0, &m->blocks[0], &kv, x, 1, batch, 0, NULL, NULL);
        double t = now() - t0;
        if (r > 0 && t < best) best = t; /* first run warms caches and page-faults */
    }
    double gf = flops / best / 1e9;
    printf("{\"bench\": \"llama3_8b_block_prefill\", \"batch\": %lld, \"threads\": %d, \"seconds\": %.4f, "
           "\"tokens_per_s\": %.1f, \"gflops\": %.1f, \"sgemm_peak_gflops\": %.1f, \"fraction_of_peak\": %.3f}\n",
           (long long)batch, threads, best, T / best, gf, peak, gf / peak);
    free(x);
    pq__kv_free(&kv);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return 0;
}
