/* Paired bootstrap cost: 18 configs x 3 tasks x 300 items (the demo's size), every config's
 * Sr interval plus 9 differences, 2000 resamples each. Prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "prunequant-eval.h"
#include "bench_util.h"

int main(void) {
    enum { C = 18, T = 3, N = 300 };
    uint64_t s = 1;
    pq_units base[T], cfg[C][T];
    for (int t = 0; t < T; t++) {
        base[t] = (pq_units){PQ_UNITS_MEAN, N, malloc(N * sizeof(double)), NULL, 0};
        for (int i = 0; i < N; i++)
            base[t].value[i] = (s = s * 6364136223846793005ull + 1) >> 63;
        for (int c = 0; c < C; c++) {
            cfg[c][t] = (pq_units){PQ_UNITS_MEAN, N, malloc(N * sizeof(double)), NULL, 0};
            for (int i = 0; i < N; i++)
                cfg[c][t].value[i] = (s = s * 6364136223846793005ull + 1) >> 63;
        }
    }
    const pq_units *pb[T] = {&base[0], &base[1], &base[2]};
    int higher[T] = {1, 1, 1};
    pq_ctx *ctx = pq_ctx_new();
    const double t0 = now_s();
    double sr, ci[2], checksum = 0;
    for (int c = 0; c < C; c++) {
        const pq_units *pc[T] = {&cfg[c][0], &cfg[c][1], &cfg[c][2]};
        pq_bootstrap_sr(ctx, T, pc, pb, higher, NULL, &sr, ci);
        checksum += ci[0] + ci[1];
        for (int t = 0; t < T; t++) { /* each task's retention interval too */
            pq_bootstrap_sr(ctx, 1, &pc[t], &pb[t], &higher[t], NULL, &sr, ci);
            checksum += ci[0];
        }
    }
    for (int c = 0; c + 1 < C; c += 2) {
        const pq_units *pa[T] = {&cfg[c][0], &cfg[c][1], &cfg[c][2]},
                       *pz[T] = {&cfg[c + 1][0], &cfg[c + 1][1], &cfg[c + 1][2]};
        pq_bootstrap_sr_diff(ctx, T, pa, pz, pb, higher, NULL, &sr, ci);
        checksum += ci[0];
    }
    const double dt = now_s() - t0;
    printf("{\"name\": \"bootstrap_18x3x300\", \"seconds\": %.3f, \"resamples\": 2000, \"checksum\": %.6f}\n", dt,
           checksum);
    pq_ctx_free(ctx);
    return 0;
}
