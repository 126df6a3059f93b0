/* Per-layer engine benchmark: a 4096 x 4096 layer with a realistic Hessian, every method,
 * time and error, plus this machine's sgemm rate (the yardstick). Each case's arithmetic is
 * counted from the shapes (pq_layer_result: cols^3 / 3 per factorisation, rows cols (cols - 1)
 * per sweep with error feedback; GPTQ on this layer: 22.9 + 68.7 GFLOP) and given as
 * bound_seconds at the faster sgemm and of_bound = bound_seconds / seconds. One JSON object
 * per line, with the load average when it was measured.
 * Each case runs `reps` times (the first with the error, the others without) and reports the
 * fastest (with that run's factor_seconds, the part of seconds spent factorising H): a shared
 * machine's load only ever adds time.
 * Usage: bench_layer [rows cols tokens [reps [filter]]]  (default 4096 4096 2048 2; filter: run only
 * the cases whose name contains it) */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/qmat_impl.h"
#include "layer_data.h"
#include "model/model.h"
#include "prunequant-compress.h"
#include "bench_util.h"

/* The 1-minute load average (a shared machine: other work slows every number down). */
static const char *loadavg(void) {
    static char buf[64];
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f || !fgets(buf, sizeof buf, f)) snprintf(buf, sizeof buf, "?");
    if (f) fclose(f);
    buf[strcspn(buf, " \n")] = 0;
    return buf;
}

/* The machine's single-precision GEMM rate (4096^3, best of 2): the yardstick for the rest.
 * Measured at the start and the end, since a shared machine's load varies; OpenBLAS's sgemm
 * (the kernel it picked for this CPU) and the library's own GEMM microkernel (kernels/
 * qmat_gemm.c on float32 weights): the bound of each case uses the faster. */
