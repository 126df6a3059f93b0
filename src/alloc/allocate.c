/* pq_allocate (prunequant-alloc.h): the calibration windows flow through the dense model one
 * block at a time, as in compress; each block's Hessians are factored once per input and every
 * candidate is swept on a sample of every linear's rows on them (damage.c), optionally scaled
 * by the linear's output sensitivity (sensitivity.c); the bytes come from the packed layout
 * (pq_recipe_bytes); then one choice per linear under the budget (solve.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/alloc.h"
#include "calib/calib.h"
#include "joint/joint.h"
#include "model/packed.h"
#include "pipeline/pipeline.h"

pq_alloc_params pq_alloc_params_default(void) {
    pq_alloc_params p;
    memset(&p, 0, sizeof p);
    p.compress = pq_compress_params_default();
    /* pruned candidates prune and quantize in one sweep: modes a and b take two sweeps and a
     * direct error each, for every candidate of every linear */
    p.compress.layer.joint = PQ_JOINT_FUSED;
    p.sample_rows = 128;
    p.sensitivity = 1;
    p.sens_windows = 4;
    p.sens_len = 128;
    return p;
}

int64_t pq_recipe_bytes(const pq_layer_params *p, int64_t rows, int64_t cols, int version, int *exact) {
    return pq__packed_recipe_bytes(p, rows, cols, version, exact);
}

void pq_alloc_result_free(pq_alloc_result *r) {
    if (!r) return;
    free(r->candidates);
    free(r->linears);
    free(r->bytes);
    free(r->exact);
    free(r->damage);
    free(r->damage_se);
    free(r);
}

/* One allocation run: the request resolved, the result being filled, one block's work. */
typedef struct arun {
    pq_ctx *ctx;
    const pq_model *m;
    const pq_alloc_params *p;
    pq_compress_params cp; /* p->compress with the defaults resolved */
    pq_alloc_result *r;
    pq__runner run;
    float *w[PQ_BLOCK_LINEARS];
    float *H[PQ_BLOCK_INPUTS];
    pq__hfactor F[PQ_BLOCK_INPUTS];
    pq__alloc_sens sens;
    int32_t *win;
    int64_t *starts;
} arun;

/* The request before any work: one budget, a packed format, calibration that fits the model. */
static pq_status check_request(arun *A, int64_t n_tokens) {
    pq_ctx *ctx = A->ctx;
    const pq_alloc_params *p = A->p;
    pq_compress_params *cp = &A->cp;
    *cp = p->compress;
    if ((p->budget_bpw > 0) == (p->budget_bytes > 0))
        return pq__fail(ctx, PQ_ERR_INVALID, "allocate: give one budget, in bits per weight or in bytes");
    if (!(p->budget_bpw >= 0 && p->budget_bpw <= 32))
        return pq__fail(ctx, PQ_ERR_INVALID, "allocate: budget of %g bits per weight", p->budget_bpw);
    if (cp->packed < 1)
        return pq__fail(ctx, PQ_ERR_INVALID, "allocate: bytes are counted in a packed format (packed or packed-v1)");
    if (cp->skip || cp->report || cp->gguf_type || cp->n_overrides || cp->imatrix_out)
        return pq__fail(ctx, PQ_ERR_INVALID, "allocate: skip, report, GGUF output and overrides do not apply");
    if (p->sensitivity && (p->sens_windows < 1 || p->sens_len < 2))
        return pq__fail(ctx, PQ_ERR_INVALID, "allocate: sensitivity needs at least one window of two tokens");
    if (cp->seqlen <= 0) cp->seqlen = pq_compress_default_seqlen(A->m);
    if (cp->chunk <= 0) cp->chunk = 4;
    if (cp->chunk > cp->nsamples) cp->chunk = cp->nsamples;
    if (cp->seqlen > A->m->cfg.max_seq_len || n_tokens < cp->seqlen)
        return pq__fail(ctx, PQ_ERR_INVALID,
                        "allocate: windows of %lld tokens need a model context and a calibration text of at least "
                        "that (context %lld, text %lld tokens)",
                        (long long)cp->seqlen, (long long)A->m->cfg.max_seq_len, (long long)n_tokens);
    return PQ_OK;
}

