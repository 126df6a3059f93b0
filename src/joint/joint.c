/* pq_layer_compress: the three joint modes on top of the pruning and quantization methods
 * (ALGORITHMS.md §6). It validates the recipe, prepares H once per column order and chains
 * the steps: a one-shot mask (magnitude, Wanda) or a SparseGPT pass, then the quantizer's
 * pass: on the pruned weights (mode a: GPTQ may move pruned weights, re-masked by default;
 * mode b: the mask frozen), or both in one sweep (fused); then the error on the original H. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "joint/joint.h"
#include "linalg/linalg.h"
#include "obs/pass.h"
#include "prune/prune.h"
#include "quant/codes.h"
#include "quant/gguf_grid.h"
#include "quant/gptq.h"

/* One layer's compression: the recipe read once, the work arrays, the result. */
typedef struct job {
    pq_ctx *ctx;
    const pq_layer_params *p;
    const float *W, *H; /* [rows, cols], [cols, cols] or NULL */
    int64_t rows, cols, nel;
    int do_prune, do_quant, fused, gptq, sgpt;
    int identity; /* the error comes from the sweep's own bookkeeping */
    float *Q;     /* the result ([rows, cols]; W itself when written in place) */
    uint8_t *keep;
    pq__obs_layer L;
    pq_layer_result res;
    double loss, sqdiff;
    double *row_err;           /* optional [rows] out: each row's error (the allocator's samples) */
    double *row_loss, *row_sq; /* with row_err: the sweep's per-row loss and squared difference */
} job;

/* GPTQ / RTN onto ggml grids: natural column order, whole blocks per row. */
static pq_status check_ggml(pq_ctx *ctx, const pq_layer_params *p, int64_t cols) {
    const pq__ggml_info *ti = pq__ggml_info_of(p->gguf_type);
    if (!ti) return pq__fail(ctx, PQ_ERR_INVALID, "%s is not a ggml block type", pq_dtype_name(p->gguf_type));
    if (p->quant == PQ_QUANT_NONE)
        return pq__fail(ctx, PQ_ERR_INVALID, "a ggml type (%s) needs a quantizer (gptq or rtn)", ti->name);
    if (p->act_order)
        return pq__fail(ctx, PQ_ERR_INVALID,
                        "%s: act-order is not supported on ggml grids (blocks are consecutive inputs)", ti->name);
    if (cols % ti->block)
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: rows of %lld weights are not whole blocks of %d", ti->name,
                        (long long)cols, ti->block);
    return PQ_OK;
}

/* check_h 0: H was checked by whoever factored it (a lent factor): its cols^2 scan would cost as
 * much as a small sweep, once per recipe tried on it. */
static pq_status check_inputs(pq_ctx *ctx, const pq_layer_params *p, const float *W, int64_t rows, int64_t cols,
                              const float *H, int check_h) {
    if (!p || !W) return pq__fail(ctx, PQ_ERR_INVALID, "layer: missing parameters or weights");
    if (rows <= 0 || cols <= 0 || rows > INT_MAX || cols > 46340 || rows > INT64_MAX / cols)
        return pq__fail(ctx, PQ_ERR_INVALID, "layer: unsupported shape [%lld, %lld]", (long long)rows,
                        (long long)cols);
    pq_status rc = pq_layer_params_validate(ctx, p, cols);
    if (rc != PQ_OK) return rc;
    if (p->gguf_type != PQ_DTYPE_F32 && (rc = check_ggml(ctx, p, cols)) != PQ_OK) return rc;
    const int needs_h = p->prune == PQ_PRUNE_WANDA || p->prune == PQ_PRUNE_SPARSEGPT || p->quant == PQ_QUANT_GPTQ ||
                        p->error_mode != PQ_ERROR_NONE;
    if (needs_h && !H) return pq__fail(ctx, PQ_ERR_INVALID, "layer: this recipe needs the Hessian H");
    const int64_t nel = rows * cols;
    for (int64_t i = 0; i < nel; i++)
        if (!isfinite(W[i]))
            return pq__fail(ctx, PQ_ERR_INVALID, "W: non-finite value at [%lld, %lld]", (long long)(i / cols),
                            (long long)(i % cols));
    if (H && check_h)
        for (int64_t i = 0; i < cols * cols; i++)
            if (!isfinite(H[i]))
                return pq__fail(ctx, PQ_ERR_NUMERIC, "hessian: non-finite value at [%lld, %lld]",
                                (long long)(i / cols), (long long)(i % cols));
    return PQ_OK;
}

