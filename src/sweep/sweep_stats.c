/* Intervals of the stored runs: every run's per-item / per-window units against the base
 * run's units of the same task (paired bootstrap, prunequant-eval.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "prunequant-sweep.h"

static const pq_sweep_score *base_score(const pq_sweep_results *r, const char *task) {
    for (int64_t i = 0; r->has_base && i < r->base.n_scores; i++)
        if (!strcmp(r->base.scores[i].task, task)) return &r->base.scores[i];
    return NULL;
}

/* The tasks in Sr of run (finite retention, not kld), paired with the base: their units into
 * m[], b[], higher[]; returns how many, or -1 when a task of Sr has no paired units. */
static int64_t paired_tasks(const pq_sweep_results *r, const pq_sweep_run *run, const pq_units **m,
                            const pq_units **b, int *higher) {
    int64_t k = 0;
    for (int64_t i = 0; i < run->n_scores; i++) {
        const pq_sweep_score *sc = &run->scores[i];
        if (!isfinite(sc->retention) || !strncmp(sc->task, "kld", 3)) continue;
        const pq_sweep_score *bs = base_score(r, sc->task);
        if (!bs || sc->units.n <= 0 || bs->units.n != sc->units.n || bs->units.kind != sc->units.kind) return -1;
        m[k] = &sc->units, b[k] = &bs->units, higher[k] = sc->higher_is_better, k++;
    }
    return k;
}

static int64_t max_scores(const pq_sweep_results *r) {
    int64_t n = 1;
    for (int64_t i = 0; i < r->n; i++)
        if (r->runs[i].n_scores > n) n = r->runs[i].n_scores;
    return n;
}

pq_status pq_sweep_results_intervals(pq_ctx *ctx, pq_sweep_results *r, const pq_bootstrap_params *p) {
    const int64_t cap = max_scores(r);
    const pq_units **m = pq__calloc(ctx, (size_t)cap, sizeof *m, "intervals");
    const pq_units **b = m ? pq__calloc(ctx, (size_t)cap, sizeof *b, "intervals") : NULL;
    int *higher = b ? pq__calloc(ctx, (size_t)cap, sizeof *higher, "intervals") : NULL;
    pq_status st = higher ? PQ_OK : ctx->status;
    for (int64_t i = 0; st == PQ_OK && i < r->n; i++) {
        pq_sweep_run *run = &r->runs[i];
        run->sr_ci[0] = run->sr_ci[1] = NAN;
        double point;
        for (int64_t t = 0; st == PQ_OK && t < run->n_scores; t++) {
            pq_sweep_score *sc = &run->scores[t];
            sc->retention_ci[0] = sc->retention_ci[1] = NAN;
            const pq_sweep_score *bs = base_score(r, sc->task);
            if (!bs || sc->units.n <= 0 || bs->units.n != sc->units.n || !isfinite(sc->retention)) continue;
            const pq_units *a = &sc->units, *bu = &bs->units;
            st = pq_bootstrap_sr(ctx, 1, &a, &bu, &sc->higher_is_better, p, &point, sc->retention_ci);
        }
        if (st != PQ_OK || strcmp(run->status, "done")) continue;
        const int64_t k = paired_tasks(r, run, m, b, higher);
        if (k > 0) st = pq_bootstrap_sr(ctx, k, m, b, higher, p, &point, run->sr_ci);
    }
    free(m);
    free(b);
    free(higher);
    return st;
}

