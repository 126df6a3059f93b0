/* The layer compressor behind pq_layer_compress (prunequant-compress.h): the three ways of
 * joining pruning and quantization (ALGORITHMS.md §6). */
#ifndef PQ_JOINT_H
#define PQ_JOINT_H

#include "linalg/linalg.h"
#include "prunequant-compress.h"
#include "obs/pass.h"

/* Hessians with more inputs than this may be factored in their own memory (below). */
#define PQ_INPLACE_MIN_COLS 4096

/* pq_layer_compress for a caller that compresses several layers on one H (the linears that
 * read one input):
 *   scratch_h: the caller no longer needs H (full, symmetric) afterwards: when the recipe
 *     allows (one sweep in natural order, error from the sweep) and cols exceeds
 *     PQ_INPLACE_MIN_COLS, H is factored in float32 in its own memory and destroyed;
 *   share (optional, zeroed before the first layer, pq__obs_share_free after the last): H's
 *     factors, computed by the first layer that needs one and borrowed by the others. */
pq_status pq__layer_compress_h(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols, float *H,
                               int scratch_h, pq__obs_share *share, uint8_t *mask_out, pq_qcodes *codes_out,
                               pq_layer_result *res_out);

/* pq_layer_compress (no mask or codes out) on the caller's factor of H: fac from
 * pq__hfactor_compute(H, cols, NULL, p->percdamp, ...), computed once and shared by every recipe
 * tried on the same H (the allocator's candidates on a sample of rows). H is not scanned for
 * non-finite values again (the factorisation did); recipes with act-order factor their own
 * permutation of H. row_err (optional, [rows]): each row's error d_r H d_r^T, whatever the
 * error mode: from the sweep's identity row by row when one sweep made Q (nearly free), else
 * from one product (W - Q) H. */
pq_status pq__layer_compress_factored(pq_ctx *ctx, const pq_layer_params *p, float *W, int64_t rows, int64_t cols,
                                      const float *H, const pq__hfactor *fac, pq_layer_result *res_out,
                                      double *row_err);

#endif