/* Reads the recipe into j and decides where Q lives: one sweep from W (GPTQ, SparseGPT,
 * fused) gives the error from its own bookkeeping; only then, or without an error, can Q be
 * written straight into W. */
static pq_status job_init(job *j, pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                          const float *H, float *h_scratch, const pq__hfactor *fac, pq__obs_share *share,
                          int want_mask) {
    memset(j, 0, sizeof *j);
    j->ctx = ctx;
    j->p = p;
    j->W = W;
    j->H = H;
    j->rows = rows;
    j->cols = cols;
    j->nel = rows * cols;
    j->res.error = NAN;
    j->do_prune = p->prune != PQ_PRUNE_NONE;
    j->do_quant = p->quant != PQ_QUANT_NONE;
    j->fused = j->do_prune && j->do_quant && p->joint == PQ_JOINT_FUSED;
    j->gptq = p->quant == PQ_QUANT_GPTQ;
    j->sgpt = p->prune == PQ_PRUNE_SPARSEGPT;
    const int single_sweep = j->fused || (j->gptq && !j->do_prune) || (j->sgpt && !j->do_quant);
    j->identity = single_sweep && p->error_mode == PQ_ERROR_AUTO;
    const int in_place = p->error_mode == PQ_ERROR_NONE
                             ? (single_sweep || (j->do_prune != j->do_quant && !j->sgpt && !j->gptq))
                             : j->identity;
    pq__obs_layer *L = &j->L;
    L->ctx = ctx;
    L->p = p;
    L->rows = rows;
    L->cols = cols;
    L->H = H;
    /* H's memory becomes the factorisation's when the caller gives it up, the recipe needs H
     * only for its one factorisation (a single sweep in natural order whose error comes from
     * its own bookkeeping) and H is large enough for its n^2 buffers to matter: factored in
     * float32 (as the reference implementation factors every H) in one n^2 buffer instead of
     * H + an n^2 float64 work array + the float32 factor. */
    if (h_scratch && j->identity && !p->act_order && cols > PQ_INPLACE_MIN_COLS) L->h_work = h_scratch;
    L->nt = pq__threads(ctx);
    L->res = &j->res;
    if (fac) { /* the caller's factor of H (natural order), shared with other recipes on the same H */
        L->fac[0] = *fac;
        L->have[0] = L->fac_lent = 1;
        j->res.damp = fac->damp;
        j->res.percdamp = fac->percdamp;
    }
    L->share = share;
    j->Q = in_place ? W : pq__big_malloc(ctx, sizeof(float) * (size_t)j->nel, "compressed weights");
    j->keep = (j->do_prune || want_mask) ? pq__big_malloc(ctx, (size_t)j->nel, "pruning mask") : NULL;
    if (!j->Q || ((j->do_prune || want_mask) && !j->keep)) return PQ_ERR_NOMEM;
    if (j->keep) memset(j->keep, 1, (size_t)j->nel);
    return PQ_OK;
}

/* Inputs never active (diag(H) = 0) and, for GPTQ with act-order, the column order. */
static pq_status prepare_h(job *j) {
    if (!j->H) return PQ_OK;
    for (int64_t c = 0; c < j->cols; c++)
        j->res.dead_cols += j->H[c * j->cols + c] == 0.0f;
    if (j->res.dead_cols > 0)
        pq__log(j->ctx, PQ_LOG_INFO, "hessian: %lld of %lld inputs are never active (diag(H) = 0)%s",
                (long long)j->res.dead_cols, (long long)j->cols,
                (j->gptq || j->sgpt) ? ": their weights are set to 0" : "");
    if (j->p->act_order && j->gptq) return pq__gptq_act_order(j->ctx, j->H, j->cols, &j->L.perm);
    return PQ_OK;
}

