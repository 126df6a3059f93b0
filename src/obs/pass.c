/* One layer's OBS passes (pass.h): the workspace shared by the passes of a layer and the
 * runner that gathers a pass's columns in sweep order, runs the sweep and scatters Q, the
 * mask and the codes back. */
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "obs/pass.h"

/* The shared work array: wt and w0t ([cols, rows] each) of every sweep, lent before that to
 * the factorisation (n^2 doubles), so that the memory is touched once. */
float *pq__obs_layer_ws(pq__obs_layer *L) {
    if (!L->ws) {
        const size_t sweep = sizeof(float) * 2 * (size_t)(L->rows * L->cols);
        const size_t fac = (L->h_work || L->fac_lent)
                               ? 0
                               : (L->p->factor_f32 ? sizeof(float) : sizeof(double)) * (size_t)(L->cols * L->cols);
        const size_t need = sweep > fac ? sweep : fac;
        pq__obs_share *sh = L->share;
        if (sh && sh->ws && sh->ws_bytes >= need) { /* the last layer's on this H */
            L->ws = sh->ws, L->ws_bytes = sh->ws_bytes;
            sh->ws = NULL, sh->ws_bytes = 0;
        } else {
            if (sh) { /* too small for this layer: not held beside its own */
                free(sh->ws);
                sh->ws = NULL, sh->ws_bytes = 0;
            }
            L->ws_bytes = need;
            L->ws = pq__big_malloc(L->ctx, L->ws_bytes, "sweep weights");
        }
    }
    return L->ws;
}

void pq__obs_share_free(pq__obs_share *s) {
    if (!s) return;
    free(s->ws);
    pq__hfactor_free(&s->fac[0]);
    pq__hfactor_free(&s->fac[1]);
    memset(s, 0, sizeof *s);
}

pq_status pq__obs_layer_factor(pq__obs_layer *L, int permuted, const pq__hfactor **out) {
    pq__obs_share *sh = L->share;
    const int inplace = L->h_work && !permuted, f32 = inplace || L->p->factor_f32;
    if (!L->have[permuted] && sh && sh->have[permuted] && sh->f32[permuted] == f32 &&
        sh->percdamp[permuted] == L->p->percdamp) { /* computed for another layer of this H */
        L->fac[permuted] = sh->fac[permuted];
        L->have[permuted] = L->borrowed[permuted] = 1;
        L->res->damp = L->fac[permuted].damp;
        L->res->percdamp = L->fac[permuted].percdamp;
        L->res->chol_retries += L->fac[permuted].retries;
    }
    if (!L->have[permuted]) {
        /* a lent natural-order factor left the work array no room for another factorisation:
         * the act-order one then allocates its own scratch */
        if (!inplace && !L->fac_lent && !pq__obs_layer_ws(L)) return PQ_ERR_NOMEM;
        const double t0 = pq__now();
        const pq_status st =
            inplace ? pq__hfactor_compute(L->ctx, L->h_work, L->cols, NULL, L->p->percdamp, 1, L->nt, L->h_work,
                                          &L->fac[0])
                    : pq__hfactor_compute(L->ctx, L->H, L->cols, permuted ? L->perm : NULL, L->p->percdamp,
                                          L->p->factor_f32, L->nt, L->fac_lent ? NULL : L->ws, &L->fac[permuted]);
        L->res->factor_seconds += pq__now() - t0;
        if (st != PQ_OK) return st;
        L->res->factor_flop += (double)L->cols * (double)L->cols * (double)L->cols / 3.0;
        L->have[permuted] = 1;
        /* a factor in H's own memory (its last reader) is nobody else's */
        if (sh && !L->fac[permuted].vs_borrowed) {
            pq__hfactor_free(&sh->fac[permuted]); /* one of another precision */
            sh->fac[permuted] = L->fac[permuted];
            sh->have[permuted] = L->borrowed[permuted] = 1;
            sh->f32[permuted] = f32;
            sh->percdamp[permuted] = L->p->percdamp;
        }
        L->res->damp = L->fac[permuted].damp;
        L->res->percdamp = L->fac[permuted].percdamp;
        L->res->chol_retries += L->fac[permuted].retries;
    }
    *out = &L->fac[permuted];
    return PQ_OK;
}

