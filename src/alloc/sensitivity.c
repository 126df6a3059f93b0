/* How much one linear's layer error moves the model's output (alloc.h): the KLD of the
 * model's next-token distributions on a few calibration windows when only that linear is
 * perturbed, against the model without the perturbation. Layer errors of different linears are
 * in different units (a q_proj error acts through attention scores, an o_proj error on the
 * residual stream); KLD per unit of layer error puts them on one scale.
 * Each measurement runs the model from the block of the linear on: the windows' hidden states
 * entering that block are the calibration runner's (dense) ones, so nothing before it is run
 * again. The reference distributions are computed per block the same way with the block
 * unperturbed, so both sides of every KLD run the same kernels on the same weights but one
 * linear. With a large vocabulary only some positions per window are scored (the lm_head
 * product dominates otherwise). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/alloc.h"
#include "kernels/kernels.h"

/* Logits of all scored positions are held at once, at most this many floats. */
#define MAX_LOGITS ((int64_t)1 << 24)

void pq__alloc_sens_free(pq__alloc_sens *s) {
    if (!s) return;
    free(s->x0);
    free(s->logp);
    pq__kv_free(&s->kv);
    memset(s, 0, sizeof *s);
}

pq_status pq__alloc_sens_init(pq_ctx *ctx, pq__alloc_sens *s, const pq_model *m, int64_t n_win, int64_t T) {
    memset(s, 0, sizeof *s);
    const pq__config *c = &m->cfg;
    if (m->deferred) return pq__model_require_weights(ctx, m, "the sensitivity passes");
    s->m = m, s->n_win = n_win, s->T = T;
    s->P = MAX_LOGITS / (n_win * c->vocab_size); /* scored positions per window */
    if (s->P > T - 1) s->P = T - 1;
    if (s->P < 1) s->P = 1;
    pq__config one = *c;
    one.n_layers = 1; /* the block being run reads only its own layer's cache */
    s->x0 = pq__malloc(ctx, sizeof(float) * (size_t)(n_win * T * c->dim), "sensitivity states");
    s->logp =
        s->x0 ? pq__malloc(ctx, sizeof(float) * (size_t)(n_win * s->P * c->vocab_size), "log-probabilities") : NULL;
    if (!s->logp) return ctx->status;
    return pq__kv_init(ctx, &s->kv, &one, n_win, T);
}

/* Logits [n, V] into log-probabilities in place. */
static pq_status to_logp(pq_ctx *ctx, float *x, int64_t n, int64_t V) {
    double *lp = pq__malloc(ctx, sizeof *lp * (size_t)V, "log-probabilities");
    if (!lp) return ctx->status;
    for (int64_t t = 0; t < n; t++) {
        pq__log_softmax(x + t * V, V, lp);
        for (int64_t v = 0; v < V; v++)
            x[t * V + v] = (float)lp[v];
    }
    free(lp);
    return PQ_OK;
}

/* Blocks l.. (block l as bl, the later ones as the model stores them) on a copy of the states
 * entering block l, then the final norm and lm_head on the scored positions (the last P of
 * each window, spread evenly): log-probabilities into out [n_win * P, V]. */
static pq_status tail(pq_ctx *ctx, const pq__alloc_sens *s, int64_t l, const pq__block *bl, float *out) {
    const pq_model *m = s->m;
    const int64_t D = m->cfg.dim, N = s->n_win * s->T, stride = (s->T - 1) / s->P;
    float *x = pq__malloc(ctx, sizeof(float) * (size_t)(N * D), "sensitivity states");
    float *xs = x ? pq__malloc(ctx, sizeof(float) * (size_t)(s->n_win * s->P * D), "sensitivity states") : NULL;
    pq_status st = xs ? PQ_OK : ctx->status;
    if (st == PQ_OK) memcpy(x, s->x0, sizeof(float) * (size_t)(N * D));
    for (int64_t j = l; j < m->cfg.n_layers && st == PQ_OK; j++)
        st = pq__block_forward(ctx, m, j, j == l ? bl : &m->blocks[j], (pq__kv *)&s->kv, x, s->n_win, s->T, 0, NULL,
                               NULL);
    for (int64_t w = 0; w < s->n_win && st == PQ_OK; w++)
        for (int64_t p = 0; p < s->P; p++)
            memcpy(xs + (w * s->P + p) * D, x + (w * s->T + s->T - 2 - p * stride) * D, sizeof(float) * (size_t)D);
    if (st == PQ_OK) {
        pq__rmsnorm(xs, xs, m->out_norm, s->n_win * s->P, D, m->cfg.norm_eps, pq__threads(ctx));
        st = pq__linear_apply(ctx, &m->lm_head, xs, out, s->n_win * s->P);
    }
    if (st == PQ_OK) st = to_logp(ctx, out, s->n_win * s->P, m->cfg.vocab_size);
    free(x);
    free(xs);
    return st;
}

pq_status pq__alloc_sens_block(pq_ctx *ctx, pq__alloc_sens *s, const float *X, int64_t L, int64_t l,
                               const pq__block *b) {
    const int64_t D = s->m->cfg.dim;
    for (int64_t w = 0; w < s->n_win; w++) /* the first T positions of each window */
        memcpy(s->x0 + w * s->T * D, X + w * L * D, sizeof(float) * (size_t)(s->T * D));
    return tail(ctx, s, l, b, s->logp);
}

/* sum_v p_ref (log p_ref - log p) per scored position, averaged. */
static double mean_kld(const float *ref, const float *lp, int64_t n, int64_t V) {
    double total = 0;
    for (int64_t t = 0; t < n; t++) {
        double k = 0;
        for (int64_t v = 0; v < V; v++) {
            const double r = ref[t * V + v];
            k += exp(r) * (r - (double)lp[t * V + v]);
        }
        total += k;
    }
    return total / (double)n;
}

pq_status pq__alloc_sens_kld(pq_ctx *ctx, const pq__alloc_sens *s, int64_t l, const pq__block *b, int i,
                             const float *Wp, double *kld) {
    const int64_t V = s->m->cfg.vocab_size, n = s->n_win * s->P;
    float *lp = pq__malloc(ctx, sizeof(float) * (size_t)(n * V), "log-probabilities");
    if (!lp) return ctx->status;
    pq__block bp = *b; /* the block with one linear replaced */
    pq__linear *lin = pq__block_linear_at(&bp, i);
    lin->w = pq__qmat_f32(lin->rows, lin->cols, Wp);
    const pq_status st = tail(ctx, s, l, &bp, lp);
    if (st == PQ_OK) *kld = mean_kld(s->logp, lp, n, V);
    free(lp);
    return st;
}
