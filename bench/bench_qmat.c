/* Throughput of the stored-weight products (kernels/qmat.h) on the linears of a 1B-shaped
 * Llama (hidden 2048, ffn 5632, 16 layers: more weights than the caches hold), per format and
 * path: GEMV (decode, 1 vector) in G weights/s and GB/s of weights read, GEMM (512 tokens) in
 * GFLOP/s. Float32 weights also through BLAS sgemv as pq__matmul_wt calls it; their GEMM is
 * BLAS's sgemm.
 *   bench_qmat [threads] [layers] [format]
 * One JSON line per measurement (gemv_int8: the GEMV with 8-bit activations). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "kernels/qmat.h"
#include "model/packed.h"
#define RANDGEN_SEED 0x6a09e667f3bcc909ULL
#include "randgen.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct fmt {
    const char *name;
    pq__qmat_kind kind;
    int bits, nm; /* nm: 2:4 keep mask */
} fmt;

/* One layer's 7 linears in format f (random contents: speed does not depend on them). */
static void make_layer(const fmt *f, int64_t D, int64_t F, int64_t KV, int64_t gs, pq__qmat *out) {
    const int64_t shape[7][2] = {{D, D}, {KV, D}, {KV, D}, {D, D}, {F, D}, {F, D}, {D, F}};
    for (int i = 0; i < 7; i++) {
        pq__qmat *w = &out[i];
        memset(w, 0, sizeof *w);
        w->kind = f->kind, w->rows = shape[i][0], w->cols = shape[i][1];
        const int64_t n = w->rows * w->cols;
        if (f->kind != PQ_QMAT_CODES) {
            const size_t bytes = (size_t)n * (f->kind == PQ_QMAT_F32 ? 4 : 2);
            uint8_t *d = pq__big_malloc(NULL, bytes, "bench");
            for (size_t k = 0; k < bytes; k += 2) {
                const uint16_t h = pq__f32_to_f16(0.02f * nrand());
                memcpy(d + k, &h, 2);
            }
            if (f->kind == PQ_QMAT_F32)
                for (int64_t k = 0; k < n; k++)
                    ((float *)d)[k] = 0.02f * (float)(urand() - 0.5);
            w->data = d;
            continue;
        }
        w->bits = f->bits, w->group_size = gs, w->n_groups = w->cols / gs;
        const int64_t kept = f->nm ? n / 2 : n, ms = (w->cols + 7) / 8;
        w->codes_bytes = (size_t)((kept * f->bits + 7) / 8);
        uint8_t *c = pq__big_malloc(NULL, w->codes_bytes, "bench");
        for (size_t k = 0; k < w->codes_bytes; k++)
            c[k] = (uint8_t)(urand() * 256);
        uint16_t *s = malloc((size_t)(w->rows * w->n_groups) * 2);
        uint8_t *z = malloc((size_t)(w->rows * w->n_groups));
        for (int64_t k = 0; k < w->rows * w->n_groups; k++)
            s[k] = pq__f32_to_f16(0.01f), z[k] = (uint8_t)(1 << (f->bits - 1));
        w->codes = c, w->scales = s, w->zeros = z;
        if (f->nm) {
            uint8_t *m = malloc((size_t)(w->rows * ms));
            memset(m, 0x33, (size_t)(w->rows * ms)); /* 2 of every 4 */
            uint64_t *rb = malloc((size_t)w->rows * 8);
            for (int64_t r = 0; r < w->rows; r++)
                rb[r] = (uint64_t)(r * w->cols / 2) * (uint64_t)f->bits;
            w->mask = m, w->row_bit = rb;
            w->kept64 = pq__qmat_kept64(w);
        }
    }
}

