/* Calibration through one block (pipeline.h): the windows' hidden states run chunk by chunk
 * through the sub-stages of a block (model/stages.h), and the Hessians of the block's linear
 * inputs accumulated from them.
 *
 * Two ways through a block:
 *   - every Hessian from the block as it is (pq__collect_hessians: one pass that stops after
 *     the last input it needs), then, once the block is compressed, one full pass that turns X
 *     into the next block's input (pq__runner_advance);
 *   - true-sequential (pq__runner_stage, pq__runner_stage_out): each input group once, on the
 *     block as compressed so far, X updated in place as the groups go: o's inputs are kept
 *     from its Hessian pass for X += o(att), down's inputs as far as the allowance goes (the
 *     rest recomputed from the gate/up inputs), so the block runs about once instead of once
 *     per group plus once more for the next block.
 * Every step is pq__block_forward's arithmetic, chunk for chunk: the results do not depend on
 * which way, or which steps' results were kept. */
#include <stdlib.h>
#include <string.h>

#include "calib/calib.h"
#include "kernels/kernels.h"
#include "model/stages.h"
#include "pipeline/pipeline.h"

/* Down's inputs (hidden_dim floats per token, a block's largest activations) kept between
 * down's Hessian pass and the block's output: whole chunks from the first, as many as fit in
 * the float32 size of down's Hessian (hidden_dim rows); the others are recomputed from the
 * gate/up inputs. What is kept then sits beside down's Hessian in float32, factored in place
 * (half of it given back, linalg.c), and the sweep's weights: within what the memory target
 * allows for the largest Hessian's float64 accumulation plus its margin. All of them when that
 * is at most one chunk more: with none to recompute, the passes never touch their own chunk
 * array for down's inputs (the work arrays' hb), which then takes no memory (Llama-3-8B, 32 x
 * 512 tokens: 8 of 8 chunks, peak RSS 3205 -> 3215 MB of the 3320 allowed, one recomputed
 * chunk of gate/up less: 0.49 TFLOP, bench_compress). */
static int64_t hb_keep_rows(const pq__config *c, int64_t ns, int64_t L, int64_t chunk) {
    const int64_t rows = chunk * L, kept = c->hidden_dim / rows * rows;
    return ns * L <= kept + rows ? ns * L : kept;
}

pq_status pq__runner_init(pq_ctx *ctx, pq__runner *r, const pq_model *m, const int32_t *win, int64_t ns, int64_t L,
                          int64_t chunk) {
    const pq__config *c = &m->cfg;
    const int64_t D = c->dim, NT = ns * L;
    memset(r, 0, sizeof *r);
    r->m = m;
    r->ns = ns;
    r->L = L;
    r->chunk = chunk;
    r->stage = "compress";
    r->per_layer = 1;
    r->hb_rows = hb_keep_rows(c, ns, L, chunk);
    r->X = pq__malloc(ctx, (size_t)(NT * D) * sizeof(float), "hidden states");
    r->scratch = r->X ? pq__malloc(ctx, (size_t)(chunk * L * D) * sizeof(float), "hidden states") : NULL;
    if (!r->scratch) return ctx->status;
    pq__config one = *c;
    one.n_layers = 1; /* a chunk runs whole windows through one block: one layer's cache suffices */
    pq_status st = pq__kv_init(ctx, &r->kv, &one, chunk, L);
    for (int64_t i = 0; i < NT && st == PQ_OK; i++)
        if (win[i] < 0 || win[i] >= c->vocab_size)
            return pq__fail(ctx, PQ_ERR_INVALID, "calibration: token id %d out of range", win[i]);
    return st ? st : pq__model_gather_f32(ctx, m, "model.embed_tokens.weight", win, NT, r->X);
}

void pq__runner_free(pq__runner *r) {
    if (!r) return;
    pq__kv_free(&r->kv);
    pq__block_ws_free(&r->ws);
    free(r->X);
    free(r->scratch);
    free(r->att);
    free(r->hb);
    memset(r, 0, sizeof *r);
}

