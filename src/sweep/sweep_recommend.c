/* Choosing a configuration from the store, and the Sr-vs-TCr Pareto frontier. */
#include <math.h>
#include <string.h>

#include "common/common.h"
#include "prunequant-sweep.h"

static int usable(const pq_sweep_run *r) {
    return !strcmp(r->status, "done") && isfinite(r->sr);
}

pq_status pq_sweep_recommend(pq_ctx *ctx, const pq_sweep_results *r, pq_sweep_goal goal, double value,
                             int64_t *index) {
    *index = -1;
    int64_t best = -1, n_done = 0;
    for (int64_t i = 0; i < r->n; i++) {
        const pq_sweep_run *c = &r->runs[i];
        if (!usable(c)) continue;
        n_done++;
        const pq_sweep_run *b = best >= 0 ? &r->runs[best] : NULL;
        int better = 0;
        switch (goal) {
        case PQ_SWEEP_BEST_SRCR: better = isfinite(c->srcr) && (!b || c->srcr > b->srcr); break;
        case PQ_SWEEP_AT_TCR: better = fabs(c->tcr - value) <= 1e-9 && (!b || c->sr > b->sr); break;
        case PQ_SWEEP_MAX_BYTES: better = c->bytes > 0 && (double)c->bytes <= value && (!b || c->sr > b->sr); break;
        case PQ_SWEEP_MIN_SR:
        case PQ_SWEEP_MIN_SR_POINT: {
            /* cheapest in stored bytes; among equal sizes the better retention. The bound is the
             * interval's lower end: a config recommended for Sr >= 0.9 is one whose Sr is
             * distinguishably at least that, not one that reached it by the luck of the items */
            const double sr = goal == PQ_SWEEP_MIN_SR && isfinite(c->sr_ci[0]) ? c->sr_ci[0] : c->sr;
            better = sr >= value && (!b || c->bytes < b->bytes || (c->bytes == b->bytes && c->sr > b->sr));
            break;
        }
        default: return pq__fail(ctx, PQ_ERR_INVALID, "unknown goal %d", (int)goal);
        }
        if (better) best = i;
    }
    if (best < 0) {
        if (!n_done) return pq__fail(ctx, PQ_ERR_INVALID, "no finished configuration in the database");
        switch (goal) {
        case PQ_SWEEP_AT_TCR: return pq__fail(ctx, PQ_ERR_INVALID, "no finished configuration at TCr %.10g", value);
        case PQ_SWEEP_MAX_BYTES:
            return pq__fail(ctx, PQ_ERR_INVALID, "no finished configuration fits in %.0f bytes", value);
        case PQ_SWEEP_MIN_SR:
            return pq__fail(ctx, PQ_ERR_INVALID,
                            "no finished configuration reaches Sr %g at the lower end of its 95%% interval "
                            "(--point uses the point estimate)",
                            value);
        case PQ_SWEEP_MIN_SR_POINT:
            return pq__fail(ctx, PQ_ERR_INVALID, "no finished configuration reaches Sr %g", value);
        default: return pq__fail(ctx, PQ_ERR_INVALID, "no finished configuration has an SrCr");
        }
    }
    *index = best;
    return PQ_OK;
}

void pq_sweep_pareto(const pq_sweep_results *r, int *on) {
    for (int64_t i = 0; i < r->n; i++) {
        const pq_sweep_run *a = &r->runs[i];
        on[i] = usable(a) && isfinite(a->tcr);
        for (int64_t j = 0; j < r->n && on[i]; j++) {
            const pq_sweep_run *b = &r->runs[j];
            if (j == i || !usable(b) || !isfinite(b->tcr)) continue;
            if ((b->tcr >= a->tcr && b->sr > a->sr) || (b->tcr > a->tcr && b->sr >= a->sr)) on[i] = 0;
        }
    }
}
