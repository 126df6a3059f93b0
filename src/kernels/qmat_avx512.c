/* AVX-512 kernels of qmat.h (F, BW, VL, DQ, VBMI, VBMI2, VNNI): the integer GEMV of b-bit
 * codes, the float GEMV of f16 / bf16 rows, and the 12 x 32 GEMM microkernel. Compiled for
 * any x86-64 target through function attributes; called only when pq__qmat_isa says so. */
#include "kernels/qmat_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <pthread.h>

#define T512                                                                                                         \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512vbmi2,avx512vnni,fma,f16c,bmi2,"      \
                          "popcnt")))

/* ---- unpacking 64 b-bit codes from a bit stream: VPERMB puts, for each output byte i, the
 * qword holding its bits in qword i/8 of a register; VPMULTISHIFTQB extracts 8 bits at the
 * offset of code i within that qword; AND keeps b of them. Tables per (b, first bit % 8). */
static uint8_t unpack_perm[9][8][64], unpack_shift[9][8][64];
static pthread_once_t unpack_once = PTHREAD_ONCE_INIT;

static void unpack_tables(void) {
    for (int b = 1; b <= 8; b++)
        for (int o = 0; o < 8; o++)
            for (int i = 0; i < 64; i++) {
                const int q = i / 8, first = (o + q * 8 * b) / 8; /* byte where qword q's codes start */
                for (int j = 0; j < 8; j++)
                    unpack_perm[b][o][q * 8 + j] = (uint8_t)(first + j);
                unpack_shift[b][o][i] = (uint8_t)(o + i * b - first * 8);
            }
}

int pq__qmat_avx512_gemv_ok(const pq__qmat *w) {
    return w->kind == PQ_QMAT_CODES && w->bits >= 1 && w->bits <= 8 &&
           (w->group_size == 32 || w->group_size % 64 == 0);
}

/* 64 bytes of the stream from byte p (zero-filled past its end). */
T512 static inline __m512i load_stream(const pq__qmat *w, size_t p) {
    if (p + 64 <= w->codes_bytes) return _mm512_loadu_si512(w->codes + p);
    uint8_t tmp[64] = {0};
    if (p < w->codes_bytes) memcpy(tmp, w->codes + p, w->codes_bytes - p);
    return _mm512_loadu_si512(tmp);
}

T512 static inline __m512i unpack64(const pq__qmat *w, uint64_t pos) {
    const int b = w->bits, o = (int)(pos & 7);
    const __m512i raw = load_stream(w, (size_t)(pos >> 3));
    const __m512i perm = _mm512_loadu_si512(unpack_perm[b][o]), sh = _mm512_loadu_si512(unpack_shift[b][o]);
    return _mm512_and_si512(_mm512_multishift_epi64_epi8(sh, _mm512_permutexvar_epi8(perm, raw)),
                            _mm512_set1_epi8((char)((1u << b) - 1)));
}

/* Mask bits of columns [c, c + 64) of mask row m (cols columns; 0 past them). */
static inline uint64_t mask64(const uint8_t *m, int64_t cols, int64_t c) {
    uint64_t v = 0;
    const int64_t left = cols - c;
    if (left >= 64) {
        memcpy(&v, m + c / 8, 8);
        return v;
    }
    memcpy(&v, m + c / 8, (size_t)((left + 7) / 8));
    return v & (((uint64_t)1 << left) - 1);
}

/* Columns per flush of the int32 accumulators: a group (32: a 64-column chunk holds two), at
 * most 256 columns (keeps 256 d0 + d1 within int32: 16 products of 255 x 128 per lane). */
static int64_t flush_cols(int64_t gs) {
    if (gs <= 64) return 64;
    for (int64_t u = 256; u > 64; u -= 64)
        if (gs % u == 0) return u;
    return 64;
}

/* The activations of one vector for the integer kernel (qmat_impl.h): per group xs = max|x| /
 * 8355000, X = rint(x * (1 / xs)) in float (|x - xs X| <= 1.5 xs: the product's two roundings
 * move x / xs <= 8355711 by less than one unit, rint by half of one), split
 * into three signed bytes; the columns past cols (to a multiple of 64) and groups past the last
 * are zero. Group sizes 32 or multiples of 64 (pq__qmat_avx512_gemv_ok). */