pq_status pq_sweep_compare(pq_ctx *ctx, const pq_sweep_results *r, int64_t a, int64_t b, const pq_bootstrap_params *p,
                           double *diff, double ci[2]) {
    *diff = ci[0] = ci[1] = NAN;
    if (a < 0 || b < 0 || a >= r->n || b >= r->n) return pq__fail(ctx, PQ_ERR_INVALID, "compare: no such run");
    const pq_sweep_run *ra = &r->runs[a], *rb = &r->runs[b];
    const int64_t cap = (ra->n_scores > 0 ? ra->n_scores : 1);
    const pq_units **ma = pq__calloc(ctx, (size_t)cap, sizeof *ma, "compare");
    const pq_units **mb = ma ? pq__calloc(ctx, (size_t)cap, sizeof *mb, "compare") : NULL;
    const pq_units **base = mb ? pq__calloc(ctx, (size_t)cap, sizeof *base, "compare") : NULL;
    int *higher = base ? pq__calloc(ctx, (size_t)cap, sizeof *higher, "compare") : NULL;
    pq_status st = higher ? PQ_OK : ctx->status;
    /* the tasks of a, each found in b; both must have paired units for every task */
    int64_t k = 0;
    int ok = st == PQ_OK;
    for (int64_t i = 0; ok && i < ra->n_scores; i++) {
        const pq_sweep_score *sa = &ra->scores[i];
        if (!strncmp(sa->task, "kld", 3) || !isfinite(sa->retention)) continue;
        const pq_sweep_score *sb = NULL, *bs = base_score(r, sa->task);
        for (int64_t j = 0; j < rb->n_scores && !sb; j++)
            if (!strcmp(rb->scores[j].task, sa->task)) sb = &rb->scores[j];
        ok = sb && bs && isfinite(sb->retention) && sa->units.n > 0 && sa->units.n == sb->units.n &&
             sa->units.n == bs->units.n;
        if (ok) ma[k] = &sa->units, mb[k] = &sb->units, base[k] = &bs->units, higher[k] = sa->higher_is_better, k++;
    }
    if (ok && k > 0) st = pq_bootstrap_sr_diff(ctx, k, ma, mb, base, higher, p, diff, ci);
    if (st == PQ_OK && !(ok && k > 0)) *diff = ra->sr - rb->sr; /* no units: the point difference only */
    free(ma);
    free(mb);
    free(base);
    free(higher);
    return st;
}

/* The score of run c whose task starts with prefix ("ppl:", "kld:"), NULL if none. */
static const pq_sweep_score *score_of(const pq_sweep_run *c, const char *prefix) {
    for (int64_t i = 0; i < c->n_scores; i++)
        if (!strncmp(c->scores[i].task, prefix, strlen(prefix))) return &c->scores[i];
    return NULL;
}

/* Uniform - allocated of one task and its paired interval (the point alone without units). */
static pq_status task_diff(pq_ctx *ctx, const pq_sweep_run *u, const pq_sweep_run *a, const char *prefix,
                           const pq_bootstrap_params *p, double v[2], double *diff, double ci[2]) {
    const pq_sweep_score *su = score_of(u, prefix), *sa = score_of(a, prefix);
    v[0] = v[1] = *diff = ci[0] = ci[1] = NAN;
    if (!su || !sa || strcmp(su->task, sa->task)) return PQ_OK;
    v[0] = su->score, v[1] = sa->score, *diff = su->score - sa->score;
    if (su->units.n <= 0 || su->units.n != sa->units.n) return PQ_OK;
    double d;
    return pq_bootstrap_score_diff(ctx, &su->units, &sa->units, p, &d, ci);
}

pq_status pq_sweep_alloc_pairs(pq_ctx *ctx, const pq_sweep_results *r, const pq_bootstrap_params *p,
                               pq_sweep_alloc_pair **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    pq_sweep_alloc_pair *v = pq__calloc(ctx, (size_t)(r->n ? r->n : 1), sizeof *v, "allocation pairs");
    if (!v) return ctx->status;
    pq_status st = PQ_OK;
    for (int64_t i = 0; i < r->n && st == PQ_OK; i++) {
        const pq_sweep_run *a = &r->runs[i];
        const char *dot = strchr(a->hash, '.');
        if (!dot || strcmp(a->status, "done")) continue;
        int64_t u = -1;
        for (int64_t j = 0; j < r->n && u < 0; j++)
            if (!strncmp(r->runs[j].hash, a->hash, (size_t)(dot - a->hash)) && r->runs[j].hash[dot - a->hash] == 0 &&
                !strcmp(r->runs[j].status, "done"))
                u = j;
        if (u < 0) continue;
        pq_sweep_alloc_pair *c = &v[(*n)++];
        c->alloc = i, c->uniform = u;
        const pq_sweep_score *ps = score_of(a, "ppl:");
        snprintf(c->ppl_task, sizeof c->ppl_task, "%s", ps ? ps->task : "");
        st = task_diff(ctx, &r->runs[u], a, "ppl:", p, c->ppl, &c->ppl_diff, c->ppl_ci);
        if (st == PQ_OK) st = task_diff(ctx, &r->runs[u], a, "kld:", p, c->kld, &c->kld_diff, c->kld_ci);
        if (st == PQ_OK) st = pq_sweep_compare(ctx, r, i, u, p, &c->sr_diff, c->sr_ci);
    }
    if (st != PQ_OK || !*n) {
        free(v);
        v = NULL;
        if (st != PQ_OK) *n = 0;
    }
    *out = v;
    return st;
}