/* 1. pruning: a one-shot mask, or a SparseGPT pass (in fused mode only the one-shot masks
 * are made up front: SparseGPT's is chosen inside the fused sweep). */
static pq_status prune_step(job *j) {
    const pq_layer_params *p = j->p;
    pq_status rc = PQ_OK;
    if (p->prune == PQ_PRUNE_MAGNITUDE || p->prune == PQ_PRUNE_WANDA) {
        rc = p->prune == PQ_PRUNE_WANDA ? pq__wanda_mask(j->ctx, p, j->W, j->rows, j->cols, j->H, j->keep, j->L.nt)
                                        : pq__magnitude_mask(j->ctx, p, j->W, j->rows, j->cols, j->keep, j->L.nt);
        if (rc == PQ_OK && !j->fused)
            for (int64_t i = 0; i < j->nel; i++)
                j->Q[i] = j->keep[i] ? j->W[i] : 0.0f;
    } else if (j->sgpt && !j->fused) {
        const pq__obs_pass pass = pq__sparsegpt_pass(p);
        rc = pq__obs_pass_run(&j->L, &pass, j->W, j->Q, j->keep, NULL, &j->loss, &j->sqdiff);
    }
    return rc;
}

/* The quantizer's pass as the joint mode shapes it. */
static pq__obs_pass quant_pass(const job *j) {
    const pq_layer_params *p = j->p;
    pq__obs_pass pass = j->gptq ? pq__gptq_pass(p) : pq__rtn_pass();
    if (j->fused) { /* mode fused: one sweep prunes (mask chosen in it, or given) and quantizes */
        pass.name = "fused";
        pass.mask = j->sgpt ? pq__sparsegpt_mask(p) : PQ_OBS_MASK_FIXED;
        pass.survivors = !p->reference;
    } else if (j->do_prune && p->joint == PQ_JOINT_B) { /* mode b: GPTQ with the mask frozen */
        if (j->gptq) pass.name = "frozen";
        pass.mask = PQ_OBS_MASK_FIXED;
        pass.survivors = 1;
    }
    return pass;
}

/* Mode a: GPTQ treats the pruned zeros as weights and may move them; they are counted, and
 * set back to zero (code = the group's zero) unless the recipe keeps them (--no-keep-mask). */
static void remask_mode_a(job *j, pq_qcodes *codes) {
    for (int64_t i = 0; i < j->nel; i++) {
        if (j->keep[i] || j->Q[i] == 0.0f) continue;
        j->res.moved_off_zero++;
        if (j->p->keep_mask) {
            j->Q[i] = 0.0f;
            if (codes) {
                const int64_t r = i / j->cols, c = i % j->cols;
                codes->codes[i] = codes->zeros[r * codes->n_groups + codes->g_idx[c]];
            }
        }
    }
}

/* Mode a on ggml grids: a pruned weight moved off zero takes its grid's code nearest to 0
 * (exactly 0 on the symmetric types). */
static void remask_ggml(job *j, const pq__ggml_layer *g, uint8_t *codes) {
    for (int64_t i = 0; i < j->nel; i++) {
        if (j->keep[i] || j->Q[i] == 0.0f) continue;
        j->res.moved_off_zero++;
        if (j->p->keep_mask) pq__ggml_layer_zero(g, i / j->cols, i % j->cols, &codes[i], &j->Q[i]);
    }
}

/* 2'. quantization onto ggml block grids: the block parameters fitted per row first (on the
 * kept weights where the mask is known), then the quantizer's pass rounds onto them; the rows
 * are encoded and Q becomes what the file decodes to. */
