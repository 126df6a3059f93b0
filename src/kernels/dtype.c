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

/* n 16-bit floats (unaligned, little-endian) through conv. */
static void halves_to_f32(const uint8_t *s, float *dst, int64_t n, float (*conv)(uint16_t)) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = conv(h);
    }
}

int pq__to_f32(pq_dtype t, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    switch (t) {
    case PQ_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return 1;
    case PQ_DTYPE_F16: halves_to_f32(s, dst, n, pq__f16_to_f32); return 1;
    case PQ_DTYPE_BF16: halves_to_f32(s, dst, n, pq__bf16_to_f32); return 1;
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
    case PQ_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = pq__f32_to_f16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return 1;
    case PQ_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = pq__f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return 1;
    default: return 0;
    }
}
