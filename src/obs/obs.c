#include "obs/obs.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/linalg.h"
#include "kernels/mask.h"

/* Per-thread scratch. */
typedef struct tbuf {
    float *win;             /* [lwin, PQ_TILE] weights of a window of columns at time m */
    float *snap;            /* [lsnap, PQ_TILE] block-start window (reference stale groups) */
    const float **cols;     /* [n] a group's column pointers */
    const uint8_t **keeps;  /* [n] their keep flags */
    float *cell;            /* [nm_m] one N:M cell's scores */
    uint8_t *cellkeep;      /* [nm_m] */
    uint32_t *cellscratch;  /* [nm_m, PQ_TILE] keys (nm_m <= 64), else [nm_m] */
    uint8_t ones[PQ_TILE];  /* keep flags when nothing is masked */
    float dummy[PQ_TILE];   /* sink for d without feedback */
    uint8_t codes[PQ_TILE]; /* sink for codes when not asked for */
    float e2[PQ_TILE];      /* (w - q)^2 of the column just rounded, per row (per-row losses) */
} tbuf;

typedef struct sweep_ctx {
    pq__obs *s;
    int64_t *bstart;  /* [nb + 1] block boundaries */
    int64_t *horizon; /* [nb] UNSTRUCT: masks chosen at this block's start cover [bstart, horizon) */
    int64_t nb, bmax, lwin, lsnap;
    int64_t *invperm; /* [n] position of each original column (static groups) */
    float *D;         /* [bmax, rows] d of the current block */
    float *score;     /* [lscore, rows] UNSTRUCT scores */
    float *state;     /* [lscore, rows] UNSTRUCT: weights of [bs, horizon) at the block start */
    uint32_t *sscratch;
    tbuf *tb; /* [n_threads] */
} sweep_ctx;

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}
static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

/* Block boundaries: B columns, cut so that no N:M cell (and, with align, no dynamic group)
 * starts inside a block and ends after it: its window would need the block's pending
 * updates. */
static int64_t make_blocks(const pq__obs *s, int64_t *bstart) {
    const int64_t n = s->n, B = s->blocksize > 0 ? s->blocksize : 128;
    const int64_t g = (s->bits > 0 && s->grid_mode == PQ_OBS_GRID_DYNAMIC && s->align) ? s->group : 0;
    const int64_t m = s->mask == PQ_OBS_MASK_NM ? s->nm_m : 0;
    int64_t nb = 0, bs = 0;
    while (bs < n) {
        int64_t be = min64(bs + B, n);
        for (int changed = 1; changed;) {
            changed = 0;
            const int64_t unit[2] = {g, m};
            for (int u = 0; u < 2; u++) {
                if (unit[u] <= 0) continue;
                const int64_t js = ((be - 1) / unit[u]) * unit[u];
                if (js > bs && js + unit[u] > be) {
                    be = js;
                    changed = 1;
                }
            }
        }
        bstart[nb++] = bs;
        bs = be;
    }
    bstart[nb] = n;
    return nb;
}

/* out[k * ldo + r] = weight of column m + k (k < L), row ra + r (r < T), after the updates
 * of the columns < m, as the published algorithm sees it. Valid while wt holds every update
 * of the columns < m for the window (in the current block, or m at a block start). */
static void window_state(const pq__obs *s, int64_t m, int64_t L, int64_t ra, int64_t T, float *out, int64_t ldo) {
    const int64_t rows = s->rows, n = s->n;
    const int solve = s->vs && m > 0; /* at m = 0 nothing is updated yet */
    for (int64_t k = 0; k < L; k++) {
        const float *w = s->wt + (m + k) * rows + ra;
        float *o = out + k * ldo;
        if (!solve) {
            memcpy(o, w, sizeof(float) * (size_t)T);
            continue;
        }
        const float *w0 = s->w0t + (m + k) * rows + ra;
#pragma omp simd
        for (int64_t r = 0; r < T; r++)
            o[r] = w[r] - w0[r];
    }
    if (!solve) return;
    /* x (I + Vs) = wt - w0 over the window; transposed: (I + Vs)^T X = A (unit diagonal:
     * vs's own diagonal is never read) */
    pq__strsm_lutu(L, T, 1.0f, s->vs + m * n + m, n, out, ldo);
    for (int64_t k = 0; k < L; k++) {
        const float *w0 = s->w0t + (m + k) * rows + ra;
        float *o = out + k * ldo;
#pragma omp simd
        for (int64_t r = 0; r < T; r++)
            o[r] += w0[r];
    }
}

