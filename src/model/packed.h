/* Packed storage of compressed linear layers (formats "packed-v1" and "packed-v2", docs/PACKED.md).
 *
 * A compressed linear "<base>" (W [rows, cols]) is stored without "<base>.weight" as:
 *   quantized:  "<base>.qcodes" U8 [nbytes]  b-bit codes of the stored weights, row-major,
 *                                            bit-packed low bits first (code k = stream bits
 *                                            k*b .. k*b+b-1; stream bit i = bit i%8 of byte i/8).
 *                                            nbytes = ceil(max(n_stored, 8) * b / 8): padding to
 *                                            at least 8 codes makes b = floor(nbytes*8 / max(n, 8))
 *                                            unambiguous, so b is not stored separately.
 *               "<base>.scales" F16 [rows, n_groups]
 *               "<base>.zeros"  U8  [rows, n_groups]
 *               "<base>.g_idx"  I32 [cols]   only when some column's group is not c / (cols/n_groups)
 *               W[r, c] = ((float)code - (float)zero) * scale of group g_idx[c] (in float).
 *   pruned:     "<base>.mask"   U8  [rows, ceil(cols/8)]  bit c%8 of byte c/8 of row r = stored;
 *               or (v2, every cell of m inputs keeps k) "<base>.nm_km" U8 [3] = {k, m, g} and
 *               "<base>.nm" U8 [rows, row_bytes]: per row a bit stream of indices, each of g cells
 *               (the last of a row may have fewer) as sum_j rank_j C(m, k)^j in ceil(log2 C^g) bits,
 *               rank = the cell's kept set among the k-subsets (sum C(c_i, i));
 *               or (v2, any other mask when smaller than the bitmask) "<base>.kmask" U8 [n] +
 *               "<base>.kmask_idx" I32 [blocks]: the mask range-coded per row (model/maskcode.h);
 *               only stored weights have a code (or a value); the others are 0.
 *               Not quantized: "<base>.values" F16 [n_stored] (the kept weights, row-major).
 * The tensors' bytes are the real compressed size (ACr). */
#ifndef PQ_MODEL_PACKED_H
#define PQ_MODEL_PACKED_H

#include "io/packed_names.h"
#include "io/safetensors.h"
#include "kernels/qmat.h"
#include "prunequant-compress.h"

/* Dequantisation shared by the encoder's snapping and the decoder, so both give the same bits. */
static inline float pq__packed_dq(uint8_t code, uint8_t zero, float scale) {
    return ((float)code - (float)zero) * scale;
}

typedef struct pq__packed_linear {
    pq__st_entry e[6];
    char names[6][160];
    void *bufs[6];
    int n;
} pq__packed_linear;

/* Rounds codes->scales to F16 and rewrites W as the exact reconstruction the decoder will
 * produce (quantized: from the codes; prune-only: values rounded to F16, pruned = 0).
 * mask may be NULL (not pruned), codes NULL or codes->bits == 0 (not quantized). */
void pq__packed_snap(float *W, int64_t rows, int64_t cols, const uint8_t *mask, pq_qcodes *codes);

/* Builds the packed tensors of a snapped layer (see pq__packed_snap). version 2: a keep mask
 * whose every cell of m inputs keeps the same count is stored as an index ("nm", "nm_km")
 * instead of a bitmask; 1: always the bitmask (packed-v1). */
pq_status pq__packed_encode(pq_ctx *ctx, const char *base, const float *W, int64_t rows, int64_t cols,
                            const uint8_t *mask, const pq_qcodes *codes, int version, pq__packed_linear *out);
void pq__packed_linear_free(pq__packed_linear *p);

/* Bytes of the packed tensors of base (0 if none). */
size_t pq__packed_bytes(const pq__source *src, const char *base);
/* Bytes stored for linear base with numel weights: its packed tensors, else its .weight tensor
 * as stored, else numel float32 (a linear built in memory). */
size_t pq__linear_stored_bytes(const pq__source *src, const char *base, int64_t numel);