T512 void pq__qmat_xq_prepare_avx512(const pq__qmat *w, const float *x, pq__qmat_xq *xq) {
    const int64_t cols64 = (w->cols + 63) / 64 * 64, groups16 = pq__qmat_groups16(w), gs = w->group_size;
    for (int k = 0; k < 3; k++)
        memset(xq->d[k] + w->cols, 0, (size_t)(cols64 - w->cols));
    for (int64_t g = w->n_groups; g < groups16; g++)
        xq->xs[g] = xq->sxs[g] = 0.0f;
    const __m512i b128 = _mm512_set1_epi32(128), b255 = _mm512_set1_epi32(255), lim = _mm512_set1_epi32(8355711);
    for (int64_t g = 0; g < w->n_groups; g++) {
        const float *xg = x + g * gs;
        __m512 mx = _mm512_setzero_ps();
        for (int64_t i = 0; i < gs; i += 16)
            mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(xg + i)));
        const float m = _mm512_reduce_max_ps(mx);
        const float xs = m > 0.0f && m <= 3.4e38f ? m / 8355000.0f : 0.0f, inv = xs > 0.0f ? 1.0f / xs : 0.0f;
        __m512 sum = _mm512_setzero_ps(); /* in float: an int32 lane would overflow on long groups */
        for (int64_t i = 0; i < gs; i += 16) {
            __m512i X = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xg + i), _mm512_set1_ps(inv)));
            X = _mm512_max_epi32(_mm512_min_epi32(X, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
            const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(X, b128), b255), b128);
            const __m512i X1 = _mm512_srai_epi32(_mm512_sub_epi32(X, lo), 8);
            const __m512i mid = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(X1, b128), b255), b128);
            const __m512i hi = _mm512_srai_epi32(_mm512_sub_epi32(X1, mid), 8);
            _mm_storeu_si128((__m128i *)(xq->d[0] + g * gs + i), _mm512_cvtepi32_epi8(hi));
            _mm_storeu_si128((__m128i *)(xq->d[1] + g * gs + i), _mm512_cvtepi32_epi8(mid));
            _mm_storeu_si128((__m128i *)(xq->d[2] + g * gs + i), _mm512_cvtepi32_epi8(lo));
            sum = _mm512_add_ps(sum, _mm512_cvtepi32_ps(X));
        }
        xq->xs[g] = xs;
        xq->sxs[g] = xs * _mm512_reduce_add_ps(sum);
    }
}

/* Per-row scales: sc[v][g] = scale_g * xs_v[g] and the zero terms zs[v] = sum_g scale_g zero_g
 * sxs_v[g]; sc has groups16 floats per vector (0 past the last group). */
T512 static void row_scales(const pq__qmat *w, const pq__qmat_xq *xq, int nv, int64_t r, float *sc, int64_t groups16,
                            float *zs) {
    const uint16_t *s = (const uint16_t *)((const uint8_t *)w->scales + 2 * (size_t)(r * w->n_groups));
    const uint8_t *z = w->zeros + r * w->n_groups;
    __m512 zacc[PQ_QMAT_GEMV_MAX];
    for (int v = 0; v < nv; v++)
        zacc[v] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups16; g += 16) {
        const int64_t left = w->n_groups - g;
        __m512 sv, zv;
        if (left >= 16) {
            sv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + g)));
            zv = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(z + g))));
        } else {
            uint16_t st[16] = {0};
            uint8_t zt[16] = {0};
            if (left > 0) {
                memcpy(st, s + g, 2 * (size_t)left);
                memcpy(zt, z + g, (size_t)left);
            }
            sv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)st));
            zv = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)zt)));
        }
        for (int v = 0; v < nv; v++) {
            _mm512_storeu_ps(sc + v * groups16 + g, _mm512_mul_ps(sv, _mm512_loadu_ps(xq[v].xs + g)));
            zacc[v] = _mm512_fmadd_ps(_mm512_mul_ps(sv, zv), _mm512_loadu_ps(xq[v].sxs + g), zacc[v]);
        }
    }
    for (int v = 0; v < nv; v++)
        zs[v] = _mm512_reduce_add_ps(zacc[v]);
}

/* The codes of columns [c, c + 64) of row r as 64 bytes: kept codes in place, masked-out
 * columns holding their group's zero (so that code - zero = 0 needs no other care). */
