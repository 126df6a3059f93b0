/* pq_layer_compress: validates the recipe, prepares H once per column order, and chains
 * the stages: one-shot masks (magnitude, Wanda), sweeps (SparseGPT, GPTQ, fused, frozen
 * mask), RTN; then the error on the original H. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prunequant-compress.h"
#include "common/common.h"
#include "joint/pipeline.h"
#include "joint/sweep.h"
#include "linalg/linalg.h"
#include "prune/prune.h"
#include "quant/quant.h"

/* ---------------------------------------------------------------- params */

pq_layer_params pq_layer_params_default(void) {
    pq_layer_params p;
    memset(&p, 0, sizeof p);
    p.prune = PQ_PRUNE_NONE;
    p.sparsity = 0.5;
    p.quant = PQ_QUANT_GPTQ;
    p.bits = 4;
    p.group_size = -1;
    p.percdamp = 0.01;
    p.blocksize = 128;
    p.joint = PQ_JOINT_A;
    p.keep_mask = 1; /* a recipe's pattern and sparsity hold in the output (mode a re-masks) */
    p.error_mode = PQ_ERROR_AUTO;
    return p;
}

static const char *const prune_names[] = {"none", "magnitude", "wanda", "sparsegpt"};
static const char *const quant_names[] = {"none", "rtn", "gptq"};
static const char *const joint_names[] = {"a", "b", "fused"};

const char *pq_prune_method_name(pq_prune_method m) {
    return (unsigned)m < 4 ? prune_names[m] : "?";
}
const char *pq_quant_method_name(pq_quant_method m) {
    return (unsigned)m < 3 ? quant_names[m] : "?";
}
const char *pq_joint_mode_name(pq_joint_mode m) {
    return (unsigned)m < 3 ? joint_names[m] : "?";
}

static int parse_name(const char *s, const char *const *names, int n) {
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}
int pq_prune_method_parse(const char *s, pq_prune_method *out) {
    const int i = parse_name(s, prune_names, 4);
    if (i < 0) return -1;
    *out = (pq_prune_method)i;
    return 0;
}
int pq_quant_method_parse(const char *s, pq_quant_method *out) {
    const int i = parse_name(s, quant_names, 3);
    if (i < 0) return -1;
    *out = (pq_quant_method)i;
    return 0;
}
int pq_joint_mode_parse(const char *s, pq_joint_mode *out) {
    const int i = parse_name(s, joint_names, 3);
    if (i < 0) return -1;
    *out = (pq_joint_mode)i;
    return 0;
}

pq_status pq_pattern_parse(pq_ctx *ctx, const char *s, int *n, int *m) {
    long a = -1, b = -1;
    int used = 0;
    if (!s || sscanf(s, "%ld:%ld%n", &a, &b, &used) != 2 || s[used] != '\0' || s[0] < '0' || s[0] > '9' || a < 0 ||
        b < 0 || a > INT_MAX || b > INT_MAX || !strchr("0123456789", *(strchr(s, ':') + 1)))
        return pq__fail(ctx, PQ_ERR_INVALID, "bad pattern '%s' (expected N:M, e.g. 2:4)", s ? s : "");
    *n = (int)a;
    *m = (int)b;
    return PQ_OK;
}

