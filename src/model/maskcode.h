/* Coded keep masks (packed-v2 "<base>.kmask" + "<base>.kmask_idx", docs/PACKED.md): an
 * unstructured keep mask stored near its information bound, per row log2(cols + 1) bits for the
 * kept count plus log2 C(cols, kept) for the kept set.
 *
 *   "<base>.kmask"     U8  [nbytes]    blocks of rows, each one range-coder stream (below)
 *   "<base>.kmask_idx" I32 [n_blocks]  entry 0: R, rows per block (n_blocks = ceil(rows / R), the
 *                                      last block may have fewer); entry b >= 1: the byte where
 *                                      block b starts (block 0 starts at 0, which is not stored;
 *                                      a block ends where the next starts, the last at nbytes)
 *
 * A block codes its rows in order; a row codes its kept count v (0..cols) as a uniform choice
 * (halving [0, cols + 1): the lower half with probability its share), then its columns left to
 * right with p(kept) = kept left / columns left (the urn), skipping the forced tail (no kept
 * left, or every column left kept). The binary coder is LZMA's range coder (32-bit range,
 * carry through a cached byte) without its always-zero first byte, ended by the top byte of
 * low rounded up to a multiple of 2^24; the decoder reads bytes past a block's end as zero.
 * Integer arithmetic only: every machine writes and reads the same bytes. */
#ifndef PQ_MODEL_MASKCODE_H
#define PQ_MODEL_MASKCODE_H

#include <stddef.h>
#include <stdint.h>

#include "io/source.h"

/* Rows per block the writer uses: the index costs 32 bits per 128 rows (0.25 bit per row; a
 * layer of 64 rows: 0.5) and blocks of a large layer still decode in parallel (4096 rows: 32). */
#define PQ__KMASK_BLOCK_ROWS 128

/* Blocks of rows rows, R per block. */
static inline int64_t pq__kmask_blocks(int64_t rows, int64_t R) {
    return (rows + R - 1) / R;
}

/* Codes the mask bm [rows, ceil(cols/8)] (bit c%8 of byte c/8 = kept) in blocks of R rows into
 * out [cap] and the index idx [max(pq__kmask_blocks(rows, R), 1)] (idx[0] = R). Returns the bytes
 * of out used, or -1 when they would exceed cap (out then holds a prefix; the caller keeps the
 * bitmask). out NULL: only counts. */
int64_t pq__kmask_encode(const uint8_t *bm, int64_t rows, int64_t cols, int64_t R, uint8_t *out, size_t cap,
                         int32_t *idx);

/* The bytes pq__kmask_encode writes for bm (without the index: 4 bytes per block). */
size_t pq__kmask_size(const uint8_t *bm, int64_t rows, int64_t cols, int64_t R);

/* Decodes one block of rows rows from in [nbytes] into bm [rows, ceil(cols/8)] (overwritten).
 * Returns 0, or 1 when the stream does not end where the encoder ends it (truncated, trailing
 * bytes, or corrupt). Never reads in past nbytes; blocks decode independently (in parallel). */
int pq__kmask_decode_block(const uint8_t *in, size_t nbytes, int64_t rows, int64_t cols, uint8_t *bm);

/* Checks the index ti against tk and rows, and decodes every block into bm [rows, ceil(cols/8)]
 * (in parallel, pq__threads(ctx)). Errors name path and tensor "<base>.kmask[_idx]". */
pq_status pq__kmask_decode(pq_ctx *ctx, const char *path, const char *base, const pq__tensor *tk,
                           const pq__tensor *ti, int64_t rows, int64_t cols, uint8_t *bm);

#endif