/* SparseGPT N:M: the cell starting at column cs for rows [ra, ra + T); x[k * xs + r] is
 * the weight of column cs + k at time cs. */
static void decide_cell(const pq__obs *s, tbuf *tb, int64_t cs, const float *x, int64_t xs, int64_t ra, int64_t T) {
    const int64_t rows = s->rows;
    const int m = s->nm_m;
    if (m <= 64) { /* all rows at once */
        pq__mask_nm_rows(x, xs, s->vdiag + cs, m, s->nm_n, T, s->mt + cs * rows + ra, rows, tb->cellscratch);
        return;
    }
    for (int64_t r = 0; r < T; r++) {
        for (int k = 0; k < m; k++) {
            const float w = x[k * xs + r], v = s->vdiag[cs + k];
            tb->cell[k] = w * w * v * v;
        }
        pq__mask_nm_cell(tb->cell, m, s->nm_n, tb->cellkeep, tb->cellscratch);
        for (int k = 0; k < m; k++)
            s->mt[(cs + k) * rows + ra + r] = tb->cellkeep[k];
    }
}

/* Fits the grid of group gi over the nc columns in tb->cols for rows [ra, ra + T). */
static void fit_group(const pq__obs *s, tbuf *tb, int64_t gi, int64_t nc, int64_t ra, int64_t T) {
    const int64_t rows = s->rows;
    const uint8_t *const *keeps = (s->grid_survivors && s->mt) ? tb->keeps : NULL;
    pq__grid_fit_tile(s->grid, s->bits, tb->cols, keeps, nc, T, s->scales + gi * rows + ra,
                      s->zeros + gi * rows + ra);
}

/* Per-tile constants of block b for rows [ra, ra + T). */
typedef struct tile {
    int64_t bs, be, ra, T;
    int quant, fb, nm, dyn, predict_nm, use_snap;
    float maxq;
} tile;

/* Dynamic groups and N:M cells that start at column j: the weights of [j, j + L) at time j
 * (x[k * xs + r]); one window serves both. A fit that predicts N:M cells covers every cell
 * overlapping the group (block cuts keep them inside the block). */
static void decide_at(sweep_ctx *c, tbuf *tb, const tile *t, int64_t b, int64_t j, int cell_here, int fit_here) {
    const pq__obs *s = c->s;
    const int64_t rows = s->rows, n = s->n, g = s->group, M = s->nm_m, ra = t->ra, T = t->T;
    int64_t L = max64(cell_here ? M : 0, fit_here ? g : 0);
    if (fit_here && t->predict_nm) L = max64(L, ((j + g + M - 1) / M) * M - j);
    const float *x = s->wt + j * rows + ra;
    int64_t xs = rows;
    if (j == t->bs && c->state && t->bs > 0 && t->bs + L <= c->horizon[b]) {
        x = c->state + ra;       /* the block-start window from the mask selection */
    } else if (j > 0 && t->fb) { /* at column 0, or without feedback, wt is untouched */
        window_state(s, j, L, ra, T, tb->win, T);
        x = tb->win;
        xs = T;
    }
    if (cell_here) decide_cell(s, tb, j, x, xs, ra, T);
    if (!fit_here) return;
    if (t->predict_nm)
        for (int64_t cs = (j / M + 1) * M; cs < j + g; cs += M)
            decide_cell(s, tb, cs, x + (cs - j) * xs, xs, ra, T);
    const float *base = (s->grid0t && g == n) ? s->grid0t + j * rows + ra : NULL;
    for (int64_t k = 0; k < g; k++) {
        tb->cols[k] = base ? base + k * rows : x + k * xs;
        tb->keeps[k] = s->mt ? s->mt + (j + k) * rows + ra : NULL;
    }
    fit_group(s, tb, j / g, g, ra, T);
}

/* Static groups: at column 0 nothing is updated yet, so every group is fitted on wt. */
static void fit_static_groups(sweep_ctx *c, tbuf *tb, const tile *t) {
    const pq__obs *s = c->s;
    const int64_t rows = s->rows, n = s->n, g = s->group, M = s->nm_m, ra = t->ra, T = t->T;
    if (t->predict_nm)
        for (int64_t cs = M; cs < n; cs += M)
            decide_cell(s, tb, cs, s->wt + cs * rows + ra, rows, ra, T);
    for (int64_t gi = 0; gi < n / g; gi++) {
        for (int64_t k = 0; k < g; k++) {
            const int64_t p = c->invperm ? c->invperm[gi * g + k] : gi * g + k;
            tb->cols[k] = s->wt + p * rows + ra;
            tb->keeps[k] = s->mt ? s->mt + p * rows + ra : NULL;
        }
        fit_group(s, tb, gi, g, ra, T);
    }
}