T512 static inline __m512i chunk_codes(const pq__qmat *w, const uint8_t *m, int64_t c, uint64_t *pos, __m512i zfill) {
    if (!m) {
        const __m512i q = unpack64(w, *pos);
        *pos += 64 * (uint64_t)w->bits;
        return q;
    }
    const uint64_t k = mask64(m, w->cols, c);
    const __m512i q = unpack64(w, *pos);
    *pos += (uint64_t)__builtin_popcountll(k) * (uint64_t)w->bits;
    return _mm512_mask_expand_epi8(zfill, k, q);
}

/* Zero bytes of the chunk at column c (two groups when the group size is 32). */
T512 static inline __m512i chunk_zeros(const pq__qmat *w, const uint8_t *z, int64_t c) {
    const int64_t g = c / w->group_size;
    if (w->group_size >= 64) return _mm512_set1_epi8((char)z[g]);
    const uint8_t z1 = g + 1 < w->n_groups ? z[g + 1] : 0;
    return _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, _mm512_set1_epi8((char)z[g]), _mm512_set1_epi8((char)z1));
}

/* Scale lanes of a flush starting at column c: the group's sc broadcast, or for group size 32
 * lanes 0-7 (columns c..c+31) and 8-15 (c+32..c+63) of two groups. */
T512 static inline __m512 flush_scale(const pq__qmat *w, const float *sc, int64_t c) {
    const int64_t g = c / w->group_size;
    if (w->group_size >= 64) return _mm512_set1_ps(sc[g]);
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(sc[g]), _mm512_set1_ps(sc[g + 1]));
}

/* Unpacks the 64 codes at bytes p (first bit o of p[0]) with the row's tables. */
#define UNPACK(p, perm, sh, bm)                                                                                      \
    _mm512_and_si512(_mm512_multishift_epi64_epi8((sh), _mm512_permutexvar_epi8((perm), _mm512_loadu_si512(p))), (bm))

/* Adds the int32 sums of one flush (columns from c) into tot: (d0 * 256 + d1) * 256 + d2. */
T512 static inline __m512 flush(const pq__qmat *w, const float *sc, int64_t c, __m512i a0, __m512i a1, __m512i a2,
                                __m512 tot) {
    const __m512i t = _mm512_add_epi32(_mm512_slli_epi32(a0, 8), a1);
    const __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_set1_ps(256.0f), _mm512_cvtepi32_ps(a2));
    return _mm512_fmadd_ps(f, flush_scale(w, sc, c), tot);
}

/* Dense rows (no mask), one vector: two accumulator sets in flight (VPDPBUSD's latency). The
 * row's bytes plus 64 must be readable (the caller sends the last rows to the general kernel). */
T512 static void gemv_dense1(const pq__qmat *w, const pq__qmat_xq *xq, int64_t r, float *y, float *sc,
                             int64_t groups16) {
    const int b = w->bits;
    const int64_t cols64 = (w->cols + 63) / 64 * 64, unit = flush_cols(w->group_size);
    float zs;
    row_scales(w, xq, 1, r, sc, groups16, &zs);
    const uint64_t P = pq__qmat_row_bit(w, r);
    const uint8_t *base = w->codes + (P >> 3);
    const int o = (int)(P & 7);
    const __m512i perm = _mm512_loadu_si512(unpack_perm[b][o]), sh = _mm512_loadu_si512(unpack_shift[b][o]),
                  bm = _mm512_set1_epi8((char)((1u << b) - 1));
    const int8_t *d0 = xq->d[0], *d1 = xq->d[1], *d2 = xq->d[2];
    __m512 tot = _mm512_setzero_ps();
    for (int64_t c = 0; c < cols64; c += unit) {
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, e0 = a0, e1 = a0, e2 = a0;
        const int64_t ce = c + unit < cols64 ? c + unit : cols64;
        int64_t cc = c;
        for (; cc + 128 <= ce; cc += 128) {
            const __m512i q = UNPACK(base + cc * b / 8, perm, sh, bm),
                          q2 = UNPACK(base + (cc + 64) * b / 8, perm, sh, bm);
            a0 = _mm512_dpbusd_epi32(a0, q, _mm512_loadu_si512(d0 + cc));
            a1 = _mm512_dpbusd_epi32(a1, q, _mm512_loadu_si512(d1 + cc));
            a2 = _mm512_dpbusd_epi32(a2, q, _mm512_loadu_si512(d2 + cc));
            e0 = _mm512_dpbusd_epi32(e0, q2, _mm512_loadu_si512(d0 + cc + 64));
            e1 = _mm512_dpbusd_epi32(e1, q2, _mm512_loadu_si512(d1 + cc + 64));
            e2 = _mm512_dpbusd_epi32(e2, q2, _mm512_loadu_si512(d2 + cc + 64));
        }
        if (cc < ce) {
            const __m512i q = UNPACK(base + cc * b / 8, perm, sh, bm);
            a0 = _mm512_dpbusd_epi32(a0, q, _mm512_loadu_si512(d0 + cc));
            a1 = _mm512_dpbusd_epi32(a1, q, _mm512_loadu_si512(d1 + cc));
            a2 = _mm512_dpbusd_epi32(a2, q, _mm512_loadu_si512(d2 + cc));
        }
        tot = flush(w, sc, c, _mm512_add_epi32(a0, e0), _mm512_add_epi32(a1, e1), _mm512_add_epi32(a2, e2), tot);
    }
    *y = _mm512_reduce_add_ps(tot) - zs;
}