/* What linear base [rows, cols] stores, part by part, and the information bound of its mask. */
typedef struct pq__packed_parts {
    int64_t codes, scales, zeros, g_idx, mask, values, weight; /* bytes of each tensor (0: absent) */
    int64_t kept;                                              /* weights with a code or a value */
    int bits;                                                  /* code width (0: no codes) */
    int cell_m, cell_kept;  /* the mask keeps exactly cell_kept of every cell of cell_m inputs (0: no such cells) */
    double mask_bound_bits; /* the fewest bits that can name the mask: log2 C(M, kept) per cell for such
                               cells, else per row log2 C(cols, kept in the row) + log2(cols + 1) for the count */
} pq__packed_parts;
void pq__packed_parts_of(const pq__source *src, const char *base, int64_t rows, int64_t cols, pq__packed_parts *out);

/* Bytes the packed writer (version 2 or 1) stores for a linear [rows, cols] compressed with
 * recipe p, known before compressing it: exact (*exact = 1) for quantization and N:M patterns
 * (codes ceil(max(kept, 8) b / 8), f16 scales and u8 zeros per row and group, the N:M index);
 * for unstructured masks (the coded size is known only after coding the real mask) and
 * act-order an upper bound: the mask's information bound at the worst mean kept count per row
 * plus the coder's overheads, or the bitmask when smaller, and codes for the most weights the
 * pruning can keep. -1 when p compresses nothing or does not apply (group or M not dividing
 * cols, ggml types). */
int64_t pq__packed_recipe_bytes(const pq_layer_params *p, int64_t rows, int64_t cols, int version, int *exact);

/* The stored form of packed linear base [rows, cols] for the kernels (kernels/qmat.h): codes,
 * scales and zeros point into the source; a keep mask decoded from an N:M index or a coded mask,
 * the rows' first code bits, and for act-order groups (g_idx not c / group size) codes and mask
 * rewritten with every group's columns contiguous plus the column order, are malloc'ed into
 * owned[0..3] (the caller frees them after the model). Prune-only linears become float16 rows
 * (owned[0]); act-order groups of unequal sizes, float32. Validates as pq__packed_decode does. */
pq_status pq__packed_qmat(pq_ctx *ctx, const pq__source *src, const char *base, int64_t rows, int64_t cols,
                          pq__qmat *out, void *owned[4]);

/* Decodes a packed linear into a malloc'ed float [rows, cols]. */
pq_status pq__packed_decode(pq_ctx *ctx, const pq__source *src, const char *base, int64_t rows, int64_t cols,
                            float **out);

/* Kernels of the qcodes bit stream (code k = stream bits k*b .. k*b+b-1, stream bit i = bit
 * i%8 of byte i/8), one row at a time from bit *pos (advanced): pack ORs the low b bits of
 * codes[c] into q (zeroed beforehand), unpack reads them into codes[c]; only for the columns c
 * whose bit is set in the mask row bm_row [ceil(n/8)] (NULL: all n), the others are skipped
 * (not written). 1 <= b <= 8. The *_ref twins go bit by bit; tests hold them to bit equality. */
void pq__bits_pack(uint8_t *q, uint64_t *pos, const uint8_t *codes, const uint8_t *bm_row, int64_t n, int b);
void pq__bits_pack_ref(uint8_t *q, uint64_t *pos, const uint8_t *codes, const uint8_t *bm_row, int64_t n, int b);
void pq__bits_unpack(const uint8_t *q, uint64_t *pos, const uint8_t *bm_row, int64_t n, int b, uint8_t *codes);
void pq__bits_unpack_ref(const uint8_t *q, uint64_t *pos, const uint8_t *bm_row, int64_t n, int b, uint8_t *codes);

/* Row permutation of a q/k tensor (rows of row_bytes bytes) between the interleaved RoPE
 * layout (pair i of a head = rows 2i, 2i+1) and HF's half-split one (rows i, i + hd/2). */
void pq__permute_rope_rows(const void *src, void *dst, int64_t heads, int64_t hd, size_t row_bytes, int to_halfsplit);

#endif
