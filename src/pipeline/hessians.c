/* Calibration through one block (pipeline.h): the windows' hidden states, run chunk by chunk
 * through a block with or without keeping its outputs, and the Hessians of the block's
 * linear inputs accumulated from the activation captures. */
#include <stdlib.h>
#include <string.h>

#include "calib/calib.h"
#include "pipeline/pipeline.h"

pq_status pq__runner_init(pq_ctx *ctx, pq__runner *r, const pq_model *m, const int32_t *win, int64_t ns, int64_t L,
                          int64_t chunk) {
    const pq__config *c = &m->cfg;
    const int64_t D = c->dim, NT = ns * L;
    memset(r, 0, sizeof *r);
    r->m = m;
    r->ns = ns;
    r->L = L;
    r->chunk = chunk;
    r->X = pq__malloc(ctx, (size_t)(NT * D) * sizeof(float), "hidden states");
    r->scratch = r->X ? pq__malloc(ctx, (size_t)(chunk * L * D) * sizeof(float), "hidden states") : NULL;
    if (!r->scratch) return ctx->status;
    pq__config one = *c;
    one.n_layers = 1; /* a chunk runs whole windows through one block: one layer's cache suffices */
    pq_status st = pq__kv_init(ctx, &r->kv, &one, chunk, L);
    for (int64_t i = 0; i < NT && st == PQ_OK; i++) {
        if (win[i] < 0 || win[i] >= c->vocab_size)
            return pq__fail(ctx, PQ_ERR_INVALID, "calibration: token id %d out of range", win[i]);
        st = pq__model_rows_f32(ctx, m, "model.embed_tokens.weight", win[i], 1, r->X + i * D);
    }
    return st;
}

void pq__runner_free(pq__runner *r) {
    if (!r) return;
    pq__kv_free(&r->kv);
    free(r->X);
    free(r->scratch);
    memset(r, 0, sizeof *r);
}

typedef struct capture_state {
    pq__hacc acc[PQ_BLOCK_INPUTS];
    int want[PQ_BLOCK_INPUTS];
} capture_state;

static void capture(void *user, int64_t layer, int which, const float *x, int64_t n, int64_t cols) {
    (void)layer;
    (void)cols;
    capture_state *s = user;
    if (which >= 0 && which < PQ_BLOCK_INPUTS && s->want[which]) pq__hacc_add(&s->acc[which], x, n);
}

/* Runs block l over all windows; with update the outputs replace X, else X is kept (only the
 * captures matter). */
static pq_status run_block(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b, capture_state *cs, int update) {
    const int64_t D = r->m->cfg.dim;
    for (int64_t s0 = 0; s0 < r->ns; s0 += r->chunk) {
        const int64_t n = r->ns - s0 < r->chunk ? r->ns - s0 : r->chunk;
        /* a cancel point per chunk: a Ctrl-C is honoured within one chunk's forward pass */
        pq_status pst = pq__progress(ctx, "compress", l, r->m->cfg.n_layers);
        if (pst) return pst;
        float *x = update ? r->X + s0 * r->L * D : r->scratch;
        if (!update) memcpy(x, r->X + s0 * r->L * D, (size_t)(n * r->L * D) * sizeof(float));
        pq_status st = pq__block_forward(ctx, r->m, l, b, &r->kv, x, n, r->L, 0, cs ? capture : NULL, cs);
        if (st) return st;
    }
    return PQ_OK;
}

pq_status pq__runner_advance(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b) {
    return run_block(ctx, r, l, b, NULL, 1);
}

pq_status pq__collect_hessians(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b,
                               const int want[PQ_BLOCK_INPUTS], float *H[PQ_BLOCK_INPUTS]) {
    capture_state cs;
    memset(&cs, 0, sizeof cs);
    memcpy(cs.want, want, sizeof cs.want);
    pq_status st = PQ_OK;
    for (int g = 0; g < PQ_BLOCK_INPUTS && st == PQ_OK; g++)
        if (want[g]) st = pq__hacc_init(ctx, &cs.acc[g], pq__block_input_cols(&r->m->cfg, g));
    if (st == PQ_OK) st = run_block(ctx, r, l, b, &cs, 0);
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++) {
        if (want[g] && st == PQ_OK) st = pq__hacc_finish(ctx, &cs.acc[g], &H[g]);
        pq__hacc_free(&cs.acc[g]);
    }
    return st;
}
