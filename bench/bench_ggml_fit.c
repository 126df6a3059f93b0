/* Cost and quality of pq__ggml_fit_row: rows x cols Gaussian values with 5% outliers (x8),
 * every ggml type, without and with an imatrix. Prints per type and mode the fit's
 * ns per element and the total weighted squared error after rounding to nearest.
 * Usage: bench_ggml_fit [rows [cols]] (default 64 x 1024). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/ggml_types.h"
#include "bench_util.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double unif(void) { /* (0, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) {
    return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif());
}

int main(int argc, char **argv) {
    const int64_t rows = argc > 1 ? atoll(argv[1]) : 64, cols = argc > 2 ? atoll(argv[2]) : 1024;
    const pq_dtype types[] = {PQ_DTYPE_Q4_0, PQ_DTYPE_Q4_1, PQ_DTYPE_Q5_0, PQ_DTYPE_Q5_1, PQ_DTYPE_Q8_0,
                              PQ_DTYPE_Q2_K, PQ_DTYPE_Q3_K, PQ_DTYPE_Q4_K, PQ_DTYPE_Q5_K, PQ_DTYPE_Q6_K};
    float *x = malloc((size_t)(rows * cols) * sizeof *x); /* [rows, cols] */
    float *imat = malloc((size_t)cols * sizeof *imat);    /* [cols] per-column importance */
    float *w = malloc((size_t)cols * sizeof *w), *deq = malloc((size_t)cols * sizeof *deq);
    pq__ggml_params *p = malloc((size_t)(cols / 32) * sizeof *p);
    if (!x || !imat || !w || !deq || !p) return 1;
    for (int64_t i = 0; i < rows * cols; i++)
        x[i] = (float)(gauss() * (unif() < 0.05 ? 8 : 1));
    for (int64_t i = 0; i < cols; i++)
        imat[i] = (float)exp(gauss());
    printf("%-5s %-8s %10s %14s\n", "type", "imatrix", "ns/elem", "weighted_err");
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const pq__ggml_info *ti = pq__ggml_info_of(types[t]);
        for (int mode = 0; mode < 2; mode++) {
            double secs = 0, err = 0;
            for (int64_t r = 0; r < rows; r++) {
                const float *xr = x + r * cols;
                pq__ggml_weights(ti, xr, mode ? imat : NULL, cols, w);
                double t0 = now_s();
                pq__ggml_fit_row(ti, xr, w, cols, p);
                secs += now_s() - t0;
                uint8_t codes[4096];
                for (int64_t c = 0; c < cols; c += 4096) /* rounding only for the error */
                    pq__ggml_round_row(ti, p + c / ti->block, xr + c, cols - c < 4096 ? cols - c : 4096, codes,
                                       deq + c);
                err += pq__ggml_wsse(xr, deq, w, cols);
            }
            printf("%-5s %-8s %10.1f %14.6g\n", ti->name, mode ? "yes" : "no", 1e9 * secs / (double)(rows * cols),
                   err);
            fflush(stdout);
        }
    }
    free(x), free(imat), free(w), free(deq), free(p);
    return 0;
}
