/* AVX2 kernels of qmat.h (+ FMA, F16C, BMI2): float GEMV of f16 / bf16 rows and of b-bit
 * codes (8 codes at a time spread into bytes with PDEP), and the 6 x 16 GEMM microkernel.
 * Compiled through function attributes; called only when pq__qmat_isa allows. */
#include "kernels/qmat_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T256 __attribute__((target("avx2,fma,f16c,bmi2,popcnt")))

/* 8 bytes from stream byte p (zero past the end). */
static inline uint64_t load8(const pq__qmat *w, size_t p) {
    uint64_t v = 0;
    if (p + 8 <= w->codes_bytes)
        memcpy(&v, w->codes + p, 8);
    else if (p < w->codes_bytes)
        memcpy(&v, w->codes + p, w->codes_bytes - p);
    return v;
}

/* The low byte of every byte lane, b bits each: PDEP's spread mask. */
static inline uint64_t spread_mask(int b) {
    return 0x0101010101010101ull * ((1u << b) - 1);
}

/* n (<= 8) b-bit codes from stream bit pos, one per byte (n * b <= 64 - 7 for b <= 7; for
 * b = 8 the stream stays byte-aligned). */
T256 static inline uint64_t codes8(const pq__qmat *w, uint64_t pos, int n) {
    if (!n) return 0;
    const int b = w->bits;
    uint64_t bits = load8(w, (size_t)(pos >> 3)) >> (pos & 7);
    if (n * b < 64) bits &= ((uint64_t)1 << (n * b)) - 1;
    return _pdep_u64(bits, spread_mask(b));
}

/* 8 floats (code - zero) * scale of columns [c, c + 8) of a codes row; masked-out columns 0.
 * gz / gs: the group's zero and scale (the caller keeps the 8 columns inside one group). */
T256 static inline __m256 codes_f8(const pq__qmat *w, const uint8_t *m, int64_t c, uint64_t *pos, __m256 zf,
                                   __m256 sf) {
    uint64_t q;
    __m256 keep = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    if (m) {
        unsigned mb = m[c >> 3];
        if (w->cols - c < 8) mb &= (1u << (w->cols - c)) - 1;
        const int k = __builtin_popcount(mb);
        const uint64_t lanes = _pdep_u64(mb, 0x0101010101010101ull) * 0xFF;
        q = _pdep_u64(codes8(w, *pos, k), lanes);
        *pos += (uint64_t)k * (uint64_t)w->bits;
        keep = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)lanes)), _mm256_setzero_si256()));
    } else {
        q = codes8(w, *pos, 8);
        *pos += 8 * (uint64_t)w->bits;
    }
    const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)q)));
    return _mm256_and_ps(_mm256_mul_ps(_mm256_sub_ps(f, zf), sf), keep);
}

/* Weights c .. c + 7 of a float row (f32, f16, bf16) as floats. */
T256 static inline __m256 float_f8(const pq__qmat *w, const uint8_t *row, int64_t c) {
    if (w->kind == PQ_QMAT_F32) return _mm256_loadu_ps((const float *)(row + 4 * c));
    const __m128i h = _mm_loadu_si128((const __m128i *)(row + 2 * c));
    if (w->kind == PQ_QMAT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

T256 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Codes rows whose groups are whole 8-column steps run here; other shapes go portable. */
static int codes_ok(const pq__qmat *w) {
    return w->kind != PQ_QMAT_CODES || (w->group_size % 8 == 0 && w->bits >= 1 && w->bits <= 8);
}

T256 static inline void gemv_rows(const pq__qmat *w, const float *x, const int NV, int64_t r0, int64_t r1, float *y,
                                  int64_t ldy) {
    const int64_t C = w->cols, c8 = C / 8 * 8, mstride = (C + 7) / 8;
    for (int64_t r = r0; r < r1; r++) {
        __m256 acc[PQ_QMAT_GEMV_MAX];
        for (int v = 0; v < NV; v++)
            acc[v] = _mm256_setzero_ps();
        int64_t c = 0;
        if (w->kind == PQ_QMAT_CODES) {
            const uint8_t *m = w->mask ? w->mask + r * mstride : NULL, *z = w->zeros + r * w->n_groups;
            uint64_t pos = pq__qmat_row_bit(w, r);
            for (int64_t g = 0; g < w->n_groups; g++) {
                const __m256 zf = _mm256_set1_ps((float)z[g]),
                             sf = _mm256_set1_ps(pq__h2f(pq__ld16(w->scales, r * w->n_groups + g)));
                for (c = g * w->group_size; c < (g + 1) * w->group_size; c += 8) {
                    const __m256 f = codes_f8(w, m, c, &pos, zf, sf);
                    for (int v = 0; v < NV; v++)
                        acc[v] = _mm256_fmadd_ps(f, _mm256_loadu_ps(x + v * C + c), acc[v]);
                }
            }
        } else {
            const uint8_t *row = pq__qmat_frow(w, r);
            for (; c < c8; c += 8) {
                const __m256 f = float_f8(w, row, c);
                for (int v = 0; v < NV; v++)
                    acc[v] = _mm256_fmadd_ps(f, _mm256_loadu_ps(x + v * C + c), acc[v]);
            }
        }
        for (int v = 0; v < NV; v++) {
            float s = hsum8(acc[v]);
            if (c < C) { /* float rows whose length is not a multiple of 8 */
                float tail[8];
                pq__qmat_decode_seg(w, r, c, C - c, tail);
                for (int64_t t = c; t < C; t++)
                    s += tail[t - c] * x[v * C + t];
            }
            y[v * ldy + r] = s;
        }
    }
}

T256 void pq__qmat_gemv_avx2(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y,
                             int64_t ldy) {
    if (!codes_ok(w)) {
        pq__qmat_gemv_portable(w, x, nv, r0, r1, y, ldy);
        return;
    }
    switch (nv) {
    case 1: gemv_rows(w, x, 1, r0, r1, y, ldy); break;
    case 2: gemv_rows(w, x, 2, r0, r1, y, ldy); break;
    case 3: gemv_rows(w, x, 3, r0, r1, y, ldy); break;
    default: gemv_rows(w, x, 4, r0, r1, y, ldy); break;
    }
}

/* C [m, nr corner of MR x NR] += A [kc][MR] B [kc][NR]: 12 accumulators. */
T256 void pq__qmat_ukernel_avx2(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int m, int nr) {
    enum { MR = PQ_GEMM_MR_AVX2, NR = PQ_GEMM_NR_AVX2 };
    __m256 c[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
        c[i][0] = c[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(B + k * NR), b1 = _mm256_loadu_ps(B + k * NR + 8);
        const float *a = A + k * MR;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) { /* constant indices: the accumulators stay in registers */
        if (i >= m) break;
        float *ci = C + i * ldc;
        if (nr == NR) {
            _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), c[i][0]));
            _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), c[i][1]));
        } else {
            float t[NR];
            _mm256_storeu_ps(t, c[i][0]);
            _mm256_storeu_ps(t + 8, c[i][1]);
            for (int j = 0; j < nr; j++)
                ci[j] += t[j];
        }
    }
}

