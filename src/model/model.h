/* Internal model: config + weights as they are stored (kernels/qmat.h: float32, float16 and
 * bfloat16 rows and packed b-bit codes point into the mapped files; other dtypes are converted
 * to float32 once) + tokenizer. */
#ifndef PQ_MODEL_H
#define PQ_MODEL_H

#include <string.h>

#include "io/source.h"
#include "kernels/qmat.h"

/* y = x W^T (+ b): a linear layer with W [rows = out, cols = in]. */
typedef struct pq__linear {
    int64_t rows, cols;
    pq__qmat w;     /* W [rows, cols] as stored; w.data and w.codes NULL while deferred */
    const float *b; /* [rows] or NULL */
} pq__linear;

/* A float32 W [rows, cols] borrowed from the caller. */
static inline pq__qmat pq__qmat_f32(int64_t rows, int64_t cols, const float *w) {
    pq__qmat q;
    memset(&q, 0, sizeof q);
    q.kind = PQ_QMAT_F32, q.rows = rows, q.cols = cols, q.data = w;
    return q;
}
/* Y [n, rows] = X [n, cols] W^T + b on the context's threads (PQ_ERR_NOMEM without work memory). */
pq_status pq__linear_apply(pq_ctx *ctx, const pq__linear *lin, const float *x, float *y, int64_t n);
/* ys[j] = lins[j](x) for k <= 4 linears reading the same x (q, k, v; gate, up): one product
 * while decoding (pq__qmat_matmul_many), the same results as pq__linear_apply on each. */
pq_status pq__linears_apply(pq_ctx *ctx, int k, const pq__linear *const *lins, const float *x, float *const *ys,
                            int64_t n);

typedef struct pq__block {
    const float *attn_norm; /* [dim] */
    pq__linear q, k, v;     /* [heads*hd, dim], [kv*hd, dim], [kv*hd, dim] */
    pq__linear o;           /* [dim, heads*hd] */
    const float *ffn_norm;  /* [dim] */
    pq__linear gate, up;    /* [hidden, dim] */
    pq__linear down;        /* [dim, hidden] */
} pq__block;

struct pq_model {
    pq__source src; /* owns the mapped files and the raw tensors */
    pq__config cfg;
    pq__qmat embed;        /* [vocab, dim] as stored (F32 / F16 / BF16; other dtypes converted) */
    pq__block *blocks;     /* [n_layers] */
    const float *out_norm; /* [dim] */
    pq__linear lm_head;    /* [vocab, dim]; w is embed when tied */
    float *inv_freq;       /* [head_dim/2] RoPE inverse frequencies (scaling applied) */
    void **owned;          /* converted weight buffers */
    int64_t n_owned, cap_owned;
    pq_tokenizer *tok; /* owned, may be NULL */
    int64_t n_params;
    size_t weight_bytes;
    char dtypes[128];
    int64_t n_ggml_blocks, n_packed; /* tensors stored in ggml block types, linears packed */
    int64_t n_native;                /* linears multiplied from the file's own bytes (not converted) */
    int deferred;                    /* loaded with defer_weights: embed, lm_head.w and the linears' w hold
                                        no data; only the compression pipeline, which materialises one block
                                        at a time (pq__model_linear_f32), accepts such a model */
};

/* Float32 copy (malloc'ed) of linear `base` (e.g. "model.layers.3.mlp.up_proj") whatever its
 * storage (float types, Q8_0/Q4_0, packed-v1); its mapped pages are released afterwards. */
pq_status pq__model_linear_f32(pq_ctx *ctx, const pq_model *m, const char *base, int64_t rows, int64_t cols,
                               float **out);
/* The same into reuse (rows * cols floats, taken over: *out, or freed on failure) when it is not
 * NULL and the linear is stored as plain floats or ggml blocks: memory already touched, which a
 * fresh allocation's first use (the kernel zeroing its pages) is not. */
pq_status pq__model_linear_f32_into(pq_ctx *ctx, const pq_model *m, const char *base, int64_t rows, int64_t cols,
                                    float *reuse, float **out);
/* Rows [r0, r0 + n) of a plain 2-D weight tensor (embedding, lm_head) as float32 into dst
 * [n, cols]; the mapped pages read are released afterwards. */
pq_status pq__model_rows_f32(pq_ctx *ctx, const pq_model *m, const char *name, int64_t r0, int64_t n, float *dst);
/* Rows ids[0..n) of such a tensor into dst [n, cols], on the threads; the mapped pages are
 * released once at the end (not row by row: one madvise per row costs more than the rows). */
pq_status pq__model_gather_f32(pq_ctx *ctx, const pq_model *m, const char *name, const int32_t *ids, int64_t n,
                               float *dst);
