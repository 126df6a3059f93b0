/* Tensor names of a linear stored packed (format packed-v1, docs/PACKED.md; the codec is
 * model/packed.c): no "<base>.weight", and "<base>.qcodes" (quantized) or "<base>.values"
 * (prune-only) beside the other "<base>.*" parts. Kept in io/ so that the loaders' shape
 * check (io/hf.c) knows a packed linear without including model/. */
#ifndef PQ_IO_PACKED_NAMES_H
#define PQ_IO_PACKED_NAMES_H

#include "io/source.h"

/* 1 when "<base>.weight" is absent and the packed tensors of base are present. */
int pq__source_has_packed(const pq__source *src, const char *base);

#endif