pq_status pq_layer_params_validate(pq_ctx *ctx, const pq_layer_params *p, int64_t cols) {
    if ((unsigned)p->prune > PQ_PRUNE_SPARSEGPT)
        return pq__fail(ctx, PQ_ERR_INVALID, "unknown prune method %d", p->prune);
    if ((unsigned)p->quant > PQ_QUANT_GPTQ) return pq__fail(ctx, PQ_ERR_INVALID, "unknown quant method %d", p->quant);
    if ((unsigned)p->joint > PQ_JOINT_FUSED) return pq__fail(ctx, PQ_ERR_INVALID, "unknown joint mode %d", p->joint);
    if ((unsigned)p->error_mode > PQ_ERROR_NONE)
        return pq__fail(ctx, PQ_ERR_INVALID, "unknown error mode %d", p->error_mode);
    const int pattern = p->prune_n != 0 || p->prune_m != 0;
    if (p->prune != PQ_PRUNE_NONE) {
        if (pattern) {
            if (!(p->prune_n > 0 && p->prune_n < p->prune_m))
                return pq__fail(ctx, PQ_ERR_INVALID, "pattern %d:%d: N:M needs 0 < N < M", p->prune_n, p->prune_m);
            if (cols > 0 && cols % p->prune_m != 0)
                return pq__fail(ctx, PQ_ERR_INVALID, "pattern %d:%d: M = %d does not divide cols = %lld", p->prune_n,
                                p->prune_m, p->prune_m, (long long)cols);
        } else if (!(p->sparsity >= 0.0 && p->sparsity < 1.0)) {
            return pq__fail(ctx, PQ_ERR_INVALID, "sparsity must be in [0, 1) (got %g)", p->sparsity);
        }
    }
    if (p->quant != PQ_QUANT_NONE) {
        if (p->bits < 2 || p->bits > 8) return pq__fail(ctx, PQ_ERR_INVALID, "bits must be 2..8 (got %d)", p->bits);
        if (p->group_size != -1 && p->group_size <= 0)
            return pq__fail(ctx, PQ_ERR_INVALID, "group size must be -1 (per row) or positive (got %lld)",
                            (long long)p->group_size);
        if (cols > 0 && p->group_size > 0 && cols % p->group_size != 0)
            return pq__fail(ctx, PQ_ERR_INVALID, "group size %lld does not divide cols = %lld",
                            (long long)p->group_size, (long long)cols);
    }
    if (!(p->percdamp >= 0.0 && p->percdamp <= PQ_MAX_PERCDAMP))
        return pq__fail(ctx, PQ_ERR_INVALID, "percdamp must be in [0, %g] (got %g)", PQ_MAX_PERCDAMP, p->percdamp);
    if (p->blocksize < 1)
        return pq__fail(ctx, PQ_ERR_INVALID, "blocksize must be >= 1 (got %lld)", (long long)p->blocksize);
    if (p->prune != PQ_PRUNE_NONE && p->quant != PQ_QUANT_NONE && p->joint == PQ_JOINT_FUSED) {
        if (p->quant != PQ_QUANT_GPTQ)
            return pq__fail(ctx, PQ_ERR_INVALID, "joint mode fused is one GPTQ sweep: it needs quant gptq");
        if (p->reference && p->group_size != -1)
            return pq__fail(ctx, PQ_ERR_INVALID, "reference fused mode (SparseGPT) supports no groups");
        if (p->reference && p->act_order)
            return pq__fail(ctx, PQ_ERR_INVALID, "reference fused mode (SparseGPT) supports no act-order");
        if (pattern && p->act_order && p->prune == PQ_PRUNE_SPARSEGPT)
            return pq__fail(ctx, PQ_ERR_INVALID,
                            "act-order cannot be combined with an N:M pattern in fused mode (cells are consecutive "
                            "original columns)");
    }
    return PQ_OK;
}

void pq_qcodes_free(pq_qcodes *c) {
    if (!c) return;
    free(c->codes);
    free(c->scales);
    free(c->zeros);
    free(c->g_idx);
    memset(c, 0, sizeof *c);
}

/* ---------------------------------------------------------------- stages */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct layer {
    pq_ctx *ctx;
    const pq_layer_params *p;
    int64_t rows, cols;
    const float *H;
    float *h_work; /* H itself when the caller lets it be destroyed and the recipe allows it */
    int nt;
    int64_t *perm;      /* [cols] act-order, NULL without */
    pq__hfactor fac[2]; /* [0] natural order, [1] act-order */
    int have[2];
    float *ws; /* sweep weights wt and w0t, also the factorisation's scratch */
    size_t ws_bytes;
    pq_layer_result *res;
} layer;

