/* Quantization grids: zero representable, codes in range, the reference symmetric grid's
 * clipping, the searched symmetric grid never worse, survivors-only fits, and RTN through
 * the layer API (error falls with bits, codes reproduce Q). */
#include <stdint.h>

#include "prunequant-compress.h"
#include "kernels/grid.h"
#include "test.h"
#define RANDGEN_SEED 0x6a09e667f3bcc908ULL
#include "randgen.h"

static void test_grid_properties(void) {
    for (int bits = 2; bits <= 8; bits++) {
        const float maxq = (float)((1 << bits) - 1);
        int zero_ok = 1, codes_ok = 1;
        for (int rep = 0; rep < 200; rep++) {
            float lo = -fabsf(nrand()) * (rep % 3 == 0 ? 0.0f : 1.0f),
                  hi = fabsf(nrand()) * (rep % 5 == 0 ? 0.0f : 1.0f);
            for (int kind = 0; kind < 2; kind++) {
                float s;
                uint8_t z;
                pq__grid_from_range(kind ? PQ_GRID_SYM_REF : PQ_GRID_ASYM, bits, lo, hi, &s, &z);
                float code;
                zero_ok &= pq__quantize(0.0f, s, (float)z, maxq, &code) == 0.0f && code == (float)z;
                for (int t = 0; t < 20; t++) {
                    const float x = 3.0f * nrand();
                    pq__quantize(x, s, (float)z, maxq, &code);
                    codes_ok &= code >= 0.0f && code <= maxq && code == rintf(code);
                }
                codes_ok &= z <= maxq;
            }
        }
        CHECK_MSG(zero_ok, "%d bits: zero not exactly representable", bits);
        CHECK_MSG(codes_ok, "%d bits: code out of range", bits);
    }
    /* asym min-max: both extremes are grid points (up to rounding of the zero) */
    float s;
    uint8_t z;
    pq__grid_from_range(PQ_GRID_ASYM, 4, -1.5f, 3.0f, &s, &z);
    CHECK_NEAR(s, 4.5f / 15.0f, 1e-7);
    CHECK(z == 5);
    /* reference symmetric: zero 2^(b-1), positive extreme clipped to 7/7.5 of absmax */
    pq__grid_from_range(PQ_GRID_SYM_REF, 4, -1.0f, 1.0f, &s, &z);
    float code;
    CHECK(z == 8);
    CHECK_NEAR(pq__quantize(1.0f, s, 8.0f, 15.0f, &code), 14.0f / 15.0f, 1e-6);
    CHECK_NEAR(pq__quantize(-16.0f / 15.0f, s, 8.0f, 15.0f, &code), -16.0f / 15.0f, 1e-6);
    /* all-positive group (reference quirk): scale = max / maxq, half the range unusable */
    pq__grid_from_range(PQ_GRID_SYM_REF, 4, 0.0f, 1.5f, &s, &z);
    CHECK_NEAR(s, 0.1f, 1e-7);
    /* round half to even, like torch.round */
    pq__grid_from_range(PQ_GRID_ASYM, 4, -1.5f, 0.0f, &s, &z); /* s = 0.1, z = 15 */
    CHECK(z == 15);
    CHECK_NEAR(pq__quantize(-0.25f, 0.5f, 4.0f, 15.0f, &code), 0.0f, 0.0);
    CHECK(code == 4.0f);
}

static void test_fit_tile(void) {
    enum { T = 64, NC = 32 };
    float vals[NC][T];
    uint8_t keep[NC][T];
    const float *cols[NC];
    const uint8_t *keeps[NC];
    for (int c = 0; c < NC; c++) {
        for (int r = 0; r < T; r++) {
            vals[c][r] = nrand() * (r % 4 == 0 ? 3.0f : 1.0f) + (r % 7 == 0 ? 2.0f : 0.0f);
            keep[c][r] = (uint8_t)(urand() < 0.5);
        }
        cols[c] = vals[c];
        keeps[c] = keep[c];
    }
    for (int bits = 2; bits <= 8; bits += 3) {
        const float maxq = (float)((1 << bits) - 1);
        float sa[T], sr[T], sm[T], sk[T];
        uint8_t za[T], zr[T], zm[T], zk[T];
        pq__grid_fit_tile(PQ_GRID_ASYM, bits, cols, NULL, NC, T, sa, za);
        pq__grid_fit_tile(PQ_GRID_SYM_REF, bits, cols, NULL, NC, T, sr, zr);
        pq__grid_fit_tile(PQ_GRID_SYM_MSE, bits, cols, NULL, NC, T, sm, zm);
        pq__grid_fit_tile(PQ_GRID_ASYM, bits, cols, keeps, NC, T, sk, zk);
        int asym_ok = 1, mse_ok = 1, keep_ok = 1;
        for (int r = 0; r < T; r++) {
            float mn = 0.0f, mx = 0.0f, mnk = 0.0f, mxk = 0.0f;
            double er = 0.0, em = 0.0;
            for (int c = 0; c < NC; c++) {
                mn = fminf(mn, vals[c][r]);
                mx = fmaxf(mx, vals[c][r]);
                if (keep[c][r]) {
                    mnk = fminf(mnk, vals[c][r]);
                    mxk = fmaxf(mxk, vals[c][r]);
                }
                float code;
                const double dr = vals[c][r] - pq__quantize(vals[c][r], sr[r], (float)zr[r], maxq, &code);
                const double dm = vals[c][r] - pq__quantize(vals[c][r], sm[r], (float)zm[r], maxq, &code);
                er += dr * dr;
                em += dm * dm;
            }
            float s;
            uint8_t z;
            pq__grid_from_range(PQ_GRID_ASYM, bits, mn, mx, &s, &z);
            asym_ok &= s == sa[r] && z == za[r];
            pq__grid_from_range(PQ_GRID_ASYM, bits, mnk, mxk, &s, &z);
            keep_ok &= s == sk[r] && z == zk[r];
            mse_ok &= em <= er * (1.0 + 1e-6) && zm[r] == (1 << (bits - 1));
        }
        CHECK(asym_ok);
        CHECK_MSG(keep_ok, "%d bits: survivors-only fit ignores the keep flags", bits);
        CHECK_MSG(mse_ok, "%d bits: searched symmetric grid worse than the reference", bits);
    }
}

