/* Tensor element types (dtype.h). */
#include <string.h>

#include "common/common.h"
#include "kernels/dtype.h"
#include "kernels/ggml_types.h"

size_t pq__dtype_block_bytes(pq_dtype t, int64_t *block_elems) {
    int64_t be = 1;
    size_t b = 0;
    switch (t) {
    case PQ_DTYPE_F32: b = 4; break;
    case PQ_DTYPE_F16:
    case PQ_DTYPE_BF16:
    case PQ_DTYPE_I16: b = 2; break;
    case PQ_DTYPE_Q8_0:
        b = 34;
        be = 32;
        break;
    case PQ_DTYPE_Q4_0:
        b = 18;
        be = 32;
        break;
    case PQ_DTYPE_I8:
    case PQ_DTYPE_U8:
    case PQ_DTYPE_BOOL: b = 1; break;
    case PQ_DTYPE_I32: b = 4; break;
    case PQ_DTYPE_I64:
    case PQ_DTYPE_F64: b = 8; break;
    default: {
        const pq__ggml_info *gi = pq__ggml_info_of(t);
        if (gi) b = (size_t)gi->bytes, be = gi->block;
    }
    }
    if (block_elems) *block_elems = be;
    return b;
}

size_t pq__dtype_nbytes(pq_dtype t, int64_t n) {
    int64_t be;
    size_t bb = pq__dtype_block_bytes(t, &be);
    if (!bb || n < 0 || n % be) return 0;
    size_t out;
    if (!pq__mul_ok((size_t)(n / be), bb, &out)) return 0;
    return out;
}

/* Bulk conversions between float32 and the 16-bit floats, written as branch-free selects so
 * that the compiler vectorises them; each equals its scalar reference in common.c (pq__f16_to_f32,
 * pq__f32_to_f16, pq__bf16_to_f32, pq__f32_to_bf16) bit for bit, NaNs included (test_kernels
 * checks every 16-bit input and a sweep of float32 ones). Sources and destinations may be
 * unaligned: elements move through memcpy. */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Half h -> float bits: normal numbers rebias the exponent; infinities and NaNs keep their
 * mantissa (a signalling NaN stays one); a subnormal m 2^-24 is the float m (exact) with its
 * exponent lowered by 24. */
static inline uint32_t f16_bits_to_f32(uint32_t h) {
    const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    const uint32_t normal = ((exp + 112u) << 23) | (man << 13);
    const uint32_t special = 0x7f800000u | (man << 13);
    const uint32_t sub = f32_bits((float)(int32_t)man) - (24u << 23); /* m 2^-24 when m > 0 */
    /* selects as masks: the compiler keeps the loop branch-free */
    const uint32_t is_sp = 0u - (uint32_t)(exp == 31u), is_sub = 0u - (uint32_t)(exp == 0u);
    const uint32_t nz = 0u - (uint32_t)(man != 0u);
    return sign | (normal & ~(is_sp | is_sub)) | (special & is_sp) | (sub & is_sub & nz);
}

/* Float bits -> half, rounding to nearest even; every NaN becomes 0x7e00 with its sign, as
 * the scalar reference. Below 2^-14 the result is a subnormal (or 0): adding 0.5 (exponent
 * 126) puts the rounded multiple of 2^-24 in the low mantissa bits. */
static inline uint32_t f32_bits_to_f16(uint32_t x) {
    const uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    const uint32_t big = a > 0x7f800000u ? 0x7e00u : 0x7c00u; /* NaN, or >= 65536 and inf */
    const uint32_t sub = f32_bits(bits_f32(a) + 0.5f) - 0x3f000000u;
    const uint32_t norm = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13; /* exponent - 112, round */
    return sign | (a >= 0x47800000u ? big : a < 0x38800000u ? sub : norm);
}

static inline uint32_t f32_bits_to_bf16(uint32_t x) {
    const uint32_t nan = (x >> 16) | 0x40u, rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    return (x & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
}

static void f16_to_f32_n(const uint8_t *s, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        const uint32_t b = f16_bits_to_f32(h);
        memcpy(dst + i, &b, 4);
    }
}

static void bf16_to_f32_n(const uint8_t *s, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        const uint32_t b = (uint32_t)h << 16;
        memcpy(dst + i, &b, 4);
    }
}

static void f32_to_half_n(const float *src, uint8_t *d, int64_t n, int bf16) {
    if (bf16)
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = (uint16_t)f32_bits_to_bf16(f32_bits(src[i]));
            memcpy(d + 2 * i, &h, 2);
        }
    else
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = (uint16_t)f32_bits_to_f16(f32_bits(src[i]));
            memcpy(d + 2 * i, &h, 2);
        }
}

int pq__to_f32(pq_dtype t, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    switch (t) {
    case PQ_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return 1;
    case PQ_DTYPE_F16: f16_to_f32_n(s, dst, n); return 1;
    case PQ_DTYPE_BF16: bf16_to_f32_n(s, dst, n); return 1;
    case PQ_DTYPE_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 1;
    default: { /* the ggml block types (Q8_0, Q4_0, ..., Q6_K) */
        const pq__ggml_info *gi = pq__ggml_info_of(t);
        if (!gi || n % gi->block) return 0;
        pq__ggml_decode_row(gi, src, dst, n);
        return 1;
    }
    }
}

int pq__from_f32(pq_dtype t, const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    switch (t) {
    case PQ_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return 1;
    case PQ_DTYPE_F16: f32_to_half_n(src, d, n, 0); return 1;
    case PQ_DTYPE_BF16: f32_to_half_n(src, d, n, 1); return 1;
    default: return 0;
    }
}
