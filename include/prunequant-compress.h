/* prunequant: per-layer compression engine (pruning, quantization, both) and .npy files.
 *
 * One linear layer y = W x at a time: W is [rows = out_features, cols = in_features],
 * row-major float32; H = 2 X X^T / N is its [cols, cols] input Hessian (only the lower
 * triangle feeds the factorisation; the error uses the whole matrix). The algorithms are
 * those of docs/ALGORITHMS.md §2-§6: GPTQ, SparseGPT, magnitude, Wanda, and three ways
 * of combining pruning with quantization.
 *
 * reference = 0 (the default) is this project's improved variant; reference = 1 reproduces
 * the public reference implementations (GPTQ/SparseGPT PyTorch code). The differences:
 *  1. Symmetric grid. Reference: scale = 2*absmax/(2^b-1), zero = 2^(b-1), so the positive
 *     extreme is clipped (about 0.933*absmax at 4 bits) and an all-positive group gets
 *     scale = max/(2^b-1) with half its range unusable. Default: zero = 2^(b-1) as well,
 *     the scale is the one of {reference scale, no-clipping scale * (1, 0.95, ..., 0.65)}
 *     with the smallest squared error on the weights the grid is fitted on, so the grid is
 *     never worse than the reference's on those weights. Asymmetric grids are min-max in
 *     both modes.
 *  2. Dynamic groups (GPTQ). Reference: a group that starts inside a lazy-batch block is
 *     fitted on weights that miss the updates of the block's earlier columns. Default:
 *     blocks are cut so that no group starts inside a block and ends after it, and every
 *     group is fitted on fully updated weights.
 *  3. Per-row grid (group_size -1). Reference: fitted on W before dead columns (diag(H) = 0)
 *     are zeroed. Default: after.
 *  4. Fused mode. Reference (SparseGPT): one per-row grid fitted on the dense, unpruned row;
 *     no groups, no act-order (rejected). Default: grids fitted on the surviving weights,
 *     groups, act-order and static groups allowed. Where the mask of a column is not decided
 *     yet when its grid is fitted (per-row and static grids, N:M cells later in the group),
 *     it is predicted with the same rule on the current weights.
 *  5. SparseGPT unstructured mask per block. Reference: masks every score <= the value at
 *     sorted position floor(n*s) (so floor(n*s)+1 weights, more on ties). Default: exactly
 *     floor(n*s) weights, ties broken by position.
 * In both modes, mode b and fused fit grids only on the weights the mask keeps; mode a on
 * all weights (pruned zeros included), as the paper's sequential approximation does.
 */
#ifndef PRUNEQUANT_COMPRESS_H
#define PRUNEQUANT_COMPRESS_H

#include "prunequant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* These enums only grow. */
typedef enum pq_prune_method {
    PQ_PRUNE_NONE = 0,
    PQ_PRUNE_MAGNITUDE = 1, /* smallest |W| per row (or per N:M cell) */
    PQ_PRUNE_WANDA = 2,     /* smallest |W_ij| * sqrt(H_jj) per row (or per cell); no update */
    PQ_PRUNE_SPARSEGPT = 3  /* OBS column sweep with error compensation */
} pq_prune_method;

typedef enum pq_quant_method {
    PQ_QUANT_NONE = 0,
    PQ_QUANT_RTN = 1, /* round to nearest on the grid, no error feedback */
    PQ_QUANT_GPTQ = 2 /* column sweep with error compensation */
} pq_quant_method;

/* How pruning and quantization combine when both are asked for (ALGORITHMS.md §6). */
typedef enum pq_joint_mode {
    PQ_JOINT_A = 0,    /* prune, then quantize the pruned weights treating zeros as weights */
    PQ_JOINT_B = 1,    /* prune, then quantize with the mask frozen (pruned weights held at 0) */
    PQ_JOINT_FUSED = 2 /* one sweep from the dense W: q = quant(mask * w), joint error compensated */
} pq_joint_mode;

typedef enum pq_error_mode {
    /* Exact on the original H. When the final Q comes from one sweep that starts at W
     * (GPTQ, SparseGPT, fused) the sweep's identity tr(D Hd D^T) = sum err^2 gives it for
     * free (D = W - Q, Hd = damped H; minus the damping term); otherwise (RTN, magnitude,
     * Wanda, modes a/b, keep_mask) it is computed directly (about rows*cols^2 flops). The two
     * agree to about 1e-4 relative (float rounding in the sweep). */
    PQ_ERROR_AUTO = 0,
    PQ_ERROR_DIRECT = 1, /* always computed directly */
    PQ_ERROR_NONE = 2    /* not computed (error = NAN) */
} pq_error_mode;

