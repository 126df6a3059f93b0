/* One layer's OBS passes: the workspace of a layer (its Hessian factor in each column order,
 * the sweep's work arrays) and the runner of one configured pass of the column sweep
 * (obs.h). GPTQ, RTN (quant/), SparseGPT (prune/) and the joint modes (joint/) describe
 * their passes with pq__obs_pass; this file runs them. */
#ifndef PQ_OBS_PASS_H
#define PQ_OBS_PASS_H

#include "prunequant-compress.h"
#include "linalg/linalg.h"
#include "obs/obs.h"

/* What one pass of the sweep does. */
typedef struct pq__obs_pass {
    const char *name;  /* progress stage; NULL: no progress (RTN) */
    int feedback;      /* error compensation through H's inverse factor */
    int permuted;      /* act-order column order */
    pq__obs_mask mask; /* FIXED: keep is input; UNSTRUCT/NM: keep is output */
    int quant;         /* round onto the recipe's grids */
    int survivors;     /* grids fitted on kept weights only */
    int fixed;         /* the layer's fixed grids (pq__obs_layer.fix) instead of the recipe's */
} pq__obs_pass;

/* Grids given by the caller (ggml block grids): per group of `group` consecutive columns and
 * row, value = scale * (code - zero), or scale * code + off when offs is set. */
typedef struct pq__obs_fixed {
    int64_t group;
    int bits;
    const float *scales;  /* [cols / group, rows] */
    const uint8_t *zeros; /* [cols / group, rows] (symmetric grids) */
    const float *offs;    /* [cols / group, rows] or NULL */
} pq__obs_fixed;

/* The factors of one H shared by the layers that read it (the linears of one input): the
 * first pass that needs a factor computes it and leaves it here, the others borrow it, so the
 * n^3 / 3 is paid once per input rather than once per linear. Same H, same damping and
 * precision: the same factor bit for bit. Owned by the caller, zeroed before use; free with
 * pq__obs_share_free. */
typedef struct pq__obs_share {
    pq__hfactor fac[2]; /* [0] natural order, [1] act-order */
    int have[2];
    int f32[2];         /* precision each was factored in */
    double percdamp[2]; /* the damping asked for */
    /* the work array of the last layer done on this H (ws_bytes), taken by the next one that
       fits in it: memory already touched (gate -> up, q -> k -> v) */
    float *ws;
    size_t ws_bytes;
} pq__obs_share;
void pq__obs_share_free(pq__obs_share *s);

typedef struct pq__obs_layer {
    pq_ctx *ctx;
    const pq_layer_params *p;
    int64_t rows, cols;
    const float *H; /* [cols, cols] */
    float *h_work;  /* H itself when the caller lets it be destroyed and the recipe allows it */
    int nt;
    int64_t *perm;      /* [cols] act-order, NULL without */
    pq__hfactor fac[2]; /* [0] natural order, [1] act-order */
    int have[2];
    int fac_lent;         /* fac[0] is the caller's (shared by several recipes on one H): not freed, and the
                             work array needs no room for a factorisation */
    int borrowed[2];      /* fac[k] belongs to share */
    pq__obs_share *share; /* optional: factors shared with the other layers of this H */
    float *ws;            /* sweep weights wt and w0t, also the factorisation's scratch */
    size_t ws_bytes;
    pq_layer_result *res;
    pq__obs_fixed fix; /* for passes with fixed = 1 */
    double *row_loss;  /* optional [rows]: each row's loss of the last pass with feedback */
    double *row_sq;    /* with row_loss [rows]: each row's ||Wstart (dead columns zeroed) - Q||^2 */
} pq__obs_layer;

/* The shared work array (see pass.c); NULL with a message on ctx when out of memory. */
float *pq__obs_layer_ws(pq__obs_layer *L);
/* H's factor in natural (permuted = 0) or act-order (1) column order, computed once. */
pq_status pq__obs_layer_factor(pq__obs_layer *L, int permuted, const pq__hfactor **out);
void pq__obs_layer_free(pq__obs_layer *L);

/* Runs one pass from Wstart [rows, cols] into Wout (may alias Wstart); Wout is written only
 * on success. keep [rows, cols] (row-major, original order) is read or written per
 * pass->mask. codes (allocated, may be NULL) receives the codes. Returns the sweep's loss and
 * ||Wstart (dead columns zeroed) - Q||^2 for the error identity. */
pq_status pq__obs_pass_run(pq__obs_layer *L, const pq__obs_pass *pass, const float *Wstart, float *Wout,
                           uint8_t *keep, pq_qcodes *codes, double *loss, double *sqdiff);

#endif