/* The sweep of one pass: the recipe's pruning and grids on the layer's factor f. */
static void obs_config(const pq__obs_layer *L, const pq__obs_pass *st, const pq__hfactor *f, const int64_t *perm,
                       int64_t g, float *wt, float *w0t, uint8_t *mt, const float *grid0t, float *scales,
                       uint8_t *zeros, uint8_t *ct, pq__obs *s) {
    const pq_layer_params *p = L->p;
    const int64_t rows = L->rows, n = L->cols;
    memset(s, 0, sizeof *s);
    s->stage = st->name;
    s->rows = rows;
    s->n = n;
    s->vs = f ? f->vs : NULL;
    s->vdiag = f ? f->vdiag : NULL;
    s->wt = wt;
    s->w0t = st->feedback ? w0t : NULL;
    s->mask = st->mask;
    s->mt = mt;
    s->sparsity = p->sparsity;
    s->nm_n = p->prune_n;
    s->nm_m = p->prune_m;
    s->ref_select = p->reference;
    s->bits = st->quant ? p->bits : 0;
    s->grid = !p->sym ? PQ_GRID_ASYM : p->reference ? PQ_GRID_SYM_REF : PQ_GRID_SYM_MSE;
    s->group = g;
    s->grid_mode = (p->static_groups && g < n) ? PQ_OBS_GRID_STATIC : PQ_OBS_GRID_DYNAMIC;
    s->perm = perm;
    s->grid_survivors = st->survivors;
    s->grid_stale = p->reference;
    s->grid0t = grid0t;
    s->scales = scales;
    s->zeros = zeros;
    s->ct = ct;
    s->blocksize = p->blocksize;
    s->align = !p->reference;
    s->n_threads = L->nt;
    if (st->fixed) {
        s->bits = L->fix.bits;
        s->group = L->fix.group;
        s->grid_mode = PQ_OBS_GRID_FIXED;
        s->scales = (float *)L->fix.scales; /* read only in FIXED mode */
        s->zeros = (uint8_t *)L->fix.zeros;
        s->offs = L->fix.offs;
        s->grid_stale = 0;
    }
}

/* Codes, grids and group indices of a finished pass into codes (original column order). */
static void store_codes(const pq__obs_layer *L, const pq__obs *s, const int64_t *perm, const uint8_t *ct,
                        const float *scales, const uint8_t *zeros, int64_t g, pq_qcodes *codes) {
    const int64_t rows = L->rows, n = L->cols, ng = n / g;
    pq__transpose_scatter_u8(ct, rows, n, perm, codes->codes, L->nt);
    for (int64_t gi = 0; gi < ng; gi++)
        for (int64_t r = 0; r < rows; r++) {
            codes->scales[r * ng + gi] = scales[gi * rows + r];
            codes->zeros[r * ng + gi] = zeros[gi * rows + r];
        }
    const int dyn_perm = perm && s->grid_mode == PQ_OBS_GRID_DYNAMIC;
    for (int64_t q = 0; q < n; q++)
        codes->g_idx[dyn_perm ? perm[q] : q] = (int32_t)(q / g);
}

/* dst = src (n floats) on nt threads: dst is usually fresh memory, whose first touch (the
 * kernel zeroing each page) costs more than the copy and runs in parallel too (235 MB on this
 * VM: 380 ms on one thread, 220 ms on two). */
static void copy_floats(float *dst, const float *src, int64_t n, int nt) {
    enum { PIECE = 1 << 18 };
    const int64_t np = (n + PIECE - 1) / PIECE;
#pragma omp parallel for num_threads(nt) schedule(static) if (np > 1)
    for (int64_t p = 0; p < np; p++) {
        const int64_t o = p * PIECE;
        memcpy(dst + o, src + o, sizeof(float) * (size_t)(n - o < PIECE ? n - o : PIECE));
    }
}

/* Each row's ||w0 - q||^2 (transposed [cols, rows] arrays) into L->row_sq. */
static void row_sqdiff(const pq__obs_layer *L, const float *wt, const float *w0t) {
    const int64_t rows = L->rows, n = L->cols;
    memset(L->row_sq, 0, sizeof(double) * (size_t)rows);
    for (int64_t q = 0; q < n; q++)
        for (int64_t r = 0; r < rows; r++) {
            const double d = (double)w0t[q * rows + r] - (double)wt[q * rows + r];
            L->row_sq[r] += d * d;
        }
}

