/* The sub-stages of one decoder block (forward.c), for callers that need the inputs of its
 * linears one group at a time: the true-sequential compression pipeline computes each group's
 * input once, on the block as compressed so far, and keeps what the next stage reuses.
 * pq__block_forward is their composition, so each stage computes bit for bit what it computes
 * there (same products on the same shapes, same loops):
 *
 *   x --attn_norm--> xb --attention--> att --attn_out--> x += o(att)
 *     --ffn_norm--> xb --ffn_act--> hb --ffn_out--> x += down(hb)
 *
 * All on N = n_seq * n_tok rows (sequence-major, as pq__block_forward's x). */
#ifndef PQ_MODEL_STAGES_H
#define PQ_MODEL_STAGES_H

#include "model/model.h"

/* The work arrays of the stages for up to n_seq sequences of n_tok tokens at positions below
 * n_ctx (one allocation, laid out as pq__block_forward's). */
typedef struct pq__block_ws {
    int64_t n_seq, n_tok, n_ctx; /* allocated for; a call may use fewer sequences */
    int n_threads;
    float *xb;        /* [N, dim]: a norm's output (input of q/k/v or gate/up), then o's / down's output */
    float *q, *k, *v; /* [N, heads * hd], [N, kv_heads * hd] x 2 */
    float *att;       /* [N, heads * hd]: attention output (o's input) */
    float *hb, *hb2;  /* [N, hidden]: down's input; up's output */
    float *cs, *sn;   /* [n_tok, hd / 2] RoPE angles */
    float *scores;    /* [threads, n_tok, n_ctx] */
    float *buf;       /* the allocation (NULL when it is the context's activation scratch) */
} pq__block_ws;

pq_status pq__block_ws_init(pq_ctx *ctx, pq__block_ws *ws, const pq__config *c, int64_t n_seq, int64_t n_tok,
                            int64_t n_ctx);
void pq__block_ws_free(pq__block_ws *ws);

/* ws->xb [N, dim] = the attention norm of x [N, dim] (q/k/v's input). */
void pq__block_attn_norm(const pq_model *m, const pq__block *b, pq__block_ws *ws, int64_t n_seq, const float *x);
/* att [N, heads * hd] = causal self-attention of ws->xb through q/k/v; the keys and values of
 * positions pos0 .. pos0 + n_tok - 1 are written to kv (layer `layer`). */
pq_status pq__block_attention(pq_ctx *ctx, const pq_model *m, int64_t layer, const pq__block *b, pq__kv *kv,
                              pq__block_ws *ws, int64_t n_seq, int64_t pos0, float *att);
/* x [N, dim] += o(att). */
pq_status pq__block_attn_out(pq_ctx *ctx, const pq__block *b, pq__block_ws *ws, int64_t n_seq, const float *att,
                             float *x);
/* ws->xb [N, dim] = the feed-forward norm of x (gate/up's input). */
void pq__block_ffn_norm(const pq_model *m, const pq__block *b, pq__block_ws *ws, int64_t n_seq, const float *x);
/* hb [N, hidden] = silu(gate(ws->xb)) * up(ws->xb) (down's input). */
pq_status pq__block_ffn_act(pq_ctx *ctx, const pq__block *b, pq__block_ws *ws, int64_t n_seq, float *hb);
/* x [N, dim] += down(hb). */
pq_status pq__block_ffn_out(pq_ctx *ctx, const pq__block *b, pq__block_ws *ws, int64_t n_seq, const float *hb,
                            float *x);

#endif