typedef struct pq_layer_params {
    pq_prune_method prune;
    double sparsity; /* unstructured fraction in [0, 1) (default 0.5); unused with a pattern */
    int prune_n;     /* N:M pattern: N of every M consecutive input weights are zero; */
    int prune_m;     /* 0 < N < M, M dividing cols. 0:0 (default) = unstructured */
    pq_quant_method quant;
    int bits;           /* 2..8 (default 4) */
    int64_t group_size; /* -1 (default) = one grid per row, else g dividing cols */
    int sym;            /* 0 (default) asymmetric min-max grid; 1 symmetric (see above) */
    int act_order;      /* GPTQ/fused sweeps in order of decreasing diag(H) (a SparseGPT prune
                           stage before GPTQ, and RTN, keep the natural order) */
    int static_groups;  /* with groups: all grids fitted up front on the original column groups */
    double percdamp;    /* damping percdamp * mean(diag H) (default 0.01); raised x10 on failure */
    int64_t blocksize;  /* lazy-batch block B (default 128); SparseGPT chooses its unstructured
                           mask per block. Blocks are cut where an N:M cell (and, by default, a
                           group) would start inside one and end after it. */
    pq_joint_mode joint;
    int keep_mask;  /* mode a: re-zero pruned weights that GPTQ moved off zero (default 1, so the
                       stored pattern and sparsity are the requested ones; the count moved is
                       reported in moved_off_zero). 0: the paper's sequential approximation
                       as is, whose N:M layers are then mostly not N:M any more */
    int reference;  /* 1: reproduce the reference implementations' quirks (see above) */
    int factor_f32; /* 1: factor H in float32 (faster, less exact); default 0 = float64 */
    pq_error_mode error_mode;
    pq_dtype gguf_type; /* a ggml block type (PQ_DTYPE_Q4_0 ... Q6_K): quantize onto its block grids
                           instead of the recipe's (bits, group, sym unused): the block parameters
                           are fitted per row first (importance diag(H)), then the sweep rounds
                           each weight onto its fixed grid; codes_out receives the encoded blocks.
                           PQ_DTYPE_F32 (default): the recipe's own grids */
} pq_layer_params;

pq_layer_params pq_layer_params_default(void);

/* Checks a recipe for a layer of `cols` input features (cols <= 0: skip the divisibility
 * checks). Returns PQ_ERR_INVALID with a one-line message on ctx. */
pq_status pq_layer_params_validate(pq_ctx *ctx, const pq_layer_params *p, int64_t cols);

/* Parses "2:4" into n = 2, m = 4 (syntax only; the validator checks 0 < N < M). */
pq_status pq_pattern_parse(pq_ctx *ctx, const char *s, int *n, int *m);

/* Recipe keys a user gave explicitly (compress/layer flags, a recipe file, a sweep grid), as a
 * bit set: a key that has no effect under the rest of the recipe is an error everywhere
 * (src/recipe/recipe.c holds the one rule). */
enum {
    PQ_KEY_PRUNE = 1u << 0,
    PQ_KEY_SPARSITY = 1u << 1,
    PQ_KEY_PATTERN = 1u << 2,
    PQ_KEY_QUANT = 1u << 3,
    PQ_KEY_BITS = 1u << 4,
    PQ_KEY_GROUP = 1u << 5,
    PQ_KEY_SYM = 1u << 6,
    PQ_KEY_ACT_ORDER = 1u << 7,
    PQ_KEY_STATIC_GROUPS = 1u << 8,
    PQ_KEY_JOINT = 1u << 9,
    PQ_KEY_KEEP_MASK = 1u << 10,
    PQ_KEY_PERCDAMP = 1u << 11,
    PQ_KEY_BLOCKSIZE = 1u << 12
};
/* "act_order" (flag 0: recipe-file spelling) or "--act-order" (flag 1); NULL for no single key. */
const char *pq_recipe_key_name(unsigned key, int flag);
/* The key bit of a recipe-file name ("act_order"), 0 if it is not a layer-recipe key. */
unsigned pq_recipe_key_parse(const char *name);
/* Defaults that follow from what was given: without an explicit quant, pruning alone means no
 * quantization, and a quantization key (bits, group, sym, act_order, static_groups) means
 * the default quantizer, GPTQ. */