/* The shared work array: wt and w0t ([cols, rows] each) of every sweep, lent before that to
 * the factorisation (n^2 doubles), so that the memory is touched once. */
static float *get_ws(layer *L) {
    if (!L->ws) {
        const size_t sweep = sizeof(float) * 2 * (size_t)(L->rows * L->cols);
        const size_t fac =
            L->h_work ? 0 : (L->p->factor_f32 ? sizeof(float) : sizeof(double)) * (size_t)(L->cols * L->cols);
        L->ws_bytes = sweep > fac ? sweep : fac;
        L->ws = pq__big_malloc(L->ctx, L->ws_bytes, "sweep weights");
    }
    return L->ws;
}

static pq_status get_factor(layer *L, int permuted, const pq__hfactor **out) {
    if (!L->have[permuted]) {
        const int inplace = L->h_work && !permuted;
        if (!inplace && !get_ws(L)) return PQ_ERR_NOMEM;
        const pq_status st =
            inplace ? pq__hfactor_compute(L->ctx, L->h_work, L->cols, NULL, L->p->percdamp, 1, L->nt, L->h_work,
                                          &L->fac[0])
                    : pq__hfactor_compute(L->ctx, L->H, L->cols, permuted ? L->perm : NULL, L->p->percdamp,
                                          L->p->factor_f32, L->nt, L->ws, &L->fac[permuted]);
        if (st != PQ_OK) return st;
        L->have[permuted] = 1;
        L->res->damp = L->fac[permuted].damp;
        L->res->percdamp = L->fac[permuted].percdamp;
        L->res->chol_retries += L->fac[permuted].retries;
    }
    *out = &L->fac[permuted];
    return PQ_OK;
}

typedef struct stage {
    const char *name;
    int feedback;        /* error compensation (needs H) */
    int permuted;        /* act-order */
    pq__sweep_mask mask; /* FIXED: keep is input; UNSTRUCT/NM: keep is output */
    int quant;
    int survivors; /* grids on kept weights */
} stage;

/* Allocates the arrays of codes (before any sweep writes output, so that nothing fails
 * after it). */
static pq_status codes_alloc(layer *L, pq_qcodes *codes) {
    const int64_t rows = L->rows, n = L->cols, g = L->p->group_size > 0 ? L->p->group_size : n, ng = n / g;
    memset(codes, 0, sizeof *codes);
    codes->rows = rows;
    codes->cols = n;
    codes->bits = L->p->bits;
    codes->group_size = g;
    codes->n_groups = ng;
    codes->codes = pq__big_malloc(L->ctx, (size_t)(rows * n), "codes");
    codes->scales = pq__malloc(L->ctx, sizeof(float) * (size_t)(ng * rows), "scales");
    codes->zeros = pq__malloc(L->ctx, (size_t)(ng * rows), "zeros");
    codes->g_idx = pq__malloc(L->ctx, sizeof(int32_t) * (size_t)n, "g_idx");
    if (!codes->codes || !codes->scales || !codes->zeros || !codes->g_idx) {
        pq_qcodes_free(codes);
        return PQ_ERR_NOMEM;
    }
    return PQ_OK;
}

/* Runs one sweep from Wstart [rows, cols] into Wout (may alias Wstart); Wout is written only
 * on success. keep [rows, cols] (row-major, original order) is read or written per
 * st->mask. codes (allocated) receives the codes. Returns the loss and
 * ||Wstart (dead columns zeroed) - Q||^2 for the error identity. */