/* The steps of a block, in order; each input group's input is the output of one of them. */
enum { S_ATTN_NORM, S_ATTENTION, S_ATTN_OUT, S_FFN_NORM, S_FFN_ACT, S_FFN_OUT, S_END };
static const int step_makes[S_END] = {0, 1, -1, 2, 3, -1}; /* input group produced, -1: X updated */
static const int step_of[PQ_BLOCK_INPUTS] = {S_ATTN_NORM, S_ATTENTION, S_FFN_NORM, S_FFN_ACT};

/* Multiply-adds x 2 of the linears reading input group g on n rows. */
static double linears_flop(const pq__config *c, int g, int64_t n) {
    double f = 0.0;
    for (int i = 0; i < PQ_BLOCK_LINEARS; i++)
        if (pq__block_linear[i].input == g)
            f += 2.0 * (double)n * (double)pq__linear_dim(c, pq__block_linear[i].rows) *
                 (double)pq__linear_dim(c, pq__block_linear[i].cols);
    return f;
}

/* One chunk of windows: sequences s0 .. s0 + n of X, and where its steps read and write. */
typedef struct chunk {
    int64_t s0, n, rows; /* rows = n * L */
    float *x;            /* its hidden states: in X (updated in place) or a copy in scratch */
    float *att, *hb;     /* its attention output and down's input (kept ones, or the work arrays) */
} chunk;

/* The next chunk of X (k->s0 = ns: none left); a cancel point each: a Ctrl-C is honoured
 * within one chunk's steps. copy: the steps run on a copy (X is kept). */
static pq_status next_chunk(pq_ctx *ctx, pq__runner *r, int64_t l, int copy, chunk *k) {
    const pq__config *c = &r->m->cfg;
    const int64_t D = c->dim, QD = c->n_heads * c->head_dim, F = c->hidden_dim;
    k->s0 += k->n;
    if (k->s0 >= r->ns) return PQ_OK;
    k->n = r->ns - k->s0 < r->chunk ? r->ns - k->s0 : r->chunk;
    k->rows = k->n * r->L;
    const int64_t row0 = k->s0 * r->L;
    k->x = r->X + row0 * D;
    if (copy) {
        memcpy(r->scratch, k->x, (size_t)(k->rows * D) * sizeof(float));
        k->x = r->scratch;
    }
    k->att = r->att ? r->att + row0 * QD : r->ws.att;
    k->hb = r->hb && row0 + k->rows <= r->hb_rows ? r->hb + row0 * F : r->ws.hb;
    return pq__progress(ctx, r->stage, l * r->per_layer, c->n_layers * r->per_layer);
}
#define FOR_CHUNKS(ctx, r, l, copy, k, st)                                                                           \
    for (chunk k = {0, 0, 0, NULL, NULL, NULL}; (st = next_chunk(ctx, r, l, copy, &k)) == PQ_OK && k.s0 < (r)->ns;)

/* Adds x [n, cols] to the accumulator, timed as the Hessian phase. */
static void hacc_add_timed(pq__runner *r, pq__hacc *a, const float *x, int64_t n) {
    const double t0 = pq__now(), f0 = a->flop;
    pq__hacc_add(a, x, n);
    if (r->times) {
        r->times->hessian_s += pq__now() - t0;
        r->times->hessian_flop += a->flop - f0;
    }
}

