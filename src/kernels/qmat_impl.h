/* Internals of the qmat kernels (qmat.h): the pieces the instruction-set files share. */
#ifndef PQ_KERNELS_QMAT_IMPL_H
#define PQ_KERNELS_QMAT_IMPL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qmat.h"

static inline float pq__h2f(uint16_t h) { /* IEEE half to float, exact */
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp) {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (!man) {
        u = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        uint32_t m = man;
        do {
            e++;
            m <<= 1;
        } while (!(m & 0x400u));
        u = sign | ((uint32_t)(112 - e) << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float pq__bf2f(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t pq__ld16(const void *p, int64_t i) {
    uint16_t v;
    memcpy(&v, (const uint8_t *)p + 2 * i, 2);
    return v;
}

static inline int pq__bit(const uint8_t *row, int64_t c) {
    return (row[c >> 3] >> (c & 7)) & 1;
}

/* Bytes per weight of a float kind (f32, f16, bf16). */
static inline size_t pq__qmat_fbytes(int kind) {
    return kind == PQ_QMAT_F32 ? 4 : 2;
}

/* Row r of a float matrix. */
static inline const uint8_t *pq__qmat_frow(const pq__qmat *w, int64_t r) {
    return (const uint8_t *)w->data + pq__qmat_fbytes(w->kind) * (size_t)(r * w->cols);
}

/* Bytes of a keep-mask row. */
static inline int64_t pq__qmat_mask_stride(const pq__qmat *w) {
    return (w->cols + 7) / 8;
}

/* First stream bit of row r's codes. */
static inline uint64_t pq__qmat_row_bit(const pq__qmat *w, int64_t r) {
    return w->row_bit ? w->row_bit[r] : (uint64_t)r * (uint64_t)w->cols * (uint64_t)w->bits;
}

/* Row r, columns [c0, c0 + n) of W as float32 into dst (portable). */
void pq__qmat_decode_seg(const pq__qmat *w, int64_t r, int64_t c0, int64_t n, float *dst);

/* ---- GEMV: the rows [r0, r1) of Y (stride ldy) for nv <= PQ_QMAT_GEMV_MAX vectors ---- */

/* The activations of the AVX-512 integer GEMV, one input vector (qmat.h): per column three
 * signed digits of X = round(x / xs_g) = 65536 d0 + 256 d1 + d2, columns padded with zeros to
 * a multiple of 64; per group xs and sxs = xs * sum(X) (float). planes 1: 8-bit activations
 * instead (pq__qmat_q8_quantize's, groups of one 8-bit unit each: pq__qmat_q8_gemv_ok), X = d0. */
typedef struct pq__qmat_xq {
    int8_t *d[3]; /* [cols64] */
    float *xs;    /* [groups16] (0 past the last group) */
    float *sxs;   /* [groups16] */
    int planes;   /* 3 or 1 */
    int nib;      /* 1: the digits in nibble order (pq__qmat_xq_nibble_avx512), for the 4-bit kernel */
} pq__qmat_xq;

void pq__qmat_xq_prepare_avx512(const pq__qmat *w, const float *x, pq__qmat_xq *xq);
/* pq__qmat_q8_quantize in 16 lanes, the same integers and scales (w: pq__qmat_q8_ok). */
void pq__qmat_q8_quantize_avx512(const pq__qmat *w, const float *x, int64_t n, int8_t *q8, float *xs, float *sq);
/* 4-bit rows without a mask, columns a multiple of 128, groups of 32, 64 or a multiple of 128:
 * the stream's 64 bytes of 128 columns hold the even columns' codes in their low nibbles and
 * the odd columns' in their high ones, so one AND and one shift unpack them when the
 * activations are in the same order. pq__qmat_xq_nibble_avx512 copies src's digits into dst's
 * planes that way (per 128 columns: the 64 even columns, then the 64 odd ones; xs and sxs are
 * src's); the kernel runs for one vector whose xq has nib set. */
int pq__qmat_nib_ok(const pq__qmat *w);
void pq__qmat_xq_nibble_avx512(const pq__qmat_xq *src, int64_t cols, pq__qmat_xq *dst);
/* 1 when the AVX-512 integer GEMV handles w (group size 32 or a multiple of 64). */
int pq__qmat_avx512_gemv_ok(const pq__qmat *w);
/* Groups rounded up to a multiple of 16, with at least one to spare (the per-vector arrays). */
static inline int64_t pq__qmat_groups16(const pq__qmat *w) {
    return (w->n_groups + 1 + 15) / 16 * 16;
}
/* scratch: pq__qmat_groups16(w) * PQ_QMAT_GEMV_MAX floats of the calling thread. */
void pq__qmat_gemv_avx512(const pq__qmat *w, const pq__qmat_xq *xq, int nv, int64_t r0, int64_t r1, float *y,
                          int64_t ldy, float *scratch);
/* Float kernels: x [nv, cols] (stride cols). */
void pq__qmat_gemv_avx512_float(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y,
                                int64_t ldy);
void pq__qmat_gemv_avx2(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y, int64_t ldy);
void pq__qmat_gemv_portable(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y, int64_t ldy);

/* ---- GEMM: C [m, ldc] += A B for packed panels (qmat_gemm.c) ---- */

/* A panel: MR rows of X, k-major ([kc][MR]); B panel: NR weight rows decoded, k-major
 * ([kc][NR]). The microkernel adds the m x nr corner of the MR x NR product into C. */
typedef void (*pq__ukernel_fn)(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int m, int nr);
/* Decodes W rows [r0, r0 + nr) x columns [c0, c0 + kc) into a B panel [kc][NR] (zero-padded). */
typedef void (*pq__bpack_fn)(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR);

void pq__qmat_ukernel_avx512(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int m, int nr);
void pq__qmat_ukernel_avx2(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int m, int nr);
void pq__qmat_bpack_avx512(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR);
void pq__qmat_bpack_avx2(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR);
void pq__qmat_bpack_portable(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR);

#define PQ_GEMM_MR_AVX512 12
#define PQ_GEMM_NR_AVX512 32
#define PQ_GEMM_MR_AVX2 6
#define PQ_GEMM_NR_AVX2 16
/* Columns per KC block of the float GEMM (qmat_gemm.c). Large, so that each C tile is loaded
 * and stored few times: the 1B shape's linears at 4 bits, in turns against 256, AVX-512, 2
 * threads: 128 tokens 1.20-1.23x, 512 tokens 1.10-1.14x, 2048 tokens 1.13-1.15x (a KC of 2048
 * against 1024: 1.03x at 512 tokens, 0.69-0.74x at 2048, the A panels outgrowing the caches). */
#define PQ_GEMM_KC 1024
/* Columns per KC block of the 8-bit-activation GEMM (pq__qmat_gemm_q8): every K up to 8192 in
 * one block, its C tiles loaded and stored once. The 1B shape at 4 bits, AVX-512, 2
 * threads, against 256: 1024 gave 1.47x (128 tokens), 1.14-1.45x (512), 1.62x (2048); 2048
 * another 1.10-1.16x; the whole K (5632) another 1.09-1.26x. A K of more blocks adds a partial
 * sum per block to C, so the block size moves the last bits. (Measured with 4-token tiles.) */
#define PQ_GEMM_Q8_KC 8192

/* With 8-bit activations (opt-in, qmat.h): per unit of min(group, 256) columns q = rint(x / xs),
 * xs = max|x| / 127, into q8 [n, cols rounded up to 64], xs and sq = sum q [n, units]; and the
 * product Y [n, rows] = X W^T through int32 sums per unit (AVX-512 VNNI). */
int pq__qmat_q8_ok(const pq__qmat *w);
int64_t pq__qmat_q8_unit(const pq__qmat *w);
void pq__qmat_q8_quantize(const pq__qmat *w, const float *x, int64_t n, int8_t *q8, float *xs, float *sq);
int pq__qmat_gemm_q8(pq_ctx *ctx, const pq__qmat *w, const float *x, float *y, int64_t n, int nt);

/* Exact products of a prompt in VNNI integers (AVX-512, for w with pq__qmat_q8_ok): the
 * activations as the integer GEMV takes them (24-bit X per unit of pq__qmat_q8_unit columns,
 * three signed bytes), the codes as the 8-bit GEMM packs them. Y [n, rows] = X W^T; -1 when a
 * buffer could not be allocated. */
int pq__qmat_gemm_x24(pq_ctx *ctx, const pq__qmat *w, const float *x, float *y, int64_t n, int nt);

/* Y [n, rows] = X W^T (+ b) through packed panels; -1 when a buffer could not be allocated. */
int pq__qmat_gemm(pq_ctx *ctx, const pq__qmat *w, const float *x, const float *b, float *y, int64_t n, int n_threads,
                  pq__isa isa);

/* n bytes of work memory: ctx's scratch slot, or (ctx NULL) malloc'ed into *own for the caller
 * to free. NULL when out of memory. */
static inline void *pq__qmat_work(pq_ctx *ctx, int slot, size_t n, void **own) {
    *own = NULL;
    if (ctx) return pq__scratch(ctx, slot, n);
    return *own = malloc(n ? n : 1);
}

#endif
