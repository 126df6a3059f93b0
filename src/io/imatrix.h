/* llama.cpp importance-matrix files (llama.cpp v0.4.0, tools/imatrix and common/imatrix-loader).
 *
 * Writer: the GGUF format that llama-imatrix writes by default and llama-quantize --imatrix
 * loads: general.type = "imatrix", imatrix.datasets (string array), imatrix.chunk_count and
 * imatrix.chunk_size (u32), and per weight two F32 tensors, "<name>.in_sum2" ne = [ncols,
 * n_mat] (sum of x_j^2 over the tokens that reached the weight) and "<name>.counts"
 * ne = [1, n_mat] (how many tokens), in name order.
 *
 * Reader: that format and the legacy ".dat" one (--output-format dat: int32 entry count; per
 * entry int32 name length, name, int32 ncall, int32 nval, f32 values[nval] holding
 * (sum / count) * ncall; then optionally int32 chunk count, int32 length and the dataset).
 * It returns the per-column importance exactly as llama-quantize computes it from the file
 * and hands it to the quantizer:
 *   GGUF:   sum2 / (float)lround(count) per matrix, 1 where the count is 0;
 *   legacy: value / (float)ncall, the value itself where ncall is 0.
 * Like llama-quantize it refuses a GGUF file without the three imatrix.* keys, sums without
 * counts (or the reverse), non-F32 tensors, and non-finite importance. */
#ifndef PQ_IO_IMATRIX_H
#define PQ_IO_IMATRIX_H

#include "common/common.h"

/* One weight's statistics for the writer (all borrowed). */
typedef struct pq__imatrix_entry {
    const char *name;      /* GGUF weight name: "blk.0.attn_q.weight" (at most 55 bytes) */
    int64_t ncols;         /* the weight's row length ne[0] (its input features) */
    int64_t n_mat;         /* experts of a 3-D weight; 0 or 1: one matrix */
    const float *sum2;     /* [n_mat, ncols]: sum over calibration tokens of x_j^2, >= 0 */
    const int64_t *counts; /* [n_mat]: tokens summed (stored as f32: exact up to 2^24) */
} pq__imatrix_entry;

/* File metadata; all optional (NULL / 0). */
typedef struct pq__imatrix_meta {
    const char *const *datasets; /* [n_datasets] calibration file names */
    int64_t n_datasets;
    uint32_t chunk_count; /* chunks (windows) of calibration text */
    uint32_t chunk_size;  /* tokens per chunk */
} pq__imatrix_meta;

/* Writes entries e [n] (any order, names unique) to path as a GGUF imatrix, atomically. */
pq_status pq__imatrix_write(pq_ctx *ctx, const char *path, const pq__imatrix_entry *e, int64_t n,
                            const pq__imatrix_meta *meta);

/* One weight as read (all owned by the pq__imatrix). */
typedef struct pq__imatrix_item {
    char *name;
    int64_t ncols; /* legacy files do not say n_mat: there ncols = nval and n_mat = 1 */
    int64_t n_mat;
    float *sum2;       /* [n_mat, ncols] as stored (legacy: (sum / count) * ncall) */
    int64_t *counts;   /* [n_mat] as llama.cpp reads them (GGUF: lround of the f32; legacy: {ncall}) */
    float *importance; /* [n_mat, ncols]: what llama-quantize quantizes this weight with */
} pq__imatrix_item;

typedef struct pq__imatrix {
    pq__imatrix_item *items; /* [n] sorted by name (bytewise); a legacy duplicate: the last wins */
    int64_t n;
    char **datasets; /* [n_datasets] */
    int64_t n_datasets;
    int64_t chunk_count, chunk_size; /* legacy: chunk_size 0 */
    int legacy;                      /* 1: the .dat format */
} pq__imatrix;

/* Reads a GGUF or legacy imatrix file (GGUF when it starts with the "GGUF" magic). */
pq_status pq__imatrix_read(pq_ctx *ctx, const char *path, pq__imatrix **out);
void pq__imatrix_free(pq__imatrix *im);
/* The item for a weight name, or NULL. */
const pq__imatrix_item *pq__imatrix_find(const pq__imatrix *im, const char *name);

#endif