/* Step s of chunk k; its output (an input group's) goes to acc[g] when that is set. */
static pq_status run_step(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b, const chunk *k, int s,
                          pq__hacc *const acc[PQ_BLOCK_INPUTS]) {
    const pq__config *c = &r->m->cfg;
    pq__block_ws *ws = &r->ws;
    const double t0 = pq__now();
    double flop = 0.0;
    const float *out = ws->xb;
    pq_status st = PQ_OK;
    switch (s) {
    case S_ATTN_NORM: pq__block_attn_norm(r->m, b, ws, k->n, k->x); break;
    case S_ATTENTION:
        st = pq__block_attention(ctx, r->m, l, b, &r->kv, ws, k->n, 0, k->att);
        flop = linears_flop(c, 0, k->rows) + 4.0 * (double)(k->n * c->n_heads * r->L * r->L * c->head_dim);
        out = k->att;
        break;
    case S_ATTN_OUT:
        st = pq__block_attn_out(ctx, b, ws, k->n, k->att, k->x);
        flop = linears_flop(c, 1, k->rows);
        break;
    case S_FFN_NORM: pq__block_ffn_norm(r->m, b, ws, k->n, k->x); break;
    case S_FFN_ACT:
        st = pq__block_ffn_act(ctx, b, ws, k->n, k->hb);
        flop = linears_flop(c, 2, k->rows);
        out = k->hb;
        break;
    default:
        st = pq__block_ffn_out(ctx, b, ws, k->n, k->hb, k->x);
        flop = linears_flop(c, 3, k->rows);
        break;
    }
    if (r->times) {
        r->times->forward_s += pq__now() - t0;
        r->times->forward_flop += flop;
    }
    const int g = step_makes[s];
    if (st == PQ_OK && g >= 0 && acc[g]) hacc_add_timed(r, acc[g], out, k->rows);
    return st;
}

/* Steps [from, to) of every chunk (on copies when copy). The steps' work arrays live for one
 * pass: between passes the memory is the compression's. */
static pq_status run_steps(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b, int from, int to, int copy,
                           pq__hacc *const acc[PQ_BLOCK_INPUTS]) {
    pq_status st = pq__block_ws_init(ctx, &r->ws, &r->m->cfg, r->chunk, r->L, r->L);
    if (st) return st;
    FOR_CHUNKS(ctx, r, l, copy, k, st) {
        for (int s = from; s < to && st == PQ_OK; s++)
            st = run_step(ctx, r, l, b, &k, s, acc);
        if (st) break;
    }
    pq__block_ws_free(&r->ws);
    return st;
}

pq_status pq__runner_advance(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b) {
    pq__hacc *none[PQ_BLOCK_INPUTS] = {0};
    return run_steps(ctx, r, l, b, S_ATTN_NORM, S_END, 0, none);
}

/* Accumulators of the groups with want[g] (use[g] points at them); then H[g] from each, and
 * all freed. */
static pq_status haccs_init(pq_ctx *ctx, const pq__config *c, const int want[PQ_BLOCK_INPUTS],
                            pq__hacc acc[PQ_BLOCK_INPUTS], pq__hacc *use[PQ_BLOCK_INPUTS]) {
    memset(acc, 0, sizeof(pq__hacc) * PQ_BLOCK_INPUTS);
    pq_status st = PQ_OK;
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++) {
        use[g] = NULL;
        if (want[g] && st == PQ_OK && (st = pq__hacc_init(ctx, &acc[g], pq__block_input_cols(c, g))) == PQ_OK)
            use[g] = &acc[g];
    }
    return st;
}

static pq_status haccs_finish(pq_ctx *ctx, pq__runner *r, pq_status st, pq__hacc acc[PQ_BLOCK_INPUTS],
                              pq__hacc *use[PQ_BLOCK_INPUTS], float *H[PQ_BLOCK_INPUTS]) {
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++) {
        const double t0 = pq__now();
        if (use[g] && st == PQ_OK) st = pq__hacc_finish(ctx, &acc[g], &H[g]);
        if (r->times) r->times->hessian_s += pq__now() - t0;
        pq__hacc_free(&acc[g]);
    }
    return st;
}

