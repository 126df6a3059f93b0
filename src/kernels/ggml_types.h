/* ggml block quantization types (Q4_0 ... Q6_K): the type table, exact decode, encode from
 * codes + block parameters, per-element grids and a round-to-nearest quantizer.
 *
 * Layouts and dequantization formulas are those of ggml (ggml-common.h, ggml-quants.c of
 * llama.cpp v0.4.0); decode reproduces ggml's float operations in the same order, so it is
 * bit-for-bit equal to ggml's dequantize_row_*.
 *
 * Every type is a grid per sub-block of `sub` elements (legacy types: the whole 32-element
 * block): element code q in [0, maxq] dequantizes to
 *     a * (q - z)        symmetric types (z > 0: Q4_0, Q5_0, Q8_0, Q3_K, Q6_K)
 *     a * q + b          types with a min (z = 0: Q4_1, Q5_1, Q2_K, Q4_K, Q5_K)
 * with a, b computed from the block parameters exactly as ggml does (Q4_K: a = d*sc,
 * b = -(dmin*m); Q6_K: a = d*sc; Q3_K: a = d*(sc-32); Q4_1: a = d, b = m).
 *
 * Use for GPTQ onto ggml grids: pq__ggml_fit_row fixes the block parameters of a row,
 * pq__ggml_grid_at gives each element's grid, pq__ggml_grid_round rounds a value onto it
 * (code + exact dequantized float), pq__ggml_encode_row packs codes + parameters. */
#ifndef PQ_QUANT_GGML_TYPES_H
#define PQ_QUANT_GGML_TYPES_H

#include "common/common.h"
#include "kernels/qmat.h"

#define PQ_GGML_QK_K 256
#define PQ_GGML_MAX_SUB 16 /* sub-blocks per block, at most (Q2_K, Q3_K, Q6_K) */

typedef struct pq__ggml_info {
    pq_dtype dtype;
    uint32_t ggml_id;   /* GGML_TYPE_* as numbered in GGUF files */
    const char *name;   /* "Q4_K" */
    int block;          /* elements per block: 32 or 256 */
    int bytes;          /* bytes per block */
    double bits;        /* bits per weight: 8 * bytes / block */
    int sub;            /* elements per sub-block grid */
    int maxq;           /* codes are 0..maxq */
    int z;              /* symmetric: value = a*(q - z); 0: value = a*q + b */
    int kquant;         /* 1: super-block d (and dmin) with integer sub-block scales */
    int sc_min, sc_max; /* K-quants: range of the sub-block scale code (Q3_K as sc-32) */
    int mn_max;         /* K-quants with a min: the min code is 0..mn_max */
} pq__ggml_info;

/* The symmetric legacy types (Q4_0, Q5_0, Q8_0: d * (q - z) per block of 32) re-laid as codes the
 * kernels multiply directly (kernels/qmat.h: a b-bit stream, an F16 scale and a zero per 32
 * weights; values bit-identical to ggml's decode) on nt threads, into owned[0..2] (free() each).
 * Returns 1 done, 0 when t is another type (decode it to float32 instead), -1 out of memory. */
int pq__ggml_to_qmat(pq_dtype t, const void *data, int64_t rows, int64_t cols, int nt, pq__qmat *out, void *owned[3]);

/* NULL when t is not one of the ggml block types above. */
const pq__ggml_info *pq__ggml_info_of(pq_dtype t);
/* NULL when the ggml type id is not one of them. */
const pq__ggml_info *pq__ggml_info_by_id(uint32_t ggml_id);

/* Parameters of one block. d/dmin are f16 bits (Q4_1/Q5_1: dmin holds the min m; symmetric
 * types: dmin unused, 0). sc/mn: K-quant sub-block codes as the dequantizer uses them
 * (Q2_K 0..15, Q4_K/Q5_K 0..63, Q3_K -32..31, Q6_K -128..127; mn only for types with a min). */
typedef struct pq__ggml_params {
    uint16_t d, dmin;
    int16_t sc[PQ_GGML_MAX_SUB], mn[PQ_GGML_MAX_SUB];
} pq__ggml_params;

/* The grid of one sub-block (see the top of this file). b is exact for types with a min;
 * for symmetric types it is -a*z rounded (informative: use pq__ggml_grid_value). */
typedef struct pq__ggml_grid {
    float a, b;
    int z, maxq;
} pq__ggml_grid;

/* Grid of sub-block s (0 .. block/sub-1) of a block with parameters p. */
void pq__ggml_grid_of(const pq__ggml_info *ti, const pq__ggml_params *p, int s, pq__ggml_grid *g);
/* Grid of element col of a row whose blocks have parameters p[col / block]. */
void pq__ggml_grid_at(const pq__ggml_info *ti, const pq__ggml_params *p, int64_t col, pq__ggml_grid *g);
/* The value ggml dequantizes code q to (bit-exact). */
float pq__ggml_grid_value(const pq__ggml_grid *g, int q);
/* Nearest code to x (ties: the lower code); *v (optional) gets its exact value. */
int pq__ggml_grid_round(const pq__ggml_grid *g, float x, float *v);

/* Packs n elements (a multiple of the block) from codes[n] (0..maxq) and p[n/block]. */
void pq__ggml_encode_row(const pq__ggml_info *ti, const pq__ggml_params *p, const uint8_t *codes, int64_t n,
                         void *dst);
/* Unpacks bytes into parameters and codes (the inverse of encode); p or codes may be NULL. */
void pq__ggml_unpack_row(const pq__ggml_info *ti, const void *src, int64_t n, pq__ggml_params *p, uint8_t *codes);
/* Decodes n elements into float32, equal bit for bit to ggml's dequantize_row_*. */
void pq__ggml_decode_row(const pq__ggml_info *ti, const void *src, float *dst, int64_t n);

/* llama.cpp's importance weights for a row x[n] of type ti: with imatrix (per-column
 * importance, [n]) as its quantize_row_*_impl weigh the squared error, without as its
 * reference quantizers do (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0: 1; Q2_K: |x|; Q3_K, Q6_K: x^2;
 * Q4_K/Q5_K: rms of the 32-sub-block + |x|). Q8_0 ignores imatrix. */
void pq__ggml_weights(const pq__ggml_info *ti, const float *x, const float *imatrix, int64_t n, float *w);

/* Fits the block parameters of a row x[n] minimising sum_i w_i (x_i - q_i)^2 with each q_i
 * rounded to nearest on its grid (w NULL: all 1). p gets n/block entries. */
void pq__ggml_fit_row(const pq__ggml_info *ti, const float *x, const float *w, int64_t n, pq__ggml_params *p);
/* Round to nearest onto the grids of p: codes[n] and (optional) the dequantized values. */
void pq__ggml_round_row(const pq__ggml_info *ti, const pq__ggml_params *p, const float *x, int64_t n, uint8_t *codes,
                        float *deq);
/* fit + round + encode: n/block * bytes bytes at dst. Returns 0 on out of memory. */
int pq__ggml_quantize_row(const pq__ggml_info *ti, const float *x, const float *w, int64_t n, void *dst);
/* sum_i w_i (x_i - y_i)^2 in double (w NULL: all 1). */
double pq__ggml_wsse(const float *x, const float *y, const float *w, int64_t n);

#endif
