/* The pipeline's calibration runner (pipeline/hessians.c) against pq__block_forward: every
 * way through a block (the Hessians of every input from the block as it is and then the
 * advance; the true-sequential groups with their kept or recomputed inputs; a group run
 * through without its Hessian) gives bit for bit the Hessians and outputs of the block's
 * forward pass with activation captures, the way the pipeline computed them before. Bitwise,
 * not within a bound: the runner promises the same arithmetic, chunk for chunk (this is what
 * keeps compress outputs byte-identical, tests/cli_golden.sh).
 * Also the Hessian accumulator on a matrix large enough to give back pages while it
 * finishes, within its float32 error bound (the derivation is at check_hacc in
 * tests/test_pipeline.c). */
#include <stdint.h>
#include <string.h>

#include "calib/calib.h"
#include "model/stages.h"
#include "pipeline/pipeline.h"
#include "synth.h"
#include "test.h"

typedef struct ref_capture {
    pq__hacc acc[PQ_BLOCK_INPUTS];
} ref_capture;

static void capture(void *user, int64_t layer, int which, const float *x, int64_t n, int64_t cols) {
    (void)layer;
    (void)cols;
    pq__hacc_add(&((ref_capture *)user)->acc[which], x, n);
}

/* The reference: block 0 over X0 chunk by chunk with pq__block_forward; H[g] and X (the
 * block's outputs). */
static void reference(pq_ctx *ctx, const pq_model *m, const float *X0, int64_t ns, int64_t L, int64_t chunk,
                      float *H[PQ_BLOCK_INPUTS], float *X) {
    const pq__config *c = &m->cfg;
    ref_capture rc;
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++)
        CHECK(pq__hacc_init(ctx, &rc.acc[g], pq__block_input_cols(c, g)) == PQ_OK);
    pq__config one = *c;
    one.n_layers = 1;
    pq__kv kv;
    CHECK(pq__kv_init(ctx, &kv, &one, chunk, L) == PQ_OK);
    memcpy(X, X0, sizeof(float) * (size_t)(ns * L * c->dim));
    for (int64_t s0 = 0; s0 < ns; s0 += chunk) {
        const int64_t n = ns - s0 < chunk ? ns - s0 : chunk;
        CHECK(pq__block_forward(ctx, m, 0, &m->blocks[0], &kv, X + s0 * L * c->dim, n, L, 0, capture, &rc) == PQ_OK);
    }
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++) {
        CHECK(pq__hacc_finish(ctx, &rc.acc[g], &H[g]) == PQ_OK);
        pq__hacc_free(&rc.acc[g]);
    }
    pq__kv_free(&kv);
}