/* Any rows (masked or not, near the end of the stream), NV vectors: the general kernel. NV is a
 * compile-time constant in each caller, so the accumulator arrays live in registers. */
T512 static inline void gemv_int_row(const pq__qmat *w, const pq__qmat_xq *xq, const int NV, int64_t r, float *y,
                                     int64_t ldy, float *sc, int64_t groups16) {
    const int64_t cols64 = (w->cols + 63) / 64 * 64, unit = flush_cols(w->group_size), mstride = (w->cols + 7) / 8;
    float zs[PQ_QMAT_GEMV_MAX];
    row_scales(w, xq, NV, r, sc, groups16, zs);
    const uint8_t *m = w->mask ? w->mask + r * mstride : NULL, *z = w->zeros + r * w->n_groups;
    const int8_t *d[PQ_QMAT_GEMV_MAX][3];
    for (int v = 0; v < NV; v++)
        for (int k = 0; k < 3; k++)
            d[v][k] = xq[v].d[k];
    uint64_t pos = pq__qmat_row_bit(w, r);
    __m512 tot[PQ_QMAT_GEMV_MAX];
    for (int v = 0; v < NV; v++)
        tot[v] = _mm512_setzero_ps();
    for (int64_t c = 0; c < cols64; c += unit) {
        __m512i a[PQ_QMAT_GEMV_MAX][3];
        for (int v = 0; v < NV; v++)
            a[v][0] = a[v][1] = a[v][2] = _mm512_setzero_si512();
        const __m512i zfill = m ? chunk_zeros(w, z, c) : _mm512_setzero_si512();
        const int64_t ce = c + unit < cols64 ? c + unit : cols64;
        for (int64_t cc = c; cc < ce; cc += 64) {
            const __m512i q = chunk_codes(w, m, cc, &pos, zfill);
            for (int v = 0; v < NV; v++)
                for (int k = 0; k < 3; k++)
                    a[v][k] = _mm512_dpbusd_epi32(a[v][k], q, _mm512_loadu_si512(d[v][k] + cc));
        }
        for (int v = 0; v < NV; v++)
            tot[v] = flush(w, sc + v * groups16, c, a[v][0], a[v][1], a[v][2], tot[v]);
    }
    for (int v = 0; v < NV; v++)
        y[v * ldy + r] = _mm512_reduce_add_ps(tot[v]) - zs[v];
}

T512 static void gemv_int_rows(const pq__qmat *w, const pq__qmat_xq *xq, const int NV, int64_t r0, int64_t r1,
                               float *y, int64_t ldy, float *sc, int64_t groups16) {
    for (int64_t r = r0; r < r1; r++) {
        const uint64_t P = pq__qmat_row_bit(w, r);
        const size_t last = (size_t)((P + (uint64_t)((w->cols + 63) / 64 * 64) * (uint64_t)w->bits) >> 3) + 64;
        if (NV == 1 && !w->mask && last <= w->codes_bytes) {
            gemv_dense1(w, xq, r, y + r, sc, groups16);
            continue;
        }
        switch (NV) {
        case 1: gemv_int_row(w, xq, 1, r, y, ldy, sc, groups16); break;
        case 2: gemv_int_row(w, xq, 2, r, y, ldy, sc, groups16); break;
        case 3: gemv_int_row(w, xq, 3, r, y, ldy, sc, groups16); break;
        default: gemv_int_row(w, xq, 4, r, y, ldy, sc, groups16); break;
        }
    }
}

