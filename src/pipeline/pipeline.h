/* The whole-model compression pipeline (public API in prunequant-pipeline.h), split by what
 * each part does: hessians.c runs the calibration windows through a block and accumulates
 * the Hessians of its linears' inputs; block.c compresses a block's linears on them and
 * writes the block's shard; shard.c writes the output folder (tensor lists, shards,
 * config.json); compress.c checks the request and drives the blocks. */
#ifndef PQ_PIPELINE_H
#define PQ_PIPELINE_H

#include <regex.h>
#include <stdio.h>

#include "common/common.h"
#include "model/model.h"
#include "pipeline/shard.h"
#include "prunequant-pipeline.h"

/* The calibration windows' hidden states entering the current block. */
typedef struct pq__runner {
    const pq_model *m;
    float *X;       /* [ns * L, dim] */
    float *scratch; /* [chunk * L, dim] */
    pq__kv kv;      /* one layer, chunk sequences */
    int64_t ns, L, chunk;
} pq__runner;

/* Embeds the windows win [ns * L] (token ids checked against the vocabulary). */
pq_status pq__runner_init(pq_ctx *ctx, pq__runner *r, const pq_model *m, const int32_t *win, int64_t ns, int64_t L,
                          int64_t chunk);
void pq__runner_free(pq__runner *r);
/* Runs block l (weights b) over all windows; the outputs become the next block's inputs. */
pq_status pq__runner_advance(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b);
/* Runs block l over all windows (X kept) and returns the Hessian H[g] = sum x x^T
 * ([cols, cols], malloc'ed) of each input group g with want[g]; the others stay NULL. */
pq_status pq__collect_hessians(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b,
                               const int want[PQ_BLOCK_INPUTS], float *H[PQ_BLOCK_INPUTS]);

/* The working copies of one block's linears. */
typedef struct pq__block_work {
    float *w[PQ_BLOCK_LINEARS];
    uint8_t *mask[PQ_BLOCK_LINEARS];
    pq_qcodes codes[PQ_BLOCK_LINEARS];
    int done[PQ_BLOCK_LINEARS]; /* compressed (not skipped) */
} pq__block_work;

/* One compress run. */
typedef struct pq__pipe {
    pq_ctx *ctx;
    const pq_model *m;
    pq_compress_params p;
    pq_layer_params down; /* down_proj's recipe: one grid per row when the group does not divide */
    char recipe[160], recipe_down[160];
    regex_t skip;
    int have_skip, compressing;
    pq__runner r;
    pq__block_work w;
    pq__tlist tl;
    FILE *rep;  /* the per-linear report (JSON lines), NULL without */
    cJSON *map; /* the index's weight map */
    char *tmp;  /* the output folder being written */
    int64_t n_shards, moved_total;
    double total;              /* bytes of all tensors */
    struct pq__gguf_out *gguf; /* GGUF output (gguf_out.c), NULL for an HF folder */
    float **imat;              /* --imatrix-out: [n_layers * PQ_BLOCK_LINEARS] sum of x^2 per input, or NULL */
} pq__pipe;

/* --imatrix-out: records linear i's input statistics from its Hessian (before compression
 * may consume it); writes the file at the end. */
pq_status pq__imatrix_record(pq__pipe *P, int64_t l, int i, const float *H, int64_t cols);
pq_status pq__imatrix_save(pq__pipe *P);

/* GGUF output (gguf_out.c): the preset's type of every tensor, tensor bytes spooled to a
 * temporary file block by block, one GGUF written from it at the end. */
pq_status pq__gguf_out_begin(pq__pipe *P, const char *path);
/* Linear i of block l: the ggml type it is rounded onto (PQ_DTYPE_F32 / F16: kept float). */
pq_dtype pq__gguf_out_type(const pq__pipe *P, int64_t l, int i);
pq_status pq__gguf_out_head(pq__pipe *P);
pq_status pq__gguf_out_block(pq__pipe *P, int64_t l, const pq__block *b);
pq_status pq__gguf_out_finish(pq__pipe *P, const char *path);
void pq__gguf_out_free(pq__pipe *P);

/* Compresses the linears of block l (b: its weights, pointed at the working copies). */
pq_status pq__compress_block(pq__pipe *P, int64_t l, pq__block *b);
/* Writes shard l + 1: block l's norms, biases and compressed linears (packed or dense). */
pq_status pq__write_block_shard(pq__pipe *P, int64_t l, const pq__block *b);
void pq__block_work_free(pq__block_work *w);

#endif