static pq_status run_stage(layer *L, const stage *st, const float *Wstart, float *Wout, uint8_t *keep,
                           pq_qcodes *codes, double *loss, double *sqdiff) {
    pq_ctx *ctx = L->ctx;
    const pq_layer_params *p = L->p;
    const int64_t rows = L->rows, n = L->cols, nel = rows * n;
    const int64_t *perm = st->permuted ? L->perm : NULL;
    const pq__hfactor *f = NULL;
    pq_status rc = st->feedback ? get_factor(L, st->permuted, &f) : PQ_OK;
    if (rc != PQ_OK) return rc;
    const int64_t g = (st->quant && p->group_size > 0) ? p->group_size : n, ng = n / g;
    const int per_row_ref = st->quant && p->reference && g == n && f && f->n_dead > 0;
    rc = PQ_ERR_NOMEM;
    float *wt = get_ws(L), *w0t = wt ? wt + nel : NULL;
    float *grid0t = per_row_ref ? pq__big_malloc(ctx, sizeof(float) * (size_t)nel, "reference grid weights") : NULL;
    uint8_t *mt = st->mask != PQ_SWEEP_MASK_NONE ? pq__big_malloc(ctx, (size_t)nel, "sweep mask") : NULL;
    float *scales = st->quant ? pq__malloc(ctx, sizeof(float) * (size_t)(ng * rows), "grid scales") : NULL;
    uint8_t *zeros = st->quant ? pq__malloc(ctx, (size_t)(ng * rows), "grid zeros") : NULL;
    uint8_t *ct = (st->quant && codes) ? pq__big_malloc(ctx, (size_t)nel, "codes") : NULL;
    if (!wt || (per_row_ref && !grid0t) || (st->mask != PQ_SWEEP_MASK_NONE && !mt) ||
        (st->quant && (!scales || !zeros)) || (st->quant && codes && !ct))
        goto done;

    pq__transpose_gather(Wstart, rows, n, perm, wt, L->nt);
    if (grid0t) memcpy(grid0t, wt, sizeof(float) * (size_t)nel);
    if (f)
        for (int64_t q = 0; q < n; q++)
            if (f->dead[q]) memset(wt + q * rows, 0, sizeof(float) * (size_t)rows);
    if (st->feedback) memcpy(w0t, wt, sizeof(float) * (size_t)nel);
    if (st->mask == PQ_SWEEP_MASK_FIXED) pq__transpose_gather_u8(keep, rows, n, perm, mt, L->nt);

    pq__sweep s;
    memset(&s, 0, sizeof s);
    s.stage = st->name;
    s.rows = rows;
    s.n = n;
    s.vs = f ? f->vs : NULL;
    s.vdiag = f ? f->vdiag : NULL;
    s.wt = wt;
    s.w0t = st->feedback ? w0t : NULL;
    s.mask = st->mask;
    s.mt = mt;
    s.sparsity = p->sparsity;
    s.nm_n = p->prune_n;
    s.nm_m = p->prune_m;
    s.ref_select = p->reference;
    s.bits = st->quant ? p->bits : 0;
    s.grid = !p->sym ? PQ_GRID_ASYM : p->reference ? PQ_GRID_SYM_REF : PQ_GRID_SYM_MSE;
    s.group = g;
    s.grid_mode = (p->static_groups && g < n) ? PQ_SWEEP_GRID_STATIC : PQ_SWEEP_GRID_DYNAMIC;
    s.perm = perm;
    s.grid_survivors = st->survivors;
    s.grid_stale = p->reference;
    s.grid0t = grid0t;
    s.scales = scales;
    s.zeros = zeros;
    s.ct = ct;
    s.blocksize = p->blocksize;
    s.align = !p->reference;
    s.n_threads = L->nt;
    if ((rc = pq__sweep_run(ctx, &s)) != PQ_OK) goto done;
    if (s.blocksize_used > L->res->blocksize) L->res->blocksize = s.blocksize_used;
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
    if (st->mask == PQ_SWEEP_MASK_UNSTRUCT || st->mask == PQ_SWEEP_MASK_NM)
        pq__transpose_scatter_u8(mt, rows, n, perm, keep, L->nt);
    if (codes) {
        pq__transpose_scatter_u8(ct, rows, n, perm, codes->codes, L->nt);
        for (int64_t gi = 0; gi < ng; gi++)
            for (int64_t r = 0; r < rows; r++) {
                codes->scales[r * ng + gi] = scales[gi * rows + r];
                codes->zeros[r * ng + gi] = zeros[gi * rows + r];
            }
        const int dyn_perm = perm && s.grid_mode == PQ_SWEEP_GRID_DYNAMIC;
        for (int64_t q = 0; q < n; q++)
            codes->g_idx[dyn_perm ? perm[q] : q] = (int32_t)(q / g);
    }
    rc = PQ_OK;
done:
    free(grid0t);
    free(mt);
    free(scales);
    free(zeros);
    free(ct);
    return rc;
}

