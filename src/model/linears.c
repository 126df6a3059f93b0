/* The linears of a decoder block: one descriptor table read by model loading, conversion,
 * the compression pipeline, evaluation and the sparsity report (model.h). */
#include <stddef.h>
#include <stdio.h>

#include "model/model.h"

/* Input groups: 0 the attention norm's output (q, k, v), 1 the attention output (o), 2 the
 * FFN norm's output (gate, up), 3 the gated activation (down). True-sequential stages follow
 * the inputs one for one: a stage's linears are compressed before the next input is formed. */
const pq__linear_desc pq__block_linear[PQ_BLOCK_LINEARS] = {
    {"self_attn.q_proj", 0, PQ_DIM_Q, PQ_DIM_MODEL, 1, 1, offsetof(pq__block, q)},
    {"self_attn.k_proj", 0, PQ_DIM_KV, PQ_DIM_MODEL, 2, 1, offsetof(pq__block, k)},
    {"self_attn.v_proj", 0, PQ_DIM_KV, PQ_DIM_MODEL, 0, 1, offsetof(pq__block, v)},
    {"self_attn.o_proj", 1, PQ_DIM_MODEL, PQ_DIM_Q, 0, 0, offsetof(pq__block, o)},
    {"mlp.gate_proj", 2, PQ_DIM_FFN, PQ_DIM_MODEL, 0, 0, offsetof(pq__block, gate)},
    {"mlp.up_proj", 2, PQ_DIM_FFN, PQ_DIM_MODEL, 0, 0, offsetof(pq__block, up)},
    {"mlp.down_proj", 3, PQ_DIM_MODEL, PQ_DIM_FFN, 0, 0, offsetof(pq__block, down)},
};

int64_t pq__linear_dim(const pq__config *c, pq__dim_kind d) {
    switch (d) {
    case PQ_DIM_MODEL: return c->dim;
    case PQ_DIM_Q: return c->n_heads * c->head_dim;
    case PQ_DIM_KV: return c->n_kv_heads * c->head_dim;
    case PQ_DIM_FFN: return c->hidden_dim;
    }
    return 0;
}

int64_t pq__linear_rope_heads(const pq__config *c, int i) {
    const int rope = pq__block_linear[i].rope;
    return rope == 1 ? c->n_heads : rope == 2 ? c->n_kv_heads : 0;
}

int64_t pq__block_input_cols(const pq__config *c, int input) {
    for (int i = 0; i < PQ_BLOCK_LINEARS; i++)
        if (pq__block_linear[i].input == input) return pq__linear_dim(c, pq__block_linear[i].cols);
    return 0;
}

pq__linear *pq__block_linear_at(pq__block *b, int i) {
    return (pq__linear *)((char *)b + pq__block_linear[i].offset);
}

const pq__linear *pq__block_linear_get(const pq__block *b, int i) {
    return (const pq__linear *)((const char *)b + pq__block_linear[i].offset);
}

void pq__linear_name(char *buf, size_t n, int64_t layer, int i) {
    snprintf(buf, n, "model.layers.%lld.%s", (long long)layer, pq__block_linear[i].name);
}
