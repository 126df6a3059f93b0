/* Paired bootstrap intervals for retention, Sr and differences of Sr (see prunequant-eval.h).
 * Arithmetic on stored per-unit values: 18 configs x 3 tasks x 300 items x 2000 replicates is
 * about 3e7 additions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "prunequant-eval.h"

pq_bootstrap_params pq_bootstrap_params_default(void) {
    pq_bootstrap_params p = {2000, 0.95, 20250101};
    return p;
}

void pq_bootstrap_describe(const pq_bootstrap_params *params, char *buf, size_t n) {
    const pq_bootstrap_params d = pq_bootstrap_params_default(), *p = params ? params : &d;
    snprintf(buf, n, "paired bootstrap over items/windows, %lld resamples, %g%% percentile interval, seed %llu",
             (long long)p->resamples, 100.0 * p->level, (unsigned long long)p->seed);
}

double pq_units_score(const pq_units *u) {
    if (!u || u->n <= 0) return NAN;
    double s = 0, w = 0;
    for (int64_t i = 0; i < u->n; i++) {
        s += u->value[i];
        w += u->weight ? u->weight[i] : 1.0;
    }
    return u->kind == PQ_UNITS_PPL ? exp(s / w) : pq_metrics_chance_norm(s / w, u->chance_k);
}

void pq_units_clear(pq_units *u) {
    if (!u) return;
    free(u->value);
    free(u->weight);
    memset(u, 0, sizeof *u);
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The draw of task t in replicate r: n indices in [0, n), the same for every caller. */
static void draw(uint64_t seed, int64_t t, int64_t r, int64_t n, int64_t *idx) {
    uint64_t x = seed ^ ((uint64_t)t * 0xD1B54A32D192ED03ull) ^ ((uint64_t)(r + 1) * 0xABC98388FB8FAC03ull);
    splitmix(&x);
    for (int64_t i = 0; i < n; i++)
        idx[i] = (int64_t)((splitmix(&x) >> 11) % (uint64_t)n); /* bias < n / 2^53 */
}

/* Score of u over the units idx[0..n) (idx NULL: every unit once). */
static double score_at(const pq_units *u, const int64_t *idx) {
    double s = 0, w = 0;
    for (int64_t i = 0; i < u->n; i++) {
        const int64_t k = idx ? idx[i] : i;
        s += u->value[k];
        w += u->weight ? u->weight[k] : 1.0;
    }
    return u->kind == PQ_UNITS_PPL ? exp(s / w) : pq_metrics_chance_norm(s / w, u->chance_k);
}

