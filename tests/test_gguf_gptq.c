/* GPTQ onto ggml block grids (pq_layer_params.gguf_type): on a layer with correlated inputs the
 * stored rows decode (our decoder = ggml's, see cli_gguf_types) to exactly the weights
 * pq_layer_compress returns; the layer error tr(dW H dW^T) is below round-to-nearest onto
 * grids fitted with llama.cpp's importance rule on imatrix = diag(H) (what llama-quantize does
 * with an imatrix); pruned weights stay 0 on the symmetric types; bad requests fail cleanly. */
#include <cblas.h>

#include "kernels/ggml_types.h"
#include "prunequant-compress.h"
#include "randgen.h"
#include "test.h"

enum { ROWS = 64, COLS = 512, NTOK = 2048 };

/* H = X^T X for inputs with a few strong directions and per-column scales (as activations). */
static float *make_h(void) {
    float *X = malloc(sizeof(float) * NTOK * COLS), *H = malloc(sizeof(float) * COLS * COLS);
    float lat[8][COLS], scale[COLS];
    for (int k = 0; k < 8; k++)
        for (int c = 0; c < COLS; c++)
            lat[k][c] = nrand();
    for (int c = 0; c < COLS; c++)
        scale[c] = 0.2f + (float)(c % 17) * 0.15f;
    for (int t = 0; t < NTOK; t++) {
        float z[8];
        for (int k = 0; k < 8; k++)
            z[k] = nrand();
        for (int c = 0; c < COLS; c++) {
            float v = 0.3f * nrand();
            for (int k = 0; k < 8; k++)
                v += z[k] * lat[k][c] * 0.4f;
            X[t * COLS + c] = v * scale[c];
        }
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, COLS, COLS, NTOK, 1.0f, X, COLS, X, COLS, 0.0f, H, COLS);
    free(X);
    return H;
}

/* tr(D H D^T), D = W - Q, in double. */
static double quad_error(const float *W, const float *Q, const float *H) {
    double e = 0;
    double *d = malloc(sizeof(double) * COLS);
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < COLS; c++)
            d[c] = (double)W[r * COLS + c] - (double)Q[r * COLS + c];
        for (int i = 0; i < COLS; i++) {
            double s = 0;
            for (int k = 0; k < COLS; k++)
                s += (double)H[i * COLS + k] * d[k];
            e += d[i] * s;
        }
    }
    free(d);
    return e;
}

/* Round to nearest with llama.cpp's rule on imatrix = diag(H). */
static double rtn_error(const pq__ggml_info *ti, const float *W, const float *H) {
    float imat[COLS], w[COLS];
    for (int c = 0; c < COLS; c++)
        imat[c] = H[c * COLS + c];
    float *Q = malloc(sizeof(float) * ROWS * COLS);
    uint8_t *blk = malloc((size_t)(COLS / ti->block * ti->bytes));
    for (int r = 0; r < ROWS; r++) {
        pq__ggml_weights(ti, W + r * COLS, imat, COLS, w);
        CHECK(pq__ggml_quantize_row(ti, W + r * COLS, w, COLS, blk));
        pq__ggml_decode_row(ti, blk, Q + r * COLS, COLS);
    }
    const double e = quad_error(W, Q, H);
    free(Q);
    free(blk);
    return e;
}