pq_status pq__collect_hessians(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b,
                               const int want[PQ_BLOCK_INPUTS], float *H[PQ_BLOCK_INPUTS]) {
    pq__hacc acc[PQ_BLOCK_INPUTS];
    pq__hacc *use[PQ_BLOCK_INPUTS];
    int to = S_ATTN_NORM + 1; /* through the step of the last input wanted: the rest is not run */
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++)
        if (want[g]) to = step_of[g] + 1;
    pq_status st = haccs_init(ctx, &r->m->cfg, want, acc, use);
    /* on copies of X only when a step writes it */
    if (st == PQ_OK) st = run_steps(ctx, r, l, b, S_ATTN_NORM, to, to > S_ATTN_OUT, use);
    return haccs_finish(ctx, r, st, acc, use, H);
}

/* The steps of true-sequential group g: from the state X holds (the block's input for 0 and 1,
 * the attention's residual for 2 and 3) to g's input; then the step that applies g's output. */
static const int tseq_from[PQ_BLOCK_INPUTS] = {S_ATTN_NORM, S_ATTN_NORM, S_FFN_NORM, S_FFN_NORM};
static const int tseq_out[PQ_BLOCK_INPUTS] = {-1, S_ATTN_OUT, -1, S_FFN_OUT};

pq_status pq__runner_stage(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b, int g, float **H, int out) {
    const pq__config *c = &r->m->cfg;
    const int64_t NT = r->ns * r->L;
    const int want[PQ_BLOCK_INPUTS] = {g == 0 && H, g == 1 && H, g == 2 && H, g == 3 && H};
    const int applies = out && tseq_out[g] >= 0, keep = applies && H;
    pq__hacc acc[PQ_BLOCK_INPUTS];
    pq__hacc *use[PQ_BLOCK_INPUTS];
    pq_status st = haccs_init(ctx, c, want, acc, use);
    /* the inputs kept for pq__runner_stage_out: all of o's, down's up to the allowance */
    if (st == PQ_OK && keep && g == 1 &&
        !(r->att = pq__big_malloc(ctx, (size_t)(NT * c->n_heads * c->head_dim) * sizeof(float), "o inputs")))
        st = PQ_ERR_NOMEM;
    if (st == PQ_OK && keep && g == 3 && r->hb_rows > 0 &&
        !(r->hb = pq__big_malloc(ctx, (size_t)(r->hb_rows * c->hidden_dim) * sizeof(float), "down inputs")))
        st = PQ_ERR_NOMEM;
    /* without a Hessian the output is applied in the same pass */
    const int to = step_of[g] + 1 + (applies && !H);
    if (st == PQ_OK) st = run_steps(ctx, r, l, b, tseq_from[g], to, 0, use);
    float *Hs[PQ_BLOCK_INPUTS] = {0};
    st = haccs_finish(ctx, r, st, acc, use, Hs);
    if (H) *H = Hs[g];
    return st;
}

pq_status pq__runner_stage_out(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b, int g) {
    pq__hacc *none[PQ_BLOCK_INPUTS] = {0};
    pq_status st = PQ_OK;
    if (g == 1) st = run_steps(ctx, r, l, b, S_ATTN_OUT, S_ATTN_OUT + 1, 0, none);
    if (g == 3 && (st = pq__block_ws_init(ctx, &r->ws, &r->m->cfg, r->chunk, r->L, r->L)) == PQ_OK) {
        /* chunks whose inputs were not kept recompute them from the residual in X */
        FOR_CHUNKS(ctx, r, l, 0, k, st) {
            for (int s = k.hb == r->ws.hb ? S_FFN_NORM : S_FFN_OUT; s < S_END && st == PQ_OK; s++)
                st = run_step(ctx, r, l, b, &k, s, none);
            if (st) break;
        }
        pq__block_ws_free(&r->ws);
    }
    pq__runner_release(r);
    return st;
}

void pq__runner_release(pq__runner *r) {
    free(r->att);
    free(r->hb);
    r->att = r->hb = NULL;
}
