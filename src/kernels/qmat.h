/* Weight matrices as they are stored, and products with them (qmat.c, qmat_gemm.c and the
 * instruction-set files qmat_avx2.c / qmat_avx512.c). The forward pass multiplies by a linear
 * layer's weights without expanding them to float32: float32 / float16 / bfloat16 rows, or
 * prunequant's b-bit codes with a per-group scale and zero (docs/PACKED.md), optionally with a
 * keep mask (only kept weights have codes; an N:M index or a coded mask is turned into this
 * bitmask at load). Every weight's value is exactly the decoder's:
 *     W[r, c] = ((float)code - (float)zero) * scale       (kept; 0 when masked out)
 *
 * Products:
 *   n <= PQ_QMAT_GEMV_MAX input vectors (decoding, small batches): row-parallel GEMV kernels
 *     that read each weight once for all vectors;
 *   more (prefill, batched evaluation): a blocked GEMM whose B panels are the weights decoded
 *     to float32 a panel at a time (KC x NR floats, cache-sized), never the whole matrix.
 * Paths, chosen at run time from the CPU (pq__qmat_isa): AVX-512 (F, BW, VL, VBMI, VBMI2,
 * VNNI), AVX2 (+ FMA, F16C, BMI2), and portable C. Each has the plain-loop reference
 * pq__qmat_matmul_ref beside it; tests/test_qmat.c holds every path to it within the error
 * bound derived there.
 *
 * The AVX-512 GEMV of codes computes with integers: per group the activations are
 * represented as X = rint(x / xs) with xs = max|x| / 8355000 (23 bits below the group's
 * largest magnitude, split exactly into three signed bytes), and sum(code * X) is exact in
 * int32 (VPDPBUSD); the group's result is xs * scale * (sum(code X) - zero sum(X)). Its error
 * is at most 1.5 xs per activation, about the size of rounding the group's largest activation
 * to float32, plus float32 rounding of the per-group sums (tests/test_qmat.c states the bound). */
#ifndef PQ_KERNELS_QMAT_H
#define PQ_KERNELS_QMAT_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

typedef enum pq__qmat_kind { PQ_QMAT_F32 = 0, PQ_QMAT_F16, PQ_QMAT_BF16, PQ_QMAT_CODES } pq__qmat_kind;

typedef struct pq__qmat {
    pq__qmat_kind kind;
    int64_t rows, cols;
    const void *data; /* F32 / F16 / BF16: [rows, cols] row-major (F32 4-byte aligned; the others any) */
    /* PQ_QMAT_CODES */
    int bits;                /* 1..8 */
    int64_t group_size;      /* columns per group (divides cols) */
    int64_t n_groups;        /* cols / group_size */
    const uint8_t *codes;    /* the b-bit stream of all rows, row-major (code k = stream bits k*b ..
                                k*b+b-1; stream bit i = bit i%8 of byte i/8); only kept weights */
    size_t codes_bytes;      /* bytes readable at codes (the kernels never read past them) */
    const uint64_t *row_bit; /* [rows] first stream bit of each row; NULL: r * cols * bits (no mask) */
    const uint16_t *scales;  /* F16 [rows, n_groups] (any alignment) */
    const uint8_t *zeros;    /* [rows, n_groups] */
    const uint8_t *mask;     /* keep mask [rows, (cols + 7) / 8]: bit c%8 of byte c/8; NULL: all kept */
    const int32_t *perm;     /* [cols] stored column j (of codes, mask, groups) is W's column perm[j]:
                                act-order groups made contiguous; NULL: the identity */
    int kept64;              /* K > 0: the mask keeps exactly K of every 64 columns of every row (an N:M
                                pattern with M dividing 64), set by pq__qmat_kept64; 0: unknown */
} pq__qmat;

/* Instruction-set paths. */
typedef enum pq__isa { PQ_ISA_AUTO = 0, PQ_ISA_PORTABLE, PQ_ISA_AVX2, PQ_ISA_AVX512 } pq__isa;
/* The best path this CPU runs (never AUTO). */
pq__isa pq__qmat_isa(void);
const char *pq__isa_name(pq__isa isa);

#define PQ_QMAT_GEMV_MAX 4
/* Products of up to this many vectors (a short prompt) run as GEMVs of PQ_QMAT_GEMV_MAX
 * vectors at a time: a GEMM's weight panels are decoded to float32 once per product, which
 * costs more than reading the codes n / 4 times until about 24 vectors (generate on the 1B
 * shape, 4-bit g128, 2 threads: 0.62 -> 0.38 s at 5 prompt tokens, 0.83 -> 0.64 s at 16,
 * 0.87 -> 1.13 s at 32). */
