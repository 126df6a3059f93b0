/* The per-layer engine end to end: GPTQ against the plain reference implementation of the
 * published algorithm (tests/obs_ref.h), act-order and static groups, joint modes, degenerate Hessians,
 * recipe validation, error bookkeeping, threads. */
#include <stdint.h>
#include <unistd.h>

#include <cblas.h>

#include "joint/joint.h"
#include "linalg/linalg.h"
#include "obs_ref.h"
#include "prunequant-compress.h"
#include "test.h"
#include "failalloc.h"
#define RANDGEN_SEED 0x9e3779b97f4a7c15ULL
#include "randgen.h"

/* ---------------------------------------------------------------- data */

/* H = 2 X X^T / T for X [n, T] = low rank (correlated channels) + noise, with a few
 * outlier channels; the calibration of a real layer looks like this. */
static float *make_h(int64_t n, int64_t T, int rank) {
    float *X = malloc(sizeof(float) * (size_t)(n * T)), *A = malloc(sizeof(float) * (size_t)(n * rank)),
          *Z = malloc(sizeof(float) * (size_t)(rank * T));
    for (int64_t i = 0; i < n * rank; i++)
        A[i] = nrand();
    for (int64_t i = 0; i < rank * T; i++)
        Z[i] = nrand();
    for (int64_t i = 0; i < n; i++) {
        const float boost = (i % 17 == 3) ? 8.0f : 1.0f;
        for (int64_t t = 0; t < T; t++) {
            float v = 0.3f * nrand();
            for (int k = 0; k < rank; k++)
                v += A[i * rank + k] * Z[k * T + t];
            X[i * T + t] = boost * v;
        }
    }
    float *H = malloc(sizeof(float) * (size_t)(n * n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0.0;
            for (int64_t t = 0; t < T; t++)
                s += (double)X[i * T + t] * X[j * T + t];
            H[i * n + j] = H[j * n + i] = (float)(2.0 * s / (double)T);
        }
    free(X);
    free(A);
    free(Z);
    return H;
}

/* ---------------------------------------------------------------- helpers */

static int n_warn, n_dead_logs;
static void count_log(void *user, pq_log_level level, const char *msg) {
    (void)user;
    if (level == PQ_LOG_WARN) n_warn++;
    if (strstr(msg, "never active")) n_dead_logs++;
}

static pq_ctx *new_ctx(int threads) {
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, threads);
    pq_ctx_set_log(ctx, count_log, NULL);
    return ctx;
}