static void test_rtn_layer(void) {
    const int64_t rows = 24, cols = 128, nel = rows * cols;
    float *W = malloc(sizeof(float) * (size_t)nel), *Q = malloc(sizeof(float) * (size_t)nel);
    float *H = calloc((size_t)(cols * cols), sizeof(float));
    for (int64_t i = 0; i < nel; i++)
        W[i] = (i % 11 == 0) ? 0.0f : 0.1f * nrand();
    for (int64_t j = 0; j < cols; j++)
        H[j * cols + j] = 1.0f + (float)(j % 5); /* diagonal: error = weighted MSE */
    pq_ctx *ctx = pq_ctx_new();
    for (int sym = 0; sym < 2; sym++)
        for (int64_t g = -1; g <= 32; g += 33) {
            double prev = INFINITY;
            int falls = 1;
            for (int bits = 2; bits <= 8; bits++) {
                pq_layer_params p = pq_layer_params_default();
                p.quant = PQ_QUANT_RTN;
                p.bits = bits;
                p.group_size = g;
                p.sym = sym;
                memcpy(Q, W, sizeof(float) * (size_t)nel);
                pq_layer_result res;
                pq_qcodes codes;
                CHECK(pq_layer_compress(ctx, &p, Q, rows, cols, H, NULL, &codes, &res) == PQ_OK);
                falls &= res.error < prev;
                prev = res.error;
                int zeros_kept = 1, reproduce = 1;
                for (int64_t i = 0; i < nel; i++) {
                    if (W[i] == 0.0f) zeros_kept &= Q[i] == 0.0f;
                    const int64_t r = i / cols, c = i % cols, gi = codes.g_idx[c];
                    const float v = codes.scales[r * codes.n_groups + gi] *
                                    ((float)codes.codes[i] - (float)codes.zeros[r * codes.n_groups + gi]);
                    reproduce &= v == Q[i] && codes.codes[i] <= (1 << bits) - 1;
                }
                CHECK(zeros_kept);
                CHECK(reproduce);
                CHECK(codes.n_groups == (g > 0 ? cols / g : 1));
                /* RTN error on a diagonal H is the weighted squared rounding error */
                double direct = 0.0;
                for (int64_t i = 0; i < nel; i++) {
                    const double d = (double)W[i] - Q[i];
                    direct += d * d * H[(i % cols) * cols + (i % cols)];
                }
                CHECK_NEAR(res.error, direct, 1e-5 * direct);
                pq_qcodes_free(&codes);
            }
            CHECK_MSG(falls, "sym %d group %lld: RTN error does not fall with bits", sym, (long long)g);
        }
    /* searched symmetric grid beats the reference one on RTN */
    pq_layer_params p = pq_layer_params_default();
    p.quant = PQ_QUANT_RTN;
    p.sym = 1;
    p.bits = 3;
    pq_layer_result r0, r1;
    memcpy(Q, W, sizeof(float) * (size_t)nel);
    CHECK(pq_layer_compress(ctx, &p, Q, rows, cols, H, NULL, NULL, &r0) == PQ_OK);
    p.reference = 1;
    memcpy(Q, W, sizeof(float) * (size_t)nel);
    CHECK(pq_layer_compress(ctx, &p, Q, rows, cols, H, NULL, NULL, &r1) == PQ_OK);
    CHECK_MSG(r0.error < r1.error, "searched %g vs reference %g", r0.error, r1.error);
    pq_ctx_free(ctx);
    free(W);
    free(Q);
    free(H);
}

int main(void) {
    test_grid_properties();
    test_fit_tile();
    test_rtn_layer();
    return test_end("test_quant");
}
