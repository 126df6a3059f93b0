/* NumPy .npy files (format 1.0, 2.0, 3.0): C-order 1-D/2-D float arrays. The parser works on
 * a memory buffer so that the fuzz target and the file reader share it; every header field
 * is checked (lengths, shape overflow, data size) before anything is read. */
#ifndef PQ_IO_NPY_H
#define PQ_IO_NPY_H

#include "common/common.h"

typedef struct pq__npy_header {
    int version;        /* 1, 2 or 3 */
    int f64;            /* 0: '<f4', 1: '<f8' */
    int ndim;           /* 1 or 2 */
    int64_t shape[2];   /* shape[1] = 1 for 1-D */
    size_t data_offset; /* bytes before the data */
    size_t data_bytes;  /* numel * itemsize */
} pq__npy_header;

/* Parses the header of an .npy image of `size` bytes; `name` (the file) prefixes errors. */
pq_status pq__npy_parse_header(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size, pq__npy_header *out);

/* Parses and converts to float32: *out is malloc'ed [shape[0] * shape[1]]. */
pq_status pq__npy_decode(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size, float **out,
                         int64_t shape[2], int *ndim);

#endif