/* The result's tables: linears, candidates, the bytes of every pair, the budget. */
static pq_status init_result(arun *A) {
    pq_ctx *ctx = A->ctx;
    const pq__config *c = &A->m->cfg;
    pq_alloc_result *r = A->r;
    pq_status st = pq_alloc_candidates(ctx, A->p->candidates, &A->cp.layer, &r->candidates, &r->n_candidates);
    if (st != PQ_OK) return st;
    const int64_t nl = c->n_layers * PQ_BLOCK_LINEARS, nc = r->n_candidates, n = nl * nc;
    r->n_linears = nl;
    r->linears = pq__calloc(ctx, (size_t)nl, sizeof *r->linears, "allocation linears");
    r->bytes = r->linears ? pq__malloc(ctx, sizeof *r->bytes * (size_t)n, "candidate bytes") : NULL;
    r->exact = r->bytes ? pq__calloc(ctx, (size_t)n, 1, "candidate bytes") : NULL;
    r->damage = r->exact ? pq__malloc(ctx, sizeof *r->damage * (size_t)n, "candidate damage") : NULL;
    r->damage_se = r->damage ? pq__malloc(ctx, sizeof *r->damage_se * (size_t)n, "candidate damage") : NULL;
    if (!r->damage_se) return ctx->status;
    for (int64_t l = 0, k = 0; l < c->n_layers; l++)
        for (int i = 0; i < PQ_BLOCK_LINEARS; i++, k++) {
            pq_alloc_linear *li = &r->linears[k];
            pq__linear_name(li->name, sizeof li->name, l, i);
            li->rows = pq__linear_dim(c, pq__block_linear[i].rows);
            li->cols = pq__linear_dim(c, pq__block_linear[i].cols);
            li->sensitivity = 1;
            r->n_weights += li->rows * li->cols;
            for (int64_t j = 0; j < nc; j++) {
                int ex = 0;
                r->bytes[k * nc + j] =
                    pq__packed_recipe_bytes(&r->candidates[j], li->rows, li->cols, A->cp.packed, &ex);
                r->exact[k * nc + j] = (uint8_t)ex;
                r->damage[k * nc + j] = r->damage_se[k * nc + j] = NAN;
            }
        }
    r->budget =
        A->p->budget_bytes > 0 ? A->p->budget_bytes : (int64_t)floor(A->p->budget_bpw * (double)r->n_weights / 8.0);
    return PQ_OK;
}

/* The cheapest allocation must fit before any sweep is run. */
static pq_status check_budget(arun *A) {
    const pq_alloc_result *r = A->r;
    int64_t cheapest = 0;
    for (int64_t k = 0; k < r->n_linears; k++) {
        int64_t lo = -1;
        for (int64_t j = 0; j < r->n_candidates; j++) {
            const int64_t b = r->bytes[k * r->n_candidates + j];
            if (b >= 0 && (lo < 0 || b < lo)) lo = b;
        }
        if (lo < 0)
            return pq__fail(A->ctx, PQ_ERR_INVALID, "allocate: no candidate suits %s [%lld, %lld]",
                            r->linears[k].name, (long long)r->linears[k].rows, (long long)r->linears[k].cols);
        cheapest += lo;
    }
    if (cheapest > r->budget)
        return pq__fail(A->ctx, PQ_ERR_INVALID,
                        "allocate: the budget (%lld bytes, %.4f bpw) is below the cheapest candidates (%lld bytes, "
                        "%.4f bpw)",
                        (long long)r->budget, 8.0 * (double)r->budget / (double)r->n_weights, (long long)cheapest,
                        8.0 * (double)cheapest / (double)r->n_weights);
    return PQ_OK;
}

/* The quantization-only candidate suiting linear k whose bits per weight are nearest the
 * budget's: the sensitivity is measured where the choices are made. -1 if none. */
static int sens_reference(const pq_alloc_result *r, int64_t k) {
    const double target = 8.0 * (double)r->budget / (double)r->n_weights;
    const double n = (double)(r->linears[k].rows * r->linears[k].cols);
    int best = -1;
    double bd = 0;
    for (int64_t j = 0; j < r->n_candidates; j++) {
        const int64_t b = r->bytes[k * r->n_candidates + j];
        if (b < 0 || r->candidates[j].prune != PQ_PRUNE_NONE) continue;
        const double d = fabs(8.0 * (double)b / n - target);
        if (best < 0 || d < bd) best = (int)j, bd = d;
    }
    return best;
}

/* Linear i of block l: its sampled rows as the reference candidate made them, the rest dense;
 * the KLD that causes per unit of the sampled rows' layer error scales every candidate's
 * damage (rows contribute independently to both, to first order). */