static int same(const float *a, const float *b, int64_t n) {
    return a && b && memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

/* The true-sequential groups in order, none compressed (so the block stays as it is); with
 * keep_rows of down's inputs kept (-1: the runner's own allowance). */
static void true_sequential(pq_ctx *ctx, pq__runner *r, const pq_model *m, int64_t keep_rows,
                            float *H[PQ_BLOCK_INPUTS]) {
    const pq__block *b = &m->blocks[0];
    if (keep_rows >= 0) r->hb_rows = keep_rows;
    CHECK(pq__runner_stage(ctx, r, 0, b, 0, &H[0], 0) == PQ_OK);
    CHECK(pq__runner_stage(ctx, r, 0, b, 1, &H[1], 1) == PQ_OK && r->att);
    CHECK(pq__runner_stage_out(ctx, r, 0, b, 1) == PQ_OK && !r->att);
    CHECK(pq__runner_stage(ctx, r, 0, b, 2, &H[2], 0) == PQ_OK);
    CHECK(pq__runner_stage(ctx, r, 0, b, 3, &H[3], 1) == PQ_OK);
    CHECK((r->hb != NULL) == (r->hb_rows > 0));
    CHECK(pq__runner_stage_out(ctx, r, 0, b, 3) == PQ_OK && !r->hb);
}

static void check_runner(pq_ctx *ctx, const pq__config *c, int64_t ns, int64_t L, int64_t chunk) {
    pq_model *m = synth_model(ctx, c, 11);
    CHECK(m != NULL);
    if (!m) return;
    const int64_t NT = ns * L, D = c->dim;
    int32_t *win = malloc(sizeof(int32_t) * (size_t)NT);
    uint64_t s = 5;
    for (int64_t i = 0; i < NT; i++)
        win[i] = (int32_t)(synth_rng(&s) % (uint64_t)c->vocab_size);
    pq__runner r;
    CHECK(pq__runner_init(ctx, &r, m, win, ns, L, chunk) == PQ_OK);
    float *X0 = malloc(sizeof(float) * (size_t)(NT * D)), *Xref = malloc(sizeof(float) * (size_t)(NT * D));
    memcpy(X0, r.X, sizeof(float) * (size_t)(NT * D));
    float *Href[PQ_BLOCK_INPUTS] = {0};
    reference(ctx, m, X0, ns, L, chunk, Href, Xref);

    /* every Hessian from the block as it is, then the advance */
    const int all[PQ_BLOCK_INPUTS] = {1, 1, 1, 1};
    float *H[PQ_BLOCK_INPUTS] = {0};
    CHECK(pq__collect_hessians(ctx, &r, 0, &m->blocks[0], all, H) == PQ_OK);
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++) {
        const int64_t n = pq__block_input_cols(c, g);
        CHECK_MSG(same(H[g], Href[g], n * n), "collected H of input %d", g);
        free(H[g]);
        H[g] = NULL;
    }
    CHECK_MSG(same(r.X, X0, NT * D), "collecting the Hessians changed X");
    CHECK(pq__runner_advance(ctx, &r, 0, &m->blocks[0]) == PQ_OK);
    CHECK_MSG(same(r.X, Xref, NT * D), "advance");

    /* o's inputs only: the pass stops after the attention */
    const int o_only[PQ_BLOCK_INPUTS] = {0, 1, 0, 0};
    memcpy(r.X, X0, sizeof(float) * (size_t)(NT * D));
    CHECK(pq__collect_hessians(ctx, &r, 0, &m->blocks[0], o_only, H) == PQ_OK);
    CHECK(!H[0] && !H[2] && !H[3]);
    CHECK_MSG(same(H[1], Href[1], c->n_heads * c->head_dim * c->n_heads * c->head_dim), "o's H alone");
    free(H[1]);
    H[1] = NULL;

    /* true-sequential: down's inputs all recomputed, one chunk kept, the runner's allowance, all kept */
    const int64_t keeps[4] = {0, chunk * L, -1, NT};
    for (int k = 0; k < 4; k++) {
        memcpy(r.X, X0, sizeof(float) * (size_t)(NT * D));
        true_sequential(ctx, &r, m, keeps[k], H);
        for (int g = 0; g < PQ_BLOCK_INPUTS; g++) {
            const int64_t n = pq__block_input_cols(c, g);
            CHECK_MSG(same(H[g], Href[g], n * n), "true-sequential H of input %d (down inputs kept: %lld)", g,
                      (long long)keeps[k]);
            free(H[g]);
            H[g] = NULL;
        }
        CHECK_MSG(same(r.X, Xref, NT * D), "true-sequential output (down inputs kept: %lld)", (long long)keeps[k]);
    }
    /* groups run through without their Hessians */
    memcpy(r.X, X0, sizeof(float) * (size_t)(NT * D));
    CHECK(pq__runner_stage(ctx, &r, 0, &m->blocks[0], 1, NULL, 1) == PQ_OK && !r.att);
    CHECK(pq__runner_stage(ctx, &r, 0, &m->blocks[0], 3, NULL, 1) == PQ_OK && !r.hb);
    CHECK_MSG(same(r.X, Xref, NT * D), "groups without Hessians");

    for (int g = 0; g < PQ_BLOCK_INPUTS; g++)
        free(Href[g]);
    pq__runner_free(&r);
    free(X0);
    free(Xref);
    free(win);
    pq_model_free(m);
}

/* Hessian of 1536 inputs: its float matrix is over the size from which the accumulator gives
 * pages back while it finishes. */
static void check_hacc_release(pq_ctx *ctx) {
    const int64_t cols = 1536, n = 7;
    float *x = malloc(sizeof(float) * (size_t)(n * cols));
    uint64_t s = 9;
    for (int64_t i = 0; i < n * cols; i++)
        x[i] = synth_unif(&s);
    pq__hacc a;
    float *H = NULL;
    CHECK(pq__hacc_init(ctx, &a, cols) == PQ_OK);
    pq__hacc_add(&a, x, n);
    CHECK(pq__hacc_finish(ctx, &a, &H) == PQ_OK && H);
    pq__hacc_free(&a);
    const double u = 1.0 / 16777216.0, gamma = (double)n * u / (1.0 - (double)n * u);
    double worst = 0.0;
    for (int64_t i = 0; H && i < cols; i++)
        for (int64_t j = 0; j < cols; j++) {
            double ref = 0.0, abs = 0.0;
            for (int64_t r = 0; r < n; r++) {
                const double p = (double)x[r * cols + i] * x[r * cols + j];
                ref += p;
                abs += fabs(p);
            }
            const double f = 2.0 / (double)n, lim = 1.01 * (f * gamma * abs + u * fabs(f * ref)) + 1e-300;
            const double e = fabs(H[i * cols + j] - f * ref) / lim;
            if (e > worst) worst = e;
            if (H[i * cols + j] != H[j * cols + i]) worst = 1e30; /* symmetric exactly */
        }
    CHECK_MSG(worst <= 1.0, "H of %lld inputs: error %g x its bound", (long long)cols, worst);
    free(H);
    free(x);
}

int main(void) {
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, 2);
    /* grouped-query attention; 5 windows in chunks of 2 (the last chunk short) */
    pq__config c = synth_config(PQ_ARCH_LLAMA, 64, 160, 1, 4, 2, 50);
    check_runner(ctx, &c, 5, 24, 2);
    /* biases and interleaved RoPE, one window per chunk */
    pq__config cq = synth_config(PQ_ARCH_QWEN2, 48, 96, 1, 6, 3, 40);
    cq.rope_halfsplit = 0;
    check_runner(ctx, &cq, 3, 16, 1);
    check_hacc_release(ctx);
    pq_ctx_free(ctx);
    return test_end("test_runner");
}
