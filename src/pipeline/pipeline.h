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
#include "model/packed.h"
#include "model/stages.h"
#include "pipeline/shard.h"
#include "prunequant-pipeline.h"

/* The calibration windows' hidden states entering the current block, and the work arrays of
 * running them through it chunk by chunk (hessians.c). */
typedef struct pq__runner {
    const pq_model *m;
    float *X;        /* [ns * L, dim] */
    float *scratch;  /* [chunk * L, dim] */
    pq__kv kv;       /* one layer, chunk sequences */
    pq__block_ws ws; /* the block's steps on one chunk */
    float *att;      /* true-sequential, between o's Hessian and X += o(att): [ns * L, heads * hd] */
    float *hb;       /* true-sequential, between down's Hessian and X += down(hb): [hb_rows, hidden] */
    int64_t hb_rows; /* down inputs kept (whole chunks from the first); the rest are recomputed */
    int64_t ns, L, chunk;
    const char *stage;         /* the progress stage its chunks report ("compress"; the allocator's "allocate") */
    int64_t per_layer;         /* progress units per block (1; the allocator counts linears) */
    pq_compress_phases *times; /* the current block's time and arithmetic, or NULL */
} pq__runner;

/* Embeds the windows win [ns * L] (token ids checked against the vocabulary). */
pq_status pq__runner_init(pq_ctx *ctx, pq__runner *r, const pq_model *m, const int32_t *win, int64_t ns, int64_t L,
                          int64_t chunk);
void pq__runner_free(pq__runner *r);
/* Runs block l (weights b) over all windows; the outputs become the next block's inputs. */
pq_status pq__runner_advance(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b);
/* Runs block l over all windows (X kept), as far as the last input wanted, and returns the
 * Hessian H[g] = 2 X^T X / N ([cols, cols], malloc'ed) of each input group g with want[g];
 * the others stay NULL. */
pq_status pq__collect_hessians(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b,
                               const int want[PQ_BLOCK_INPUTS], float *H[PQ_BLOCK_INPUTS]);
/* True-sequential input group g (0 q/k/v, 1 o, 2 gate/up, 3 down) of block l in order, on
 * the block as compressed so far: X holds the block's input before group 2, the attention's
 * residual from then on, the block's output after group 3's output. *H (when H is set): g's
 * Hessian. out: group g's output is needed (g = 1, 3; ignored for 0, 2): without H it is
 * applied now, with H call pq__runner_stage_out once g's linears are compressed. */
pq_status pq__runner_stage(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b, int g, float **H, int out);
pq_status pq__runner_stage_out(pq_ctx *ctx, pq__runner *r, int64_t l, const pq__block *b, int g);
/* Frees the inputs a stage kept (also done by pq__runner_stage_out and pq__runner_free). */
void pq__runner_release(pq__runner *r);

/* The working copies of one block's linears. */
typedef struct pq__block_work {
    float *w[PQ_BLOCK_LINEARS];
    int64_t n[PQ_BLOCK_LINEARS]; /* floats of w[i] */
    uint8_t *mask[PQ_BLOCK_LINEARS];
    pq_qcodes codes[PQ_BLOCK_LINEARS];
    int done[PQ_BLOCK_LINEARS]; /* compressed (not skipped) */
    /* packed output encoded as soon as the linear is compressed (its mask and codes then
       freed): every linear whose rows keep their order (not q/k in HF's rope layout) */
    pq__packed_linear pk[PQ_BLOCK_LINEARS];
    int encoded[PQ_BLOCK_LINEARS];
    /* the last block's working copies (spare_n floats each), for the next block's of that size */
    float *spare[PQ_BLOCK_LINEARS];
    int64_t spare_n[PQ_BLOCK_LINEARS];
} pq__block_work;

/* One compress run. */
typedef struct pq__pipe {
    pq_ctx *ctx;
    const pq_model *m;
    pq_compress_params p;
    pq_layer_params down; /* down_proj's recipe: one grid per row when the group does not divide */
    char recipe[160], recipe_down[160];
    regex_t skip;
    int have_skip;
    regex_t *ov_re;       /* [p.n_overrides] compiled matches */
    int32_t *lin_ov;      /* [n_layers * PQ_BLOCK_LINEARS] the override of each linear, -1: the base */
    char (*ov_text)[160]; /* [p.n_overrides] recipe texts */
    pq__runner r;
    pq__block_work w;
    pq__tlist tl;
    FILE *rep;  /* the per-linear report (JSON lines), NULL without */
    cJSON *map; /* the index's weight map */
    char *tmp;  /* the output folder being written */
    int64_t n_shards, moved_total;
    int64_t linear_bytes;      /* bytes of the linear weights written so far (the budget's check) */
    double total;              /* bytes of all tensors */
    struct pq__gguf_out *gguf; /* GGUF output (gguf_out.c), NULL for an HF folder */
    float **imat;              /* --imatrix-out: [n_layers * PQ_BLOCK_LINEARS] sum of x^2 per input, or NULL */
    pq_compress_phases *times; /* p.phases entry of the current block (or the rest), or NULL */
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

/* The recipe of linear i of block l (an override's, else the base's or down_proj's) and its
 * one-line text; NULL when it compresses nothing. */
const pq_layer_params *pq__pipe_recipe(const pq__pipe *P, int64_t l, int i, const char **text);
/* Compiles the overrides, checks each against the linears it matches (it must match one, and
 * suit their shapes) and records which one each linear takes (compress.c). */
pq_status pq__pipe_overrides(pq__pipe *P);
void pq__pipe_overrides_free(pq__pipe *P);

/* Compresses the linears of block l (b: its weights, pointed at the working copies); with
 * advance, the runner's X becomes the compressed block's output (the next block's input). */
pq_status pq__compress_block(pq__pipe *P, int64_t l, pq__block *b, int advance);
/* Writes shard l + 1: block l's norms, biases and compressed linears (packed or dense). */
pq_status pq__write_block_shard(pq__pipe *P, int64_t l, const pq__block *b);
/* Linear i of a block into w->w[i] (float32 working copy; the last block's of that size when
 * there is one). */
pq_status pq__block_work_load(pq_ctx *ctx, const pq_model *m, pq__block_work *w, int i, const char *name,
                              int64_t rows, int64_t cols);
/* After a block: its working copies kept as spares, everything else freed. */
void pq__block_work_next(pq__block_work *w);
void pq__block_work_free(pq__block_work *w);

#endif