static void test_types(const float *W0, const float *H) {
    static const pq_dtype types[] = {PQ_DTYPE_Q8_0, PQ_DTYPE_Q6_K, PQ_DTYPE_Q5_K, PQ_DTYPE_Q5_0, PQ_DTYPE_Q5_1,
                                     PQ_DTYPE_Q4_K, PQ_DTYPE_Q4_0, PQ_DTYPE_Q4_1, PQ_DTYPE_Q3_K, PQ_DTYPE_Q2_K};
    pq_ctx *ctx = pq_ctx_new();
    printf("%-5s %14s %14s %7s\n", "type", "gptq error", "rtn+imatrix", "ratio");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const pq__ggml_info *ti = pq__ggml_info_of(types[k]);
        pq_layer_params p = pq_layer_params_default();
        p.gguf_type = types[k];
        float *W = copy_f(W0, ROWS * COLS);
        pq_qcodes codes;
        pq_layer_result res;
        CHECK_MSG(pq_layer_compress(ctx, &p, W, ROWS, COLS, H, NULL, &codes, &res) == PQ_OK, "%s: %s", ti->name,
                  pq_ctx_error(ctx));
        CHECK(codes.gguf_type == types[k] && codes.gguf_bytes == (size_t)(ROWS * COLS / ti->block * ti->bytes));
        /* the stored blocks decode to exactly the returned weights */
        float *D = malloc(sizeof(float) * ROWS * COLS);
        for (int r = 0; r < ROWS && codes.gguf_blocks; r++)
            pq__ggml_decode_row(ti, codes.gguf_blocks + (size_t)r * (COLS / ti->block * ti->bytes), D + r * COLS,
                                COLS);
        CHECK_MSG(codes.gguf_blocks && !memcmp(D, W, sizeof(float) * ROWS * COLS), "%s: decode != Q", ti->name);
        const double eg = quad_error(W0, W, H), er = rtn_error(ti, W0, H);
        printf("%-5s %14.6g %14.6g %7.3f\n", ti->name, eg, er, eg / er);
        CHECK_MSG(eg < er, "%s: GPTQ error %g not below RTN+imatrix %g", ti->name, eg, er);
        /* the sweep's own error identity agrees with the direct one */
        CHECK_MSG(fabs(res.error - eg) <= 1e-3 * eg + 1e-9, "%s: reported %g vs direct %g", ti->name, res.error, eg);
        free(D);
        free(W);
        pq_qcodes_free(&codes);
    }
    pq_ctx_free(ctx);
}

/* 2:4 + Q4_0 (fused, SparseGPT mask in the sweep) keeps exact zeros; Q4_1 reports pruned
 * weights that its grid cannot hold at 0. */
static void test_pruned(const float *W0, const float *H) {
    pq_ctx *ctx = pq_ctx_new();
    for (int t = 0; t < 2; t++) {
        pq_layer_params p = pq_layer_params_default();
        p.prune = PQ_PRUNE_SPARSEGPT;
        p.prune_n = 2;
        p.prune_m = 4;
        p.joint = t ? PQ_JOINT_B : PQ_JOINT_FUSED;
        p.gguf_type = t ? PQ_DTYPE_Q4_1 : PQ_DTYPE_Q4_0;
        float *W = copy_f(W0, ROWS * COLS);
        uint8_t *mask = malloc(ROWS * COLS);
        pq_layer_result res;
        CHECK_MSG(pq_layer_compress(ctx, &p, W, ROWS, COLS, H, mask, NULL, &res) == PQ_OK, "%s", pq_ctx_error(ctx));
        int64_t pruned = 0, nonzero = 0;
        for (int i = 0; i < ROWS * COLS; i++) {
            pruned += !mask[i];
            nonzero += !mask[i] && W[i] != 0.0f;
        }
        CHECK(pruned == ROWS * COLS / 2);
        CHECK(nonzero == res.pruned_nonzero);
        if (!t) CHECK(nonzero == 0);
        printf("2:4 + %s (%s): %lld of %lld pruned weights stored non-zero\n", t ? "Q4_1" : "Q4_0",
               t ? "mode b" : "fused", (long long)nonzero, (long long)pruned);
        free(W);
        free(mask);
    }
    pq_ctx_free(ctx);
}

static void test_bad(const float *W0, const float *H) {
    pq_ctx *ctx = pq_ctx_new();
    pq_layer_params p = pq_layer_params_default();
    float *W = copy_f(W0, ROWS * COLS);
    p.gguf_type = PQ_DTYPE_Q4_K;
    CHECK(pq_layer_compress(ctx, &p, W, ROWS, 256 + 32, H, NULL, NULL, NULL) ==
          PQ_ERR_INVALID); /* not whole blocks */
    CHECK(strstr(pq_ctx_error(ctx), "whole blocks") != NULL);
    p.act_order = 1;
    CHECK(pq_layer_compress(ctx, &p, W, ROWS, COLS, H, NULL, NULL, NULL) == PQ_ERR_INVALID);
    p.act_order = 0;
    p.gguf_type = PQ_DTYPE_BF16;
    CHECK(pq_layer_compress(ctx, &p, W, ROWS, COLS, H, NULL, NULL, NULL) == PQ_ERR_INVALID);
    CHECK(!memcmp(W, W0, sizeof(float) * ROWS * COLS)); /* nothing written on failure */
    free(W);
    pq_ctx_free(ctx);
}

int main(void) {
    float *H = make_h();
    float *W = make_w(ROWS, COLS);
    test_types(W, H);
    test_pruned(W, H);
    test_bad(W, H);
    free(W);
    free(H);
    return test_end("test_gguf_gptq");
}