static double retention(double m, double b, int higher) {
    if (!isfinite(m) || !isfinite(b)) return NAN;
    if (higher) return b > 0 ? m / b : NAN;
    return m > 0 ? b / m : NAN;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Linear-interpolation quantile (type 7) of sorted v[n]. */
static double quantile(const double *v, int64_t n, double q) {
    const double h = (double)(n - 1) * q;
    const int64_t lo = (int64_t)floor(h);
    const int64_t hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (h - (double)lo) * (v[hi] - v[lo]);
}

/* Sr of a (minus Sr of b when b) over the tasks, with the units drawn by idx[t] (NULL: all).
 * At the point (use NULL) tasks without a finite retention are left out, as pq_metrics_sr
 * does, and use[t] records which count; a replicate must give a finite retention for exactly
 * those tasks (else NAN), so that every replicate averages the same tasks. */
static double sr_at(int64_t n_tasks, const pq_units *const *a, const pq_units *const *b, const pq_units *const *base,
                    const int *higher, int64_t *const *idx, int *use) {
    double sa = 0, sb = 0;
    int64_t ka = 0, kb = 0;
    for (int64_t t = 0; t < n_tasks; t++) {
        if (base[t]->n <= 0 || (idx && !use[t])) continue;
        const double bs = score_at(base[t], idx ? idx[t] : NULL);
        const double ra = retention(score_at(a[t], idx ? idx[t] : NULL), bs, higher[t]);
        const double rb = b ? retention(score_at(b[t], idx ? idx[t] : NULL), bs, higher[t]) : 0;
        const int fin = isfinite(ra) && isfinite(rb);
        if (!idx) use[t] = fin;
        if (!fin) {
            if (idx) return NAN;
            continue;
        }
        sa += ra, ka++;
        if (b) sb += rb, kb++;
    }
    if (!ka || (b && !kb)) return NAN;
    return b ? sa / (double)ka - sb / (double)kb : sa / (double)ka;
}

static pq_status bootstrap(pq_ctx *ctx, int64_t n_tasks, const pq_units *const *a, const pq_units *const *b,
                           const pq_units *const *base, const int *higher, const pq_bootstrap_params *params,
                           double *point, double ci[2]) {
    const pq_bootstrap_params p = params ? *params : pq_bootstrap_params_default();
    *point = ci[0] = ci[1] = NAN;
    if (n_tasks <= 0) return pq__fail(ctx, PQ_ERR_INVALID, "bootstrap: no tasks");
    if (p.resamples < 10 || !(p.level > 0 && p.level < 1))
        return pq__fail(ctx, PQ_ERR_INVALID, "bootstrap: resamples must be >= 10 and level in (0, 1)");
    int64_t total = 0;
    for (int64_t t = 0; t < n_tasks; t++) {
        if (a[t]->n != base[t]->n || (b && b[t]->n != base[t]->n))
            return pq__fail(ctx, PQ_ERR_INVALID, "bootstrap: task %lld has %lld units but the base %lld (not paired)",
                            (long long)t, (long long)(b && b[t]->n != base[t]->n ? b[t]->n : a[t]->n),
                            (long long)base[t]->n);
        total += base[t]->n;
    }
    int *use = pq__calloc(ctx, (size_t)n_tasks, sizeof *use, "bootstrap tasks");
    if (!use) return ctx->status;
    *point = sr_at(n_tasks, a, b, base, higher, NULL, use);
    if (!isfinite(*point) || total == 0) {
        free(use);
        return PQ_OK;
    }
    int64_t **idx = pq__calloc(ctx, (size_t)n_tasks, sizeof *idx, "bootstrap draws");
    int64_t *pool = idx ? pq__malloc(ctx, (size_t)total * sizeof *pool, "bootstrap draws") : NULL;
    double *rep = pool ? pq__malloc(ctx, (size_t)p.resamples * sizeof *rep, "bootstrap replicates") : NULL;
    if (!rep) {
        free(idx);
        free(pool);
        free(use);
        return ctx->status;
    }
    for (int64_t t = 0, off = 0; t < n_tasks; off += base[t]->n, t++)
        idx[t] = pool + off;
    int64_t n_finite = 0;
    for (int64_t r = 0; r < p.resamples; r++) {
        for (int64_t t = 0; t < n_tasks; t++)
            draw(p.seed, t, r, base[t]->n, idx[t]);
        const double v = sr_at(n_tasks, a, b, base, higher, idx, use);
        if (isfinite(v)) rep[n_finite++] = v;
    }
    /* replicates without a finite value (a resampled base score of 0) are left out; when
     * they are more than 5%, the interval would describe another population: undefined */
    if ((double)n_finite >= 0.95 * (double)p.resamples) {
        qsort(rep, (size_t)n_finite, sizeof *rep, cmp_double);
        const double alpha = (1.0 - p.level) / 2.0;
        ci[0] = quantile(rep, n_finite, alpha);
        ci[1] = quantile(rep, n_finite, 1.0 - alpha);
    }
    free(rep);
    free(pool);
    free(idx);
    free(use);
    return PQ_OK;
}

/* The percentile interval of score(a) - score(b) (b NULL: of score(a)) over resamples of the
 * units, the same draws for both. */
static pq_status score_interval(pq_ctx *ctx, const pq_units *a, const pq_units *b, const pq_bootstrap_params *p,
                                double ci[2]) {
    int64_t *idx = pq__malloc(ctx, (size_t)a->n * sizeof *idx, "bootstrap draws");
    double *rep = idx ? pq__malloc(ctx, (size_t)p->resamples * sizeof *rep, "bootstrap replicates") : NULL;
    if (!rep) {
        free(idx);
        return ctx->status;
    }
    for (int64_t r = 0; r < p->resamples; r++) {
        draw(p->seed, 0, r, a->n, idx); /* the same units for both models */
        rep[r] = score_at(a, idx) - (b ? score_at(b, idx) : 0.0);
    }
    qsort(rep, (size_t)p->resamples, sizeof *rep, cmp_double);
    const double alpha = (1.0 - p->level) / 2.0;
    ci[0] = quantile(rep, p->resamples, alpha);
    ci[1] = quantile(rep, p->resamples, 1.0 - alpha);
    free(rep);
    free(idx);
    return PQ_OK;
}

pq_status pq_bootstrap_score(pq_ctx *ctx, const pq_units *u, const pq_bootstrap_params *params, double ci[2]) {
    const pq_bootstrap_params p = params ? *params : pq_bootstrap_params_default();
    ci[0] = ci[1] = NAN;
    if (u->n <= 1) return PQ_OK;
    return score_interval(ctx, u, NULL, &p, ci);
}

pq_status pq_bootstrap_score_diff(pq_ctx *ctx, const pq_units *a, const pq_units *b,
                                  const pq_bootstrap_params *params, double *diff, double ci[2]) {
    const pq_bootstrap_params p = params ? *params : pq_bootstrap_params_default();
    *diff = ci[0] = ci[1] = NAN;
    if (a->n <= 0 || a->n != b->n || a->kind != b->kind) return PQ_OK;
    *diff = score_at(a, NULL) - score_at(b, NULL);
    if (a->n <= 1) return PQ_OK;
    return score_interval(ctx, a, b, &p, ci);
}

pq_status pq_bootstrap_sr(pq_ctx *ctx, int64_t n_tasks, const pq_units *const *model, const pq_units *const *base,
                          const int *higher, const pq_bootstrap_params *p, double *sr, double ci[2]) {
    return bootstrap(ctx, n_tasks, model, NULL, base, higher, p, sr, ci);
}

pq_status pq_bootstrap_sr_diff(pq_ctx *ctx, int64_t n_tasks, const pq_units *const *a, const pq_units *const *b,
                               const pq_units *const *base, const int *higher, const pq_bootstrap_params *p,
                               double *diff, double ci[2]) {
    return bootstrap(ctx, n_tasks, a, b, base, higher, p, diff, ci);
}
