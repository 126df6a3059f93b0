/* The multiple-choice knapsack of the allocation (alloc.h): minimise the summed damage of one
 * choice per item with the summed cost within the budget. Lagrangian relaxation first: for a
 * multiplier lambda every item independently takes argmin damage + lambda cost, whose total
 * cost falls as lambda grows; bisection finds the smallest lambda whose choice fits. That choice
 * is optimal for its own cost, but may leave bytes unused (the costs are steps), so a greedy
 * fill then takes, while one fits, the upgrade with the most damage saved per byte. The dual
 * function L(lambda) = sum_i min_c (d + lambda c) - lambda B is a lower bound on the optimum
 * at every lambda; it is largest where the chosen cost crosses B, the point the bisection
 * brackets, so the bound is taken at both ends of the bracket. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/alloc.h"

/* Every item's argmin damage + lam * cost into choice (ties: lower cost, then lower index);
 * returns the total cost and (in *dual) sum_i min_c (damage + lam * cost). */
static int64_t pick(const pq__alloc_problem *pb, double lam, int *choice, double *dual) {
    int64_t total = 0;
    double sum = 0;
    for (int64_t i = 0; i < pb->n_items; i++) {
        const int64_t *c = pb->cost + i * pb->n_choices;
        const double *d = pb->damage + i * pb->n_choices;
        int best = -1;
        double bv = 0;
        for (int j = 0; j < (int)pb->n_choices; j++) {
            if (c[j] < 0) continue;
            const double v = d[j] + lam * (double)c[j];
            if (best < 0 || v < bv || (v == bv && c[j] < c[best])) best = j, bv = v;
        }
        choice[i] = best;
        total += c[best];
        sum += bv;
    }
    if (dual) *dual = sum;
    return total;
}

/* Items without an available choice, and the cheapest allocation against the budget. */
static pq_status check(pq_ctx *ctx, const pq__alloc_problem *pb) {
    int64_t cheapest = 0;
    for (int64_t i = 0; i < pb->n_items; i++) {
        int64_t lo = -1;
        for (int64_t j = 0; j < pb->n_choices; j++) {
            const int64_t c = pb->cost[i * pb->n_choices + j];
            if (c >= 0 && !isfinite(pb->damage[i * pb->n_choices + j]))
                return pq__fail(ctx, PQ_ERR_NUMERIC, "allocate: item %lld, choice %lld: damage is not finite",
                                (long long)i, (long long)j);
            if (c >= 0 && (lo < 0 || c < lo)) lo = c;
        }
        if (lo < 0)
            return pq__fail(ctx, PQ_ERR_INVALID, "allocate: item %lld has no candidate that suits it", (long long)i);
        cheapest += lo;
    }
    if (cheapest > pb->budget)
        return pq__fail(ctx, PQ_ERR_INVALID,
                        "allocate: the budget of %lld bytes is below the cheapest allocation (%lld bytes)",
                        (long long)pb->budget, (long long)cheapest);
    return PQ_OK;
}

/* Brackets the crossing: the smallest lambda (to double precision) whose choice fits, in hi;
 * lo is the largest that does not (0 when even lambda = 0 fits). Returns the dual bound. */
static double bisect(const pq__alloc_problem *pb, int *choice, double *lam_out) {
    double lo = 0, hi = 1, dual_lo, dual_hi;
    if (pick(pb, 0, choice, &dual_lo) <= pb->budget) { /* the least damage fits: optimal */
        *lam_out = 0;
        return dual_lo;
    }
    while (pick(pb, hi, choice, NULL) > pb->budget && hi < 1e300)
        lo = hi, hi *= 16;
    for (int it = 0; it < 200 && hi - lo > 1e-15 * hi; it++) {
        const double mid = lo + (hi - lo) / 2;
        if (pick(pb, mid, choice, NULL) <= pb->budget)
            hi = mid;
        else
            lo = mid;
    }
    pick(pb, lo, choice, &dual_lo);
    pick(pb, hi, choice, &dual_hi); /* the primal: the fitting choice */
    *lam_out = hi;
    const double b_lo = dual_lo - lo * (double)pb->budget, b_hi = dual_hi - hi * (double)pb->budget;
    return b_lo > b_hi ? b_lo : b_hi;
}

/* Greedy fill: the upgrade (more bytes, less damage) with the most damage saved per byte among
 * those that fit the bytes left, until none fits. Returns the steps taken. */
static int64_t fill(const pq__alloc_problem *pb, int *choice, int64_t *cost) {
    int64_t steps = 0;
    for (;;) {
        int64_t bi = -1, bj = -1;
        double best = 0;
        for (int64_t i = 0; i < pb->n_items; i++) {
            const int64_t *c = pb->cost + i * pb->n_choices;
            const double *d = pb->damage + i * pb->n_choices;
            const int k = choice[i];
            for (int64_t j = 0; j < pb->n_choices; j++) {
                const int64_t dc = c[j] - c[k];
                if (c[j] < 0 || dc <= 0 || *cost + dc > pb->budget || !(d[j] < d[k])) continue;
                const double gain = (d[k] - d[j]) / (double)dc;
                if (gain > best) best = gain, bi = i, bj = j;
            }
        }
        if (bi < 0) return steps;
        *cost += pb->cost[bi * pb->n_choices + bj] - pb->cost[bi * pb->n_choices + choice[bi]];
        choice[bi] = (int)bj;
        steps++;
    }
}

pq_status pq__alloc_solve(pq_ctx *ctx, const pq__alloc_problem *pb, pq__alloc_solution *sol) {
    if (pb->n_items <= 0 || pb->n_choices <= 0 || pb->n_choices > 1 << 20)
        return pq__fail(ctx, PQ_ERR_INVALID, "allocate: %lld items of %lld choices", (long long)pb->n_items,
                        (long long)pb->n_choices);
    pq_status st = check(ctx, pb);
    if (st != PQ_OK) return st;
    sol->lower_bound = bisect(pb, sol->choice, &sol->lambda);
    sol->cost = 0;
    for (int64_t i = 0; i < pb->n_items; i++)
        sol->cost += pb->cost[i * pb->n_choices + sol->choice[i]];
    sol->upgrades = fill(pb, sol->choice, &sol->cost);
    sol->damage = 0;
    for (int64_t i = 0; i < pb->n_items; i++)
        sol->damage += pb->damage[i * pb->n_choices + sol->choice[i]];
    if (sol->lower_bound > sol->damage) sol->lower_bound = sol->damage; /* rounding in the sums */
    return PQ_OK;
}