pq_status pq__obs_pass_run(pq__obs_layer *L, const pq__obs_pass *st, const float *Wstart, float *Wout, uint8_t *keep,
                           pq_qcodes *codes, double *loss, double *sqdiff) {
    pq_ctx *ctx = L->ctx;
    const pq_layer_params *p = L->p;
    const int64_t rows = L->rows, n = L->cols, nel = rows * n;
    const int64_t *perm = st->permuted ? L->perm : NULL;
    const pq__hfactor *f = NULL;
    pq_status rc = st->feedback ? pq__obs_layer_factor(L, st->permuted, &f) : PQ_OK;
    if (rc != PQ_OK) return rc;
    const int64_t g = st->fixed ? L->fix.group : (st->quant && p->group_size > 0) ? p->group_size : n, ng = n / g;
    const int per_row_ref = st->quant && p->reference && g == n && f && f->n_dead > 0;
    rc = PQ_ERR_NOMEM;
    float *wt = pq__obs_layer_ws(L), *w0t = wt ? wt + nel : NULL;
    float *grid0t = per_row_ref ? pq__big_malloc(ctx, sizeof(float) * (size_t)nel, "reference grid weights") : NULL;
    uint8_t *mt = st->mask != PQ_OBS_MASK_NONE ? pq__big_malloc(ctx, (size_t)nel, "sweep mask") : NULL;
    const int own_grids = st->quant && !st->fixed;
    float *scales = own_grids ? pq__malloc(ctx, sizeof(float) * (size_t)(ng * rows), "grid scales") : NULL;
    uint8_t *zeros = own_grids ? pq__malloc(ctx, (size_t)(ng * rows), "grid zeros") : NULL;
    uint8_t *ct = (st->quant && codes) ? pq__big_malloc(ctx, (size_t)nel, "codes") : NULL;
    if (!wt || (per_row_ref && !grid0t) || (st->mask != PQ_OBS_MASK_NONE && !mt) ||
        (own_grids && (!scales || !zeros)) || (st->quant && codes && !ct))
        goto done;

    pq__transpose_gather(Wstart, rows, n, perm, wt, L->nt);
    if (grid0t) copy_floats(grid0t, wt, nel, L->nt);
    if (f)
        for (int64_t q = 0; q < n; q++)
            if (f->dead[q]) memset(wt + q * rows, 0, sizeof(float) * (size_t)rows);
    if (st->feedback) copy_floats(w0t, wt, nel, L->nt);
    if (st->mask == PQ_OBS_MASK_FIXED) pq__transpose_gather_u8(keep, rows, n, perm, mt, L->nt);

    pq__obs s;
    obs_config(L, st, f, perm, g, wt, w0t, mt, grid0t, scales, zeros, ct, &s);
    if (L->row_loss && st->feedback) {
        memset(L->row_loss, 0, sizeof(double) * (size_t)rows);
        s.row_loss = L->row_loss;
    }
    if ((rc = pq__obs_run(ctx, &s)) != PQ_OK) goto done;
    if (L->row_loss && st->feedback) row_sqdiff(L, wt, w0t);
    if (s.blocksize_used > L->res->blocksize) L->res->blocksize = s.blocksize_used;
    if (st->feedback) L->res->sweep_flop += (double)rows * (double)n * (double)(n - 1);
    *loss = s.loss;
    if (st->feedback) {
        double sq = 0.0;
#pragma omp parallel for num_threads(L->nt) reduction(+ : sq) schedule(static)
        for (int64_t i = 0; i < nel; i++) {
            const double d = (double)w0t[i] - (double)wt[i];
            sq += d * d;
        }
        *sqdiff = sq;
    }
    pq__transpose_scatter(wt, rows, n, perm, Wout, L->nt);
    if (st->mask == PQ_OBS_MASK_UNSTRUCT || st->mask == PQ_OBS_MASK_NM)
        pq__transpose_scatter_u8(mt, rows, n, perm, keep, L->nt);
    if (codes && st->fixed)
        pq__transpose_scatter_u8(ct, rows, n, perm, codes->codes, L->nt);
    else if (codes)
        store_codes(L, &s, perm, ct, scales, zeros, g, codes);
    rc = PQ_OK;
done:
    free(grid0t);
    free(mt);
    free(scales);
    free(zeros);
    free(ct);
    return rc;
}

void pq__obs_layer_free(pq__obs_layer *L) {
    if (!L) return;
    for (int k = 0; k < 2; k++)
        if (!L->borrowed[k] && !(k == 0 && L->fac_lent)) pq__hfactor_free(&L->fac[k]);
    if (L->share && L->ws) { /* for the next layer on this H */
        free(L->share->ws);
        L->share->ws = L->ws, L->share->ws_bytes = L->ws_bytes;
    } else {
        free(L->ws);
    }
    free(L->perm);
    L->ws = NULL;
    L->perm = NULL;
}