static pq_status sensitivity(arun *A, int64_t l, const pq__block *b, int i, int64_t k, const pq__alloc_linear_in *in,
                             const pq__alloc_sample *smp, int ref) {
    pq_alloc_result *r = A->r;
    const double t0 = pq__now();
    float *Wp = pq__malloc(A->ctx, sizeof(float) * (size_t)(in->rows * in->cols), "sensitivity weights");
    if (!Wp) return A->ctx->status;
    memcpy(Wp, in->W, sizeof(float) * (size_t)(in->rows * in->cols));
    for (int64_t j = 0; j < smp->k; j++)
        memcpy(Wp + smp->idx[j] * in->cols, smp->Wq + j * in->cols, sizeof(float) * (size_t)in->cols);
    double kld = 0;
    const pq_status st = pq__alloc_sens_kld(A->ctx, &A->sens, l, b, i, Wp, &kld);
    free(Wp);
    if (st != PQ_OK) return pq__fail_prefix(A->ctx, st, "%s: sensitivity", in->name);
    const double s = smp->error > 0 ? kld / smp->error : 0;
    r->linears[k].sensitivity = s;
    for (int64_t j = 0; j < r->n_candidates; j++) {
        r->damage[k * r->n_candidates + j] *= s;
        r->damage_se[k * r->n_candidates + j] *= s;
    }
    pq__log(A->ctx, PQ_LOG_INFO,
            "%s: KLD %.4g with %lld rows at %d bits g%lld (their layer error %.4g): %.4g per unit", in->name, kld,
            (long long)smp->k, r->candidates[ref].bits, (long long)r->candidates[ref].group_size, smp->error, s);
    r->sens_seconds += pq__now() - t0;
    return PQ_OK;
}

static void free_block(arun *A) {
    for (int i = 0; i < PQ_BLOCK_LINEARS; i++) {
        free(A->w[i]);
        A->w[i] = NULL;
    }
    for (int g = 0; g < PQ_BLOCK_INPUTS; g++) {
        free(A->H[g]);
        A->H[g] = NULL;
        pq__hfactor_free(&A->F[g]);
    }
}

/* Block l's weights as float32 (one block at a time, as compress), its Hessians and their
 * factors; b points at the working copies. */
static pq_status load_block(arun *A, int64_t l, pq__block *b) {
    pq_ctx *ctx = A->ctx;
    *b = A->m->blocks[l];
    pq_status st = PQ_OK;
    for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++) {
        pq__linear *lin = pq__block_linear_at(b, i);
        char name[128];
        pq__linear_name(name, sizeof name, l, i);
        st = pq__model_linear_f32(ctx, A->m, name, lin->rows, lin->cols, &A->w[i]);
        if (st == PQ_OK) lin->w = pq__qmat_f32(lin->rows, lin->cols, A->w[i]);
    }
    const int want[PQ_BLOCK_INPUTS] = {1, 1, 1, 1};
    if (st == PQ_OK) st = pq__collect_hessians(ctx, &A->run, l, b, want, A->H);
    for (int g = 0; g < PQ_BLOCK_INPUTS && st == PQ_OK; g++) {
        /* one factorisation per input, shared by its linears and every candidate; float32 past
         * PQ_INPLACE_MIN_COLS inputs, as compress factors its largest Hessians */
        const int64_t n = pq__block_input_cols(&A->m->cfg, g);
        st = pq__hfactor_compute(ctx, A->H[g], n, NULL, A->cp.layer.percdamp,
                                 A->cp.layer.factor_f32 || n > PQ_INPLACE_MIN_COLS, pq__threads(ctx), NULL, &A->F[g]);
        if (st != PQ_OK) st = pq__fail_prefix(ctx, st, "block %lld, input %d", (long long)l, g);
    }
    return st;
}