T512 void pq__qmat_gemv_avx512(const pq__qmat *w, const pq__qmat_xq *xq, int nv, int64_t r0, int64_t r1, float *y,
                               int64_t ldy, float *scratch) {
    pthread_once(&unpack_once, unpack_tables);
    const int64_t groups16 = pq__qmat_groups16(w);
    gemv_int_rows(w, xq, nv, r0, r1, y, ldy, scratch, groups16);
}

/* ---------------------------------------------------------------- float rows (f16, bf16) */

T512 static inline __m512 load16(const pq__qmat *w, const uint8_t *row, int64_t c) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)(row + 2 * c));
    if (w->kind == PQ_QMAT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

T512 static inline void gemv_half_rows(const pq__qmat *w, const float *x, const int NV, int64_t r0, int64_t r1,
                                       float *y, int64_t ldy) {
    const int64_t C = w->cols, c16 = C / 16 * 16;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + 2 * (size_t)(r * C);
        __m512 acc[PQ_QMAT_GEMV_MAX][2];
        for (int v = 0; v < NV; v++)
            acc[v][0] = acc[v][1] = _mm512_setzero_ps();
        int64_t c = 0;
        for (; c + 32 <= c16; c += 32) {
            const __m512 w0 = load16(w, row, c), w1 = load16(w, row, c + 16);
            for (int v = 0; v < NV; v++) {
                acc[v][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + v * C + c), acc[v][0]);
                acc[v][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + v * C + c + 16), acc[v][1]);
            }
        }
        for (; c < c16; c += 16) {
            const __m512 w0 = load16(w, row, c);
            for (int v = 0; v < NV; v++)
                acc[v][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + v * C + c), acc[v][0]);
        }
        for (int v = 0; v < NV; v++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[v][0], acc[v][1]));
            for (int64_t t = c16; t < C; t++) {
                const uint16_t h = pq__ld16(row, t);
                s += (w->kind == PQ_QMAT_F16 ? pq__h2f(h) : pq__bf2f(h)) * x[v * C + t];
            }
            y[v * ldy + r] = s;
        }
    }
}

T512 void pq__qmat_gemv_avx512_float(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y,
                                     int64_t ldy) {
    switch (nv) {
    case 1: gemv_half_rows(w, x, 1, r0, r1, y, ldy); break;
    case 2: gemv_half_rows(w, x, 2, r0, r1, y, ldy); break;
    case 3: gemv_half_rows(w, x, 3, r0, r1, y, ldy); break;
    default: gemv_half_rows(w, x, 4, r0, r1, y, ldy); break;
    }
}

/* ---------------------------------------------------------------- GEMM microkernel */

/* C [m, nr corner of MR x NR] += A [kc][MR] B [kc][NR]: 24 accumulators, B in two registers,
 * A broadcast from memory. */
T512 void pq__qmat_ukernel_avx512(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int m, int nr) {
    enum { MR = PQ_GEMM_MR_AVX512, NR = PQ_GEMM_NR_AVX512 };
    __m512 c[MR][2];
    for (int i = 0; i < MR; i++)
        c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(B + k * NR), b1 = _mm512_loadu_ps(B + k * NR + 16);
        const float *a = A + k * MR;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
        }
    }
    if (nr == NR) {
        for (int i = 0; i < m; i++) {
            float *ci = C + i * ldc;
            _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), c[i][0]));
            _mm512_storeu_ps(ci + 16, _mm512_add_ps(_mm512_loadu_ps(ci + 16), c[i][1]));
        }
        return;
    }
    const __mmask16 k0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1),
                    k1 = (__mmask16)(nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
    for (int i = 0; i < m; i++) {
        float *ci = C + i * ldc;
        _mm512_mask_storeu_ps(ci, k0, _mm512_add_ps(_mm512_maskz_loadu_ps(k0, ci), c[i][0]));
        _mm512_mask_storeu_ps(ci + 16, k1, _mm512_add_ps(_mm512_maskz_loadu_ps(k1, ci + 16), c[i][1]));
    }
}

