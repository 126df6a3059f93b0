/* Tensor names of a linear stored packed (formats packed-v1 and packed-v2, docs/PACKED.md; the
 * codec is model/packed.c, the coded keep mask model/maskcode.c): no "<base>.weight", and
 * "<base>.qcodes" (quantized) or "<base>.values" (prune-only) beside the other "<base>.*" parts
 * (scales, zeros, g_idx; the keep mask as mask, nm + nm_km, or kmask + kmask_idx). Kept in io/
 * so that the loaders' shape check (io/hf.c) knows a packed linear without including model/. */
#ifndef PQ_IO_PACKED_NAMES_H
#define PQ_IO_PACKED_NAMES_H

#include "io/source.h"

/* 1 when "<base>.weight" is absent and the packed tensors of base are present. */
int pq__source_has_packed(const pq__source *src, const char *base);

#endif