/* Every candidate on every linear of block l, then the block run dense for the next one. */
static pq_status run_block(arun *A, int64_t l) {
    pq_alloc_result *r = A->r;
    pq__block b;
    pq_status st = load_block(A, l, &b);
    if (st == PQ_OK && A->p->sensitivity) {
        const double t0 = pq__now();
        st = pq__alloc_sens_block(A->ctx, &A->sens, A->run.X, A->cp.seqlen, l, &b);
        r->sens_seconds += pq__now() - t0;
    }
    for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++) {
        const int64_t k = l * PQ_BLOCK_LINEARS + i, nc = r->n_candidates;
        const int g = pq__block_linear[i].input;
        pq_alloc_linear *li = &r->linears[k];
        const pq__alloc_linear_in in = {li->name, A->w[i], li->rows, li->cols, A->H[g], &A->F[g], k, r->n_linears};
        const double t0 = pq__now();
        const int ref = A->p->sensitivity ? sens_reference(r, k) : -1;
        pq__alloc_sample smp;
        st = pq__alloc_damage(A->ctx, &in, r->candidates, nc, r->bytes + k * nc, A->p->sample_rows, A->p->sample_seed,
                              ref, r->damage + k * nc, r->damage_se + k * nc, &smp);
        li->sampled = smp.k;
        r->sweep_seconds += pq__now() - t0;
        if (st == PQ_OK && ref >= 0) st = sensitivity(A, l, &b, i, k, &in, &smp, ref);
        pq__alloc_sample_free(&smp);
        if (st == PQ_OK) st = pq__progress(A->ctx, "allocate", k + 1, r->n_linears);
    }
    if (st == PQ_OK && l + 1 < A->m->cfg.n_layers) st = pq__runner_advance(A->ctx, &A->run, l, &b);
    free_block(A);
    return st;
}

/* The choice under the budget and its totals. */
static pq_status choose(arun *A) {
    pq_alloc_result *r = A->r;
    int *choice = pq__malloc(A->ctx, sizeof *choice * (size_t)r->n_linears, "allocation choice");
    if (!choice) return A->ctx->status;
    const pq__alloc_problem pb = {r->n_linears, r->n_candidates, r->bytes, r->damage, r->budget};
    pq__alloc_solution sol = {choice, 0, 0, 0, 0, 0};
    pq_status st = pq__alloc_solve(A->ctx, &pb, &sol);
    double var = 0;
    for (int64_t k = 0; st == PQ_OK && k < r->n_linears; k++) {
        r->linears[k].choice = choice[k];
        const double se = r->damage_se[k * r->n_candidates + choice[k]];
        var += se * se;
    }
    r->total_bytes = sol.cost;
    r->total_damage = sol.damage;
    r->lower_bound = sol.lower_bound;
    r->lambda = sol.lambda;
    r->upgrades = sol.upgrades;
    r->total_damage_se = sqrt(var);
    free(choice);
    return st;
}

static pq_status run(arun *A, const int32_t *tokens, int64_t n_tokens) {
    pq_ctx *ctx = A->ctx;
    const pq_compress_params *cp = &A->cp;
    pq_status st = pq__calib_windows(ctx, tokens, n_tokens, cp->nsamples, cp->seqlen, cp->seed, &A->win, &A->starts);
    if (st == PQ_OK && A->p->sensitivity) {
        const int64_t nw = A->p->sens_windows < cp->nsamples ? A->p->sens_windows : cp->nsamples;
        const int64_t len = A->p->sens_len < cp->seqlen ? A->p->sens_len : cp->seqlen;
        st = pq__alloc_sens_init(ctx, &A->sens, A->m, nw, len);
    }
    if (st == PQ_OK) st = pq__runner_init(ctx, &A->run, A->m, A->win, cp->nsamples, cp->seqlen, cp->chunk);
    A->run.stage = "allocate", A->run.per_layer = PQ_BLOCK_LINEARS;
    if (st == PQ_OK) st = pq__progress(ctx, "allocate", 0, A->r->n_linears);
    for (int64_t l = 0; l < A->m->cfg.n_layers && st == PQ_OK; l++)
        st = run_block(A, l);
    if (st == PQ_OK) st = choose(A);
    return st;
}

pq_status pq_allocate(pq_ctx *ctx, const pq_model *model, const int32_t *tokens, int64_t n_tokens,
                      const pq_alloc_params *p, pq_alloc_result **out) {
    *out = NULL;
    const double t0 = pq__now();
    arun A;
    memset(&A, 0, sizeof A);
    A.ctx = ctx, A.m = model, A.p = p;
    if (p->sensitivity && model->deferred) return pq__model_require_weights(ctx, model, "allocate --sensitivity");
    A.r = pq__calloc(ctx, 1, sizeof *A.r, "allocation");
    if (!A.r) return ctx->status;
    pq_status st = check_request(&A, n_tokens);
    if (st == PQ_OK) st = init_result(&A);
    if (st == PQ_OK) st = check_budget(&A);
    if (st == PQ_OK) st = run(&A, tokens, n_tokens);
    free_block(&A);
    pq__runner_free(&A.run);
    pq__alloc_sens_free(&A.sens);
    free(A.win);
    free(A.starts);
    if (st != PQ_OK) {
        pq_alloc_result_free(A.r);
        return st;
    }
    A.r->seconds = pq__now() - t0;
    *out = A.r;
    return PQ_OK;
}