/* Columns [c0, c0 + kc) of a codes row as floats into row (c0 a multiple of 64; row has room
 * for kc rounded up to 64): 64 codes per step, masked-out columns decoded from their zero. */
T512 static void decode_codes(const pq__qmat *w, int64_t r, int64_t c0, int64_t kc, float *row) {
    const uint8_t *m = w->mask ? w->mask + r * ((w->cols + 7) / 8) : NULL, *z = w->zeros + r * w->n_groups;
    const uint8_t *sb = (const uint8_t *)w->scales + 2 * (size_t)(r * w->n_groups);
    uint64_t pos = pq__qmat_row_bit(w, r) + (uint64_t)(m ? pq__qmat_kept_before(m, c0) : c0) * (uint64_t)w->bits;
    for (int64_t c = c0; c < c0 + kc; c += 64) {
        const __m512i q = chunk_codes(w, m, c, &pos, m ? chunk_zeros(w, z, c) : _mm512_setzero_si512());
        for (int s = 0; s < 4 && c + 16 * s < w->cols; s++) {
            const int64_t g = (c + 16 * s) / w->group_size;
            __m128i lane;
            switch (s) {
            case 0: lane = _mm512_extracti32x4_epi32(q, 0); break;
            case 1: lane = _mm512_extracti32x4_epi32(q, 1); break;
            case 2: lane = _mm512_extracti32x4_epi32(q, 2); break;
            default: lane = _mm512_extracti32x4_epi32(q, 3); break;
            }
            const __m512 v =
                _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lane)), _mm512_set1_ps((float)z[g]));
            _mm512_storeu_ps(row + (c - c0) + 16 * s, _mm512_mul_ps(v, _mm512_set1_ps(pq__h2f(pq__ld16(sb, g)))));
        }
    }
}

/* B panel [kc][NR] of rows [r0, r0 + nr): each row decoded, written transposed. */
T512 void pq__qmat_bpack_avx512(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR) {
    if (w->kind == PQ_QMAT_CODES && (!pq__qmat_avx512_gemv_ok(w) || c0 % 64)) {
        pq__qmat_bpack_portable(w, r0, nr, c0, kc, B, NR);
        return;
    }
    pthread_once(&unpack_once, unpack_tables);
    float row[PQ_GEMM_KC + 64];
    for (int j = 0; j < NR; j++) {
        if (j >= nr) {
            for (int64_t k = 0; k < kc; k++)
                B[k * NR + j] = 0.0f;
            continue;
        }
        if (w->kind == PQ_QMAT_CODES) {
            decode_codes(w, r0 + j, c0, kc, row);
        } else {
            const uint8_t *src = (const uint8_t *)w->data + 2 * (size_t)((r0 + j) * w->cols + c0);
            int64_t k = 0;
            for (; k + 16 <= kc; k += 16)
                _mm512_storeu_ps(row + k, load16(w, src, k));
            for (; k < kc; k++)
                row[k] = w->kind == PQ_QMAT_F16 ? pq__h2f(pq__ld16(src, k)) : pq__bf2f(pq__ld16(src, k));
        }
        for (int64_t k = 0; k < kc; k++)
            B[k * NR + j] = row[k];
    }
}

#else /* not x86-64: never called (pq__qmat_isa says portable) */

int pq__qmat_avx512_gemv_ok(const pq__qmat *w) {
    (void)w;
    return 0;
}
void pq__qmat_xq_prepare_avx512(const pq__qmat *w, const float *x, pq__qmat_xq *xq) {
    (void)w, (void)x, (void)xq;
}
void pq__qmat_gemv_avx512(const pq__qmat *w, const pq__qmat_xq *xq, int nv, int64_t r0, int64_t r1, float *y,
                          int64_t ldy, float *scratch) {
    (void)w, (void)xq, (void)nv, (void)r0, (void)r1, (void)y, (void)ldy, (void)scratch;
}
void pq__qmat_gemv_avx512_float(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y,
                                int64_t ldy) {
    pq__qmat_gemv_portable(w, x, nv, r0, r1, y, ldy);
}
void pq__qmat_ukernel_avx512(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int m, int nr) {
    (void)kc, (void)A, (void)B, (void)C, (void)ldc, (void)m, (void)nr;
}
void pq__qmat_bpack_avx512(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR) {
    pq__qmat_bpack_portable(w, r0, nr, c0, kc, B, NR);
}
#endif