/* r[i] lane j <-> r[j] lane i: pairs of floats, then of pairs, then 128-bit halves. */
T256 static inline void transpose8(__m256 r[8]) {
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++)
        r[i] = t[i];
}

/* Columns of the B panel decoded before they are transposed. */
#define BPACK_COLS 256

/* Columns [c0, c0 + n) of row r as floats into row (c0 and n multiples of 8): the group's scale
 * and zero looked up when the group changes. */
T256 static void decode_row(const pq__qmat *w, int64_t r, int64_t c0, int64_t n, float *row) {
    if (w->kind != PQ_QMAT_CODES) {
        const uint8_t *src = pq__qmat_frow(w, r);
        for (int64_t k = 0; k < n; k += 8)
            _mm256_storeu_ps(row + k, float_f8(w, src, c0 + k));
        return;
    }
    const uint8_t *m = w->mask ? w->mask + r * ((w->cols + 7) / 8) : NULL, *z = w->zeros + r * w->n_groups;
    uint64_t pos = pq__qmat_row_bit(w, r) + (uint64_t)(m ? pq__qmat_kept_before(m, c0) : c0) * (uint64_t)w->bits;
    int64_t g = c0 / w->group_size, g_end = (g + 1) * w->group_size;
    __m256 zf = _mm256_set1_ps((float)z[g]), sf = _mm256_set1_ps(pq__h2f(pq__ld16(w->scales, r * w->n_groups + g)));
    for (int64_t k = 0; k < n; k += 8) {
        if (c0 + k >= g_end) { /* groups are multiples of 8 columns (codes_ok) */
            g++, g_end += w->group_size;
            zf = _mm256_set1_ps((float)z[g]);
            sf = _mm256_set1_ps(pq__h2f(pq__ld16(w->scales, r * w->n_groups + g)));
        }
        _mm256_storeu_ps(row + k, codes_f8(w, m, c0 + k, &pos, zf, sf));
    }
}

/* B panel [kc][NR] of rows [r0, r0 + nr): BPACK_COLS columns of 8 rows decoded (rows past nr
 * zero), then written 8 x 8 floats at a time through transpose8. */
T256 void pq__qmat_bpack_avx2(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR) {
    if (!codes_ok(w) || c0 % 8 || kc % 8 || NR % 8) {
        pq__qmat_bpack_portable(w, r0, nr, c0, kc, B, NR);
        return;
    }
    _Alignas(32) float rows[8][BPACK_COLS];
    for (int64_t k0 = 0; k0 < kc; k0 += BPACK_COLS) {
        const int64_t n = kc - k0 < BPACK_COLS ? kc - k0 : BPACK_COLS;
        for (int j0 = 0; j0 < NR; j0 += 8) {
            for (int j = 0; j < 8; j++) {
                if (j0 + j < nr)
                    decode_row(w, r0 + j0 + j, c0 + k0, n, rows[j]);
                else
                    memset(rows[j], 0, (size_t)n * sizeof(float));
            }
            float *Bk = B + k0 * NR + j0;
            for (int64_t k = 0; k < n; k += 8) {
                __m256 v[8];
                for (int j = 0; j < 8; j++)
                    v[j] = _mm256_load_ps(rows[j] + k);
                transpose8(v);
                for (int i = 0; i < 8; i++)
                    _mm256_storeu_ps(Bk + (k + i) * NR, v[i]);
            }
        }
    }
}

#else /* not x86-64: never called */
void pq__qmat_bpack_avx2(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR) {
    pq__qmat_bpack_portable(w, r0, nr, c0, kc, B, NR);
}

void pq__qmat_gemv_avx2(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y, int64_t ldy) {
    pq__qmat_gemv_portable(w, x, nv, r0, r1, y, ldy);
}
void pq__qmat_ukernel_avx2(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int m, int nr) {
    (void)kc, (void)A, (void)B, (void)C, (void)ldc, (void)m, (void)nr;
}
#endif
