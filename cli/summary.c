/* The closing line of compress: bytes in and out, bits per weight and ACr of the linears
 * (as `info --sparsity` counts them), time. Read back from the output through the public
 * API, with deferred weights: the linears are decoded one at a time. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "prunequant-pipeline.h"

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *fmt_bytes(char *buf, size_t n, size_t b) {
    if (b >= (size_t)1 << 30)
        snprintf(buf, n, "%.2f GB", (double)b / 1e9);
    else if (b >= (size_t)1 << 20)
        snprintf(buf, n, "%.2f MB", (double)b / 1e6);
    else
        snprintf(buf, n, "%.1f kB", (double)b / 1e3);
    return buf;
}

void cli_compress_summary(const char *cmd, const pq_model *in, const char *out, double seconds) {
    pq_ctx *ctx = pq_ctx_new(); /* no callbacks: reading the output back logs nothing */
    pq_load_params lp = pq_load_params_default();
    lp.defer_weights = 1;
    pq_model *m = NULL;
    pq_model_info ii, oi;
    pq_sparsity_report r;
    memset(&r, 0, sizeof r);
    int ok = ctx && pq_model_get_info(in, &ii) == PQ_OK && pq_model_load(ctx, out, &lp, &m) == PQ_OK &&
             pq_model_get_info(m, &oi) == PQ_OK && pq_model_sparsity(ctx, m, &r) == PQ_OK;
    if (ok) {
        char a[32], b[32], acr[32] = "-"; /* ACr < 0: stored wider than f16 (dense f32) */
        if (r.acr >= 0) snprintf(acr, sizeof acr, "%.4f", r.acr);
        fprintf(stderr, "prunequant %s: wrote %s in %.1fs: %s -> %s on disk (%.2fx), linears %.3f bpw, ACr %s\n", cmd,
                out, seconds, fmt_bytes(a, sizeof a, ii.file_bytes), fmt_bytes(b, sizeof b, oi.file_bytes),
                oi.file_bytes ? (double)ii.file_bytes / (double)oi.file_bytes : 0.0, r.bpw, acr);
    } else {
        fprintf(stderr, "prunequant %s: wrote %s in %.1fs (no summary: %s)\n", cmd, out, seconds,
                ctx ? pq_ctx_error(ctx) : "out of memory creating a context to read the output back");
    }
    pq_sparsity_report_free(&r);
    pq_model_free(m);
    pq_ctx_free(ctx);
}