static int cmp_diag_desc(const void *a, const void *b, void *arg) {
    const double *d = arg;
    const int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    if (d[i] != d[j]) return d[i] > d[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* ---------------------------------------------------------------- entry point */

static pq_status layer_compress(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                                const float *H, float *h_scratch, uint8_t *mask_out, pq_qcodes *codes_out,
                                pq_layer_result *res_out);

pq_status pq_layer_compress(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                            const float *H, uint8_t *mask_out, pq_qcodes *codes_out, pq_layer_result *res_out) {
    return layer_compress(ctx, p, W, rows, cols, H, NULL, mask_out, codes_out, res_out);
}

pq_status pq__layer_compress_scratch_h(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                                       float *H, uint8_t *mask_out, pq_qcodes *codes_out, pq_layer_result *res_out) {
    return layer_compress(ctx, p, W, rows, cols, H, H, mask_out, codes_out, res_out);
}

static pq_status layer_compress(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                                const float *H, float *h_scratch, uint8_t *mask_out, pq_qcodes *codes_out,
                                pq_layer_result *res_out) {
    const double t0 = now_s();
    pq_layer_result res;
    memset(&res, 0, sizeof res);
    res.error = NAN;
    if (codes_out) memset(codes_out, 0, sizeof *codes_out);
    if (!p || !W) return pq__fail(ctx, PQ_ERR_INVALID, "layer: missing parameters or weights");
    if (rows <= 0 || cols <= 0 || rows > INT_MAX || cols > 46340 || rows > INT64_MAX / cols)
        return pq__fail(ctx, PQ_ERR_INVALID, "layer: unsupported shape [%lld, %lld]", (long long)rows,
                        (long long)cols);
    pq_status rc = pq_layer_params_validate(ctx, p, cols);
    if (rc != PQ_OK) return rc;
    const int do_prune = p->prune != PQ_PRUNE_NONE, do_quant = p->quant != PQ_QUANT_NONE;
    const int fused = do_prune && do_quant && p->joint == PQ_JOINT_FUSED;
    const int gptq = p->quant == PQ_QUANT_GPTQ, sgpt = p->prune == PQ_PRUNE_SPARSEGPT;
    const int needs_h = p->prune == PQ_PRUNE_WANDA || sgpt || gptq || p->error_mode != PQ_ERROR_NONE;
    if (needs_h && !H) return pq__fail(ctx, PQ_ERR_INVALID, "layer: this recipe needs the Hessian H");
    const int64_t nel = rows * cols;
    for (int64_t i = 0; i < nel; i++)
        if (!isfinite(W[i]))
            return pq__fail(ctx, PQ_ERR_INVALID, "W: non-finite value at [%lld, %lld]", (long long)(i / cols),
                            (long long)(i % cols));
    if (H)
        for (int64_t i = 0; i < cols * cols; i++)
            if (!isfinite(H[i]))
                return pq__fail(ctx, PQ_ERR_NUMERIC, "hessian: non-finite value at [%lld, %lld]",
                                (long long)(i / cols), (long long)(i % cols));

    /* One sweep from W (GPTQ, SparseGPT, fused) gives the error from its own bookkeeping;
     * only then, or without an error, can Q be written straight into W. */
    const int single_sweep = fused || (gptq && !do_prune) || (sgpt && !do_quant);
    const int identity = single_sweep && p->error_mode == PQ_ERROR_AUTO;
    const int in_place =
        p->error_mode == PQ_ERROR_NONE ? (single_sweep || (do_prune != do_quant && !sgpt && !gptq)) : identity;

    layer L;
    memset(&L, 0, sizeof L);
    L.ctx = ctx;
    L.p = p;
    L.rows = rows;
    L.cols = cols;
    L.H = H;
    /* H's memory becomes the factorisation's when the caller gives it up, the recipe needs H
     * only for its one factorisation (a single sweep in natural order whose error comes from
     * its own bookkeeping) and H is large enough for its n^2 buffers to matter: factored in
     * float32 (as the reference implementation factors every H) in one n^2 buffer instead of
     * H + an n^2 float64 work array + the float32 factor. */
    if (h_scratch && identity && !p->act_order && cols > PQ_INPLACE_MIN_COLS) L.h_work = h_scratch;
    L.nt = pq__threads(ctx);
    L.res = &res;
    const int pattern = p->prune_n > 0 && p->prune_m > 0;

    float *Q = in_place ? W : pq__big_malloc(ctx, sizeof(float) * (size_t)nel, "compressed weights");
    uint8_t *keep = (do_prune || mask_out) ? pq__big_malloc(ctx, (size_t)nel, "pruning mask") : NULL;
    float *colscale = NULL;
    double *diag = NULL;
    rc = PQ_ERR_NOMEM;
    if (!Q || ((do_prune || mask_out) && !keep)) goto done;
    if (keep) memset(keep, 1, (size_t)nel);
    if (do_quant && codes_out && (rc = codes_alloc(&L, codes_out)) != PQ_OK) goto done;
    if (H)
        for (int64_t c = 0; c < cols; c++)
            res.dead_cols += H[c * cols + c] == 0.0f;
    if (res.dead_cols > 0)
        pq__log(ctx, PQ_LOG_INFO, "hessian: %lld of %lld inputs are never active (diag(H) = 0)%s",
                (long long)res.dead_cols, (long long)cols, (gptq || sgpt) ? ": their weights are set to 0" : "");

    /* act-order: columns by decreasing diag(H) (dead ones count as 1), ties by index */
    if (p->act_order && gptq) {
        L.perm = pq__malloc(ctx, sizeof(int64_t) * (size_t)cols, "act-order permutation");
        diag = pq__malloc(ctx, sizeof(double) * (size_t)cols, "act-order");
        if (!L.perm || !diag) {
            rc = PQ_ERR_NOMEM;
            goto done;
        }
        for (int64_t c = 0; c < cols; c++) {
            L.perm[c] = c;
            diag[c] = H[c * cols + c] == 0.0f ? 1.0 : (double)H[c * cols + c];
        }
        qsort_r(L.perm, (size_t)cols, sizeof(int64_t), cmp_diag_desc, diag);
    }

    double loss = 0.0, sqdiff = 0.0;
    const pq__sweep_mask adaptive = pattern ? PQ_SWEEP_MASK_NM : PQ_SWEEP_MASK_UNSTRUCT;

    /* 1. pruning (in fused mode only the one-shot masks are made up front) */
    if (p->prune == PQ_PRUNE_MAGNITUDE || p->prune == PQ_PRUNE_WANDA) {
        if (p->prune == PQ_PRUNE_WANDA) {
            if (!(colscale = pq__malloc(ctx, sizeof(float) * (size_t)cols, "wanda scale"))) {
                rc = PQ_ERR_NOMEM;
                goto done;
            }
            for (int64_t c = 0; c < cols; c++) {
                const float h = H[c * cols + c];
                colscale[c] = h > 0.0f ? sqrtf(h) : 0.0f;
            }
        }
        if ((rc = pq__prune_oneshot_mask(ctx, W, rows, cols, colscale, p->sparsity, p->prune_n, p->prune_m, keep,
                                         L.nt)) != PQ_OK)
            goto done;
        if (!fused)
            for (int64_t i = 0; i < nel; i++)
                Q[i] = keep[i] ? W[i] : 0.0f;
    } else if (sgpt && !fused) {
        const stage st = {"sparsegpt", 1, 0, adaptive, 0, 0};
        if ((rc = run_stage(&L, &st, W, Q, keep, NULL, &loss, &sqdiff)) != PQ_OK) goto done;
    }

    /* 2. quantization, from the pruned weights (in Q) or from W */
    if (do_quant) {
        const float *src = (do_prune && !fused) ? Q : W;
        stage st = {gptq ? "gptq" : NULL, gptq, p->act_order && gptq, PQ_SWEEP_MASK_NONE, 1, 0};
        if (fused) {
            st.name = "fused";
            st.mask = sgpt ? adaptive : PQ_SWEEP_MASK_FIXED;
            st.survivors = !p->reference;
        } else if (do_prune && p->joint == PQ_JOINT_B) {
            if (gptq) st.name = "frozen";
            st.mask = PQ_SWEEP_MASK_FIXED;
            st.survivors = 1;
        }
        if ((rc = run_stage(&L, &st, src, Q, keep, codes_out, &loss, &sqdiff)) != PQ_OK) goto done;
        if (do_prune && !fused && p->joint == PQ_JOINT_A) {
            /* mode a: GPTQ treats the zeros as weights and may move them */
            for (int64_t i = 0; i < nel; i++) {
                if (keep[i] || Q[i] == 0.0f) continue;
                res.moved_off_zero++;
                if (p->keep_mask) {
                    Q[i] = 0.0f;
                    if (codes_out) {
                        const int64_t r = i / cols, c = i % cols;
                        codes_out->codes[i] = codes_out->zeros[r * codes_out->n_groups + codes_out->g_idx[c]];
                    }
                }
            }
        }
    } else if (!do_prune) {
        memcpy(Q, W, sizeof(float) * (size_t)nel); /* nothing asked: Q = W */
    }
    res.loss = loss;
    res.seconds = now_s() - t0;

    /* 3. error on the original H */
    const double t1 = now_s();
    if (identity) {
        const pq__hfactor *f = &L.fac[L.have[1] ? 1 : 0];
        res.error = 2.0 * loss - f->damp * sqdiff;
        res.error_direct = 0;
    } else if (p->error_mode != PQ_ERROR_NONE) {
        /* D = W - Q in the sweep's work array when there is one (free by now) */
        float *D = (L.ws && L.ws_bytes >= sizeof(float) * (size_t)nel)
                       ? L.ws
                       : pq__big_malloc(ctx, sizeof(float) * (size_t)nel, "error difference");
        if (!D) {
            rc = PQ_ERR_NOMEM;
            goto done;
        }
#pragma omp parallel for num_threads(L.nt) schedule(static)
        for (int64_t i = 0; i < nel; i++)
            D[i] = W[i] - Q[i];
        rc = pq__quad_error(ctx, D, rows, cols, H, L.nt, &res.error);
        if (D != L.ws) free(D);
        if (rc != PQ_OK) goto done;
        res.error_direct = 1;
    }
    res.error_seconds = now_s() - t1;

    int64_t pruned = 0, zeros = 0;
#pragma omp parallel for num_threads(L.nt) reduction(+ : pruned, zeros) schedule(static)
    for (int64_t i = 0; i < nel; i++) {
        zeros += Q[i] == 0.0f;
        pruned += keep && !keep[i] && Q[i] == 0.0f;
    }
    res.sparsity = (double)pruned / (double)nel;
    res.zeros = (double)zeros / (double)nel;
    if (mask_out) memcpy(mask_out, keep, (size_t)nel);
    if (Q != W) memcpy(W, Q, sizeof(float) * (size_t)nel);
    if (res_out) *res_out = res;
    rc = PQ_OK;
done:
    if (rc != PQ_OK && codes_out) pq_qcodes_free(codes_out);
    pq__hfactor_free(&L.fac[0]);
    pq__hfactor_free(&L.fac[1]);
    free(L.ws);
    free(L.perm);
    free(diag);
    free(colscale);
    if (Q != W) free(Q);
    free(keep);
    return rc;
}