/* Column j on fixed grids value = a * code + b (ggml types with a min): a pruned weight takes
 * the code nearest to 0, which need not be exactly 0. */
static float round_column_offset(sweep_ctx *c, tbuf *tb, const tile *t, int64_t j, float *w, const float *w0,
                                 const uint8_t *kp, float *d) {
    const pq__obs *s = c->s;
    const int64_t rows = s->rows, ra = t->ra, T = t->T, gi = j / s->group;
    const float *sc = s->scales + gi * rows + ra, *of = s->offs + gi * rows + ra;
    uint8_t *code = s->ct ? s->ct + j * rows + ra : tb->codes;
    const float maxq = t->maxq;
    float e2 = 0.0f;
#pragma omp simd reduction(+ : e2)
    for (int64_t r = 0; r < T; r++) {
        const float x = w[r], a = sc[r], b = of[r];
        const float target = kp[r] ? x : 0.0f;
        float cf = a != 0.0f ? rintf((target - b) / a) : 0.0f;
        cf = cf < 0.0f ? 0.0f : cf;
        cf = cf > maxq ? maxq : cf;
        const float q = a * cf + b;
        const float e = x - q;
        e2 += e * e;
        tb->e2[r] = e * e;
        d[r] = w0[r] - q;
        w[r] = q;
        code[r] = (uint8_t)cf;
    }
    return e2;
}

/* Column j: choose q (on its grid, 0 where pruned), record d = w0 - q, keep q; returns the
 * column's sum of (w - q)^2. */
static float round_column(sweep_ctx *c, tbuf *tb, const tile *t, int64_t j) {
    const pq__obs *s = c->s;
    const int64_t rows = s->rows, ra = t->ra, T = t->T, g = s->group;
    float *w = s->wt + j * rows + ra;
    const float *w0 = t->fb ? s->w0t + j * rows + ra : w;
    const uint8_t *kp = (s->mask != PQ_OBS_MASK_NONE) ? s->mt + j * rows + ra : tb->ones;
    float *d = t->fb ? c->D + (j - t->bs) * rows + ra : tb->dummy;
    float e2 = 0.0f;
    if (t->quant && s->offs) return round_column_offset(c, tb, t, j, w, w0, kp, d);
    if (t->quant) {
        const int64_t gi = (s->grid_mode == PQ_OBS_GRID_STATIC && s->perm) ? s->perm[j] / g : j / g;
        const float *sc = s->scales + gi * rows + ra;
        const uint8_t *zc = s->zeros + gi * rows + ra;
        uint8_t *code = s->ct ? s->ct + j * rows + ra : tb->codes;
        const float maxq = t->maxq;
#pragma omp simd reduction(+ : e2)
        for (int64_t r = 0; r < T; r++) {
            const float x = w[r], z = (float)zc[r];
            float cf;
            float q = pq__quantize(x, sc[r], z, maxq, &cf);
            q = kp[r] ? q : 0.0f;
            cf = kp[r] ? cf : z;
            const float e = x - q;
            e2 += e * e;
            tb->e2[r] = e * e;
            d[r] = w0[r] - q;
            w[r] = q;
            code[r] = (uint8_t)cf;
        }
    } else {
#pragma omp simd reduction(+ : e2)
        for (int64_t r = 0; r < T; r++) {
            const float x = w[r];
            const float q = kp[r] ? x : 0.0f;
            const float e = x - q;
            e2 += e * e;
            tb->e2[r] = e * e;
            d[r] = w0[r] - q;
            w[r] = q;
        }
    }
    return e2;
}

/* In-block update of the later columns of this block by column j's d. */
static void update_in_block(sweep_ctx *c, const tile *t, int64_t j) {
    const pq__obs *s = c->s;
    const int64_t rows = s->rows, n = s->n, ra = t->ra, T = t->T;
    const float *d = c->D + (j - t->bs) * rows + ra;
    const float *vrow = s->vs + j * n;
    for (int64_t k = j + 1; k < t->be; k++) {
        const float a = vrow[k];
        if (a == 0.0f) continue;
        float *wk = s->wt + k * rows + ra;
#pragma omp simd
        for (int64_t r = 0; r < T; r++)
            wk[r] += d[r] * a;
    }
}