int main(int argc, char **argv) {
    const int nt = argc > 1 ? atoi(argv[1]) : 2, layers = argc > 2 ? atoi(argv[2]) : 16;
    const char *only = argc > 3 ? argv[3] : NULL;
    const int64_t D = 2048, F = 5632, KV = 256, gs = 128;
    const fmt fmts[] = {{"f32", PQ_QMAT_F32, 0, 0},  {"f16", PQ_QMAT_F16, 0, 0},     {"bf16", PQ_QMAT_BF16, 0, 0},
                        {"q8", PQ_QMAT_CODES, 8, 0}, {"q4", PQ_QMAT_CODES, 4, 0},    {"q3", PQ_QMAT_CODES, 3, 0},
                        {"q2", PQ_QMAT_CODES, 2, 0}, {"2:4+q4", PQ_QMAT_CODES, 4, 1}};
    float *x = malloc(sizeof(float) * 512 * F), *y = malloc(sizeof(float) * 512 * F);
    pq_ctx *ctx = pq_ctx_new();
    for (int64_t i = 0; i < 512 * F; i++)
        x[i] = nrand();
    pq__qmat *L = malloc(sizeof(pq__qmat) * 7 * (size_t)layers);
    for (size_t fi = 0; fi < sizeof fmts / sizeof fmts[0]; fi++) {
        const fmt *f = &fmts[fi];
        if (only && strcmp(only, f->name)) continue;
        for (int l = 0; l < layers; l++)
            make_layer(f, D, F, KV, gs, L + 7 * l);
        double weights = 0, bytes = 0;
        for (int i = 0; i < 7 * layers; i++)
            weights += (double)(L[i].rows * L[i].cols), bytes += (double)pq__qmat_bytes(&L[i]);
        const int f32 = f->kind == PQ_QMAT_F32;
        if (f32) { /* BLAS sgemv, as pq__matmul_wt calls it (f32 decoding before the float GEMV took it) */
            double best = 1e9;
            for (int rep = 0; rep < 5; rep++) {
                const double t = now();
                for (int i = 0; i < 7 * layers; i++)
                    pq__matmul_wt(x, L[i].data, NULL, y, 1, L[i].rows, L[i].cols, nt);
                best = fmin(best, now() - t);
            }
            printf("{\"bench\": \"gemv\", \"format\": \"f32\", \"path\": \"blas\", \"threads\": %d, "
                   "\"gweights_per_s\": %.1f, \"gbytes_per_s\": %.1f, \"ms_per_token\": %.2f}\n",
                   nt, weights / best / 1e9, bytes / best / 1e9, best * 1e3);
        }
        const pq__isa top = pq__qmat_isa();
        for (int isa = PQ_ISA_AVX2; isa <= (int)top; isa++) {
            /* int8 1: 8-bit activations (PQ_QMAT_INT8_DECODE), where the integer GEMV takes them */
            for (int int8 = 0; int8 <= (isa == PQ_ISA_AVX512 && f->kind == PQ_QMAT_CODES); int8++) {
                double best = 1e9;
                for (int rep = 0; rep < 5; rep++) {
                    const double t = now();
                    for (int i = 0; i < 7 * layers; i++)
                        pq__qmat_matmul_act(ctx, &L[i], x, NULL, y, 1, nt, (pq__isa)isa,
                                            int8 ? PQ_QMAT_INT8_DECODE : 0);
                    best = fmin(best, now() - t);
                }
                printf("{\"bench\": \"%s\", \"format\": \"%s\", \"path\": \"%s\", \"threads\": %d, "
                       "\"gweights_per_s\": %.1f, \"gbytes_per_s\": %.1f, \"ms_per_token\": %.2f}\n",
                       int8 ? "gemv_int8" : "gemv", f->name, pq__isa_name((pq__isa)isa), nt, weights / best / 1e9,
                       bytes / best / 1e9, best * 1e3);
                fflush(stdout);
            }
            if (f32 && isa < (int)top) continue; /* f32 prompts take BLAS's sgemm on every path: once */
            double best;
            const int64_t n = 512;
            best = 1e9;
            for (int rep = 0; rep < 2; rep++) {
                const double t = now();
                for (int i = 0; i < 7; i++) /* one layer: the GEMM is compute-bound */
                    pq__qmat_matmul(ctx, &L[i], x, NULL, y, n, nt, (pq__isa)isa);
                best = fmin(best, now() - t);
            }
            double flops = 0;
            for (int i = 0; i < 7; i++)
                flops += 2.0 * (double)n * (double)(L[i].rows * L[i].cols);
            printf("{\"bench\": \"gemm\", \"format\": \"%s\", \"path\": \"%s\", \"threads\": %d, \"tokens\": %lld, "
                   "\"gflops\": %.1f}\n",
                   f->name, f->kind == PQ_QMAT_F32 ? "blas" : pq__isa_name((pq__isa)isa), nt, (long long)n,
                   flops / best / 1e9);
            fflush(stdout);
        }
        for (int i = 0; i < 7 * layers; i++) { /* release */
            free((void *)L[i].data), free((void *)L[i].codes), free((void *)L[i].scales);
            free((void *)L[i].zeros), free((void *)L[i].mask), free((void *)L[i].row_bit);
        }
    }
    free(L), free(x), free(y);
    pq_ctx_free(ctx);
    return 0;
}