void pq_recipe_apply_defaults(pq_layer_params *p, unsigned given);
/* The given keys that have no effect under p (0: every given key acts). */
unsigned pq_recipe_unused(const pq_layer_params *p, unsigned given);
/* pq_recipe_apply_defaults, then PQ_ERR_INVALID naming the first given key without effect and
 * what it needs ("--sparsity has no effect without pruning: add --prune ..."); keys are named
 * as flags when flags is 1, as recipe keys when 0. Range checks stay in pq_layer_params_validate. */
pq_status pq_recipe_check(pq_ctx *ctx, pq_layer_params *p, unsigned given, int flags);
/* Sets one layer-recipe key (a recipe-file name: "bits", "act_order", ...) from its text value,
 * as a flag's argument, a JSON recipe's value or a sweep grid entry gives it: method names,
 * "N:M" patterns, numbers within the one set of ranges (bits 2..8, group -1 or more, sparsity
 * [0, 1], percdamp [0, PQ_MAX_PERCDAMP], blocksize >= 1), booleans as true/false.
 * PQ_ERR_INVALID with a one-line message naming the key (as a flag when flags is 1). */
pq_status pq_recipe_set(pq_ctx *ctx, pq_layer_params *p, const char *key, const char *value, int flags);

/* Per-linear recipes: an override gives some recipe keys for the linears whose name
 * ("model.layers.3.mlp.down_proj") its POSIX extended regular expression matches; the keys it
 * does not give come from the base recipe. The first override that matches a linear wins; a
 * linear no override matches takes the base recipe. In a recipe file:
 *   "overrides": [{"match": "REGEX", "bits": 6}, {"match": "down_proj", "prune": "none"}, ...]
 * The key rule holds per override (a key it gives must act under its recipe); the defaults
 * that follow from a whole recipe's keys (prune alone means no quantization) do not: the base
 * recipe's values are inherited as they are. */
typedef struct pq_recipe_override {
    char *match;           /* the regular expression (malloc'ed) */
    pq_layer_params layer; /* the recipe of the linears it matches: the base with its keys */
    unsigned given;        /* PQ_KEY_* the override gives */
} pq_recipe_override;

typedef struct pq_recipe_overrides {
    pq_recipe_override *v; /* [n], malloc'ed */
    int64_t n;
} pq_recipe_overrides;

/* Parses the JSON array of a recipe file's "overrides" (text of len bytes) on top of the
 * resolved base recipe: every entry an object with a string "match" that compiles and recipe
 * keys (pq_recipe_set's names and ranges). PQ_ERR_INVALID naming the entry and key. */
pq_status pq_recipe_overrides_parse(pq_ctx *ctx, const char *json, size_t len, const pq_layer_params *base,
                                    pq_recipe_overrides *out);
/* The overrides as a JSON array (malloc'ed; NULL when out of memory): per entry "match" and
 * the keys it gives, as pq_recipe_overrides_parse reads them back. */
char *pq_recipe_overrides_json(const pq_recipe_overrides *o);
/* Adds one override (match copied); PQ_ERR_NOMEM on failure. */
pq_status pq_recipe_overrides_add(pq_ctx *ctx, pq_recipe_overrides *o, const char *match,
                                  const pq_layer_params *layer, unsigned given);
void pq_recipe_overrides_free(pq_recipe_overrides *o);

/* Names ("none", "magnitude", ...) and their parsers (0 on success). */
const char *pq_prune_method_name(pq_prune_method m);
const char *pq_quant_method_name(pq_quant_method m);
const char *pq_joint_mode_name(pq_joint_mode m); /* "a", "b", "fused" */
int pq_prune_method_parse(const char *s, pq_prune_method *out);
int pq_quant_method_parse(const char *s, pq_quant_method *out);
int pq_joint_mode_parse(const char *s, pq_joint_mode *out);