static void process_tile(sweep_ctx *c, tbuf *tb, int64_t b, int64_t ra, int64_t rb, double *loss) {
    pq__obs *s = c->s;
    const int64_t n = s->n, g = s->group, M = s->nm_m;
    tile t;
    t.bs = c->bstart[b];
    t.be = c->bstart[b + 1];
    t.ra = ra;
    t.T = rb - ra;
    t.quant = s->bits > 0;
    t.fb = s->vs != NULL;
    t.nm = s->mask == PQ_OBS_MASK_NM;
    t.dyn = t.quant && s->grid_mode == PQ_OBS_GRID_DYNAMIC;
    t.predict_nm = t.quant && s->grid_survivors && t.nm;
    t.maxq = (float)((1 << s->bits) - 1);
    /* reference quirk: a group starting inside the block is fitted on the weights at the
     * block start */
    t.use_snap = 0;
    if (t.dyn && s->grid_stale && g < n && (t.bs / g + 1) * g < t.be) {
        t.use_snap = 1;
        const int64_t last = ((t.be - 1) / g) * g;
        window_state(s, t.bs, min64(last + g, n) - t.bs, ra, t.T, tb->snap, t.T);
    }
    for (int64_t j = t.bs; j < t.be; j++) {
        const int cell_here = t.nm && j % M == 0;
        const int fit_here = t.dyn && j % g == 0;
        if (cell_here || (fit_here && !t.use_snap)) decide_at(c, tb, &t, b, j, cell_here, fit_here && !t.use_snap);
        if (fit_here && t.use_snap) {
            for (int64_t k = 0; k < g; k++) {
                tb->cols[k] = tb->snap + (j - t.bs + k) * t.T;
                tb->keeps[k] = s->mt ? s->mt + (j + k) * s->rows + ra : NULL;
            }
            fit_group(s, tb, j / g, g, ra, t.T);
        }
        if (t.quant && s->grid_mode == PQ_OBS_GRID_STATIC && j == 0) fit_static_groups(c, tb, &t);
        const float e2 = round_column(c, tb, &t, j);
        if (!t.fb) continue;
        const double w = 0.5 * (double)s->vdiag[j] * (double)s->vdiag[j];
        *loss += w * (double)e2;
        if (s->row_loss)
            for (int64_t r = 0; r < t.T; r++)
                s->row_loss[ra + r] += w * (double)tb->e2[r];
        update_in_block(c, &t, j);
    }
}

/* UNSTRUCT: the columns whose masks are chosen at the start of block b. Beyond the block
 * itself, a grid fitted in it that covers later columns needs their (predicted) masks. */
static int64_t block_horizon(const pq__obs *s, const int64_t *bstart, int64_t b) {
    const int64_t bs = bstart[b], be = bstart[b + 1];
    int64_t hz = be;
    if (s->bits > 0 && s->grid_survivors) {
        if (s->grid_mode == PQ_OBS_GRID_STATIC && bs == 0) hz = s->n;
        if (s->grid_mode == PQ_OBS_GRID_DYNAMIC) {
            const int64_t js = ((be - 1) / s->group) * s->group;
            if (js >= bs) hz = max64(hz, js + s->group);
        }
    }
    return min64(hz, s->n);
}

/* UNSTRUCT: masks of the blocks in [bs, hz) from the scores (single thread). */
static void select_blocks(sweep_ctx *c, int64_t b, int64_t hz) {
    const pq__obs *s = c->s;
    const int64_t rows = s->rows, bs = c->bstart[b];
    for (int64_t b2 = b; b2 < c->nb && c->bstart[b2] < hz; b2++) {
        const int64_t s0 = c->bstart[b2], nel = (c->bstart[b2 + 1] - s0) * rows;
        const float *sc = c->score + (s0 - bs) * rows;
        uint8_t *keep = s->mt + s0 * rows;
        if (s->ref_select)
            pq__mask_le_kth(sc, nel, pq__prune_count_ref(nel, s->sparsity), keep, c->sscratch);
        else
            pq__mask_k_smallest(sc, nel, pq__prune_count(nel, s->sparsity), keep, c->sscratch);
    }
}

