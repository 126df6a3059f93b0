/* Tensor element types (dtype.c): sizes of plain and ggml block types, conversion to and from
 * float32 (decoding the block types as ggml does). */
#ifndef PQ_KERNELS_DTYPE_H
#define PQ_KERNELS_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "prunequant.h"

/* Bytes per element for plain dtypes; for block types, the bytes of one block and the
 * block length (elements). Returns 0 for unknown types. */
size_t pq__dtype_block_bytes(pq_dtype t, int64_t *block_elems);
/* Bytes needed for n elements of t (n must be a multiple of the block length); 0 on error. */
size_t pq__dtype_nbytes(pq_dtype t, int64_t n);
/* Converts n elements of type t at src into float32 dst. Returns 0 if the type is not a
 * float/block type. */
int pq__to_f32(pq_dtype t, const void *src, float *dst, int64_t n);
/* Converts n floats into t (F32/F16/BF16 only). Returns 0 on unsupported t. */
int pq__from_f32(pq_dtype t, const float *src, void *dst, int64_t n);

#endif