/* Runs p on a copy of W; returns the compressed copy (caller frees). */
static float *run(pq_ctx *ctx, const pq_layer_params *p, const float *W, int64_t rows, int64_t cols, const float *H,
                  uint8_t *mask, pq_qcodes *codes, pq_layer_result *res, pq_status *st_out) {
    float *Q = copy_f(W, rows * cols);
    const pq_status st = pq_layer_compress(ctx, p, Q, rows, cols, H, mask, codes, res);
    if (st_out) *st_out = st;
    CHECK_MSG(st_out || st == PQ_OK, "compress failed: %s", pq_ctx_error(ctx));
    return Q;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

/* Q reproduced from the codes: (code - zero) * scale of group g_idx[c]. */
static int codes_reproduce(const pq_qcodes *c, const float *Q) {
    for (int64_t r = 0; r < c->rows; r++)
        for (int64_t j = 0; j < c->cols; j++) {
            const int64_t gi = c->g_idx[j];
            const float s = c->scales[r * c->n_groups + gi], z = (float)c->zeros[r * c->n_groups + gi];
            const float v = s * ((float)c->codes[r * c->cols + j] - z);
            if (v != Q[r * c->cols + j]) return 0;
            if (c->codes[r * c->cols + j] > (1 << c->bits) - 1) return 0;
        }
    return 1;
}

/* ---------------------------------------------------------------- tests */

static void test_reference_gptq(void) {
    const int64_t rows = 48, n = 96;
    float *H = make_h(n, 256, 12), *W = make_w(rows, n);
    /* two dead inputs: the reference fits per-row grids before zeroing their weights */
    for (int64_t j = 0; j < n; j++) {
        H[7 * n + j] = H[j * n + 7] = 0.0f;
        H[50 * n + j] = H[j * n + 50] = 0.0f;
    }
    for (int64_t r = 0; r < rows; r++)
        W[r * n + 7] = 0.3f; /* larger than the others */
    pq_ctx *ctx = new_ctx(2);
    struct {
        int64_t g, B;
        int sym, act, stat;
    } cases[] = {{-1, n, 0, 0, 0},  {32, n, 0, 0, 0},  {32, n, 1, 0, 0},  {-1, n, 0, 1, 0},
                 {16, 24, 0, 0, 0}, {16, 24, 0, 1, 0}, {32, 32, 0, 1, 1}, {16, 40, 1, 1, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pq_layer_params p = pq_layer_params_default();
        p.reference = 1;
        p.bits = 4;
        p.group_size = cases[k].g;
        p.blocksize = cases[k].B;
        p.sym = cases[k].sym;
        p.act_order = cases[k].act;
        p.static_groups = cases[k].stat;
        pq_layer_result res;
        float *Q = run(ctx, &p, W, rows, n, H, NULL, NULL, &res, NULL);
        float *R = malloc(sizeof(float) * (size_t)(rows * n));
        obs_ref_gptq(W, rows, n, H, 4, cases[k].g, cases[k].sym, cases[k].act, cases[k].stat, 0.01, cases[k].B, R);
        const double eq = obs_ref_quad_err(W, Q, rows, n, H), er = obs_ref_quad_err(W, R, rows, n, H);
        int64_t differ = 0;
        for (int64_t i = 0; i < rows * n; i++)
            differ += fabsf(Q[i] - R[i]) > 1e-5f;
        CHECK_MSG(fabs(eq - er) <= 1e-4 * er, "case %zu: error %.8g vs reference %.8g", k, eq, er);
        CHECK_MSG(differ <= rows * n / 1000, "case %zu: %lld of %lld weights differ", k, (long long)differ,
                  (long long)(rows * n));
        CHECK_NEAR(res.error, eq, 1e-4 * eq);
        free(Q);
        free(R);
    }
    pq_ctx_free(ctx);
    free(H);
    free(W);
}

static void test_gptq_beats_rtn(void) {
    const int64_t rows = 64, n = 128;
    float *H = make_h(n, 384, 16), *W = make_w(rows, n);
    pq_ctx *ctx = new_ctx(2);
    for (int bits = 2; bits <= 4; bits++) {
        pq_layer_params p = pq_layer_params_default();
        p.bits = bits;
        p.group_size = 32;
        pq_layer_result rg, rr;
        float *Qg = run(ctx, &p, W, rows, n, H, NULL, NULL, &rg, NULL);
        p.quant = PQ_QUANT_RTN;
        float *Qr = run(ctx, &p, W, rows, n, H, NULL, NULL, &rr, NULL);
        CHECK_MSG(rg.error < rr.error, "%d bits: gptq %g vs rtn %g", bits, rg.error, rr.error);
        CHECK(rr.error_direct == 1 && rg.error_direct == 0);
        /* the identity-based error matches the direct one */
        CHECK_NEAR(rg.error, obs_ref_quad_err(W, Qg, rows, n, H), 1e-4 * rg.error);
        CHECK_NEAR(rr.error, obs_ref_quad_err(W, Qr, rows, n, H), 1e-4 * rr.error);
        free(Qg);
        free(Qr);
    }
    /* act-order helps on an H with strong outlier channels */
    pq_layer_params p = pq_layer_params_default();
    p.bits = 3;
    pq_layer_result r0, r1;
    free(run(ctx, &p, W, rows, n, H, NULL, NULL, &r0, NULL));
    p.act_order = 1;
    free(run(ctx, &p, W, rows, n, H, NULL, NULL, &r1, NULL));
    CHECK_MSG(r1.error < r0.error * 1.05, "act-order %g vs plain %g", r1.error, r0.error);
    pq_ctx_free(ctx);
    free(H);
    free(W);
}

static void test_codes_and_groups(void) {
    const int64_t rows = 40, n = 128;
    float *H = make_h(n, 300, 10), *W = make_w(rows, n);
    pq_ctx *ctx = new_ctx(2);
    for (int variant = 0; variant < 6; variant++) {
        pq_layer_params p = pq_layer_params_default();
        p.group_size = variant == 5 ? -1 : 32;
        p.act_order = variant >= 1;
        p.static_groups = variant == 2 || variant == 4;
        p.sym = variant == 3 || variant == 4;
        p.bits = variant == 4 ? 3 : 4;
        pq_qcodes codes;
        float *Q = run(ctx, &p, W, rows, n, H, NULL, &codes, NULL, NULL);
        CHECK(codes.rows == rows && codes.cols == n && codes.bits == p.bits);
        CHECK_MSG(codes_reproduce(&codes, Q), "variant %d: codes do not reproduce Q", variant);
        if (p.group_size > 0 && (!p.act_order || p.static_groups)) {
            int natural = 1;
            for (int64_t c = 0; c < n; c++)
                natural &= codes.g_idx[c] == c / p.group_size;
            CHECK_MSG(natural, "variant %d: static groups must be original column groups", variant);
        }
        if (p.act_order && !p.static_groups && p.group_size > 0) {
            int64_t count[4] = {0};
            for (int64_t c = 0; c < n; c++)
                count[codes.g_idx[c]]++;
            CHECK(count[0] == 32 && count[1] == 32 && count[2] == 32 && count[3] == 32);
        }
        pq_qcodes_free(&codes);
        free(Q);
    }
    /* static groups with act-order equal static groups without act-order in their grids'
     * grouping, and both beat RTN */
    pq_layer_params p = pq_layer_params_default();
    p.group_size = 32;
    p.static_groups = 1;
    p.act_order = 1;
    pq_layer_result rs, rr;
    free(run(ctx, &p, W, rows, n, H, NULL, NULL, &rs, NULL));
    p.quant = PQ_QUANT_RTN;
    free(run(ctx, &p, W, rows, n, H, NULL, NULL, &rr, NULL));
    CHECK(rs.error < rr.error);
    pq_qcodes_free(NULL);
    pq_ctx_free(ctx);
    free(H);
    free(W);
}

static int64_t count_zero_where_pruned(const float *Q, const uint8_t *mask, int64_t n, int64_t *pruned) {
    int64_t z = 0, pr = 0;
    for (int64_t i = 0; i < n; i++)
        if (!mask[i]) {
            pr++;
            z += Q[i] == 0.0f;
        }
    *pruned = pr;
    return z;
}

static void test_joint_modes(void) {
    const int64_t rows = 64, n = 128, nel = rows * n;
    float *H = make_h(n, 384, 16), *W = make_w(rows, n);
    pq_ctx *ctx = new_ctx(2);
    uint8_t *mask = malloc((size_t)nel);
    double err[3];
    for (int mode = 0; mode < 3; mode++) {
        pq_layer_params p = pq_layer_params_default();
        p.prune = PQ_PRUNE_SPARSEGPT;
        p.sparsity = 0.5;
        p.group_size = 32;
        p.joint = (pq_joint_mode)mode;
        p.keep_mask = 0; /* mode a as the paper runs it: GPTQ may move pruned weights */
        pq_layer_result res;
        pq_qcodes codes;
        float *Q = run(ctx, &p, W, rows, n, H, mask, &codes, &res, NULL);
        int64_t pruned, z = count_zero_where_pruned(Q, mask, nel, &pruned);
        CHECK_MSG(pruned == nel / 2, "mode %d: %lld pruned", mode, (long long)pruned);
        if (mode != PQ_JOINT_A) {
            CHECK_MSG(z == pruned, "mode %d: %lld pruned weights not zero", mode, (long long)(pruned - z));
            CHECK_NEAR(res.sparsity, 0.5, 1e-12);
        } else {
            CHECK(res.moved_off_zero == pruned - z);
        }
        CHECK(codes_reproduce(&codes, Q));
        CHECK_NEAR(res.error, obs_ref_quad_err(W, Q, rows, n, H), 1e-4 * res.error);
        err[mode] = res.error;
        pq_qcodes_free(&codes);
        free(Q);
    }
    CHECK(isfinite(err[0]) && isfinite(err[1]) && isfinite(err[2]));
    /* fused with a one-shot mask (Wanda) and with static groups + act-order: exact sparsity,
     * pruned weights 0, codes reproduce Q */
    for (int variant = 0; variant < 2; variant++) {
        pq_layer_params p = pq_layer_params_default();
        p.prune = variant ? PQ_PRUNE_SPARSEGPT : PQ_PRUNE_WANDA;
        p.group_size = 32;
        p.static_groups = variant;
        p.act_order = variant;
        p.joint = PQ_JOINT_FUSED;
        pq_layer_result res;
        pq_qcodes codes;
        float *Q = run(ctx, &p, W, rows, n, H, mask, &codes, &res, NULL);
        int64_t pruned, z = count_zero_where_pruned(Q, mask, nel, &pruned);
        CHECK(z == pruned && pruned == nel / 2);
        CHECK(codes_reproduce(&codes, Q));
        CHECK_NEAR(res.error, obs_ref_quad_err(W, Q, rows, n, H), 1e-4 * res.error);
        pq_qcodes_free(&codes);
        free(Q);
    }
    /* fused 2:6 with groups of 16: cells straddle groups, the grid of a group is fitted on
     * predicted survivors of the cells it overlaps */
    {
        const int64_t c6 = 96;
        float *W6 = make_w(rows, c6), *H6 = make_h(c6, 200, 8);
        pq_layer_params p = pq_layer_params_default();
        p.prune = PQ_PRUNE_SPARSEGPT;
        p.prune_n = 2;
        p.prune_m = 6;
        p.group_size = 16;
        p.joint = PQ_JOINT_FUSED;
        pq_layer_result r1, r2;
        pq_qcodes codes;
        pq_ctx *c1 = new_ctx(1);
        float *Q1 = run(c1, &p, W6, rows, c6, H6, NULL, &codes, &r1, NULL);
        float *Q2 = run(ctx, &p, W6, rows, c6, H6, NULL, NULL, &r2, NULL);
        CHECK(memcmp(Q1, Q2, sizeof(float) * (size_t)(rows * c6)) == 0);
        CHECK_NEAR(r1.sparsity, 2.0 / 6.0, 1e-12);
        CHECK(codes_reproduce(&codes, Q1));
        CHECK_NEAR(r1.error, obs_ref_quad_err(W6, Q1, rows, c6, H6), 1e-4 * r1.error);
        int cells_ok = 1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < c6; c += 6) {
                int z = 0;
                for (int k = 0; k < 6; k++)
                    z += Q1[r * c6 + c + k] == 0.0f;
                cells_ok &= z >= 2;
            }
        CHECK(cells_ok);
        pq_qcodes_free(&codes);
        pq_ctx_free(c1);
        free(Q1);
        free(Q2);
        free(W6);
        free(H6);
    }
    /* mode a with keep_mask: the mask holds again, codes still reproduce */
    pq_layer_params p = pq_layer_params_default();
    p.prune = PQ_PRUNE_WANDA;
    p.joint = PQ_JOINT_A;
    p.keep_mask = 1;
    pq_layer_result ra;
    pq_qcodes codes;
    float *Q = run(ctx, &p, W, rows, n, H, mask, &codes, &ra, NULL);
    int64_t pruned, z = count_zero_where_pruned(Q, mask, nel, &pruned);
    CHECK(z == pruned && pruned == nel / 2);
    CHECK_MSG(ra.moved_off_zero > 0, "GPTQ should move some pruned weights (%lld)", (long long)ra.moved_off_zero);
    CHECK(codes_reproduce(&codes, Q));
    pq_qcodes_free(&codes);
    free(Q);
    /* mode b with N:M and RTN: exact pattern, survivors' grid */
    p = pq_layer_params_default();
    p.prune = PQ_PRUNE_MAGNITUDE;
    p.prune_n = 2;
    p.prune_m = 4;
    p.quant = PQ_QUANT_RTN;
    p.joint = PQ_JOINT_B;
    pq_layer_result rb;
    Q = run(ctx, &p, W, rows, n, H, mask, NULL, &rb, NULL);
    z = count_zero_where_pruned(Q, mask, nel, &pruned);
    CHECK(z == pruned && pruned == nel / 2);
    free(Q);
    pq_ctx_free(ctx);
    free(mask);
    free(H);
    free(W);
}

static void test_fused_grid(void) {
    /* The improved fused sweep against SparseGPT's (one grid per row fitted on the dense row,
     * before dead inputs are zeroed). Two inputs are never active but carry large weights: the
     * reference grid spends its range on them. With groups and act-order the gap grows. */
    const int64_t rows = 96, n = 128;
    float *H = make_h(n, 384, 16), *W = make_w(rows, n);
    for (int64_t j = 0; j < n; j++) {
        H[20 * n + j] = H[j * n + 20] = 0.0f;
        H[90 * n + j] = H[j * n + 90] = 0.0f;
    }
    for (int64_t r = 0; r < rows; r++)
        W[r * n + 20] = W[r * n + 90] = (r % 2 ? 0.4f : -0.4f);
    pq_ctx *ctx = new_ctx(2);
    const int pats[][2] = {{0, 0}, {2, 4}};
    for (int k = 0; k < 2; k++) {
        pq_layer_params p = pq_layer_params_default();
        p.prune = PQ_PRUNE_SPARSEGPT;
        p.prune_n = pats[k][0];
        p.prune_m = pats[k][1];
        p.joint = PQ_JOINT_FUSED;
        p.bits = 3;
        p.reference = 1;
        pq_layer_result rref, rdef, rgrp;
        uint8_t *mask = malloc((size_t)(rows * n));
        float *Q = run(ctx, &p, W, rows, n, H, mask, NULL, &rref, NULL);
        p.reference = 0;
        free(Q);
        Q = run(ctx, &p, W, rows, n, H, mask, NULL, &rdef, NULL);
        free(Q);
        p.group_size = 32;
        p.act_order = pats[k][1] == 0;
        Q = run(ctx, &p, W, rows, n, H, mask, NULL, &rgrp, NULL);
        CHECK_MSG(rdef.error < 0.8 * rref.error, "pattern %d: survivors' grid %g vs reference %g", k, rdef.error,
                  rref.error);
        CHECK_MSG(rgrp.error < 0.95 * rref.error, "pattern %d: improved %g vs reference %g", k, rgrp.error,
                  rref.error);
        CHECK_NEAR(rgrp.error, obs_ref_quad_err(W, Q, rows, n, H), 1e-4 * rgrp.error);
        CHECK_NEAR(rgrp.sparsity, 0.5, 1e-12);
        free(Q);
        free(mask);
    }
    pq_ctx_free(ctx);
    free(H);
    free(W);
}

static void test_degenerate_h(void) {
    const int64_t rows = 16, n = 64, nel = rows * n;
    float *W = make_w(rows, n);
    pq_ctx *ctx = new_ctx(2);
    /* rank-deficient: 8 tokens for 64 channels, plus zero (dead) and duplicated columns */
    float *H = make_h(n, 8, 4);
    for (int64_t j = 0; j < n; j++) {
        H[5 * n + j] = H[j * n + 5] = 0.0f;
        H[9 * n + j] = H[j * n + 9] = 0.0f;
    }
    for (int64_t j = 0; j < n; j++)
        H[11 * n + j] = H[12 * n + j];
    for (int64_t j = 0; j < n; j++)
        H[j * n + 11] = H[j * n + 12];
    H[11 * n + 11] = H[12 * n + 12];
    const pq_prune_method methods[] = {PQ_PRUNE_NONE, PQ_PRUNE_SPARSEGPT};
    n_dead_logs = 0;
    for (int k = 0; k < 2; k++) {
        pq_layer_params p = pq_layer_params_default();
        p.prune = methods[k];
        p.joint = PQ_JOINT_FUSED;
        pq_layer_result res;
        float *Q = run(ctx, &p, W, rows, n, H, NULL, NULL, &res, NULL);
        CHECK(res.dead_cols == 2);
        for (int64_t r = 0; r < rows; r++)
            CHECK(Q[r * n + 5] == 0.0f && Q[r * n + 9] == 0.0f);
        int finite = 1;
        for (int64_t i = 0; i < nel; i++)
            finite &= isfinite(Q[i]);
        CHECK(finite);
        CHECK_NEAR(res.error, obs_ref_quad_err(W, Q, rows, n, H), 1e-3 * res.error + 1e-9);
        free(Q);
    }
    CHECK(n_dead_logs == 2);
    /* a singular H with no damping: the escalation raises it and logs */
    pq_layer_params p = pq_layer_params_default();
    p.percdamp = 0.0;
    n_warn = 0;
    pq_layer_result res;
    free(run(ctx, &p, W, rows, n, H, NULL, NULL, &res, NULL));
    CHECK_MSG(res.chol_retries >= 1 && n_warn == res.chol_retries, "retries %d, warnings %d", res.chol_retries,
              n_warn);
    CHECK(res.percdamp > 0.0 && res.damp > 0.0);
    /* an indefinite H fails after the bound, with a message, and leaves W unchanged */
    for (int64_t i = 0; i < n * n; i++)
        H[i] = 0.0f;
    for (int64_t j = 0; j < n; j++)
        H[j * n + j] = j == 3 ? -1e6f : 1.0f;
    float *Q = copy_f(W, nel);
    const pq_status st = pq_layer_compress(ctx, &p, Q, rows, n, H, NULL, NULL, NULL);
    CHECK(st == PQ_ERR_NUMERIC);
    CHECK(strstr(pq_ctx_error(ctx), "Cholesky") != NULL);
    CHECK(memcmp(Q, W, sizeof(float) * (size_t)nel) == 0);
    /* non-finite inputs */
    H[7 * n] = NAN;
    CHECK(pq_layer_compress(ctx, &p, Q, rows, n, H, NULL, NULL, NULL) == PQ_ERR_NUMERIC);
    CHECK(strstr(pq_ctx_error(ctx), "non-finite") != NULL);
    H[7 * n] = 0.0f;
    H[7] = NAN; /* upper triangle too: the error reads the whole matrix */
    CHECK(pq_layer_compress(ctx, &p, Q, rows, n, H, NULL, NULL, NULL) == PQ_ERR_NUMERIC);
    H[7] = 0.0f;
    Q[3] = INFINITY;
    CHECK(pq_layer_compress(ctx, &p, Q, rows, n, H, NULL, NULL, NULL) == PQ_ERR_INVALID);
    free(Q);
    free(H);
    free(W);
    pq_ctx_free(ctx);
}

static void expect_invalid(pq_ctx *ctx, const pq_layer_params *p, int64_t cols, const char *needle) {
    const pq_status st = pq_layer_params_validate(ctx, p, cols);
    CHECK_MSG(st == PQ_ERR_INVALID && strstr(pq_ctx_error(ctx), needle), "expected '%s', got '%s'", needle,
              pq_ctx_error(ctx));
}

/* The rule for recipe keys without effect (pq_recipe_check), shared by compress, layer and
 * sweep grids, and the defaults that follow from what was given. */
static void test_recipe_check(void) {
    pq_ctx *ctx = new_ctx(1);
    pq_layer_params p = pq_layer_params_default();
    CHECK(pq_recipe_check(ctx, &p, PQ_KEY_SPARSITY, 1) == PQ_ERR_INVALID &&
          strstr(pq_ctx_error(ctx), "--sparsity has no effect without pruning"));
    p = pq_layer_params_default();
    p.prune = PQ_PRUNE_SPARSEGPT; /* --prune alone: pruning only */
    CHECK(pq_recipe_check(ctx, &p, PQ_KEY_PRUNE | PQ_KEY_SPARSITY, 1) == PQ_OK && p.quant == PQ_QUANT_NONE);
    p = pq_layer_params_default();
    p.prune = PQ_PRUNE_SPARSEGPT; /* ... and a quantization key means GPTQ */
    CHECK(pq_recipe_check(ctx, &p, PQ_KEY_PRUNE | PQ_KEY_BITS, 1) == PQ_OK && p.quant == PQ_QUANT_GPTQ);
    p.quant = PQ_QUANT_NONE;
    CHECK(pq_recipe_check(ctx, &p, PQ_KEY_PRUNE | PQ_KEY_QUANT | PQ_KEY_GROUP, 0) == PQ_ERR_INVALID &&
          strstr(pq_ctx_error(ctx), "group has no effect without quantization"));
    p.quant = PQ_QUANT_RTN;
    CHECK(pq_recipe_check(ctx, &p, PQ_KEY_QUANT | PQ_KEY_ACT_ORDER, 1) == PQ_ERR_INVALID &&
          strstr(pq_ctx_error(ctx), "--act-order needs --quant gptq"));
    p.joint = PQ_JOINT_B;
    CHECK(pq_recipe_check(ctx, &p, PQ_KEY_PRUNE | PQ_KEY_QUANT | PQ_KEY_KEEP_MASK, 1) == PQ_ERR_INVALID &&
          strstr(pq_ctx_error(ctx), "joint mode a"));
    CHECK(pq_recipe_unused(&p, PQ_KEY_KEEP_MASK | PQ_KEY_ACT_ORDER | PQ_KEY_BITS) ==
          (PQ_KEY_KEEP_MASK | PQ_KEY_ACT_ORDER));
    CHECK(pq_recipe_check(ctx, &p, PQ_KEY_SPARSITY | PQ_KEY_PATTERN, 1) == PQ_ERR_INVALID &&
          strstr(pq_ctx_error(ctx), "not both"));
    CHECK(pq_recipe_key_parse("act_order") == PQ_KEY_ACT_ORDER && !pq_recipe_key_parse("bitz"));
    CHECK(!strcmp(pq_recipe_key_name(PQ_KEY_STATIC_GROUPS, 1), "--static-groups"));
    pq_ctx_free(ctx);
}

static void test_validation(void) {
    pq_ctx *ctx = new_ctx(1);
    pq_layer_params p = pq_layer_params_default();
    CHECK(pq_layer_params_validate(ctx, &p, 128) == PQ_OK);
    p.bits = 1;
    expect_invalid(ctx, &p, 128, "bits must be 2..8");
    p.bits = 9;
    expect_invalid(ctx, &p, 128, "bits must be 2..8");
    p = pq_layer_params_default();
    p.prune = PQ_PRUNE_SPARSEGPT;
    p.prune_n = 3;
    p.prune_m = 2;
    expect_invalid(ctx, &p, 128, "0 < N < M");
    p.prune_n = 2;
    p.prune_m = 6;
    expect_invalid(ctx, &p, 128, "does not divide cols");
    p.prune_n = p.prune_m = 0;
    p.sparsity = 1.0;
    expect_invalid(ctx, &p, 128, "sparsity must be in [0, 1)");
    p.sparsity = -0.1;
    expect_invalid(ctx, &p, 128, "sparsity");
    p = pq_layer_params_default();
    p.group_size = 48;
    expect_invalid(ctx, &p, 128, "group size 48 does not divide cols");
    p.group_size = 0;
    expect_invalid(ctx, &p, 128, "group size");
    p = pq_layer_params_default();
    p.prune = PQ_PRUNE_SPARSEGPT;
    p.joint = PQ_JOINT_FUSED;
    p.reference = 1;
    p.group_size = 32;
    expect_invalid(ctx, &p, 128, "no groups");
    p.quant = PQ_QUANT_RTN;
    expect_invalid(ctx, &p, 128, "needs quant gptq");
    p = pq_layer_params_default();
    p.percdamp = -1;
    expect_invalid(ctx, &p, 128, "percdamp");
    int n = 0, m = 0;
    CHECK(pq_pattern_parse(ctx, "2:4", &n, &m) == PQ_OK && n == 2 && m == 4);
    CHECK(pq_pattern_parse(ctx, "12:16", &n, &m) == PQ_OK && n == 12 && m == 16);
    CHECK(pq_pattern_parse(ctx, "2-4", &n, &m) == PQ_ERR_INVALID);
    CHECK(pq_pattern_parse(ctx, "2:", &n, &m) == PQ_ERR_INVALID);
    CHECK(pq_pattern_parse(ctx, " 2:4", &n, &m) == PQ_ERR_INVALID);
    CHECK(pq_pattern_parse(ctx, "2:4x", &n, &m) == PQ_ERR_INVALID);
    CHECK(strstr(pq_ctx_error(ctx), "expected N:M") != NULL);
    pq_prune_method pm;
    pq_quant_method qm;
    pq_joint_mode jm;
    CHECK(pq_prune_method_parse("wanda", &pm) == 0 && pm == PQ_PRUNE_WANDA);
    CHECK(pq_quant_method_parse("gptq", &qm) == 0 && qm == PQ_QUANT_GPTQ);
    CHECK(pq_joint_mode_parse("fused", &jm) == 0 && jm == PQ_JOINT_FUSED);
    CHECK(pq_joint_mode_parse("c", &jm) != 0);
    CHECK(strcmp(pq_prune_method_name(PQ_PRUNE_SPARSEGPT), "sparsegpt") == 0);
    /* a recipe that needs H without one */
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    p = pq_layer_params_default();
    CHECK(pq_layer_compress(ctx, &p, w, 2, 4, NULL, NULL, NULL, NULL) == PQ_ERR_INVALID);
    p.quant = PQ_QUANT_RTN;
    p.error_mode = PQ_ERROR_NONE;
    pq_layer_result res;
    CHECK(pq_layer_compress(ctx, &p, w, 2, 4, NULL, NULL, NULL, &res) == PQ_OK);
    CHECK(isnan(res.error));
    pq_ctx_free(ctx);
}

static int cancel_after;
static int cancel_progress(void *user, const char *stage, int64_t done, int64_t total) {
    (void)user;
    (void)stage;
    (void)total;
    return done >= cancel_after;
}

static void test_threads_and_cancel(void) {
    const int64_t rows = 70, n = 128, nel = rows * n;
    float *H = make_h(n, 300, 10), *W = make_w(rows, n);
    pq_layer_params p = pq_layer_params_default();
    p.prune = PQ_PRUNE_SPARSEGPT;
    p.joint = PQ_JOINT_FUSED;
    p.group_size = 32;
    p.blocksize = 32;
    pq_ctx *c1 = new_ctx(1), *c3 = new_ctx(3);
    pq_layer_result r1, r3;
    float *Q1 = run(c1, &p, W, rows, n, H, NULL, NULL, &r1, NULL);
    float *Q3 = run(c3, &p, W, rows, n, H, NULL, NULL, &r3, NULL);
    /* the same thread count gives the same bits (below); across thread counts OpenBLAS may
     * split its sums differently on some CPUs (seen on AMD EPYC), so only rounding may differ */
    CHECK_MSG(max_abs_diff(Q1, Q3, nel) <= 1e-4, "1 vs 3 threads differ by %g", max_abs_diff(Q1, Q3, nel));
    float *Q3b = run(c3, &p, W, rows, n, H, NULL, NULL, NULL, NULL);
    CHECK(memcmp(Q3, Q3b, sizeof(float) * (size_t)nel) == 0);
    cancel_after = 64;
    pq_ctx_set_progress(c3, cancel_progress, NULL);
    float *Qc = copy_f(W, nel);
    CHECK(pq_layer_compress(c3, &p, Qc, rows, n, H, NULL, NULL, NULL) == PQ_ERR_CANCELLED);
    CHECK(memcmp(Qc, W, sizeof(float) * (size_t)nel) == 0);
    free(Q1);
    free(Q3);
    free(Q3b);
    free(Qc);
    free(H);
    free(W);
    pq_ctx_free(c1);
    pq_ctx_free(c3);
}

static void test_float_factor(void) {
    /* float32 factorisation: same error as float64 within 1e-3 on an ill-conditioned H */
    const int64_t rows = 64, n = 192;
    float *H = make_h(n, 96, 24), *W = make_w(rows, n);
    pq_ctx *ctx = new_ctx(2);
    pq_layer_params p = pq_layer_params_default();
    p.group_size = 64;
    pq_layer_result r64, r32;
    float *Q64 = run(ctx, &p, W, rows, n, H, NULL, NULL, &r64, NULL);
    p.factor_f32 = 1;
    float *Q32 = run(ctx, &p, W, rows, n, H, NULL, NULL, &r32, NULL);
    const double e64 = obs_ref_quad_err(W, Q64, rows, n, H), e32 = obs_ref_quad_err(W, Q32, rows, n, H);
    CHECK_MSG(fabs(e32 - e64) <= 1e-3 * e64, "f32 %g vs f64 %g", e32, e64);
    free(Q64);
    free(Q32);
    free(H);
    free(W);
    pq_ctx_free(ctx);
}

/* ---------------------------------------------------------------- .npy */

/* Writes a .npy v1 with the given dict text and payload; returns the path (static buffer). */
static const char *write_npy(const char *tag, const char *dict, const void *payload, size_t n, int version) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/pq_test_layer_%d_%s.npy", (int)getpid(), tag);
    char head[512];
    const size_t pre = version == 1 ? 10 : 12, dl = strlen(dict);
    const size_t total = (pre + dl + 1 + 63) / 64 * 64, hl = total - pre;
    memcpy(head, "\x93NUMPY", 6);
    head[6] = (char)version;
    head[7] = 0;
    head[8] = (char)(hl & 0xff);
    head[9] = (char)(hl >> 8);
    if (version != 1) head[10] = head[11] = 0;
    memcpy(head + pre, dict, dl);
    memset(head + pre + dl, ' ', hl - dl - 1);
    head[total - 1] = '\n';
    FILE *f = fopen(path, "wb");
    fwrite(head, 1, total, f);
    if (n) fwrite(payload, 1, n, f);
    fclose(f);
    return path;
}