static pq_status quant_step_ggml(job *j, pq_qcodes *codes) {
    const pq_layer_params *p = j->p;
    const float *src = (j->do_prune && !j->fused) ? j->Q : j->W;
    const int mask_known = j->do_prune && !(j->fused && j->sgpt);
    pq__ggml_layer g;
    pq_status rc = pq__ggml_layer_fit(j->ctx, p->gguf_type, src, j->rows, j->cols, j->H, mask_known ? j->keep : NULL,
                                      j->L.nt, &g);
    if (rc != PQ_OK) return rc;
    pq_qcodes local;
    memset(&local, 0, sizeof local);
    pq_qcodes *c = codes ? codes : &local;
    if (!c->codes) rc = pq__qcodes_alloc(j->ctx, j->rows, j->cols, 8, -1, c);
    pq__ggml_layer_fixed(&g, &j->L.fix);
    pq__obs_pass pass = quant_pass(j);
    pass.fixed = 1;
    if (rc == PQ_OK) rc = pq__obs_pass_run(&j->L, &pass, src, j->Q, j->keep, c, &j->loss, &j->sqdiff);
    if (rc == PQ_OK && j->do_prune && !j->fused && p->joint == PQ_JOINT_A) remask_ggml(j, &g, c->codes);
    if (rc == PQ_OK) rc = pq__ggml_layer_encode(j->ctx, &g, c->codes, j->Q, c);
    if (rc == PQ_OK && j->keep) /* types with a min have no exact 0: pruned weights that are not */
        for (int64_t i = 0; i < j->nel; i++)
            j->res.pruned_nonzero += !j->keep[i] && j->Q[i] != 0.0f;
    pq_qcodes_free(&local);
    pq__ggml_layer_free(&g);
    memset(&j->L.fix, 0, sizeof j->L.fix);
    return rc;
}

/* 2. quantization, from the pruned weights (in Q) or from W. */
static pq_status quant_step(job *j, pq_qcodes *codes) {
    if (j->do_quant && j->p->gguf_type != PQ_DTYPE_F32) return quant_step_ggml(j, codes);
    if (!j->do_quant) {
        if (!j->do_prune) memcpy(j->Q, j->W, sizeof(float) * (size_t)j->nel); /* nothing asked: Q = W */
        return PQ_OK;
    }
    const float *src = (j->do_prune && !j->fused) ? j->Q : j->W;
    const pq__obs_pass pass = quant_pass(j);
    pq_status rc = pq__obs_pass_run(&j->L, &pass, src, j->Q, j->keep, codes, &j->loss, &j->sqdiff);
    if (rc == PQ_OK && j->do_prune && !j->fused && j->p->joint == PQ_JOINT_A) remask_mode_a(j, codes);
    return rc;
}

/* 3. the error tr(dW H dW^T) on the original H: from the sweep's loss when one sweep made Q
 * (2 loss - damp ||W - Q||^2), else directly. */
static pq_status layer_error(job *j) {
    if (j->identity) {
        const pq__hfactor *f = &j->L.fac[j->L.have[1] ? 1 : 0];
        j->res.error = 2.0 * j->loss - f->damp * j->sqdiff;
        j->res.error_direct = 0;
        for (int64_t r = 0; j->row_err && r < j->rows; r++) /* the identity holds row by row */
            j->row_err[r] = 2.0 * j->row_loss[r] - f->damp * j->row_sq[r];
        return PQ_OK;
    }
    if (j->p->error_mode == PQ_ERROR_NONE && !j->row_err) return PQ_OK;
    /* D = W - Q (and the per-row product's work) in the sweep's work array when there is one
     * (free by now) */
    pq__obs_layer *L = &j->L;
    const size_t nb = sizeof(float) * (size_t)j->nel, need = j->row_err ? 2 * nb : nb;
    float *D = (L->ws && L->ws_bytes >= need) ? L->ws : pq__big_malloc(j->ctx, need, "error difference");
    if (!D) return PQ_ERR_NOMEM;
#pragma omp parallel for num_threads(L->nt) schedule(static)
    for (int64_t i = 0; i < j->nel; i++)
        D[i] = j->W[i] - j->Q[i];
    pq_status rc = PQ_OK;
    if (j->row_err) {
        pq__quad_error_rows(D, j->rows, j->cols, j->H, L->nt, D + j->nel, j->row_err);
        j->res.error = 0;
        for (int64_t r = 0; r < j->rows; r++)
            j->res.error += j->row_err[r];
    } else {
        rc = pq__quad_error(j->ctx, D, j->rows, j->cols, j->H, L->nt, &j->res.error);
    }
    if (D != L->ws) free(D);
    j->res.error_direct = 1;
    return rc;
}