/* PQ_ERR_INVALID with a message when m was loaded with deferred weights (what = the caller). */
pq_status pq__model_require_weights(pq_ctx *ctx, const pq_model *m, const char *what);

/* ---- the linears of a block: one descriptor table (linears.c) */

#define PQ_BLOCK_LINEARS 7 /* q, k, v, o, gate, up, down */
#define PQ_BLOCK_INPUTS 4  /* the distinct inputs (capture groups) of those linears */

typedef enum pq__dim_kind { PQ_DIM_MODEL, PQ_DIM_Q, PQ_DIM_KV, PQ_DIM_FFN } pq__dim_kind;

typedef struct pq__linear_desc {
    const char *name;        /* HF name below "model.layers.<l>.", e.g. "mlp.down_proj" */
    int input;               /* capture group (pq__capture_fn's which) and true-sequential stage */
    pq__dim_kind rows, cols; /* W [rows = out, cols = in] */
    int rope;                /* rows are RoPE heads: 1 query heads, 2 key/value heads, 0 none */
    int bias;                /* has a bias when the model has qkv biases */
    size_t offset;           /* offsetof(pq__block, <this linear>) */
} pq__linear_desc;

/* In block order (the order of pq__block and of true-sequential compression). */
extern const pq__linear_desc pq__block_linear[PQ_BLOCK_LINEARS];
int64_t pq__linear_dim(const pq__config *c, pq__dim_kind d);
/* Heads whose rows RoPE permutes for linear i (0: none). */
int64_t pq__linear_rope_heads(const pq__config *c, int i);
/* Columns of input group `input` (0..PQ_BLOCK_INPUTS-1). */
int64_t pq__block_input_cols(const pq__config *c, int input);
pq__linear *pq__block_linear_at(pq__block *b, int i);
const pq__linear *pq__block_linear_get(const pq__block *b, int i);
/* "model.layers.<layer>.<name of linear i>" into buf. */
void pq__linear_name(char *buf, size_t n, int64_t layer, int i);

/* A GGUF writer holding the model's metadata (llama or qwen2 keys, general.file_type) and its
 * tokenizer; *halfsplit: the RoPE row layout the file's architecture expects (1 half-split). */
struct pq__gguf_writer;
pq_status pq__gguf_model_writer(pq_ctx *ctx, const pq_model *m, const char *path, uint32_t file_type,
                                struct pq__gguf_writer **out, int *halfsplit);

/* Builds a model from a loaded source (takes ownership of src's contents). */
pq_status pq__model_from_source(pq_ctx *ctx, pq__source *src, pq_model **out);

/* Activation capture for calibration: called with the input of each linear layer of a
 * block (X [n, cols]). which: 0 q/k/v input, 1 o input, 2 gate/up input, 3 down input. */
typedef void (*pq__capture_fn)(void *user, int64_t layer, int which, const float *x, int64_t n, int64_t cols);

/* KV cache: for n_seq sequences, each up to n_ctx positions. */
typedef struct pq__kv {
    int64_t n_seq, n_ctx, n_layers, kv_dim;
    float *k, *v; /* [n_layers][n_seq][n_ctx][kv_dim] */
} pq__kv;

pq_status pq__kv_init(pq_ctx *ctx, pq__kv *kv, const pq__config *cfg, int64_t n_seq, int64_t n_ctx);
void pq__kv_free(pq__kv *kv);

/* Fast batched forward. tokens [n_seq * n_tok]: sequence s holds tokens at positions
 * pos0..pos0+n_tok-1; earlier positions come from kv (which may be NULL when pos0 == 0,
 * then a temporary cache is used). logits [n_seq * n_tok, vocab], or, if last_only,
 * [n_seq, vocab] for the last position of each sequence. */
pq_status pq__forward(pq_ctx *ctx, const pq_model *m, pq__kv *kv, const int32_t *tokens, int64_t n_seq, int64_t n_tok,
                      int64_t pos0, int last_only, float *logits);

/* One decoder block on hidden states x [n_seq * n_tok, dim] in place (used by forward and
 * by the calibration pipeline). capture may be NULL. */
pq_status pq__block_forward(pq_ctx *ctx, const pq_model *m, int64_t layer, const pq__block *b, pq__kv *kv, float *x,
                            int64_t n_seq, int64_t n_tok, int64_t pos0, pq__capture_fn capture, void *user);

/* Readable reference path: one token at a time, naive loops (llama2.c style). */
pq_status pq__forward_reference(pq_ctx *ctx, const pq_model *m, const int32_t *tokens, int64_t n_tok, float *logits);

#endif
