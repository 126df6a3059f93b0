/* GPTQ onto ggml block grids (issue: quantized GGUF export). The block parameters of every row
 * (Q4_0 scale; Q4_1 scale + min; K-quant super-block d, dmin and sub-block scales / mins) are
 * fitted first with llama.cpp's importance weighting, the importance being diag(H) (llama.cpp's
 * imatrix is the same statistic, the mean of x^2); then the OBS sweep rounds each weight onto
 * its fixed sub-block grid with error feedback (obs.h, PQ_OBS_GRID_FIXED); the codes are
 * encoded as ggml stores the rows. */
#ifndef PQ_QUANT_GGUF_GRID_H
#define PQ_QUANT_GGUF_GRID_H

#include "obs/pass.h"
#include "kernels/ggml_types.h"

typedef struct pq__ggml_layer {
    const pq__ggml_info *ti;
    int64_t rows, cols, nblk; /* nblk blocks per row */
    pq__ggml_params *params;  /* [rows, nblk] */
    float *scales, *offs;     /* [cols / sub, rows]; offs only for types with a min */
    uint8_t *zeros;           /* [cols / sub, rows] */
} pq__ggml_layer;

/* Fits the blocks of W [rows, cols] (cols a multiple of the type's block): importance diag(H)
 * ([cols, cols]; H NULL: llama.cpp's weighting without imatrix), weight 0 where keep [rows,
 * cols] (may be NULL) marks a pruned weight. */
pq_status pq__ggml_layer_fit(pq_ctx *ctx, pq_dtype type, const float *W, int64_t rows, int64_t cols, const float *H,
                             const uint8_t *keep, int n_threads, pq__ggml_layer *g);
/* The grids in the form the sweep reads (borrowed from g). */
void pq__ggml_layer_fixed(const pq__ggml_layer *g, pq__obs_fixed *fix);
/* The code nearest to 0 on the grid of element (r, c), and its value. */
void pq__ggml_layer_zero(const pq__ggml_layer *g, int64_t r, int64_t c, uint8_t *code, float *value);
/* Encodes codes [rows, cols] into out->gguf_blocks and decodes them into Q [rows, cols]: the
 * exact values the file stores (what the next layers must see). */
pq_status pq__ggml_layer_encode(pq_ctx *ctx, const pq__ggml_layer *g, const uint8_t *codes, float *Q, pq_qcodes *out);
void pq__ggml_layer_free(pq__ggml_layer *g);

#endif