static void count_zeros(job *j) {
    int64_t pruned = 0, zeros = 0;
    const float *Q = j->Q;
    const uint8_t *keep = j->keep;
#pragma omp parallel for num_threads(j->L.nt) reduction(+ : pruned, zeros) schedule(static)
    for (int64_t i = 0; i < j->nel; i++) {
        zeros += Q[i] == 0.0f;
        pruned += keep && !keep[i] && Q[i] == 0.0f;
    }
    j->res.sparsity = (double)pruned / (double)j->nel;
    j->res.zeros = (double)zeros / (double)j->nel;
}

/* The per-row outputs of a sweep for row errors (the identity's parts), when asked for. */
static pq_status row_buffers(job *j, double *row_err) {
    if (!row_err) return PQ_OK;
    j->row_err = row_err;
    j->row_loss = pq__calloc(j->ctx, (size_t)j->rows, 2 * sizeof(double), "per-row losses");
    if (!j->row_loss) return PQ_ERR_NOMEM;
    j->row_sq = j->row_loss + j->rows;
    j->L.row_loss = j->row_loss;
    j->L.row_sq = j->row_sq;
    return PQ_OK;
}

static pq_status layer_compress(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                                const float *H, float *h_scratch, const pq__hfactor *fac, pq__obs_share *share,
                                uint8_t *mask_out, pq_qcodes *codes_out, pq_layer_result *res_out, double *row_err) {
    const double t0 = pq__now();
    if (codes_out) memset(codes_out, 0, sizeof *codes_out);
    pq_status rc = check_inputs(ctx, p, W, rows, cols, H, fac == NULL);
    if (rc != PQ_OK) return rc;
    if (row_err && !H) return pq__fail(ctx, PQ_ERR_INVALID, "layer: per-row errors need the Hessian H");
    job j;
    if ((rc = job_init(&j, ctx, p, W, rows, cols, H, h_scratch, fac, share, mask_out != NULL)) != PQ_OK) goto done;
    if ((rc = row_buffers(&j, row_err)) != PQ_OK) goto done;
    if (j.do_quant && codes_out && (rc = pq__qcodes_alloc(ctx, rows, cols, p->bits, p->group_size, codes_out)))
        goto done;
    if ((rc = prepare_h(&j)) || (rc = prune_step(&j)) || (rc = quant_step(&j, codes_out))) goto done;
    j.res.loss = j.loss;
    j.res.seconds = pq__now() - t0;
    const double t1 = pq__now();
    if ((rc = layer_error(&j)) != PQ_OK) goto done;
    j.res.error_seconds = pq__now() - t1;
    count_zeros(&j);
    if (mask_out) memcpy(mask_out, j.keep, (size_t)j.nel);
    if (j.Q != W) memcpy(W, j.Q, sizeof(float) * (size_t)j.nel);
    if (res_out) *res_out = j.res;
done:
    if (rc != PQ_OK && codes_out) pq_qcodes_free(codes_out);
    free(j.row_loss);
    pq__obs_layer_free(&j.L);
    if (j.Q != W) free(j.Q);
    free(j.keep);
    return rc;
}

pq_status pq_layer_compress(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                            const float *H, uint8_t *mask_out, pq_qcodes *codes_out, pq_layer_result *res_out) {
    return layer_compress(ctx, p, W, rows, cols, H, NULL, NULL, NULL, mask_out, codes_out, res_out, NULL);
}

pq_status pq__layer_compress_h(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols, float *H,
                               int scratch_h, pq__obs_share *share, uint8_t *mask_out, pq_qcodes *codes_out,
                               pq_layer_result *res_out) {
    return layer_compress(ctx, p, W, rows, cols, H, scratch_h ? H : NULL, NULL, share, mask_out, codes_out, res_out,
                          NULL);
}

pq_status pq__layer_compress_factored(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                                      const float *H, const pq__hfactor *fac, pq_layer_result *res_out,
                                      double *row_err) {
    if (!fac || fac->n != cols)
        return pq__fail(ctx, PQ_ERR_INTERNAL, "layer: a lent factor of another size (%lld, not %lld)",
                        (long long)(fac ? fac->n : 0), (long long)cols);
    return layer_compress(ctx, p, W, rows, cols, H, NULL, fac, NULL, NULL, NULL, res_out, row_err);
}