typedef struct pq_layer_result {
    double error;           /* tr((W-Q) H (W-Q)^T) on the original H (before dead-column fixes
                               and damping); NAN with PQ_ERROR_NONE */
    int error_direct;       /* 1: computed directly; 0: from the sweep identity */
    double loss;            /* the last sweep's own loss, sum (w-q)^2 / d^2 / 2 (GPTQ's
                               convention, d = U[j,j]); 0 without a sweep */
    double seconds;         /* compression time (wall clock), error computation excluded */
    double error_seconds;   /* time of the error computation */
    double sparsity;        /* fraction of weights pruned by the mask and exactly 0 in Q */
    double zeros;           /* fraction of exactly-zero weights in Q (rounding included) */
    double damp;            /* absolute damping added to diag(H) (0 without a factorisation) */
    double percdamp;        /* damping as a fraction of mean(diag H), after escalation */
    int chol_retries;       /* times the damping was raised x10 */
    int64_t dead_cols;      /* columns with diag(H) == 0 (their weights are set to 0 by sweeps) */
    int64_t moved_off_zero; /* mode a: pruned weights that GPTQ moved off zero */
    int64_t pruned_nonzero; /* ggml types with a min (no exact 0 on the grid): pruned weights stored non-zero */
    int64_t blocksize;      /* lazy-batch block used (cut to groups/cells where needed) */
    double factor_seconds;  /* of seconds: the factorisations of H (the rest: sweeps, masks, set-up) */
    double factor_flop;     /* n^3 / 3 per Cholesky factorisation of order n */
    double sweep_flop;      /* rows * cols * (cols - 1) per column sweep with error feedback (its updates) */
} pq_layer_result;

/* Integer codes of a quantized layer: Q[r, c] = ((float)code - (float)zero) * scale with the
 * grid of group g_idx[c]; pruned weights have code == zero. */
typedef struct pq_qcodes {
    int64_t rows, cols;
    int bits;
    int64_t group_size; /* columns per group (cols when one grid per row) */
    int64_t n_groups;
    uint8_t *codes;       /* [rows, cols], original column order */
    float *scales;        /* [rows, n_groups] */
    uint8_t *zeros;       /* [rows, n_groups] */
    int32_t *g_idx;       /* [cols] group of each original column: c / group_size, except with
                             act-order and dynamic groups (groups of consecutive sweep columns) */
    pq_dtype gguf_type;   /* with pq_layer_params.gguf_type: the ggml type of gguf_blocks */
    uint8_t *gguf_blocks; /* [rows, row bytes of the type] the rows as ggml stores them */
    size_t gguf_bytes;
} pq_qcodes;

/* Frees the arrays (not the struct) and zeroes it; NULL is a no-op. */
void pq_qcodes_free(pq_qcodes *c);

/* Compresses one layer in place.
 *   W        [rows, cols]  in: dense weights; out: compressed weights (dequantized). Left
 *                          unchanged on failure.
 *   H        [cols, cols]  Hessian (may be NULL for RTN / magnitude without an error:
 *                          then error_mode must be PQ_ERROR_NONE).
 *   mask_out [rows, cols]  optional: 1 = kept by the pruning mask, 0 = pruned.
 *   codes_out              optional (quantization only): filled, owned by the caller
 *                          (pq_qcodes_free). Zeroed when nothing is quantized.
 *   res                    optional.
 * Threads: pq_ctx_threads(ctx) (each owns a slice of rows; BLAS runs single-threaded inside
 * the sweep). Deterministic for a given thread count. Cholesky failures raise the damping
 * x10 (logged at PQ_LOG_WARN) up to 100 * mean(diag H), then return PQ_ERR_NUMERIC.
 * Progress stage names: "gptq", "sparsegpt", "fused", "frozen" (one call per block).
 * Memory: with a sweep, about 4 * cols^2 + max(8 * cols^2, 8 * rows * cols) bytes
 * (4 * cols^2 less with factor_f32) plus 4 * rows * cols for a separate Q when the error is
 * computed directly, and rows * cols for a mask. Modes a and b, and act-order with a SparseGPT
 * prune stage, run two sweeps on the same memory. */
pq_status pq_layer_compress(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                            const float *H, uint8_t *mask_out, pq_qcodes *codes_out, pq_layer_result *res);

/* ---------------------------------------------------------------- .npy files */

/* Reads a NumPy .npy file (format v1, v2 or v3) holding a C-order 1-D or 2-D array of
 * '<f4' (or '<f8', converted). *data is malloc'ed (free with free()); shape[1] = 1 and
 * *ndim = 1 for 1-D arrays. Errors name the file and the offending header field. */
pq_status pq_npy_read(pq_ctx *ctx, const char *path, float **data, int64_t shape[2], int *ndim);

/* Writes a 1-D (ndim 1, shape[0]) or 2-D float32 array as .npy, atomically. */
pq_status pq_npy_write(pq_ctx *ctx, const char *path, const float *data, const int64_t *shape, int ndim);

#ifdef __cplusplus
}
#endif
#endif /* PRUNEQUANT_COMPRESS_H */