static double sgemm_rate(pq_ctx *ctx, int threads, const char *when) {
    const int n = 4096;
    float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
          *c = malloc(sizeof(float) * (size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = nrand();
        b[i] = nrand();
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    const pq__qmat w = pq__qmat_f32(n, n, b);
    double best = 1e30, best_own = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        best = fmin(best, now_s() - t);
        t = now_s();
        pq__qmat_gemm(ctx, &w, a, NULL, c, n, threads, pq__qmat_isa());
        if (rep) best_own = fmin(best_own, now_s() - t); /* the first packs cold */
    }
    const double flop = 2.0 * n * (double)n * n, blas = flop / best / 1e9, own = flop / best_own / 1e9;
    printf("{\"name\": \"sgemm_4096\", \"when\": \"%s\", \"threads\": %d, \"blas_core\": \"%s\", \"seconds\": %.4f, "
           "\"gflops\": %.1f, \"own_%s_gflops\": %.1f, \"load\": \"%s\"}\n",
           when, threads, openblas_get_corename(), best, blas, pq__isa_name(pq__qmat_isa()), own, loadavg());
    fflush(stdout);
    free(a);
    free(b);
    free(c);
    return fmax(blas, own);
}

/* One case's line; its arithmetic (factorisations and sweeps, prunequant-compress.h) at the
 * faster sgemm's rate gives its bound. */
static void print_case(const char *name, int64_t rows, int64_t cols, const pq_layer_result *r, double rate) {
    const double flop = r->factor_flop + r->sweep_flop, bound = flop / (rate * 1e9);
    printf("{\"name\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"seconds\": %.3f, \"error\": %.6g, "
           "\"factor_seconds\": %.3f, \"error_direct\": %d, \"error_seconds\": %.3f, \"loss\": %.6g, "
           "\"sparsity\": %.4f, \"moved_off_zero\": %lld, \"damp\": %.4g, \"retries\": %d, \"gflop\": %.1f, "
           "\"bound_seconds\": %.3f, \"of_bound\": %.2f, \"load\": \"%s\"}\n",
           name, (long long)rows, (long long)cols, r->seconds, r->error, r->factor_seconds, r->error_direct,
           r->error_seconds, r->loss, r->sparsity, (long long)r->moved_off_zero, r->damp, r->chol_retries, flop / 1e9,
           bound, bound > 0 ? bound / r->seconds : 0.0, loadavg());
    fflush(stdout);
}

static void warn_log(void *user, pq_log_level level, const char *msg) {
    (void)user;
    if (level >= PQ_LOG_WARN) fprintf(stderr, "bench_layer: %s\n", msg);
}

int main(int argc, char **argv) {
    const int64_t rows = argc > 3 ? atoll(argv[1]) : 4096, cols = argc > 3 ? atoll(argv[2]) : 4096;
    const int64_t tokens = argc > 3 ? atoll(argv[3]) : 2048, rank = 64;
    const int reps = argc > 4 ? atoi(argv[4]) : 2;
    const char *filter = argc > 5 ? argv[5] : NULL;
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_log(ctx, warn_log, NULL);
    const int threads = pq_ctx_threads(ctx);
    openblas_set_num_threads(threads);

    const double rate = sgemm_rate(ctx, threads, "start");
    float *H, *W0; /* [cols, cols], [rows, cols] */
    if (!layer_data(rows, cols, tokens, rank, &H, &W0)) return fprintf(stderr, "bench_layer: out of memory\n"), 1;
    float *W = malloc(sizeof(float) * (size_t)(rows * cols));

    struct {
        const char *name;
        pq_prune_method prune;
        double sparsity;
        int pn, pm;
        pq_quant_method quant;
        int64_t group;
        pq_joint_mode joint;
        int reference; /* 2: default mode with the float32 factorisation */
    } cases[] = {
        {"rtn_4bit_g128", PQ_PRUNE_NONE, 0, 0, 0, PQ_QUANT_RTN, 128, PQ_JOINT_A, 0},
        {"gptq_4bit_g128", PQ_PRUNE_NONE, 0, 0, 0, PQ_QUANT_GPTQ, 128, PQ_JOINT_A, 0},
        {"gptq_4bit_g128_reference", PQ_PRUNE_NONE, 0, 0, 0, PQ_QUANT_GPTQ, 128, PQ_JOINT_A, 1},
        {"gptq_4bit_g128_f32factor", PQ_PRUNE_NONE, 0, 0, 0, PQ_QUANT_GPTQ, 128, PQ_JOINT_A, 2},
        {"magnitude_50", PQ_PRUNE_MAGNITUDE, 0.5, 0, 0, PQ_QUANT_NONE, -1, PQ_JOINT_A, 0},
        {"wanda_50", PQ_PRUNE_WANDA, 0.5, 0, 0, PQ_QUANT_NONE, -1, PQ_JOINT_A, 0},
        {"sparsegpt_50", PQ_PRUNE_SPARSEGPT, 0.5, 0, 0, PQ_QUANT_NONE, -1, PQ_JOINT_A, 0},
        {"sparsegpt_2:4", PQ_PRUNE_SPARSEGPT, 0, 2, 4, PQ_QUANT_NONE, -1, PQ_JOINT_A, 0},
        {"sparsegpt_2:4_4bit_fused", PQ_PRUNE_SPARSEGPT, 0, 2, 4, PQ_QUANT_GPTQ, 128, PQ_JOINT_FUSED, 0},
        {"sparsegpt_50_4bit_g128_a", PQ_PRUNE_SPARSEGPT, 0.5, 0, 0, PQ_QUANT_GPTQ, 128, PQ_JOINT_A, 0},
        {"sparsegpt_50_4bit_g128_b", PQ_PRUNE_SPARSEGPT, 0.5, 0, 0, PQ_QUANT_GPTQ, 128, PQ_JOINT_B, 0},
        {"sparsegpt_50_4bit_g128_fused", PQ_PRUNE_SPARSEGPT, 0.5, 0, 0, PQ_QUANT_GPTQ, 128, PQ_JOINT_FUSED, 0},
        {"sparsegpt_50_4bit_fused_reference", PQ_PRUNE_SPARSEGPT, 0.5, 0, 0, PQ_QUANT_GPTQ, -1, PQ_JOINT_FUSED, 1},
    };
    int failed = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (filter && !strstr(cases[k].name, filter)) continue;
        pq_layer_params p = pq_layer_params_default();
        p.prune = cases[k].prune;
        p.sparsity = cases[k].sparsity;
        p.prune_n = cases[k].pn;
        p.prune_m = cases[k].pm;
        p.quant = cases[k].quant;
        p.bits = 4;
        p.group_size = cases[k].group;
        p.joint = cases[k].joint;
        p.reference = cases[k].reference == 1;
        p.factor_f32 = cases[k].reference == 2;
        pq_layer_result r;
        memset(&r, 0, sizeof r);
        double best = 1e30, best_factor = 0.0;
        pq_status st = PQ_OK;
        for (int rep = 0; rep < reps && st == PQ_OK; rep++) {
            p.error_mode = rep == 0 ? PQ_ERROR_AUTO : PQ_ERROR_NONE;
            memcpy(W, W0, sizeof(float) * (size_t)(rows * cols));
            pq_layer_result rr;
            st = pq_layer_compress(ctx, &p, W, rows, cols, H, NULL, NULL, &rr);
            if (rep == 0) r = rr;
            if (rr.seconds < best) best_factor = rr.factor_seconds;
            best = fmin(best, rr.seconds);
        }
        if (st != PQ_OK) {
            fprintf(stderr, "bench_layer: %s: %s\n", cases[k].name, pq_ctx_error(ctx));
            failed = 1;
            continue;
        }
        r.seconds = best;
        r.factor_seconds = best_factor;
        print_case(cases[k].name, rows, cols, &r, rate);
    }
    sgemm_rate(ctx, threads, "end");
    free(W0);
    free(W);
    free(H);
    pq_ctx_free(ctx);
    return failed;
}