#define PQ_QMAT_GEMV_CHUNKED_MAX 16

/* K when w's mask keeps exactly K of every 64 columns of every row (cols a multiple of 64),
 * else 0: the kernels then know where each 64 columns' codes start without counting. */
int pq__qmat_kept64(const pq__qmat *w);
/* Kept weights of mask row m (bit c % 8 of byte c / 8) in columns [0, c). */
int64_t pq__qmat_kept_before(const uint8_t *m, int64_t c);

/* Bytes the matrix occupies (codes, scales, zeros, mask; or the float rows). */
size_t pq__qmat_bytes(const pq__qmat *w);

/* Y [n, rows] = X [n, cols] W^T (+ b [rows]) on n_threads threads; isa PQ_ISA_AUTO picks the
 * best path (tests and benchmarks name one; a path the CPU lacks falls back to the next). Work
 * buffers come from ctx's scratch (pq__scratch; ctx NULL: allocated per call). Returns 0, or -1
 * when a work buffer could not be allocated (nothing written then). */
int pq__qmat_matmul(pq_ctx *ctx, const pq__qmat *w, const float *x, const float *b, float *y, int64_t n,
                    int n_threads, pq__isa isa);
/* The same, with int8_act flags: PQ_QMAT_INT8_PROMPT, more than PQ_QMAT_GEMV_MAX vectors
 * (prompts), and PQ_QMAT_INT8_DECODE, up to PQ_QMAT_GEMV_MAX (decoding), multiply packed codes
 * with 8-bit activations where the CPU has AVX-512 VNNI and the group size allows (32 or a
 * multiple of 64; decoding: groups of 32, 64, 128, 192 or 256): per unit of min(group, 256)
 * columns each activation becomes xs * rint(x / xs), xs = max|x| / 127, as llama.cpp's Q8
 * activations do; the products of codes and those integers are exact (int32) and scaled in
 * float (pq__qmat_matmul_q8_ref). Faster; the result differs from the float32 product by that
 * rounding (about 1e-3 relative), so it is an option, never the default. Otherwise as
 * pq__qmat_matmul. */
#define PQ_QMAT_INT8_PROMPT 1
#define PQ_QMAT_INT8_DECODE 2
int pq__qmat_matmul_act(pq_ctx *ctx, const pq__qmat *w, const float *x, const float *b, float *y, int64_t n,
                        int n_threads, pq__isa isa, int int8_act);
/* Y_j = X W_j^T (+ b_j) for k <= PQ_QMAT_MANY_MAX matrices that multiply the same X (q, k, v;
 * gate, up); b NULL or b[j] NULL: no bias. GEMVs (n <= PQ_QMAT_GEMV_CHUNKED_MAX) with matrices of
 * the same columns (and groups, for the integer GEMV) run them as one product per 4 vectors: the
 * activations prepared once, one parallel region over all their rows; each Y_j is bit for bit
 * pq__qmat_matmul_act's. Otherwise the products one after the other. Returns 0 or -1 as it. */
#define PQ_QMAT_MANY_MAX 4
int pq__qmat_matmul_many(pq_ctx *ctx, int k, const pq__qmat *const *w, const float *const *b, const float *x,
                         float *const *y, int64_t n, int n_threads, pq__isa want, int int8_act);
/* Reference of the 8-bit-activation product: the same activation rounding, each weight decoded
 * exactly, products summed in double. */
void pq__qmat_matmul_q8_ref(const pq__qmat *w, const float *x, const float *b, float *y, int64_t n);

/* Reference: each weight decoded as above, products accumulated in float in column order. */
void pq__qmat_matmul_ref(const pq__qmat *w, const float *x, const float *b, float *y, int64_t n);

/* Rows [r0, r0 + n) of W as float32 into dst [n, cols] (W's column order): exactly the values
 * above. */
void pq__qmat_rows_f32(const pq__qmat *w, int64_t r0, int64_t n, float *dst);
/* Weights equal to 0.0f. */
int64_t pq__qmat_count_zeros(const pq__qmat *w);
/* Weight (r, c) as float32 (one at a time: for tests and counts). */
float pq__qmat_at(const pq__qmat *w, int64_t r, int64_t c);

#endif
