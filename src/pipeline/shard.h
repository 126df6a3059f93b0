/* The pipeline's output folder (shard.c): tensor lists, shards, config.json. */
#ifndef PQ_PIPELINE_SHARD_H
#define PQ_PIPELINE_SHARD_H

#include <cjson/cJSON.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "prunequant-pipeline.h"

/* The tensors of one shard; data borrowed, or owned by the list (freed by clear). */
typedef struct pq__tlist {
    pq__st_entry *e;
    int64_t n, cap;
    void **owned;
    int64_t n_owned, cap_owned;
} pq__tlist;

/* Adds a tensor whose bytes (nbytes of dt) stay valid until the shard is written. */
pq_status pq__tl_add(pq_ctx *ctx, pq__tlist *t, const char *name, pq_dtype dt, int n_dims, int64_t d0, int64_t d1,
                     const void *data, size_t nbytes);
/* Adds a float tensor w [rows, cols] (cols 0: a vector) converted to dt, its rows permuted to
 * HF's RoPE layout when rope_heads > 0 and the model is interleaved. */
pq_status pq__tl_add_f32(pq_ctx *ctx, pq__tlist *t, const pq__config *cfg, const char *name, const float *w,
                         int64_t rows, int64_t cols, int64_t rope_heads, pq_dtype dt);
/* Adds a [rows, cols] tensor of the source model written piece by piece in dt (embeddings
 * and lm_head: never whole in memory, even when the model defers weights). */
pq_status pq__tl_add_stream(pq_ctx *ctx, pq__tlist *t, const pq_model *m, const char *name, int64_t rows,
                            int64_t cols, pq_dtype dt);
void pq__tl_clear(pq__tlist *t);
void pq__tl_free(pq__tlist *t);

/* Writes shard k of n_shards ("model-0000k-of-0000n.safetensors") into dir, records its
 * tensors in the index's weight map and adds their bytes to *total. */
pq_status pq__write_shard(pq_ctx *ctx, const char *dir, const pq__tlist *t, int64_t k, int64_t n_shards, cJSON *map,
                          double *total);
pq_status pq__write_text(pq_ctx *ctx, const char *dir, const char *name, const char *text);
/* config.json: the model's HF config (half-split RoPE, the tokenizer's special ids) with the
 * recipe's quantization_config (starts: the calibration windows; weighted: the
 * parameter-weighted sparsity and bits, pq__recipe_quant_config). */
pq_status pq__write_config(pq_ctx *ctx, const pq_model *m, const char *dir, const pq_compress_params *p,
                           const int64_t *starts, const double weighted[2]);

#endif