static void expect_npy_error(pq_ctx *ctx, const char *path, pq_status want, const char *field) {
    float *x = NULL;
    int64_t shape[2];
    int nd;
    const pq_status st = pq_npy_read(ctx, path, &x, shape, &nd);
    CHECK_MSG(st == want && strstr(pq_ctx_error(ctx), path) && strstr(pq_ctx_error(ctx), field),
              "%s: status %d, message '%s' (want '%s')", path, st, pq_ctx_error(ctx), field);
    CHECK(x == NULL);
    unlink(path);
}

static void test_npy(void) {
    pq_ctx *ctx = new_ctx(1);
    char path[256];
    snprintf(path, sizeof path, "/tmp/pq_test_layer_%d_rt.npy", (int)getpid());
    float m[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    const int64_t shape2[2] = {2, 3}, shape1[1] = {6};
    for (int nd = 1; nd <= 2; nd++) {
        CHECK(pq_npy_write(ctx, path, m, nd == 2 ? shape2 : shape1, nd) == PQ_OK);
        float *x = NULL;
        int64_t shape[2];
        int got_nd = 0;
        CHECK(pq_npy_read(ctx, path, &x, shape, &got_nd) == PQ_OK);
        CHECK(got_nd == nd && shape[0] == (nd == 2 ? 2 : 6) && shape[1] == (nd == 2 ? 3 : 1));
        CHECK(x && memcmp(x, m, sizeof m) == 0);
        free(x);
        FILE *f = fopen(path, "rb");
        fseek(f, 0, SEEK_END);
        CHECK(ftell(f) == 128 + 24); /* header padded to 64 bytes */
        fclose(f);
    }
    unlink(path);
    /* float64, version 2 and 3, keys in any order */
    const double d[3] = {1.0, -2.5, 1e300};
    const char *p8 = write_npy("f8", "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", d, sizeof d, 2);
    float *x = NULL;
    int64_t shape[2];
    int nd;
    CHECK(pq_npy_read(ctx, p8, &x, shape, &nd) == PQ_OK && nd == 1 && shape[0] == 3);
    CHECK(x && x[0] == 1.0f && x[1] == -2.5f && isinf(x[2]));
    free(x);
    unlink(p8);
    const char *p3 = write_npy("v3", "{'shape': (1, 2), 'descr': '<f4', 'fortran_order': False}", m, 8, 3);
    CHECK(pq_npy_read(ctx, p3, &x, shape, &nd) == PQ_OK && nd == 2 && shape[0] == 1 && shape[1] == 2);
    free(x);
    unlink(p3);
    /* hostile or unsupported files: one message naming the file and the field */
    expect_npy_error(ctx, write_npy("fo", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", m, 24, 1),
                     PQ_ERR_UNSUPPORTED, "fortran_order");
    expect_npy_error(ctx, write_npy("tr", "{'descr': '<f4', 'fortran_order': False, 'shape': (20, 30), }", m, 24, 1),
                     PQ_ERR_FORMAT, "data:");
    expect_npy_error(
        ctx,
        write_npy("ov", "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", m, 24, 1),
        PQ_ERR_FORMAT, "shape");
    expect_npy_error(
        ctx,
        write_npy("big", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2), }", m, 24, 1),
        PQ_ERR_FORMAT, "shape");
    expect_npy_error(ctx, write_npy("i8", "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", m, 24, 1),
                     PQ_ERR_UNSUPPORTED, "descr");
    expect_npy_error(ctx, write_npy("3d", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }", m, 24, 1),
                     PQ_ERR_UNSUPPORTED, "shape");
    expect_npy_error(ctx, write_npy("sc", "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", m, 24, 1),
                     PQ_ERR_UNSUPPORTED, "shape");
    expect_npy_error(ctx, write_npy("nd", "{'fortran_order': False, 'shape': (2,), }", m, 24, 1), PQ_ERR_FORMAT,
                     "descr");
    expect_npy_error(ctx, write_npy("v9", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", m, 24, 9),
                     PQ_ERR_UNSUPPORTED, "version");
    snprintf(path, sizeof path, "/tmp/pq_test_layer_%d_hl.npy", (int)getpid());
    FILE *f = fopen(path, "wb");
    fwrite("\x93NUMPY\x01\x00\xff\x7f{'descr'", 1, 18, f);
    fclose(f);
    expect_npy_error(ctx, path, PQ_ERR_FORMAT, "header length");
    snprintf(path, sizeof path, "/tmp/pq_test_layer_%d_none.npy", (int)getpid());
    expect_npy_error(ctx, path, PQ_ERR_IO, "cannot open");
    /* writing is atomic: a failed write leaves nothing behind */
    CHECK(pq_npy_write(ctx, "/nonexistent-dir/x.npy", m, shape2, 2) == PQ_ERR_IO);
    pq_ctx_free(ctx);
}

/* Every allocation of the .npy reader and writer fails in turn (tests/failalloc.h). */
typedef struct npy_case {
    const char *path;
    int write;
} npy_case;

static pq_status npy_body(pq_ctx *ctx, void *user) {
    const npy_case *c = user;
    static const float m[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    const int64_t shape2[2] = {2, 3};
    if (c->write) return pq_npy_write(ctx, c->path, m, shape2, 2);
    float *x = NULL;
    int64_t shape[2];
    int nd = 0;
    const pq_status st = pq_npy_read(ctx, c->path, &x, shape, &nd);
    if (st == PQ_OK) CHECK(x && nd == 2 && shape[0] == 2 && shape[1] == 3 && !memcmp(x, m, sizeof m));
    if (st != PQ_OK) CHECK(x == NULL);
    free(x);
    return st;
}

static void test_npy_alloc_failures(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/pq_test_layer_%d_fa.npy", (int)getpid());
    npy_case c = {.path = path, .write = 1};
    failalloc_run("npy write", npy_body, &c, 1, 1000);
    c.write = 0;
    failalloc_run("npy read", npy_body, &c, 1, 1000);
    unlink(path);
}

/* ---------------------------------------------------------------- allocation failures */

/* Every allocation the layer engine makes fails in turn (tests/failalloc.h): the call must
 * report PQ_ERR_NOMEM and leave W as it was, with no codes. */
typedef struct {
    const pq_layer_params *p;
    const float *W, *H;
    float *Q;      /* [rows, n] */
    uint8_t *mask; /* [rows, n] */
    int64_t rows, n;
} alloc_case;

static pq_status alloc_body(pq_ctx *ctx, void *user) {
    alloc_case *c = user;
    const size_t bytes = sizeof(float) * (size_t)(c->rows * c->n);
    memcpy(c->Q, c->W, bytes);
    pq_qcodes codes;
    const pq_status st = pq_layer_compress(ctx, c->p, c->Q, c->rows, c->n, c->H, c->mask, &codes, NULL);
    if (failalloc_injected())
        CHECK_MSG(st == PQ_ERR_NOMEM && memcmp(c->Q, c->W, bytes) == 0 && codes.codes == NULL,
                  "status %d (%s), W changed or codes left", st, pq_ctx_error(ctx));
    pq_qcodes_free(&codes);
    return st;
}

static void test_alloc_failures(void) {
    const int64_t rows = 16, n = 64, nel = rows * n;
    float *H = make_h(n, 100, 6), *W = make_w(rows, n);
    float *Q = malloc(sizeof(float) * (size_t)nel);
    uint8_t *mask = malloc((size_t)nel);
    for (int recipe = 0; recipe < 5; recipe++) {
        pq_layer_params p = pq_layer_params_default();
        p.group_size = 16;
        if (recipe == 0) p.act_order = p.static_groups = 1;
        if (recipe == 1) {
            p.prune = PQ_PRUNE_SPARSEGPT;
            p.prune_n = 2;
            p.prune_m = 4;
            p.joint = PQ_JOINT_FUSED;
        }
        if (recipe == 2) {
            p.prune = PQ_PRUNE_WANDA;
            p.quant = PQ_QUANT_RTN;
            p.joint = PQ_JOINT_B;
        }
        if (recipe == 3) {
            p.prune = PQ_PRUNE_SPARSEGPT;
            p.joint = PQ_JOINT_A;
            p.keep_mask = 1;
            p.act_order = 1;
        }
        if (recipe == 4) {
            p.prune = PQ_PRUNE_SPARSEGPT;
            p.quant = PQ_QUANT_NONE;
            p.reference = 1;
            p.error_mode = PQ_ERROR_DIRECT;
        }
        alloc_case c = {.p = &p, .W = W, .H = H, .Q = Q, .mask = mask, .rows = rows, .n = n};
        char name[64];
        snprintf(name, sizeof name, "layer recipe %d", recipe);
        CHECK_MSG(failalloc_run(name, alloc_body, &c, 2, 200) > 3, "%s: too few allocations", name);
    }
    free(Q);
    free(mask);
    free(H);
    free(W);
}

/* The pipeline's entry that may factor H in its own memory: for a wide layer (more inputs
 * than PQ_INPLACE_MIN_COLS) GPTQ factored in float32 in place gives the error of the
 * out-of-place float32 route, its bookkept error is the true tr(D H D^T), and H's memory was
 * used; at or below the threshold H is left alone and the result is pq_layer_compress's. */
static void test_scratch_h(void) {
    pq_ctx *ctx = new_ctx(2);
    const int64_t rows = 48, T = 96;
    for (int wide = 0; wide < 2; wide++) {
        const int64_t n = wide ? PQ_INPLACE_MIN_COLS + 64 : 512;
        float *X = malloc(sizeof(float) * (size_t)(n * T)), *W = malloc(sizeof(float) * (size_t)(rows * n));
        for (int64_t i = 0; i < n * T; i++)
            X[i] = nrand() * ((i / T) % 13 == 1 ? 6.0f : 1.0f);
        for (int64_t i = 0; i < rows * n; i++)
            W[i] = nrand();
        float *H = malloc(sizeof(float) * (size_t)(n * n)), *Hs = malloc(sizeof(float) * (size_t)(n * n));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)T, 2.0f / (float)T, X, (int)T, X,
                    (int)T, 0.0f, H, (int)n);
        for (int64_t i = 0; i < n; i++) /* exactly symmetric */
            for (int64_t j = 0; j < i; j++)
                H[j * n + i] = H[i * n + j];
        memcpy(Hs, H, sizeof(float) * (size_t)(n * n));
        pq_layer_params p = pq_layer_params_default();
        p.bits = 4;
        p.group_size = 64;
        pq_layer_result r1, r2;
        pq_layer_params pf = p;
        pf.factor_f32 = wide; /* the in-place route factors in float32 */
        float *Q1 = run(ctx, &pf, W, rows, n, H, NULL, NULL, &r1, NULL);
        float *Q2 = copy_f(W, rows * n);
        CHECK(pq__layer_compress_h(ctx, &p, Q2, rows, n, Hs, 1, NULL, NULL, NULL, &r2) == PQ_OK);
        const int used = memcmp(H, Hs, sizeof(float) * (size_t)(n * n)) != 0;
        CHECK_MSG(used == wide, "n %lld: H memory used %d", (long long)n, used);
        if (wide) {
            CHECK_MSG(fabs(r2.error - r1.error) <= 1e-3 * r1.error, "in place %g vs out-of-place float32 %g",
                      r2.error, r1.error);
            float *D = malloc(sizeof(float) * (size_t)(rows * n));
            for (int64_t i = 0; i < rows * n; i++)
                D[i] = W[i] - Q2[i];
            double direct = 0.0;
            CHECK(pq__quad_error(ctx, D, rows, n, H, 2, &direct) == PQ_OK);
            CHECK_MSG(fabs(direct - r2.error) <= 1e-3 * direct, "bookkept %g vs direct %g", r2.error, direct);
            free(D);
        } else {
            CHECK(memcmp(Q1, Q2, sizeof(float) * (size_t)(rows * n)) == 0 && r1.error == r2.error);
        }
        free(Q1);
        free(Q2);
        free(H);
        free(Hs);
        free(W);
        free(X);
    }
    pq_ctx_free(ctx);
}

/* Layers on one H sharing its factors (the pipeline's q/k/v and gate/up): each gives what it
 * gives alone, bit for bit (same H, damping and precision: the same factor), and only the
 * first of each column order factors. */
static void test_shared_factor(void) {
    pq_ctx *ctx = new_ctx(2);
    const int64_t rows = 40, n = 192;
    float *H = make_h(n, 256, 8), *W = malloc(sizeof(float) * (size_t)(rows * n));
    for (int64_t i = 0; i < rows * n; i++)
        W[i] = nrand();
    pq_layer_params ps[3] = {pq_layer_params_default(), pq_layer_params_default(), pq_layer_params_default()};
    ps[0].bits = ps[1].bits = ps[2].bits = 4;
    ps[1].act_order = 1;                                    /* the other column order */
    ps[2].prune = PQ_PRUNE_SPARSEGPT, ps[2].sparsity = 0.5; /* two sweeps in mode a */
    pq__obs_share share;
    memset(&share, 0, sizeof share);
    for (int k = 0; k < 6; k++) {
        const pq_layer_params *p = &ps[k % 3];
        pq_layer_result alone, shared;
        float *Q1 = run(ctx, p, W, rows, n, H, NULL, NULL, &alone, NULL), *Q2 = copy_f(W, rows * n);
        CHECK(pq__layer_compress_h(ctx, p, Q2, rows, n, H, 0, &share, NULL, NULL, &shared) == PQ_OK);
        CHECK_MSG(memcmp(Q1, Q2, sizeof(float) * (size_t)(rows * n)) == 0 && alone.error == shared.error,
                  "layer %d: shared factor, other result", k);
        CHECK_MSG((shared.factor_flop > 0) == (k < 2), "layer %d: factored %g", k, shared.factor_flop);
        free(Q1);
        free(Q2);
    }
    pq__obs_share_free(&share);
    free(H);
    free(W);
    pq_ctx_free(ctx);
}

int main(void) {
    test_npy();
    test_npy_alloc_failures();
    test_reference_gptq();
    test_gptq_beats_rtn();
    test_codes_and_groups();
    test_joint_modes();
    test_fused_grid();
    test_degenerate_h();
    test_validation();
    test_recipe_check();
    test_threads_and_cancel();
    test_float_factor();
    test_scratch_h();
    test_shared_factor();
    test_alloc_failures();
    return test_end("test_layer");
}