static void sweep_free(sweep_ctx *c, int nt) {
    if (c->tb)
        for (int t = 0; t < nt; t++) {
            free(c->tb[t].win);
            free(c->tb[t].snap);
            free(c->tb[t].cols);
            free(c->tb[t].keeps);
            free(c->tb[t].cell);
            free(c->tb[t].cellkeep);
            free(c->tb[t].cellscratch);
        }
    free(c->tb);
    free(c->bstart);
    free(c->horizon);
    free(c->invperm);
    free(c->D);
    free(c->score);
    free(c->state);
    free(c->sscratch);
}

/* Blocks, horizons and every buffer of the sweep (per thread: nt). */
static pq_status sweep_alloc(pq_ctx *ctx, sweep_ctx *c, pq__obs *s, int nt) {
    const int64_t rows = s->rows, n = s->n;
    const int quant = s->bits > 0, fb = s->vs != NULL;
    const int dyn = quant && s->grid_mode == PQ_OBS_GRID_DYNAMIC;
    c->bstart = pq__calloc(ctx, (size_t)(n + 1), sizeof(int64_t), "sweep blocks");
    c->horizon = pq__calloc(ctx, (size_t)(n + 1), sizeof(int64_t), "sweep blocks");
    c->tb = pq__calloc(ctx, (size_t)nt, sizeof(tbuf), "sweep buffers");
    if (!c->bstart || !c->horizon || !c->tb) return PQ_ERR_NOMEM;
    c->nb = make_blocks(s, c->bstart);
    int64_t lscore = 0;
    for (int64_t b = 0; b < c->nb; b++) {
        c->bmax = max64(c->bmax, c->bstart[b + 1] - c->bstart[b]);
        if (s->mask == PQ_OBS_MASK_UNSTRUCT) {
            c->horizon[b] = block_horizon(s, c->bstart, b);
            lscore = max64(lscore, c->horizon[b] - c->bstart[b]);
        }
    }
    s->blocksize_used = c->bmax;
    c->lwin = dyn && s->group < n ? s->group : 0;
    if (s->mask == PQ_OBS_MASK_NM) c->lwin += s->nm_m;
    if (dyn && s->grid_stale && s->group < n) c->lsnap = min64(c->bmax + s->group, n);
    if (fb && !(c->D = pq__big_malloc(ctx, sizeof(float) * (size_t)(c->bmax * rows), "sweep block")))
        return PQ_ERR_NOMEM;
    if (s->mask == PQ_OBS_MASK_UNSTRUCT) {
        c->score = pq__big_malloc(ctx, sizeof(float) * (size_t)(lscore * rows), "sparsegpt scores");
        c->state = pq__big_malloc(ctx, sizeof(float) * (size_t)(lscore * rows), "sparsegpt window");
        c->sscratch = pq__big_malloc(ctx, sizeof(uint32_t) * (size_t)(c->bmax * rows), "sparsegpt scratch");
        if (!c->score || !c->state || !c->sscratch) return PQ_ERR_NOMEM;
    }
    if (quant && s->grid_mode == PQ_OBS_GRID_STATIC && s->perm) {
        if (!(c->invperm = pq__malloc(ctx, sizeof(int64_t) * (size_t)n, "inverse permutation"))) return PQ_ERR_NOMEM;
        for (int64_t p = 0; p < n; p++)
            c->invperm[s->perm[p]] = p;
    }
    for (int t = 0; t < nt; t++) {
        tbuf *tb = &c->tb[t];
        memset(tb->ones, 1, sizeof tb->ones);
        if (c->lwin > 0 && !(tb->win = pq__malloc(ctx, sizeof(float) * (size_t)(c->lwin * PQ_TILE), "sweep window")))
            return PQ_ERR_NOMEM;
        if (c->lsnap > 0 &&
            !(tb->snap = pq__malloc(ctx, sizeof(float) * (size_t)(c->lsnap * PQ_TILE), "sweep window")))
            return PQ_ERR_NOMEM;
        if (quant) {
            tb->cols = pq__calloc(ctx, (size_t)n, sizeof(*tb->cols), "sweep group");
            tb->keeps = pq__calloc(ctx, (size_t)n, sizeof(*tb->keeps), "sweep group");
            if (!tb->cols || !tb->keeps) return PQ_ERR_NOMEM;
        }
        if (s->mask == PQ_OBS_MASK_NM) {
            tb->cell = pq__malloc(ctx, sizeof(float) * (size_t)s->nm_m, "n:m cell");
            tb->cellkeep = pq__malloc(ctx, (size_t)s->nm_m, "n:m cell");
            tb->cellscratch =
                pq__malloc(ctx, sizeof(uint32_t) * (size_t)s->nm_m * (s->nm_m <= 64 ? PQ_TILE : 1), "n:m cell");
            if (!tb->cell || !tb->cellkeep || !tb->cellscratch) return PQ_ERR_NOMEM;
        }
    }
    return PQ_OK;
}

