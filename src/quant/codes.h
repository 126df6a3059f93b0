/* The codes of a quantized linear (pq_qcodes): allocation and release (codes.c). */
#ifndef PQ_QUANT_CODES_H
#define PQ_QUANT_CODES_H

#include "prunequant-compress.h"

/* Allocates codes [rows, cols], scales and zeros [rows, cols / g] and g_idx [cols] for bits
 * and group size g (-1 or 0: one group per row). */
pq_status pq__qcodes_alloc(pq_ctx *ctx, int64_t rows, int64_t cols, int bits, int64_t group_size, pq_qcodes *codes);

#endif
