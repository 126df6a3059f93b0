/* Bits per weight of an unstructured keep mask stored four ways, on seeded random masks
 * (2048 x 2048 and 128 x 128; every weight pruned with probability s = 0.1, 0.25, 0.5, 0.75,
 * or with a per-row s drawn from 0.05..0.65): the bitmask, per-row Golomb-Rice coding of the
 * gaps between the rarer outcome (best Rice parameter per row; a size only), the urn range
 * coder of packed-v2 (model/maskcode.c: its real encoded size with the block index), and the
 * information bound (per row log2 C(cols, kept) + log2(cols + 1)). Plus the coder's encode and
 * decode speed on one thread (Mweights/s, the best of a few runs). One JSON object per line.
 * Usage: bench_maskcode [seed] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/maskcode.h"
#include "randgen.h"
#include "bench_util.h"

static int bit(const uint8_t *row, int64_t c) {
    return (row[c >> 3] >> (c & 7)) & 1;
}

static double log2_binom(int64_t n, int64_t k) {
    return (lgamma((double)n + 1) - lgamma((double)k + 1) - lgamma((double)(n - k) + 1)) / log(2.0);
}

/* Bits of one row under Golomb-Rice gap coding: which outcome is rarer (1 bit), its count
 * (ceil(log2(cols + 1)) bits), the Rice parameter (5 bits), then the gap before each rarer
 * position as (gap >> k) ones, a zero and k low bits; the parameter k (0..20) with the fewest. */
static int64_t rice_row_bits(const uint8_t *row, int64_t cols) {
    int64_t kept = 0;
    for (int64_t c = 0; c < cols; c++)
        kept += bit(row, c);
    const int rare = kept * 2 <= cols; /* the outcome whose positions are coded */
    int64_t best = -1;
    for (int k = 0; k <= 20; k++) {
        int64_t bits = 0, gap = 0;
        for (int64_t c = 0; c < cols; c++, gap++)
            if (bit(row, c) == rare) {
                bits += (gap >> k) + 1 + k;
                gap = -1;
            }
        if (best < 0 || bits < best) best = bits;
    }
    return 1 + (int64_t)ceil(log2((double)cols + 1)) + 5 + best;
}

/* A mask [rows, cols]: each weight pruned with probability s, or (s < 0) a per-row s drawn
 * from 0.05..0.65. */
static uint8_t *make_mask(int64_t rows, int64_t cols, double s) {
    const int64_t mrow = (cols + 7) / 8;
    uint8_t *bm = calloc((size_t)(rows * mrow), 1);
    for (int64_t r = 0; r < rows; r++) {
        const double sr = s >= 0 ? s : 0.05 + 0.6 * urand();
        for (int64_t c = 0; c < cols; c++)
            if (urand() >= sr) bm[r * mrow + (c >> 3)] |= (uint8_t)(1u << (c & 7));
    }
    return bm;
}

static void run_case(int64_t rows, int64_t cols, double s) {
    const int64_t mrow = (cols + 7) / 8, n = rows * cols, R = PQ__KMASK_BLOCK_ROWS;
    const int64_t nb = pq__kmask_blocks(rows, R);
    uint8_t *bm = make_mask(rows, cols, s), *back = malloc((size_t)(rows * mrow));
    const size_t cap = (size_t)(2 * rows * mrow + 64 * nb);
    uint8_t *buf = malloc(cap);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)nb);
    double bound = 0, rice = 0, t_enc = 1e30, t_dec = 1e30;
    int64_t kept = 0, coded = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t k = 0;
        for (int64_t c = 0; c < cols; c++)
            k += bit(bm + r * mrow, c);
        kept += k;
        bound += log2_binom(cols, k) + log2((double)cols + 1);
        rice += (double)rice_row_bits(bm + r * mrow, cols);
    }
    const int reps = n >= 1 << 20 ? 3 : 200; /* small shapes: enough repeats to time */
    for (int t = 0; t < 3; t++) {
        double t0 = now_s();
        for (int i = 0; i < reps; i++)
            coded = pq__kmask_encode(bm, rows, cols, R, buf, cap, idx);
        t_enc = fmin(t_enc, (now_s() - t0) / reps);
        t0 = now_s();
        int bad = 0;
        for (int i = 0; i < reps; i++)
            for (int64_t b = 0; b < nb; b++) {
                const int64_t st = b ? idx[b] : 0, end = b + 1 < nb ? idx[b + 1] : coded, r0 = b * R;
                const int64_t nr = rows - r0 < R ? rows - r0 : R;
                bad |= pq__kmask_decode_block(buf + st, (size_t)(end - st), nr, cols, back + r0 * mrow);
            }
        t_dec = fmin(t_dec, (now_s() - t0) / reps);
        if (bad || coded < 0 || memcmp(bm, back, (size_t)(rows * mrow))) {
            fprintf(stderr, "bench_maskcode: %lldx%lld s=%g does not round-trip\n", (long long)rows, (long long)cols,
                    s);
            exit(1);
        }
    }
    const double urn = 8.0 * ((double)coded + 4.0 * (double)nb); /* with the index */
    char sp[32];
    snprintf(sp, sizeof sp, s >= 0 ? "%.2f" : "\"rows 0.05..0.65\"", s);
    printf("{\"name\": \"maskcode\", \"rows\": %lld, \"cols\": %lld, \"sparsity\": %s, \"measured_sparsity\": %.4f, "
           "\"bitmask_bpw\": %.4f, \"rice_bpw\": %.4f, \"urn_bpw\": %.4f, \"bound_bpw\": %.4f, "
           "\"urn_over_bound_bits_per_row\": %.3f, \"encode_mweights_s\": %.1f, \"decode_mweights_s\": %.1f}\n",
           (long long)rows, (long long)cols, sp, 1.0 - (double)kept / (double)n,
           8.0 * (double)(rows * mrow) / (double)n, rice / (double)n, urn / (double)n, bound / (double)n,
           (urn - bound) / (double)rows, 1e-6 * (double)n / t_enc, 1e-6 * (double)n / t_dec);
    fflush(stdout);
    free(bm);
    free(back);
    free(buf);
    free(idx);
}

int main(int argc, char **argv) {
    rng = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
    static const int64_t shapes[2][2] = {{2048, 2048}, {128, 128}};
    static const double sp[5] = {0.1, 0.25, 0.5, 0.75, -1};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 5; k++)
            run_case(shapes[i][0], shapes[i][1], sp[k]);
    return 0;
}