/* UNSTRUCT: scores w^2 / U_jj^2 of block b (and the columns to predict) at its start, for
 * this thread's rows [r0, r1). */
static void block_scores(sweep_ctx *c, int64_t b, int64_t r0, int64_t r1) {
    const pq__obs *s = c->s;
    const int64_t rows = s->rows, bs = c->bstart[b], L = c->horizon[b] - bs;
    for (int64_t ra = r0; ra < r1; ra += PQ_TILE) {
        const int64_t T = min64(PQ_TILE, r1 - ra);
        window_state(s, bs, L, ra, T, c->state + ra, rows);
        for (int64_t k = 0; k < L; k++) {
            const float v2 = s->vdiag[bs + k] * s->vdiag[bs + k];
            const float *x = c->state + k * rows + ra;
            float *sc = c->score + k * rows + ra;
#pragma omp simd
            for (int64_t r = 0; r < T; r++)
                sc[r] = x[r] * x[r] * v2;
        }
    }
}

/* One thread's part of the sweep (called inside the parallel region: its barriers bind to
 * it): its rows through every block, then the trailing update of the later columns. */
static double sweep_thread(pq_ctx *ctx, sweep_ctx *c, int *cancel) {
    pq__obs *s = c->s;
    const int64_t rows = s->rows, n = s->n;
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t r0 = rows * t / nth, r1 = rows * (t + 1) / nth;
    tbuf *tb = &c->tb[t];
    double loss = 0.0;
    for (int64_t b = 0; b < c->nb; b++) {
        const int64_t bs = c->bstart[b], be = c->bstart[b + 1];
        if (s->mask == PQ_OBS_MASK_UNSTRUCT) {
            block_scores(c, b, r0, r1);
#pragma omp barrier
#pragma omp single
            select_blocks(c, b, c->horizon[b]);
        }
        for (int64_t ra = r0; ra < r1; ra += PQ_TILE)
            process_tile(c, tb, b, ra, min64(ra + PQ_TILE, r1), &loss);
        if (s->vs && be < n && r1 > r0)
            pq__sgemm(PQ_TRANS, PQ_NOTRANS, n - be, r1 - r0, be - bs, 1.0f, s->vs + bs * n + be, n, c->D + r0, rows,
                      1.0f, s->wt + be * rows + r0, rows);
#pragma omp barrier
#pragma omp master
        {
            if (s->stage && pq__progress(ctx, s->stage, be, n) != PQ_OK) *cancel = 1;
        }
#pragma omp barrier
        if (*cancel) break;
    }
    return loss;
}

pq_status pq__obs_run(pq_ctx *ctx, pq__obs *s) {
    const int nt = s->n_threads > 0 ? s->n_threads : 1;
    sweep_ctx c;
    memset(&c, 0, sizeof c);
    c.s = s;
    s->loss = 0.0;
    if (s->bits <= 0 || s->mask == PQ_OBS_MASK_NONE || s->grid_mode == PQ_OBS_GRID_FIXED) s->grid_survivors = 0;
    if (s->grid_mode == PQ_OBS_GRID_FIXED && (s->perm || s->bits <= 0 || s->n % s->group))
        return pq__fail(ctx, PQ_ERR_INTERNAL, "sweep: fixed grids need natural column order and whole groups");
    if (sweep_alloc(ctx, &c, s, nt) != PQ_OK) {
        sweep_free(&c, nt);
        return PQ_ERR_NOMEM;
    }
    /* Every thread runs single-threaded BLAS on its own rows. */
    const int old_blas = pq__blas_threads_push(1);
    int cancel = 0;
    double loss = 0.0;
#pragma omp parallel num_threads(nt) reduction(+ : loss)
    loss += sweep_thread(ctx, &c, &cancel);
    pq__blas_threads_pop(old_blas);
    s->loss = loss;
    sweep_free(&c, nt);
    return cancel ? PQ_ERR_CANCELLED : PQ_OK;
}
