/* AVX-512 kernels of qmat.h (F, BW, VL, DQ, VBMI, VBMI2, VNNI): the integer GEMV of b-bit
 * codes, the float GEMV of f32 / f16 / bf16 rows, the 12 x 32 float GEMM microkernel, and the
 * integer GEMMs of codes (24-bit activations for exact products, 8-bit ones opt-in). Compiled for
 * any x86-64 target through function attributes; called only when pq__qmat_isa says so. */
#include "kernels/qmat_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>

#define T512                                                                                                         \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512vbmi2,avx512vnni,fma,f16c,bmi2,"      \
                          "popcnt")))

/* acc += the products of u8 bytes u and s8 bytes s, summed in fours (VPDPBUSD), for the GEMM
 * tiles of 24 accumulators and the N:M decoding kernel. Inline assembly: GCC 12 copied or
 * spilled the accumulators of _mm512_dpbusd_epi32 inside the loop (the exact integer GEMM's
 * 3-plane tile ran at half its rate). */
#define VNNI_ACC(acc, u, s) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s))

/* ---- unpacking 64 b-bit codes from a bit stream: VPERMB puts, for each output byte i, the
 * qword holding its bits in qword i/8 of a register; VPMULTISHIFTQB extracts 8 bits at the
 * offset of code i within that qword; AND keeps b of them. Tables per (b, first bit % 8). */
static uint8_t unpack_perm[9][8][64], unpack_shift[9][8][64];
static uint8_t nib_even[64]; /* VPERMT2B indices of the even bytes of 128 (the odd: + 1) */
static pthread_once_t unpack_once = PTHREAD_ONCE_INIT;

static void unpack_tables(void) {
    for (int i = 0; i < 64; i++)
        nib_even[i] = (uint8_t)(2 * i);
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

/* max |x| of n floats (n a multiple of 16). */
T512 static inline float max_abs(const float *x, int64_t n) {
    __m512 mx = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16)
        mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    return _mm512_reduce_max_ps(mx);
}

/* 16 activations as 24-bit integers X = rint(x * inv) (clamped to +-8355711), split into three
 * signed bytes X = (hi * 256 + mid) * 256 + lo stored at d0, d1, d2; returns X in float. */
T512 static inline __m512 digits24(const float *x, __m512 inv, int8_t *d0, int8_t *d1, int8_t *d2) {
    const __m512i b128 = _mm512_set1_epi32(128), b255 = _mm512_set1_epi32(255), lim = _mm512_set1_epi32(8355711);
    __m512i X = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), inv));
    X = _mm512_max_epi32(_mm512_min_epi32(X, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
    const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(X, b128), b255), b128);
    const __m512i X1 = _mm512_srai_epi32(_mm512_sub_epi32(X, lo), 8);
    const __m512i mid = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(X1, b128), b255), b128);
    const __m512i hi = _mm512_srai_epi32(_mm512_sub_epi32(X1, mid), 8);
    _mm_storeu_si128((__m128i *)d0, _mm512_cvtepi32_epi8(hi));
    _mm_storeu_si128((__m128i *)d1, _mm512_cvtepi32_epi8(mid));
    _mm_storeu_si128((__m128i *)d2, _mm512_cvtepi32_epi8(lo));
    return _mm512_cvtepi32_ps(X);
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
    for (int64_t g = 0; g < w->n_groups; g++) {
        const float *xg = x + g * gs;
        const float m = max_abs(xg, gs);
        const float xs = m > 0.0f && m <= 3.4e38f ? m / 8355000.0f : 0.0f, inv = xs > 0.0f ? 1.0f / xs : 0.0f;
        __m512 sum = _mm512_setzero_ps(); /* in float: an int32 lane would overflow on long groups */
        for (int64_t i = 0; i < gs; i += 16)
            sum = _mm512_add_ps(sum, digits24(xg + i, _mm512_set1_ps(inv), xq->d[0] + g * gs + i,
                                              xq->d[1] + g * gs + i, xq->d[2] + g * gs + i));
        xq->xs[g] = xs;
        xq->sxs[g] = xs * _mm512_reduce_add_ps(sum);
    }
    xq->planes = 3;
    xq->nib = 0;
}

/* Scales (float) and zeros of row r's groups [g, g + 16) into *sv, *zv; 0 past the last group
 * (masked loads, never a fault). */
T512 static inline void group_scales16(const pq__qmat *w, int64_t r, int64_t g, __m512 *sv, __m512 *zv) {
    const uint16_t *s = (const uint16_t *)((const uint8_t *)w->scales + 2 * (size_t)(r * w->n_groups));
    const uint8_t *z = w->zeros + r * w->n_groups;
    const int64_t left = w->n_groups - g;
    const __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
    *sv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, s + g));
    *zv = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, z + g)));
}

/* Per-row scales: sc[v][g] = scale_g * xs_v[g] and the zero terms zs[v] = sum_g scale_g zero_g
 * sxs_v[g]; sc has groups16 floats per vector (0 past the last group). */
T512 static void row_scales(const pq__qmat *w, const pq__qmat_xq *xq, int nv, int64_t r, float *sc, int64_t groups16,
                            float *zs) {
    __m512 zacc[PQ_QMAT_GEMV_MAX];
    for (int v = 0; v < nv; v++)
        zacc[v] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups16; g += 16) {
        __m512 sv, zv;
        group_scales16(w, r, g, &sv, &zv);
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

/* Zero bytes of a chunk of group g (and g + 1 in its upper half when the group size is 32). */
T512 static inline __m512i chunk_zeros(const pq__qmat *w, const uint8_t *z, int64_t g) {
    if (w->group_size >= 64) return _mm512_set1_epi8((char)z[g]);
    const uint8_t z1 = g + 1 < w->n_groups ? z[g + 1] : 0;
    return _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, _mm512_set1_epi8((char)z[g]), _mm512_set1_epi8((char)z1));
}

/* Scale lanes of a flush of group g: sc[g] broadcast, or for group size 32 lanes 0-7 (the first
 * 32 columns) of g and 8-15 of g + 1. */
T512 static inline __m512 two_scales(const float *sc, int64_t g) { /* lanes 0-7: sc[g], 8-15: sc[g + 1] */
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(sc[g]), _mm512_set1_ps(sc[g + 1]));
}

T512 static inline __m512 flush_scale(const pq__qmat *w, const float *sc, int64_t g) {
    return w->group_size >= 64 ? _mm512_set1_ps(sc[g]) : two_scales(sc, g);
}

/* The group of successive flush units without a division per unit: group size 32 takes two
 * groups per unit, larger ones a group every group_size / unit units. */
typedef struct unit_group {
    int64_t g, k, per;
} unit_group;

static inline unit_group unit_group_start(const pq__qmat *w, int64_t unit) {
    unit_group u = {0, 0, w->group_size >= 64 ? w->group_size / unit : 0};
    return u;
}

static inline void unit_group_next(unit_group *u) {
    if (!u->per)
        u->g += 2;
    else if (++u->k == u->per)
        u->k = 0, u->g++;
}

/* Rows ahead whose codes the dense kernels prefetch (bench_qmat: 4-8 best on Zen 5). */
#define PF_ROWS 8

/* Prefetches row r's scales and zeros (nothing past the last row): a separate stream from the
 * codes, read once per row at its start (per-token A/B, 2:4 + q4 decode of the 1B shape: exact
 * products +5 to +8 %, 8-bit activations +4 to +5 %).
 * always_inline, as every helper that only prefetches: GCC counts a function whose only effects
 * are prefetches as const, and deletes a call to it that it has not inlined yet (GCC 12 -O3). */
static inline __attribute__((always_inline)) void prefetch_scales(const pq__qmat *w, int64_t r) {
    if (r >= w->rows) return;
    const char *s = (const char *)w->scales + 2 * (size_t)(r * w->n_groups);
    for (int64_t o = 0; o < 2 * w->n_groups; o += 64)
        _mm_prefetch(s + o, _MM_HINT_T0);
    _mm_prefetch((const char *)(w->zeros + r * w->n_groups), _MM_HINT_T0);
}

/* Unpacks the 64 codes at bytes p (first bit o of p[0]) with the row's tables. */
#define UNPACK(p, perm, sh, bm)                                                                                      \
    _mm512_and_si512(_mm512_multishift_epi64_epi8((sh), _mm512_permutexvar_epi8((perm), _mm512_loadu_si512(p))), (bm))

/* The int32 sums of the three digit planes as one float: (a0 * 256 + a1) * 256 + a2 (the
 * decoding kernels' flush and the exact integer GEMM's). */
T512 static inline __m512 x24_f(__m512i a0, __m512i a1, __m512i a2) {
    const __m512i t = _mm512_add_epi32(_mm512_slli_epi32(a0, 8), a1);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_set1_ps(256.0f), _mm512_cvtepi32_ps(a2));
}

/* Adds the int32 sums of one flush, times the scale lanes s, into tot: (d0 * 256 + d1) * 256 +
 * d2; with 8-bit activations (one plane) a0 alone, whose int32 sum is exact in float. */
T512 static inline __m512 flush_s(__m512 s, __m512i a0, __m512i a1, __m512i a2, __m512 tot) {
    return _mm512_fmadd_ps(x24_f(a0, a1, a2), s, tot);
}

T512 static inline __m512 flush1_s(__m512 s, __m512i a0, __m512 tot) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), s, tot);
}

/* The same with the scale lanes of group g's flush. */
T512 static inline __m512 flush(const pq__qmat *w, const float *sc, int64_t g, __m512i a0, __m512i a1, __m512i a2,
                                __m512 tot) {
    return flush_s(flush_scale(w, sc, g), a0, a1, a2, tot);
}

T512 static inline __m512 flush1(const pq__qmat *w, const float *sc, int64_t g, __m512i a0, __m512 tot) {
    return flush1_s(flush_scale(w, sc, g), a0, tot);
}

/* The flushes of NR (up to four) rows' sums (NP planes) into their totals. */
T512 static inline void flush_rows(const pq__qmat *w, const float *sc, int64_t groups16, int64_t g, __m512i a[4][3],
                                   __m512 t[4], const int NP, const int NR) {
    for (int k = 0; k < NR; k++)
        t[k] = NP == 3 ? flush(w, sc + k * groups16, g, a[k][0], a[k][1], a[k][2], t[k])
                       : flush1(w, sc + k * groups16, g, a[k][0], t[k]);
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
    const size_t row_bytes = (size_t)(w->cols * b / 8);
    const __m512i perm = _mm512_loadu_si512(unpack_perm[b][o]), sh = _mm512_loadu_si512(unpack_shift[b][o]),
                  bm = _mm512_set1_epi8((char)((1u << b) - 1));
    const int8_t *d0 = xq->d[0], *d1 = xq->d[1], *d2 = xq->d[2];
    __m512 tot = _mm512_setzero_ps();
    unit_group ug = unit_group_start(w, unit);
    for (int64_t c = 0; c < cols64; c += unit, unit_group_next(&ug)) {
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, e0 = a0, e1 = a0, e2 = a0;
        const int64_t ce = c + unit < cols64 ? c + unit : cols64;
        int64_t cc = c;
        for (; cc + 128 <= ce; cc += 128) {
            _mm_prefetch((const char *)(base + cc * b / 8 + PF_ROWS * row_bytes), _MM_HINT_T0);
            _mm_prefetch((const char *)(base + (cc + 64) * b / 8 + PF_ROWS * row_bytes), _MM_HINT_T0);
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
        tot = flush(w, sc, ug.g, _mm512_add_epi32(a0, e0), _mm512_add_epi32(a1, e1), _mm512_add_epi32(a2, e2), tot);
    }
    *y = _mm512_reduce_add_ps(tot) - zs;
}

/* Two dense rows, one vector: the digit loads shared, two independent chains per plane. */
T512 static void gemv_dense2(const pq__qmat *w, const pq__qmat_xq *xq, int64_t r, float *y, float *sc,
                             int64_t groups16) {
    const int b = w->bits;
    const int64_t cols64 = (w->cols + 63) / 64 * 64, unit = flush_cols(w->group_size);
    float zs0, zs1;
    float *sc1 = sc + groups16;
    row_scales(w, xq, 1, r, sc, groups16, &zs0);
    row_scales(w, xq, 1, r + 1, sc1, groups16, &zs1);
    const uint64_t P0 = pq__qmat_row_bit(w, r), P1 = pq__qmat_row_bit(w, r + 1);
    const uint8_t *b0 = w->codes + (P0 >> 3), *b1 = w->codes + (P1 >> 3);
    const __m512i perm0 = _mm512_loadu_si512(unpack_perm[b][P0 & 7]),
                  sh0 = _mm512_loadu_si512(unpack_shift[b][P0 & 7]);
    const __m512i perm1 = _mm512_loadu_si512(unpack_perm[b][P1 & 7]),
                  sh1 = _mm512_loadu_si512(unpack_shift[b][P1 & 7]);
    const __m512i bm = _mm512_set1_epi8((char)((1u << b) - 1));
    const int8_t *d0 = xq->d[0], *d1 = xq->d[1], *d2 = xq->d[2];
    __m512 t0 = _mm512_setzero_ps(), t1 = t0;
    unit_group ug = unit_group_start(w, unit);
    for (int64_t c = 0; c < cols64; c += unit, unit_group_next(&ug)) {
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, e0 = a0, e1 = a0, e2 = a0;
        const int64_t ce = c + unit < cols64 ? c + unit : cols64;
        for (int64_t cc = c; cc < ce; cc += 64) {
            const __m512i x0 = _mm512_loadu_si512(d0 + cc), x1 = _mm512_loadu_si512(d1 + cc),
                          x2 = _mm512_loadu_si512(d2 + cc);
            _mm_prefetch((const char *)(b0 + cc * b / 8 + PF_ROWS * (b1 - b0)), _MM_HINT_T0);
            _mm_prefetch((const char *)(b1 + cc * b / 8 + PF_ROWS * (b1 - b0)), _MM_HINT_T0);
            const __m512i q0 = UNPACK(b0 + cc * b / 8, perm0, sh0, bm), q1 = UNPACK(b1 + cc * b / 8, perm1, sh1, bm);
            a0 = _mm512_dpbusd_epi32(a0, q0, x0);
            e0 = _mm512_dpbusd_epi32(e0, q1, x0);
            a1 = _mm512_dpbusd_epi32(a1, q0, x1);
            e1 = _mm512_dpbusd_epi32(e1, q1, x1);
            a2 = _mm512_dpbusd_epi32(a2, q0, x2);
            e2 = _mm512_dpbusd_epi32(e2, q1, x2);
        }
        t0 = flush(w, sc, ug.g, a0, a1, a2, t0);
        t1 = flush(w, sc1, ug.g, e0, e1, e2, t1);
    }
    y[r] = _mm512_reduce_add_ps(t0) - zs0;
    y[r + 1] = _mm512_reduce_add_ps(t1) - zs1;
}

/* Four dense rows whose codes start at the same bit offset within a byte (one pair of unpack
 * tables), one vector: the digit loads shared by four rows. */
T512 static inline __attribute__((always_inline)) void gemv_dense4_p(const pq__qmat *w, const pq__qmat_xq *xq,
                                                                     int64_t r, float *y, float *sc, int64_t groups16,
                                                                     const int NP) {
    const int b = w->bits;
    const int64_t cols64 = (w->cols + 63) / 64 * 64, unit = flush_cols(w->group_size);
    float zs[4];
    for (int k = 0; k < 4; k++) {
        prefetch_scales(w, r + k + PF_ROWS);
        row_scales(w, xq, 1, r + k, sc + k * groups16, groups16, &zs[k]);
    }
    const uint64_t P = pq__qmat_row_bit(w, r), span = pq__qmat_row_bit(w, r + 1) - P;
    const uint8_t *b0 = w->codes + (P >> 3);
    const size_t stride = (size_t)(span >> 3); /* whole bytes: the caller checked the offsets agree */
    const __m512i perm = _mm512_loadu_si512(unpack_perm[b][P & 7]), sh = _mm512_loadu_si512(unpack_shift[b][P & 7]);
    const __m512i bm = _mm512_set1_epi8((char)((1u << b) - 1));
    const int8_t *d0 = xq->d[0], *d1 = xq->d[1], *d2 = xq->d[2];
    __m512 t[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    unit_group ug = unit_group_start(w, unit);
    for (int64_t c = 0; c < cols64; c += unit, unit_group_next(&ug)) {
        __m512i a[4][3];
        for (int k = 0; k < 4; k++)
            a[k][0] = a[k][1] = a[k][2] = _mm512_setzero_si512();
        const int64_t ce = c + unit < cols64 ? c + unit : cols64;
        for (int64_t cc = c; cc < ce; cc += 64) {
            const __m512i x0 = _mm512_loadu_si512(d0 + cc), x1 = NP == 3 ? _mm512_loadu_si512(d1 + cc) : x0,
                          x2 = NP == 3 ? _mm512_loadu_si512(d2 + cc) : x0;
            const uint8_t *p = b0 + cc * b / 8;
            for (int k = 0; k < 4; k++) /* the same columns 8 rows on: the hardware prefetcher alone
                                          does not keep several row streams fed */
                _mm_prefetch((const char *)(p + (size_t)(k + PF_ROWS) * stride), _MM_HINT_T0);
            for (int k = 0; k < 4; k++) {
                const __m512i q = UNPACK(p + (size_t)k * stride, perm, sh, bm);
                a[k][0] = _mm512_dpbusd_epi32(a[k][0], q, x0);
                if (NP == 3) {
                    a[k][1] = _mm512_dpbusd_epi32(a[k][1], q, x1);
                    a[k][2] = _mm512_dpbusd_epi32(a[k][2], q, x2);
                }
            }
        }
        flush_rows(w, sc, groups16, ug.g, a, t, NP, 4);
    }
    for (int k = 0; k < 4; k++)
        y[r + k] = _mm512_reduce_add_ps(t[k]) - zs[k];
}

T512 static void gemv_dense4(const pq__qmat *w, const pq__qmat_xq *xq, int64_t r, float *y, float *sc,
                             int64_t groups16) {
    if (xq->planes == 1)
        gemv_dense4_p(w, xq, r, y, sc, groups16, 1);
    else
        gemv_dense4_p(w, xq, r, y, sc, groups16, 3);
}

/* Four masked rows (only kept weights have codes), one vector: the digit loads shared by four
 * rows; each row's kept codes unpacked from its own bit position and expanded to their columns
 * (masked-out columns hold the group's zero), as chunk_codes does, so the sums are the general
 * kernel's bit for bit. The streams of the rows PF_ROWS on are prefetched at the same relative
 * position. Every row's bytes plus 64 must be readable (the caller checks). */
T512 static void gemv_mask4(const pq__qmat *w, const pq__qmat_xq *xq, int64_t r, float *y, float *sc,
                            int64_t groups16) {
    const int b = w->bits;
    const int64_t cols64 = (w->cols + 63) / 64 * 64, unit = flush_cols(w->group_size), mstride = (w->cols + 7) / 8;
    const __m512i bm = _mm512_set1_epi8((char)((1u << b) - 1));
    const uint8_t *m[4], *z[4];
    uint64_t pos[4], ahead[4];
    float zs[4];
    for (int k = 0; k < 4; k++) {
        prefetch_scales(w, r + k + PF_ROWS);
        row_scales(w, xq, 1, r + k, sc + k * groups16, groups16, &zs[k]);
        m[k] = w->mask + (r + k) * mstride;
        z[k] = w->zeros + (r + k) * w->n_groups;
        pos[k] = pq__qmat_row_bit(w, r + k);
        ahead[k] = r + k + PF_ROWS < w->rows ? pq__qmat_row_bit(w, r + k + PF_ROWS) - pos[k] : 0;
    }
    const int8_t *d0 = xq->d[0], *d1 = xq->d[1], *d2 = xq->d[2];
    __m512 t[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    unit_group ug = unit_group_start(w, unit);
    for (int64_t c = 0; c < cols64; c += unit, unit_group_next(&ug)) {
        __m512i a[4][3], zf[4];
        for (int k = 0; k < 4; k++) {
            a[k][0] = a[k][1] = a[k][2] = _mm512_setzero_si512();
            zf[k] = chunk_zeros(w, z[k], ug.g);
        }
        const int64_t ce = c + unit < cols64 ? c + unit : cols64;
        for (int64_t cc = c; cc < ce; cc += 64) {
            const __m512i x0 = _mm512_loadu_si512(d0 + cc), x1 = _mm512_loadu_si512(d1 + cc),
                          x2 = _mm512_loadu_si512(d2 + cc);
            for (int k = 0; k < 4; k++) {
                const uint64_t km = mask64(m[k], w->cols, cc);
                const int o = (int)(pos[k] & 7);
                _mm_prefetch((const char *)(w->codes + ((pos[k] + ahead[k]) >> 3)), _MM_HINT_T0);
                const __m512i q =
                    _mm512_mask_expand_epi8(zf[k], km,
                                            UNPACK(w->codes + (pos[k] >> 3), _mm512_loadu_si512(unpack_perm[b][o]),
                                                   _mm512_loadu_si512(unpack_shift[b][o]), bm));
                pos[k] += (uint64_t)__builtin_popcountll(km) * (uint64_t)b;
                a[k][0] = _mm512_dpbusd_epi32(a[k][0], q, x0);
                a[k][1] = _mm512_dpbusd_epi32(a[k][1], q, x1);
                a[k][2] = _mm512_dpbusd_epi32(a[k][2], q, x2);
            }
        }
        for (int k = 0; k < 4; k++)
            t[k] = flush(w, sc + k * groups16, ug.g, a[k][0], a[k][1], a[k][2], t[k]);
    }
    for (int k = 0; k < 4; k++)
        y[r + k] = _mm512_reduce_add_ps(t[k]) - zs[k];
}

/* The codes of 128 columns of an N:M row keeping K of 64 (2K codes at p, b bits, on a byte
 * boundary) expanded to their columns, masked-out ones holding zf: columns 0-63 into *qa, 64-127
 * into *qb (mask bits at mk). At 4 bits and K = 32 (KK, BB constant) the unpack is a zero
 * extension of 32 bytes to words and a nibble split, reading only those 32 bytes; otherwise
 * the table unpack, reading 64 bytes. */
T512 static inline __attribute__((always_inline)) void nm_codes128(const uint8_t *p, const uint8_t *mk, __m512i zf,
                                                                   const int K, const int KK, const int BB,
                                                                   __m512i perm, __m512i sh, __m512i bm, __m512i *qa,
                                                                   __m512i *qb) {
    uint64_t km[2];
    memcpy(km, mk, 16);
    __m512i q;
    if (KK == 32 && BB == 4) { /* word j = byte j, its nibbles into bytes 2j, 2j + 1 */
        const __m512i wv = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));
        q = _mm512_and_si512(_mm512_or_si512(wv, _mm512_slli_epi16(wv, 4)), _mm512_set1_epi16(0x0F0F));
    } else {
        q = UNPACK(p, perm, sh, bm);
    }
    const __m512i hi = K == 32 ? _mm512_shuffle_i64x2(q, q, 0xEE) : _mm512_alignr_epi32(q, q, 4);
    *qa = _mm512_mask_expand_epi8(zf, km[0], q);
    *qb = _mm512_mask_expand_epi8(zf, km[1], hi);
}

/* RR (2 or 4) rows of a mask that keeps K (16 or 32) of every 64 columns (pq__qmat.kept64: N:M
 * patterns such as 2:4, 1:4, 2:8), one vector, rows starting on whole bytes, flush units of whole 128
 * columns: the codes of 128 columns are 2K <= 64 consecutive codes on a byte boundary, so one
 * unpack with fixed tables serves both halves (the second half's codes are the upper K bytes),
 * and no kept count is needed to find them. At 4 bits and K = 32 the unpack is a zero extension
 * of 32 bytes to words and a nibble split, the same bytes as the table unpack with one shuffle
 * fewer (per-token A/B on the 1B-shaped 2:4 + q4 model: exact products +3 to +6 %, 8-bit
 * activations 0 to +2 %); gemv_nm4 runs that case with KK, BB constant. The integer sums are
 * gemv_mask4's (the same products, exact), so y is bit for bit its. Every row's bytes plus 64
 * must be readable, except at K = 32 and 4 bits, whose loads stay inside the rows. */
T512 static inline __attribute__((always_inline)) void gemv_nm4_p(const pq__qmat *w, const pq__qmat_xq *xq, int64_t r,
                                                                  float *y, float *sc, int64_t groups16, const int NP,
                                                                  const int KK, const int BB, const int RR) {
    const int b = BB ? BB : w->bits, K = KK ? KK : w->kept64; /* KK, BB: w's kept64 and bits as constants, or 0 */
    const int64_t unit = flush_cols(w->group_size), mstride = w->cols / 8;
    const size_t step = (size_t)(2 * K * b / 8); /* bytes of 128 columns' codes */
    const __m512i perm = _mm512_loadu_si512(unpack_perm[b][0]), sh = _mm512_loadu_si512(unpack_shift[b][0]);
    const __m512i bm = _mm512_set1_epi8((char)((1u << b) - 1));
    const uint8_t *m[4], *z[4], *p[4];
    size_t ahead[4];
    float zs[4];
    for (int k = 0; k < RR; k++) {
        row_scales(w, xq, 1, r + k, sc + k * groups16, groups16, &zs[k]);
        m[k] = w->mask + (r + k) * mstride;
        z[k] = w->zeros + (r + k) * w->n_groups;
        p[k] = w->codes + (pq__qmat_row_bit(w, r + k) >> 3);
        ahead[k] = r + k + PF_ROWS < w->rows
                       ? (size_t)((pq__qmat_row_bit(w, r + k + PF_ROWS) - pq__qmat_row_bit(w, r + k)) >> 3)
                       : 0;
        prefetch_scales(w, r + k + PF_ROWS);
    }
    const int8_t *d0 = xq->d[0], *d1 = xq->d[1], *d2 = xq->d[2];
    __m512 t[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    unit_group ug = unit_group_start(w, unit);
    for (int64_t c = 0; c < w->cols; c += unit, unit_group_next(&ug)) {
        __m512i a[4][3], zf[4];
        for (int k = 0; k < RR; k++) {
            a[k][0] = a[k][1] = a[k][2] = _mm512_setzero_si512();
            zf[k] = chunk_zeros(w, z[k], ug.g);
        }
        for (int64_t cc = c; cc < c + unit; cc += 128) {
            const __m512i x0 = _mm512_loadu_si512(d0 + cc), u0 = _mm512_loadu_si512(d0 + cc + 64),
                          x1 = NP == 3 ? _mm512_loadu_si512(d1 + cc) : x0,
                          x2 = NP == 3 ? _mm512_loadu_si512(d2 + cc) : x0,
                          u1 = NP == 3 ? _mm512_loadu_si512(d1 + cc + 64) : u0,
                          u2 = NP == 3 ? _mm512_loadu_si512(d2 + cc + 64) : u0;
            for (int k = 0; k < RR; k++) {
                _mm_prefetch((const char *)(p[k] + ahead[k]), _MM_HINT_T0);
                if (!(cc & 511)) /* the mask's line PF_ROWS rows on */
                    _mm_prefetch((const char *)(m[k] + PF_ROWS * mstride + cc / 8), _MM_HINT_T0);
                __m512i qa, qb;
                nm_codes128(p[k], m[k] + cc / 8, zf[k], K, KK, BB, perm, sh, bm, &qa, &qb);
                p[k] += step;
                a[k][0] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[k][0], qa, x0), qb, u0);
                if (NP == 3) {
                    a[k][1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[k][1], qa, x1), qb, u1);
                    a[k][2] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[k][2], qa, x2), qb, u2);
                }
            }
        }
        flush_rows(w, sc, groups16, ug.g, a, t, NP, RR);
    }
    for (int k = 0; k < RR; k++)
        y[r + k] = _mm512_reduce_add_ps(t[k]) - zs[k];
}

/* gemv_nm4_p for groups of 128 columns (one flush per 128 columns, the group c / 128) and RR
 * rows at equal distances in the stream (true of a kept64 mask: the caller checks): one pass
 * over the columns, each row's sums started and flushed inside it, every row's arrays reached
 * from one pointer and a stride, the streams advanced by pointer, and each row's scales and
 * zeros of 16 groups held in registers (GCC 12 otherwise kept the per-row pointers in vector
 * registers and on the stack inside the loop: 2:4 + q4 against q4 decoding in turns, exact
 * products, 0.94-0.98 -> 0.98-1.01). The same lanes, products and flush as gemv_nm4_p, so the
 * same y bit for bit. */
T512 static inline __attribute__((always_inline)) void gemv_nm_g128(const pq__qmat *w, const pq__qmat_xq *xq,
                                                                    int64_t r, float *y, float *sc, int64_t groups16,
                                                                    const int NP, const int KK, const int BB,
                                                                    const int RR) {
    const int b = BB ? BB : w->bits, K = KK ? KK : w->kept64;
    const int64_t mstride = w->cols / 8, ng = w->n_groups;
    const size_t step = (size_t)(2 * K * b / 8), cstride = (size_t)(w->cols * K / 64 * b / 8);
    const __m512i perm = _mm512_loadu_si512(unpack_perm[b][0]), sh = _mm512_loadu_si512(unpack_shift[b][0]);
    const __m512i bm = _mm512_set1_epi8((char)((1u << b) - 1)), one = _mm512_set1_epi8(1);
    float zs[4];
    for (int k = 0; k < RR; k++) {
        row_scales(w, xq, 1, r + k, sc + k * groups16, groups16, &zs[k]);
        prefetch_scales(w, r + k + PF_ROWS);
    }
    const uint8_t *p = w->codes + (pq__qmat_row_bit(w, r) >> 3), *m = w->mask + r * mstride, *z = w->zeros + r * ng;
    const size_t ahead = r + PF_ROWS < w->rows ? PF_ROWS * cstride : 0;
    const int8_t *d0 = xq->d[0], *d1 = xq->d[1], *d2 = xq->d[2];
    __m512 t[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    /* blocks of 16 groups: each row's 16 scales and zeros in registers, the group's picked by
       index gi (byte j = dword j's low bits: one vector indexes both); the streams advance by
       pointer */
    const int8_t *dp0 = d0, *dp1 = d1, *dp2 = d2;
    const uint8_t *mp = m;
    const size_t mahead = (size_t)(PF_ROWS * mstride);
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        __m512 scv[4];
        __m512i zv[4];
        const __mmask16 zk = ng - g0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (ng - g0)) - 1);
        for (int k = 0; k < RR; k++) {
            scv[k] = _mm512_loadu_ps(sc + k * groups16 + g0);
            zv[k] = _mm512_castsi128_si512(_mm_maskz_loadu_epi8(zk, z + k * ng + g0));
        }
        __m512i gi = _mm512_setzero_si512();
        const int8_t *de = d0 + ((g0 + 16) * 128 < w->cols ? (g0 + 16) * 128 : w->cols);
        for (; dp0 < de; dp0 += 128, dp1 += 128, dp2 += 128, mp += 16, p += step, gi = _mm512_add_epi8(gi, one)) {
            const __m512i x0 = _mm512_loadu_si512(dp0), u0 = _mm512_loadu_si512(dp0 + 64),
                          x1 = NP == 3 ? _mm512_loadu_si512(dp1) : x0, x2 = NP == 3 ? _mm512_loadu_si512(dp2) : x0,
                          u1 = NP == 3 ? _mm512_loadu_si512(dp1 + 64) : u0,
                          u2 = NP == 3 ? _mm512_loadu_si512(dp2 + 64) : u0;
#pragma GCC unroll 4
            for (int k = 0; k < RR; k++) {
                const uint8_t *pk = p + (size_t)k * cstride, *mk = mp + k * mstride;
                _mm_prefetch((const char *)(pk + ahead), _MM_HINT_T0);
                _mm_prefetch((const char *)(mk + mahead), _MM_HINT_T0); /* the mask PF_ROWS rows on */
                __m512i qa, qb;
                nm_codes128(pk, mk, _mm512_permutexvar_epi8(gi, zv[k]), K, KK, BB, perm, sh, bm, &qa, &qb);
                const __m512 s = _mm512_permutexvar_ps(gi, scv[k]);
                __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0;
                VNNI_ACC(a0, qa, x0);
                VNNI_ACC(a0, qb, u0);
                if (NP == 3) {
                    VNNI_ACC(a1, qa, x1);
                    VNNI_ACC(a1, qb, u1);
                    VNNI_ACC(a2, qa, x2);
                    VNNI_ACC(a2, qb, u2);
                    t[k] = flush_s(s, a0, a1, a2, t[k]);
                } else {
                    t[k] = flush1_s(s, a0, t[k]);
                }
            }
        }
    }
    for (int k = 0; k < RR; k++)
        y[r + k] = _mm512_reduce_add_ps(t[k]) - zs[k];
}

T512 static void gemv_nm4(const pq__qmat *w, const pq__qmat_xq *xq, int64_t r, float *y, float *sc,
                          int64_t groups16) {
    const int k32b4 = w->kept64 == 32 && w->bits == 4; /* 2:4 (or 4:8) at 4 bits: K and b as constants */
    const uint64_t r0 = pq__qmat_row_bit(w, r), span = pq__qmat_row_bit(w, r + 1) - r0;
    if (w->group_size == 128 && span == (uint64_t)(w->cols * w->kept64 / 64 * w->bits) &&
        pq__qmat_row_bit(w, r + 2) - r0 == 2 * span && pq__qmat_row_bit(w, r + 3) - r0 == 3 * span) {
        if (xq->planes == 1 && k32b4)
            gemv_nm_g128(w, xq, r, y, sc, groups16, 1, 32, 4, 4);
        else if (xq->planes == 1)
            gemv_nm_g128(w, xq, r, y, sc, groups16, 1, 0, 0, 4);
        else /* three planes, two rows a call (two code and two mask streams, not four: bench_decode
                pair q4 p24q4 in turns, 4 rows 0.89-0.92, 2 rows 0.96-0.97, 1 row 0.96-0.98) */
            for (int64_t rr = r; rr < r + 4; rr += 2)
                if (k32b4)
                    gemv_nm_g128(w, xq, rr, y, sc, groups16, 3, 32, 4, 2);
                else
                    gemv_nm_g128(w, xq, rr, y, sc, groups16, 3, 0, 0, 2);
        return;
    }
    if (xq->planes == 1 && k32b4)
        gemv_nm4_p(w, xq, r, y, sc, groups16, 1, 32, 4, 4);
    else if (xq->planes == 1)
        gemv_nm4_p(w, xq, r, y, sc, groups16, 1, 0, 0, 4);
    else /* three planes, two rows at a time: four rows' 12 accumulators, 6 activation vectors and
            4 zero fills spill (per-token A/B, 2:4 + q4 1B shape: +6 to +9 %) */
        for (int64_t rr = r; rr < r + 4; rr += 2)
            if (k32b4)
                gemv_nm4_p(w, xq, rr, y, sc, groups16, 3, 32, 4, 2);
            else
                gemv_nm4_p(w, xq, rr, y, sc, groups16, 3, 0, 0, 2);
}

/* gemv_nm4 serves w (rows r..r+3 also need whole-byte starts, checked by the caller). */
static int nm_fast(const pq__qmat *w) {
    return (w->kept64 == 16 || w->kept64 == 32) && w->cols % 128 == 0 && flush_cols(w->group_size) % 128 == 0;
}

/* ---- 4-bit rows in nibble order (qmat_impl.h: pq__qmat_nib_ok). Per 128 columns a row's 64
 * bytes give the even columns' codes (low nibbles) and the odd ones' (high nibbles); with the
 * activations in that order, int32 lane l sums columns 8l .. 8l + 7 of the 128. */

static int64_t nib_unit(const pq__qmat *w) {
    return w->group_size < 128 ? 128 : flush_cols(w->group_size);
}

/* Codes without a mask or permutation, rows of whole 128 columns at r * cols * bits. */
static int rows128(const pq__qmat *w) {
    return w->kind == PQ_QMAT_CODES && !w->mask && !w->perm && !w->row_bit && w->cols % 128 == 0;
}

int pq__qmat_nib_ok(const pq__qmat *w) {
    return rows128(w) && w->bits == 4 && (w->group_size == 32 || w->group_size == 64 || nib_unit(w) % 128 == 0);
}

T512 void pq__qmat_xq_nibble_avx512(const pq__qmat_xq *src, int64_t cols, pq__qmat_xq *dst) {
    pthread_once(&unpack_once, unpack_tables);
    const __m512i even = _mm512_loadu_si512(nib_even), odd = _mm512_add_epi8(even, _mm512_set1_epi8(1));
    for (int k = 0; k < src->planes; k++)
        for (int64_t c = 0; c < cols; c += 128) {
            const __m512i a = _mm512_loadu_si512(src->d[k] + c), b = _mm512_loadu_si512(src->d[k] + c + 64);
            _mm512_storeu_si512(dst->d[k] + c, _mm512_permutex2var_epi8(a, even, b));
            _mm512_storeu_si512(dst->d[k] + c + 64, _mm512_permutex2var_epi8(a, odd, b));
        }
    dst->xs = src->xs, dst->sxs = src->sxs, dst->planes = src->planes, dst->nib = 1;
}

/* Scale lanes of a 128-column flush of group g (lane l: columns 8l .. 8l + 7): one group, or
 * for groups of 64 two (8 lanes each), of 32 four (4 lanes each). */
T512 static inline __m512 nib_scale(const pq__qmat *w, const float *sc, int64_t g) {
    if (w->group_size >= 128) return _mm512_set1_ps(sc[g]);
    if (w->group_size == 64) return two_scales(sc, g);
    return _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(_mm_loadu_ps(sc + g)));
}

/* 8-bit rows without a mask whose flushes are whole 128 columns of one group: the codes are
 * the bytes themselves (no unpacking), in the activations' own order. */
static int b8_ok(const pq__qmat *w) {
    return rows128(w) && w->bits == 8 && flush_cols(w->group_size) % 128 == 0;
}

/* Row r's scales for one vector into sc (sc[g] = scale_g xs[g], groups g < n_groups only: the
 * nibble kernel reads no others), returning minus its zero terms, -scale_g zero_g sxs[g], per
 * group lane (row_scales without the padding groups and the reduction). */
T512 static inline __m512 nib_row_scales(const pq__qmat *w, const pq__qmat_xq *xq, int64_t r, float *sc) {
    __m512 zacc = _mm512_setzero_ps();
    for (int64_t g = 0; g < w->n_groups; g += 16) {
        __m512 sv, zv;
        group_scales16(w, r, g, &sv, &zv);
        _mm512_storeu_ps(sc + g, _mm512_mul_ps(sv, _mm512_loadu_ps(xq->xs + g)));
        zacc = _mm512_fnmadd_ps(_mm512_mul_ps(sv, zv), _mm512_loadu_ps(xq->sxs + g), zacc);
    }
    return zacc;
}

/* NR (1..4) rows r, r + rs, .., r + (NR - 1) rs, one vector of NP planes, B-bit codes: 4 in
 * nibble order, or 8 (b8_ok: the two 64-byte halves of 128 columns as they are). Rows are whole
 * bytes (cols B / 8 each): the loads never leave them. NP 1 keeps the two halves in separate
 * accumulators (two VPDPBUSD chains per row); NP 3 has three per row already. */
T512 static inline __attribute__((always_inline)) void gemv_nib_p(const pq__qmat *w, const pq__qmat_xq *xq, int64_t r,
                                                                  int64_t rs, float *y, float *sc, int64_t groups16,
                                                                  const int NR, const int NP, const int B) {
    const int64_t unit = nib_unit(w), gs = w->group_size, gstep = gs < 128 ? 128 / gs : 1,
                  per = gs < 128 ? 1 : gs / unit;
    const size_t stride = (size_t)(w->cols * B / 8);
    const uint8_t *p[4];
    __m512 t[4]; /* the totals start from minus the zero terms: one reduction per row at the end */
    for (int k = 0; k < NR; k++) {
        p[k] = w->codes + (size_t)(r + k * rs) * stride;
        prefetch_scales(w, r + k * rs + PF_ROWS);
        t[k] = nib_row_scales(w, xq, r + k * rs, sc + k * groups16);
    }
    const int has_ahead = r + (NR - 1) * rs + PF_ROWS < w->rows;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const int8_t *d0 = xq->d[0], *d1 = xq->d[1], *d2 = xq->d[2];
    int64_t g = 0, k_in = 0;
    for (int64_t c = 0; c < w->cols; c += unit) {
        __m512i a[4][3], e[4];
        for (int k = 0; k < NR; k++)
            a[k][0] = a[k][1] = a[k][2] = e[k] = _mm512_setzero_si512();
        for (int64_t cc = c; cc < c + unit; cc += 128) {
            const __m512i x0 = _mm512_loadu_si512(d0 + cc), u0 = _mm512_loadu_si512(d0 + cc + 64),
                          x1 = NP == 3 ? _mm512_loadu_si512(d1 + cc) : x0,
                          u1 = NP == 3 ? _mm512_loadu_si512(d1 + cc + 64) : u0,
                          x2 = NP == 3 ? _mm512_loadu_si512(d2 + cc) : x0,
                          u2 = NP == 3 ? _mm512_loadu_si512(d2 + cc + 64) : u0;
            for (int k = 0; k < NR; k++) {
                const uint8_t *pc = p[k] + cc * B / 8;
                if (has_ahead) _mm_prefetch((const char *)(pc + PF_ROWS * stride), _MM_HINT_T0);
                if (has_ahead && B == 8) _mm_prefetch((const char *)(pc + 64 + PF_ROWS * stride), _MM_HINT_T0);
                __m512i lo, hi;
                if (B == 8) {
                    lo = _mm512_loadu_si512(pc), hi = _mm512_loadu_si512(pc + 64);
                } else {
                    const __m512i v = _mm512_loadu_si512(pc);
                    lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                }
                if (NP == 1) {
                    a[k][0] = _mm512_dpbusd_epi32(a[k][0], lo, x0);
                    e[k] = _mm512_dpbusd_epi32(e[k], hi, u0);
                } else {
                    a[k][0] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[k][0], lo, x0), hi, u0);
                    a[k][1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[k][1], lo, x1), hi, u1);
                    a[k][2] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[k][2], lo, x2), hi, u2);
                }
            }
        }
        for (int k = 0; k < NR; k++) {
            const __m512 s = nib_scale(w, sc + k * groups16, g);
            t[k] = NP == 1 ? flush1_s(s, _mm512_add_epi32(a[k][0], e[k]), t[k])
                           : flush_s(s, a[k][0], a[k][1], a[k][2], t[k]);
        }
        if (++k_in == per) k_in = 0, g += gstep;
    }
    for (int k = 0; k < NR; k++)
        y[r + k * rs] = _mm512_reduce_add_ps(t[k]);
}

/* Rows r0..r1 (a chunk) in NR streams: with q = (r1 - r0) / NR, each call takes the rows
 * r0 + i + k q, k < NR, so a thread reads NR long runs of consecutive rows, which the hardware
 * prefetchers follow. NR adjacent rows per call read NR runs of one row each (1-3 KiB) that
 * restart with every call: a plain read loop in that pattern streamed 31-37 GB/s on a Zen 5
 * against 48-71 GB/s in runs of a quarter chunk. Measured per token on the 1B shape's q4: 8-bit
 * activations in four streams +4 to +14 %; the three-plane products in two streams +0 to +9 %
 * (in four streams, or two adjacent rows, 9 % slower). Fewer than NR rows left go one at a time. */
T512 static void gemv_nib_rows(const pq__qmat *w, const pq__qmat_xq *xq, int64_t r0, int64_t r1, float *y, float *sc,
                               int64_t groups16) {
#define PQ_NIB_ROWS(NP, B)                                                                                           \
    do {                                                                                                             \
        const int NR = NP == 1 ? 4 : 2;                                                                              \
        const int64_t q = (r1 - r0) / NR;                                                                            \
        for (int64_t i = 0; i < q; i++)                                                                              \
            gemv_nib_p(w, xq, r0 + i, q, y, sc, groups16, NR, NP, B);                                                \
        for (int64_t r = r0 + NR * q; r < r1; r++)                                                                   \
            gemv_nib_p(w, xq, r, 1, y, sc, groups16, 1, NP, B);                                                      \
    } while (0)
    if (w->bits == 8 && xq->planes == 1)
        PQ_NIB_ROWS(1, 8);
    else if (w->bits == 8)
        PQ_NIB_ROWS(3, 8);
    else if (xq->planes == 1)
        PQ_NIB_ROWS(1, 4);
    else
        PQ_NIB_ROWS(3, 4);
#undef PQ_NIB_ROWS
}

/* Any rows (masked or not, near the end of the stream), NV vectors: the general kernel. NV is a
 * compile-time constant in each caller, so the accumulator arrays live in registers. */
T512 static inline void gemv_int_row(const pq__qmat *w, const pq__qmat_xq *xq, const int NV, const int NP, int64_t r,
                                     float *y, int64_t ldy, float *sc, int64_t groups16) {
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
    unit_group ug = unit_group_start(w, unit);
    for (int64_t c = 0; c < cols64; c += unit, unit_group_next(&ug)) {
        __m512i a[PQ_QMAT_GEMV_MAX][3];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            a[v][0] = a[v][1] = a[v][2] = _mm512_setzero_si512();
        const __m512i zfill = m ? chunk_zeros(w, z, ug.g) : _mm512_setzero_si512();
        const int64_t ce = c + unit < cols64 ? c + unit : cols64;
        for (int64_t cc = c; cc < ce; cc += 64) {
            const __m512i q = chunk_codes(w, m, cc, &pos, zfill);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
#pragma GCC unroll 3
                for (int k = 0; k < NP; k++)
                    a[v][k] = _mm512_dpbusd_epi32(a[v][k], q, _mm512_loadu_si512(d[v][k] + cc));
        }
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            tot[v] = NP == 3 ? flush(w, sc + v * groups16, ug.g, a[v][0], a[v][1], a[v][2], tot[v])
                             : flush1(w, sc + v * groups16, ug.g, a[v][0], tot[v]);
    }
    for (int v = 0; v < NV; v++)
        y[v * ldy + r] = _mm512_reduce_add_ps(tot[v]) - zs[v];
}

/* Row r's codes (at most row_span bits) plus 64 bytes lie inside the stream: the unguarded
 * kernels' loads are safe. */
static inline int row_readable(const pq__qmat *w, int64_t r, uint64_t row_span) {
    return (size_t)((pq__qmat_row_bit(w, r) + row_span) >> 3) + 64 <= w->codes_bytes;
}

T512 static void gemv_int_rows(const pq__qmat *w, const pq__qmat_xq *xq, const int NV, int64_t r0, int64_t r1,
                               float *y, int64_t ldy, float *sc, int64_t groups16) {
    const uint64_t row_span = (uint64_t)((w->cols + 63) / 64 * 64) * (uint64_t)w->bits;
    for (int64_t r = r0; r < r1; r++) {
        /* rows whose bytes plus 64 are readable run the unguarded kernels */
        if (NV == 1 && !w->mask && row_readable(w, r, row_span)) {
            if (r + 3 < r1 && row_readable(w, r + 3, row_span) && (w->cols * w->bits) % 8 == 0) {
                gemv_dense4(w, xq, r, y, sc, groups16);
                r += 3;
                continue;
            }
            if (xq->planes == 1) {
                gemv_int_row(w, xq, 1, 1, r, y, ldy, sc, groups16);
                continue;
            }
            if (r + 1 < r1 && row_readable(w, r + 1, row_span)) {
                gemv_dense2(w, xq, r, y, sc, groups16);
                r++;
            } else {
                gemv_dense1(w, xq, r, y + r, sc, groups16);
            }
            continue;
        }
        if (NV == 1 && w->mask && r + 3 < r1) {
            const int whole_bytes = !((pq__qmat_row_bit(w, r) | pq__qmat_row_bit(w, r + 1) |
                                       pq__qmat_row_bit(w, r + 2) | pq__qmat_row_bit(w, r + 3)) &
                                      7),
                      readable = row_readable(w, r + 3, row_span);
            /* 4-bit codes of 32 in 64 columns: gemv_nm4 loads 32 bytes per 128 columns, inside
               the rows, so the last rows of the stream take it too */
            if (nm_fast(w) && whole_bytes && (readable || (w->kept64 == 32 && w->bits == 4))) {
                gemv_nm4(w, xq, r, y, sc, groups16);
                r += 3;
                continue;
            }
            if (xq->planes == 3 && readable) {
                gemv_mask4(w, xq, r, y, sc, groups16);
                r += 3;
                continue;
            }
        }
        if (xq->planes == 1) {
            switch (NV) {
            case 1: gemv_int_row(w, xq, 1, 1, r, y, ldy, sc, groups16); break;
            case 2: gemv_int_row(w, xq, 2, 1, r, y, ldy, sc, groups16); break;
            case 3: gemv_int_row(w, xq, 3, 1, r, y, ldy, sc, groups16); break;
            default: gemv_int_row(w, xq, 4, 1, r, y, ldy, sc, groups16); break;
            }
            continue;
        }
        switch (NV) {
        case 1: gemv_int_row(w, xq, 1, 3, r, y, ldy, sc, groups16); break;
        case 2: gemv_int_row(w, xq, 2, 3, r, y, ldy, sc, groups16); break;
        case 3: gemv_int_row(w, xq, 3, 3, r, y, ldy, sc, groups16); break;
        default: gemv_int_row(w, xq, 4, 3, r, y, ldy, sc, groups16); break;
        }
    }
}

T512 void pq__qmat_gemv_avx512(const pq__qmat *w, const pq__qmat_xq *xq, int nv, int64_t r0, int64_t r1, float *y,
                               int64_t ldy, float *scratch) {
    pthread_once(&unpack_once, unpack_tables);
    const int64_t groups16 = pq__qmat_groups16(w);
    if (xq->nib || (nv == 1 && b8_ok(w))) {
        gemv_nib_rows(w, xq, r0, r1, y, scratch, groups16);
        return;
    }
    gemv_int_rows(w, xq, nv, r0, r1, y, ldy, scratch, groups16);
}

/* ---------------------------------------------------------------- float rows (f32, f16, bf16) */

/* Weights c .. c + 15 of a float row as floats (KIND a constant in the kernels below). */
T512 static inline __m512 load16(const int kind, const uint8_t *row, int64_t c) {
    if (kind == PQ_QMAT_F32) return _mm512_loadu_ps(row + 4 * c);
    const __m256i h = _mm256_loadu_si256((const __m256i *)(row + 2 * c));
    if (kind == PQ_QMAT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

T512 static inline __attribute__((always_inline)) void gemv_float_rows(const pq__qmat *w, const float *x,
                                                                       const int NV, int64_t r0, int64_t r1, float *y,
                                                                       int64_t ldy, const int KIND) {
    const int64_t C = w->cols, c16 = C / 16 * 16;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = pq__qmat_frow(w, r);
        __m512 acc[PQ_QMAT_GEMV_MAX][2];
        for (int v = 0; v < NV; v++)
            acc[v][0] = acc[v][1] = _mm512_setzero_ps();
        int64_t c = 0;
        for (; c + 32 <= c16; c += 32) {
            const __m512 w0 = load16(KIND, row, c), w1 = load16(KIND, row, c + 16);
            for (int v = 0; v < NV; v++) {
                acc[v][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + v * C + c), acc[v][0]);
                acc[v][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + v * C + c + 16), acc[v][1]);
            }
        }
        for (; c < c16; c += 16) {
            const __m512 w0 = load16(KIND, row, c);
            for (int v = 0; v < NV; v++)
                acc[v][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + v * C + c), acc[v][0]);
        }
        float tail[16]; /* the columns past the last 16 */
        if (c16 < C) pq__qmat_decode_seg(w, r, c16, C - c16, tail);
        for (int v = 0; v < NV; v++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[v][0], acc[v][1]));
            for (int64_t t = c16; t < C; t++)
                s += tail[t - c16] * x[v * C + t];
            y[v * ldy + r] = s;
        }
    }
}

/* One vector, four rows at a time, each from its own quarter of the rows r0..r1: four weight
 * streams in flight share each load of x, and each stream is a long run of consecutive rows
 * (gemv_nib_rows). */
T512 static inline __attribute__((always_inline)) void gemv_float4(const pq__qmat *w, const float *x, int64_t r0,
                                                                   int64_t r1, float *y, const int KIND) {
    const int64_t C = w->cols, c16 = C / 16 * 16, q = (r1 - r0) / 4;
    const size_t eb = pq__qmat_fbytes(KIND),
                 rs = eb * (size_t)(q * C); /* bytes from one stream's row to the next's */
    for (int64_t r = r0; r < r0 + q; r++) {
        const uint8_t *row = (const uint8_t *)w->data + eb * (size_t)(r * C);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t c = 0; c < c16; c += 16) {
            const __m512 xv = _mm512_loadu_ps(x + c);
            if (!((size_t)c * eb & 63)) /* a cache line of each row, 8 rows on in its stream (see PF_ROWS) */
                for (int k = 0; k < 4; k++)
                    _mm_prefetch((const char *)(row + k * rs + eb * (size_t)(PF_ROWS * C + c)), _MM_HINT_T0);
            a0 = _mm512_fmadd_ps(load16(KIND, row, c), xv, a0);
            a1 = _mm512_fmadd_ps(load16(KIND, row + rs, c), xv, a1);
            a2 = _mm512_fmadd_ps(load16(KIND, row + 2 * rs, c), xv, a2);
            a3 = _mm512_fmadd_ps(load16(KIND, row + 3 * rs, c), xv, a3);
        }
        float s[4] = {_mm512_reduce_add_ps(a0), _mm512_reduce_add_ps(a1), _mm512_reduce_add_ps(a2),
                      _mm512_reduce_add_ps(a3)};
        for (int k = 0; k < 4; k++) {
            float tail[16]; /* the columns past the last 16 */
            if (c16 < C) pq__qmat_decode_seg(w, r + k * q, c16, C - c16, tail);
            for (int64_t t = c16; t < C; t++)
                s[k] += tail[t - c16] * x[t];
            y[r + k * q] = s[k];
        }
    }
    if (r0 + 4 * q < r1) gemv_float_rows(w, x, 1, r0 + 4 * q, r1, y, 0, KIND);
}

T512 static inline __attribute__((always_inline)) void
gemv_float(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y, int64_t ldy, const int KIND) {
    switch (nv) {
    case 1: gemv_float4(w, x, r0, r1, y, KIND); break;
    case 2: gemv_float_rows(w, x, 2, r0, r1, y, ldy, KIND); break;
    case 3: gemv_float_rows(w, x, 3, r0, r1, y, ldy, KIND); break;
    default: gemv_float_rows(w, x, 4, r0, r1, y, ldy, KIND); break;
    }
}

T512 void pq__qmat_gemv_avx512_float(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y,
                                     int64_t ldy) {
    switch (w->kind) {
    case PQ_QMAT_F32: gemv_float(w, x, nv, r0, r1, y, ldy, PQ_QMAT_F32); break;
    case PQ_QMAT_F16: gemv_float(w, x, nv, r0, r1, y, ldy, PQ_QMAT_F16); break;
    default: gemv_float(w, x, nv, r0, r1, y, ldy, PQ_QMAT_BF16); break;
    }
}

/* ---------------------------------------------------------------- GEMM microkernel */

/* C [m, nr corner of MR x NR] += A [kc][MR] B [kc][NR]: 24 accumulators, B in two registers,
 * A broadcast from memory. */
T512 void pq__qmat_ukernel_avx512(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int m, int nr) {
    enum { MR = PQ_GEMM_MR_AVX512, NR = PQ_GEMM_NR_AVX512 };
    __m512 c[MR][2];
    for (int i = 0; i < MR; i++) { /* the C tile arrives while the products run */
        c[i][0] = c[i][1] = _mm512_setzero_ps();
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + i * ldc + 16), _MM_HINT_T0);
    }
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
    const int64_t gs = w->group_size;
    int64_t g = c0 / gs, g_end = (g + 1) * gs; /* the group of column c (group size 32: of its first half) */
    for (int64_t c = c0; c < c0 + kc; c += 64) {
        if (gs == 32)
            g = c / 32;
        else if (c >= g_end)
            g++, g_end += gs;
        const int64_t g1 = gs == 32 && g + 1 < w->n_groups ? g + 1 : g; /* of columns c + 32 .. c + 63 */
        const __m512 z0 = _mm512_set1_ps((float)z[g]), s0 = _mm512_set1_ps(pq__h2f(pq__ld16(sb, g)));
        const __m512 z1 = _mm512_set1_ps((float)z[g1]), s1 = _mm512_set1_ps(pq__h2f(pq__ld16(sb, g1)));
        const __m512i q = chunk_codes(w, m, c, &pos, m ? chunk_zeros(w, z, g) : _mm512_setzero_si512());
        for (int s = 0; s < 4 && c + 16 * s < w->cols; s++) {
            __m128i lane;
            switch (s) {
            case 0: lane = _mm512_extracti32x4_epi32(q, 0); break;
            case 1: lane = _mm512_extracti32x4_epi32(q, 1); break;
            case 2: lane = _mm512_extracti32x4_epi32(q, 2); break;
            default: lane = _mm512_extracti32x4_epi32(q, 3); break;
            }
            const __m512 v = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lane)), s < 2 ? z0 : z1);
            _mm512_storeu_ps(row + (c - c0) + 16 * s, _mm512_mul_ps(v, s < 2 ? s0 : s1));
        }
    }
}

/* r[i] lane j <-> r[j] lane i: pairs of floats, then of doubles, then of 128-bit lanes twice. */
T512 static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]), c = _mm512_castps_pd(t[i + 2]),
                      d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* Prefetches the codes of row r, columns [c0, c0 + kc), with their scales and zeros (rows
 * without a keep mask; nothing past the last row). */
T512 static inline __attribute__((always_inline)) void prefetch_codes(const pq__qmat *w, int64_t r, int64_t c0,
                                                                      int64_t kc) {
    if (w->mask || r >= w->rows) return;
    const char *p = (const char *)w->codes + (pq__qmat_row_bit(w, r) + (uint64_t)c0 * (uint64_t)w->bits) / 8;
    for (int64_t o = 0; o < kc * w->bits / 8 + 64; o += 64)
        _mm_prefetch(p + o, _MM_HINT_T0);
    const int64_t g = r * w->n_groups + c0 / w->group_size;
    _mm_prefetch((const char *)w->scales + 2 * g, _MM_HINT_T0);
    _mm_prefetch((const char *)(w->zeros + g), _MM_HINT_T0);
}

/* Rows ahead whose codes the B panel prefetches (the 1B shape's linears at 4 bits, 512 tokens:
 * 2, 4 and 8 alike). */
#define PF_PANEL_ROWS 4
_Static_assert(PQ_GEMM_NR_AVX512 % 16 == 0, "B panels are transposed 16 rows at a time");

/* Columns of the B panel decoded before they are transposed: 16 rows of them stay in L1. */
#define BPACK_COLS 256

/* B panel [kc][NR] of rows [r0, r0 + nr): BPACK_COLS columns of 16 rows decoded (rows past nr
 * zero), then written 16 x 16 floats at a time through transpose16. The 1B shape's linears at 4
 * bits, 512 tokens, against one row at a time stored float by float with a division per 16
 * columns: 1.10-1.11x the GEMM's rate (the prefetch or the transposes alone: within the noise). */
T512 void pq__qmat_bpack_avx512(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR) {
    if (w->kind == PQ_QMAT_CODES && (!pq__qmat_avx512_gemv_ok(w) || c0 % 64)) {
        pq__qmat_bpack_portable(w, r0, nr, c0, kc, B, NR);
        return;
    }
    pthread_once(&unpack_once, unpack_tables);
    _Alignas(64) float rows[16][BPACK_COLS + 64];
    for (int64_t k0 = 0; k0 < kc; k0 += BPACK_COLS) {
        const int64_t n = kc - k0 < BPACK_COLS ? kc - k0 : BPACK_COLS;
        for (int j0 = 0; j0 < NR; j0 += 16) {
            for (int j = 0; j < 16; j++) {
                const int64_t r = r0 + j0 + j;
                float *row = rows[j];
                if (w->kind == PQ_QMAT_CODES) prefetch_codes(w, r + PF_PANEL_ROWS, c0 + k0, n);
                if (j0 + j >= nr) {
                    memset(row, 0, (size_t)n * sizeof(float));
                } else if (w->kind == PQ_QMAT_CODES) {
                    decode_codes(w, r, c0 + k0, n, row);
                } else {
                    const uint8_t *src = pq__qmat_frow(w, r) + pq__qmat_fbytes(w->kind) * (size_t)(c0 + k0);
                    int64_t k = 0;
                    for (; k + 16 <= n; k += 16)
                        _mm512_storeu_ps(row + k, load16(w->kind, src, k));
                    if (k < n) pq__qmat_decode_seg(w, r, c0 + k0 + k, n - k, row + k);
                }
            }
            float *Bk = B + k0 * NR + j0;
            int64_t k = 0;
            for (; k + 16 <= n; k += 16) {
                __m512 v[16];
                for (int j = 0; j < 16; j++)
                    v[j] = _mm512_load_ps(rows[j] + k);
                transpose16(v);
                for (int i = 0; i < 16; i++)
                    _mm512_storeu_ps(Bk + (k + i) * NR, v[i]);
            }
            for (; k < n; k++)
                for (int j = 0; j < 16; j++)
                    Bk[k * NR + j] = rows[j][k];
        }
    }
}

/* ---------------------------------------------------------------- 8-bit activations (opt-in) */

static int64_t q8_unit(const pq__qmat *w) {
    return pq__qmat_q8_unit(w);
}

/* Columns per KC block: the most whole units within PQ_GEMM_Q8_KC. */
static int64_t q8_kc(const pq__qmat *w) {
    return PQ_GEMM_Q8_KC / q8_unit(w) * q8_unit(w);
}

/* pq__qmat_q8_quantize with 16 lanes: the same maximum, reciprocal and round-to-nearest-even,
 * so the integers and scales are identical to the portable one's. */
T512 static void q8_quantize(const pq__qmat *w, const float *x, int64_t n, int8_t *q8, float *xs, float *sq) {
    const int64_t U = q8_unit(w), units = (w->cols + U - 1) / U, cols64 = (w->cols + 63) / 64 * 64;
    const __m512 lim = _mm512_set1_ps(127.0f), nlim = _mm512_set1_ps(-127.0f);
    for (int64_t t = 0; t < n; t++) {
        int8_t *q = q8 + t * cols64;
        memset(q + w->cols, 0, (size_t)(cols64 - w->cols));
        for (int64_t u = 0; u < units; u++) {
            const float *xu = x + t * w->cols + u * U; /* U is a multiple of 16 dividing cols */
            const float m = max_abs(xu, U);
            const float sc = m > 0.0f && m <= 3.4e38f ? m / 127.0f : 0.0f, inv = sc > 0.0f ? 1.0f / sc : 0.0f;
            __m512i sum = _mm512_setzero_si512();
            for (int64_t i = 0; i < U; i += 16) {
                __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(xu + i), _mm512_set1_ps(inv)),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v = _mm512_max_ps(_mm512_min_ps(v, lim), nlim); /* (NaN activations: unspecified) */
                const __m512i vi = _mm512_cvttps_epi32(v);
                _mm_storeu_si128((__m128i *)(q + u * U + i), _mm512_cvtepi32_epi8(vi));
                sum = _mm512_add_epi32(sum, vi);
            }
            xs[t * units + u] = sc;
            sq[t * units + u] = (float)_mm512_reduce_add_epi32(sum);
        }
    }
}

T512 void pq__qmat_q8_quantize_avx512(const pq__qmat *w, const float *x, int64_t n, int8_t *q8, float *xs,
                                      float *sq) {
    q8_quantize(w, x, n, q8, xs, sq);
}

enum { Q8_MR = 12, Q8_NR = 32 };                                 /* the 8-bit GEMM's tile: tokens x rows */
typedef int32_t __attribute__((may_alias, aligned(1))) pq__i32a; /* four activation bytes as one dword */

/* B panel of rows [r0, r0 + nr) x columns [c0, c0 + kc): the codes as [kc / 4][32 rows][4]
 * bytes (masked-out columns holding their zero), then per unit the rows' scales s and s * zero
 * ([units][2][32] floats). Rows past nr are zero. */
T512 static void q8_bpack(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, uint8_t *B, float *Bs) {
    const int64_t U = q8_unit(w), units = kc / U, mstride = (w->cols + 7) / 8;
    uint8_t row[PQ_GEMM_Q8_KC + 64];
    memset(B, 0, (size_t)(kc * Q8_NR));
    memset(Bs, 0, sizeof(float) * (size_t)(units * 2 * Q8_NR));
    for (int j = 0; j < nr; j++) {
        const int64_t r = r0 + j;
        const uint8_t *m = w->mask ? w->mask + r * mstride : NULL, *z = w->zeros + r * w->n_groups;
        uint64_t pos = pq__qmat_row_bit(w, r) + (uint64_t)(m ? pq__qmat_kept_before(m, c0) : c0) * (uint64_t)w->bits;
        for (int64_t c = c0; c < c0 + kc; c += 64)
            _mm512_storeu_si512(
                row + (c - c0),
                chunk_codes(w, m, c, &pos, m ? chunk_zeros(w, z, c / w->group_size) : _mm512_setzero_si512()));
        for (int64_t k = 0; k < kc / 4; k++)
            memcpy(B + (k * Q8_NR + j) * 4, row + 4 * k, 4);
        for (int64_t u = 0; u < units; u++) {
            const int64_t g = (c0 + u * U) / w->group_size;
            const float sc = pq__h2f(pq__ld16(w->scales, r * w->n_groups + g));
            Bs[(u * 2) * Q8_NR + j] = sc;
            Bs[(u * 2 + 1) * Q8_NR + j] = sc * (float)z[g];
        }
    }
}

/* C [m tokens, nr <= 32 rows] (ldc) += a GEMM tile's float sums c[token][16-row half]. */
T512 static inline void tile_add(float *C, int64_t ldc, int m, int nr, const __m512 c[][2]) {
    const __mmask16 k0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1),
                    k1 = (__mmask16)(nr <= 16   ? 0
                                     : nr >= 32 ? 0xFFFF
                                                : (1u << (nr - 16)) - 1);
    for (int t = 0; t < m; t++) {
        float *ct = C + t * ldc;
        _mm512_mask_storeu_ps(ct, k0, _mm512_add_ps(_mm512_maskz_loadu_ps(k0, ct), c[t][0]));
        _mm512_mask_storeu_ps(ct + 16, k1, _mm512_add_ps(_mm512_maskz_loadu_ps(k1, ct + 16), c[t][1]));
    }
}

/* C tile [m tokens, nr rows] (ldc) += the tile's products over one KC block: per unit the exact
 * int32 sums of code * q, then C += xs (s sum - s zero sq) in float. 12 tokens x 32 rows, 24
 * accumulators (against 4 x 32 with the intrinsic: 8-bit prompts of the 1B shape at 4 bits
 * 389-395 -> 469-483 tok/s, the same sums). */
T512 static void q8_ukernel(int64_t kc, int64_t U, const int8_t *A, const float *Axs, const float *Asq,
                            const uint8_t *B, const float *Bs, float *C, int64_t ldc, int m, int nr) {
    __m512 c[Q8_MR][2];
#pragma GCC unroll 12
    for (int t = 0; t < Q8_MR; t++)
        c[t][0] = c[t][1] = _mm512_setzero_ps();
    const int64_t units = kc / U;
    for (int64_t u = 0; u < units; u++) {
        __m512i a[Q8_MR][2];
#pragma GCC unroll 12
        for (int t = 0; t < Q8_MR; t++)
            a[t][0] = a[t][1] = _mm512_setzero_si512();
        for (int64_t k = u * U / 4; k < (u + 1) * U / 4; k++) {
            const __m512i b0 = _mm512_loadu_si512(B + k * 128), b1 = _mm512_loadu_si512(B + k * 128 + 64);
#pragma GCC unroll 12
            for (int t = 0; t < Q8_MR; t++) {
                const __m512i at = _mm512_set1_epi32(((const pq__i32a *)A)[k * Q8_MR + t]);
                VNNI_ACC(a[t][0], b0, at);
                VNNI_ACC(a[t][1], b1, at);
            }
        }
        const __m512 s0 = _mm512_loadu_ps(Bs + u * 64), s1 = _mm512_loadu_ps(Bs + u * 64 + 16);
        const __m512 z0 = _mm512_loadu_ps(Bs + u * 64 + 32), z1 = _mm512_loadu_ps(Bs + u * 64 + 48);
#pragma GCC unroll 12
        for (int t = 0; t < Q8_MR; t++) {
            const __m512 sq = _mm512_set1_ps(Asq[u * Q8_MR + t]), xs = _mm512_set1_ps(Axs[u * Q8_MR + t]);
            const __m512 f0 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(a[t][0]), s0, _mm512_mul_ps(z0, sq));
            const __m512 f1 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(a[t][1]), s1, _mm512_mul_ps(z1, sq));
            c[t][0] = _mm512_fmadd_ps(f0, xs, c[t][0]);
            c[t][1] = _mm512_fmadd_ps(f1, xs, c[t][1]);
        }
    }
    tile_add(C, ldc, m, nr, c);
}

/* A panels: per block of Q8_MR tokens and KC block, q as [kc / 4][Q8_MR tokens][4] bytes and
 * per unit xs and sq [units][Q8_MR]. */
T512 static void q8_apack(const pq__qmat *w, const int8_t *q8, const float *xs, const float *sq, int64_t n,
                          int64_t tb, int8_t *Ap, float *Am) {
    const int64_t U = q8_unit(w), units = (w->cols + U - 1) / U, cols64 = (w->cols + 63) / 64 * 64, K = w->cols;
    const int64_t KQ = q8_kc(w);
    for (int64_t k0 = 0; k0 < K; k0 += KQ) {
        const int64_t kc = K - k0 < KQ ? K - k0 : KQ, kc4 = (kc + 3) / 4 * 4;
        int8_t *a = Ap + k0 * Q8_MR;
        float *am = Am + (k0 / U) * 2 * Q8_MR;
        for (int t = 0; t < Q8_MR; t++) {
            const int64_t tok = tb * Q8_MR + t;
            for (int64_t k = 0; k < kc4 / 4; k++)
                if (tok < n)
                    memcpy(a + (k * Q8_MR + t) * 4, q8 + tok * cols64 + k0 + 4 * k, 4);
                else
                    memset(a + (k * Q8_MR + t) * 4, 0, 4);
            for (int64_t u = 0; u < (kc + U - 1) / U; u++) {
                am[u * Q8_MR + t] = tok < n ? xs[tok * units + k0 / U + u] : 0.0f;
                am[((kc + U - 1) / U + u) * Q8_MR + t] = tok < n ? sq[tok * units + k0 / U + u] : 0.0f;
            }
        }
    }
}

int pq__qmat_q8_ok(const pq__qmat *w) {
    return pq__qmat_avx512_gemv_ok(w) && w->cols % q8_unit(w) == 0;
}

T512 int pq__qmat_gemm_q8(pq_ctx *ctx, const pq__qmat *w, const float *x, float *y, int64_t n, int nt) {
    pthread_once(&unpack_once, unpack_tables);
    const int64_t K = w->cols, R = w->rows, U = q8_unit(w), KQ = q8_kc(w), units = (K + U - 1) / U,
                  cols64 = (K + 63) / 64 * 64;
    const int64_t n_tb = (n + Q8_MR - 1) / Q8_MR, n_panels = (R + Q8_NR - 1) / Q8_NR;
    const size_t ap_bytes = (size_t)(n_tb * cols64 * Q8_MR), am_floats = (size_t)(n_tb * (units + 1) * 2 * Q8_MR);
    /* one work buffer: q8, A panels, xs + sq, A metadata; B panels and their scales per thread */
    const size_t q8_bytes = (size_t)(n * cols64 + 64) / 64 * 64, apb = (ap_bytes + 64) / 64 * 64,
                 xs_bytes = sizeof(float) * (size_t)(n * units * 2), am_bytes = sizeof(float) * am_floats;
    const size_t bp_bytes = (size_t)(PQ_GEMM_Q8_KC * Q8_NR) + 64,
                 bs_bytes = sizeof(float) * (size_t)((PQ_GEMM_Q8_KC / 32) * 2 * Q8_NR);
    void *own_a, *own_b;
    uint8_t *wa = pq__qmat_work(ctx, PQ_SCRATCH_PANELS, q8_bytes + apb + xs_bytes + am_bytes + 64, &own_a);
    uint8_t *wb = wa ? pq__qmat_work(ctx, PQ_SCRATCH_WORK, (bp_bytes + bs_bytes) * (size_t)nt + 64, &own_b) : NULL;
    int8_t *q8 = (int8_t *)wa, *Ap = q8 ? (int8_t *)(wa + q8_bytes) : NULL;
    float *xs = wa ? (float *)(wa + q8_bytes + apb) : NULL, *Am = wa ? xs + n * units * 2 : NULL;
    uint8_t *Bp = wb;
    float *Bs = wb ? (float *)(wb + bp_bytes * (size_t)nt) : NULL;
    int rc = -1;
    if (wa && wb) {
        q8_quantize(w, x, n, q8, xs, xs + n * units);
        memset(y, 0, sizeof(float) * (size_t)(n * R));
        const int64_t am_per_tb = (units + 1) * 2 * Q8_MR;
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
#pragma omp for schedule(static)
            for (int64_t tb = 0; tb < n_tb; tb++)
                q8_apack(w, q8, xs, xs + n * units, n, tb, Ap + tb * cols64 * Q8_MR, Am + tb * am_per_tb);
            const int t = omp_get_thread_num(), T = omp_get_num_threads();
            const int64_t p0 = n_panels * t / T, p1 = n_panels * (t + 1) / T;
            uint8_t *B = Bp + bp_bytes * (size_t)t;
            float *BS = Bs + bs_bytes / sizeof(float) * (size_t)t;
            for (int64_t k0 = 0; k0 < K; k0 += KQ) {
                const int64_t kc = K - k0 < KQ ? K - k0 : KQ, ku = (kc + U - 1) / U;
                for (int64_t p = p0; p < p1; p++) {
                    const int nr = R - p * Q8_NR < Q8_NR ? (int)(R - p * Q8_NR) : Q8_NR;
                    q8_bpack(w, p * Q8_NR, nr, k0, kc, B, BS);
                    for (int64_t tb = 0; tb < n_tb; tb++) {
                        const int m = n - tb * Q8_MR < Q8_MR ? (int)(n - tb * Q8_MR) : Q8_MR;
                        const float *am = Am + tb * am_per_tb + (k0 / U) * 2 * Q8_MR;
                        q8_ukernel(kc, U, Ap + tb * cols64 * Q8_MR + k0 * Q8_MR, am, am + ku * Q8_MR, B, BS,
                                   y + tb * Q8_MR * R + p * Q8_NR, R, m, nr);
                    }
                }
            }
        }
        rc = 0;
    }
    if (!wb) own_b = NULL;
    free(own_a);
    free(own_b);
    return rc;
}

/* ---------------------------------------------------------------- exact products, integer GEMM */

/* The GEMM of exact products (prompts without 8-bit activations) in VNNI integers: the
 * activations as the integer GEMV takes them (xq_prepare: X = rint(x / xs), xs = max|x| /
 * 8355000, three signed bytes), here per 8-bit unit (pq__qmat_q8_unit), against the codes as
 * the 8-bit GEMM packs them (q8_bpack: masked-out columns hold their zero). Per unit the int32
 * sums of code * digit per plane are exact: |sum| <= U 255 128 for U <= 256 columns, and
 * (a0 * 256 + a1) <= 257 U 255 128 < 2^31. Then, in float, f = (a0 * 256 + a1) * 256 + a2 and
 * C += xs (s f - s zero sum X). One VPDPBUSD does 64 products, so the three planes take 3 / 64
 * instruction per product against the float GEMM's 1 / 16 (FMA): a 4 x 32 tile of 24
 * accumulators, 12 activation dwords broadcast and 2 code vectors per 4 columns. */
enum { X24_MR = 4 };

/* A block of X24_MR tokens: the digits as [cols64 / 4][X24_MR tokens][3 planes][4] bytes, and
 * per unit xs and sq = sum X as [units][X24_MR] each (tokens past n: zero). */
T512 static void x24_apack(const pq__qmat *w, const float *x, int64_t n, int64_t tb, int8_t *Ap, float *Am) {
    const int64_t U = q8_unit(w), units = w->cols / U, cols64 = (w->cols + 63) / 64 * 64;
    memset(Ap, 0, (size_t)(cols64 * X24_MR * 3));
    for (int t = 0; t < X24_MR; t++) {
        const int64_t tok = tb * X24_MR + t;
        for (int64_t u = 0; u < units; u++) {
            Am[u * X24_MR + t] = Am[(units + u) * X24_MR + t] = 0.0f;
            if (tok >= n) continue;
            const float *xu = x + tok * w->cols + u * U; /* U: a multiple of 16 dividing cols */
            const float m = max_abs(xu, U);
            const float xs = m > 0.0f && m <= 3.4e38f ? m / 8355000.0f : 0.0f, inv = xs > 0.0f ? 1.0f / xs : 0.0f;
            __m512 sum = _mm512_setzero_ps();
            for (int64_t i = 0; i < U; i += 16) {
                int32_t d[3][4]; /* the 16 columns' digits, four per dword */
                sum = _mm512_add_ps(
                    sum, digits24(xu + i, _mm512_set1_ps(inv), (int8_t *)d[0], (int8_t *)d[1], (int8_t *)d[2]));
                int8_t *dst = Ap + ((u * U + i) / 4 * X24_MR + t) * 12;
                for (int j = 0; j < 4; j++, dst += X24_MR * 12)
                    for (int p = 0; p < 3; p++)
                        memcpy(dst + 4 * p, &d[p][j], 4);
            }
            Am[u * X24_MR + t] = xs;
            Am[(units + u) * X24_MR + t] = _mm512_reduce_add_ps(sum);
        }
    }
}

#define X24_ZERO(t)                                                                                                  \
    __m512i a##t##00 = _mm512_setzero_si512(), a##t##01 = a##t##00, a##t##10 = a##t##00, a##t##11 = a##t##00,        \
            a##t##20 = a##t##00, a##t##21 = a##t##00;
#define X24_TOKEN(t)                                                                                                 \
    {                                                                                                                \
        const __m512i d0 = _mm512_set1_epi32(a4[(k * X24_MR + t) * 3]),                                              \
                      d1 = _mm512_set1_epi32(a4[(k * X24_MR + t) * 3 + 1]),                                          \
                      d2 = _mm512_set1_epi32(a4[(k * X24_MR + t) * 3 + 2]);                                          \
        VNNI_ACC(a##t##00, b0, d0);                                                                                  \
        VNNI_ACC(a##t##01, b1, d0);                                                                                  \
        VNNI_ACC(a##t##10, b0, d1);                                                                                  \
        VNNI_ACC(a##t##11, b1, d1);                                                                                  \
        VNNI_ACC(a##t##20, b0, d2);                                                                                  \
        VNNI_ACC(a##t##21, b1, d2);                                                                                  \
    }
#define X24_FLUSH(t)                                                                                                 \
    {                                                                                                                \
        const __m512 sq = _mm512_set1_ps(Asq[u * X24_MR + t]), xs = _mm512_set1_ps(Axs[u * X24_MR + t]);             \
        c[t][0] = _mm512_fmadd_ps(_mm512_fmsub_ps(x24_f(a##t##00, a##t##10, a##t##20), s0, _mm512_mul_ps(z0, sq)),   \
                                  xs, c[t][0]);                                                                      \
        c[t][1] = _mm512_fmadd_ps(_mm512_fmsub_ps(x24_f(a##t##01, a##t##11, a##t##21), s1, _mm512_mul_ps(z1, sq)),   \
                                  xs, c[t][1]);                                                                      \
    }

/* C tile [m tokens, nr rows] (ldc) += the tile's products over one KC block (q8_ukernel's shape
 * with three planes; the float sums of the tile live in memory, the registers hold the int32s). */
T512 static void x24_ukernel(int64_t kc, int64_t U, const int8_t *A, const float *Axs, const float *Asq,
                             const uint8_t *B, const float *Bs, float *C, int64_t ldc, int m, int nr) {
    __m512 c[X24_MR][2];
    for (int t = 0; t < X24_MR; t++)
        c[t][0] = c[t][1] = _mm512_setzero_ps();
    const pq__i32a *a4 = (const pq__i32a *)A;
    for (int64_t u = 0; u < kc / U; u++) {
        X24_ZERO(0) X24_ZERO(1) X24_ZERO(2) X24_ZERO(3);
        for (int64_t k = u * U / 4; k < (u + 1) * U / 4; k++) {
            const __m512i b0 = _mm512_loadu_si512(B + k * 128), b1 = _mm512_loadu_si512(B + k * 128 + 64);
            X24_TOKEN(0) X24_TOKEN(1) X24_TOKEN(2) X24_TOKEN(3)
        }
        const __m512 s0 = _mm512_loadu_ps(Bs + u * 64), s1 = _mm512_loadu_ps(Bs + u * 64 + 16);
        const __m512 z0 = _mm512_loadu_ps(Bs + u * 64 + 32), z1 = _mm512_loadu_ps(Bs + u * 64 + 48);
        X24_FLUSH(0) X24_FLUSH(1) X24_FLUSH(2) X24_FLUSH(3)
    }
    tile_add(C, ldc, m, nr, c);
}

T512 int pq__qmat_gemm_x24(pq_ctx *ctx, const pq__qmat *w, const float *x, float *y, int64_t n, int nt) {
    pthread_once(&unpack_once, unpack_tables);
    const int64_t K = w->cols, R = w->rows, U = q8_unit(w), KQ = q8_kc(w), units = K / U, cols64 = (K + 63) / 64 * 64;
    const int64_t n_tb = (n + X24_MR - 1) / X24_MR, n_panels = (R + Q8_NR - 1) / Q8_NR;
    const size_t ap_per_tb = (size_t)(cols64 * X24_MR * 3), am_per_tb = (size_t)(units * 2 * X24_MR);
    const size_t ap_bytes = (ap_per_tb * (size_t)n_tb + 63) / 64 * 64,
                 am_bytes = sizeof(float) * am_per_tb * (size_t)n_tb;
    const size_t bp_bytes = (size_t)(PQ_GEMM_Q8_KC * Q8_NR) + 64,
                 bs_bytes = sizeof(float) * (size_t)((PQ_GEMM_Q8_KC / 32) * 2 * Q8_NR);
    void *own_a, *own_b;
    uint8_t *wa = pq__qmat_work(ctx, PQ_SCRATCH_PANELS, ap_bytes + am_bytes + 64, &own_a);
    uint8_t *wb = wa ? pq__qmat_work(ctx, PQ_SCRATCH_WORK, (bp_bytes + bs_bytes) * (size_t)nt + 64, &own_b) : NULL;
    if (!wa || !wb) {
        free(own_a);
        return -1;
    }
    int8_t *Ap = (int8_t *)wa;
    float *Am = (float *)(wa + ap_bytes), *Bs = (float *)(wb + bp_bytes * (size_t)nt);
    memset(y, 0, sizeof(float) * (size_t)(n * R));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (int64_t tb = 0; tb < n_tb; tb++)
            x24_apack(w, x, n, tb, Ap + (size_t)tb * ap_per_tb, Am + (size_t)tb * am_per_tb);
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t p0 = n_panels * t / T, p1 = n_panels * (t + 1) / T;
        uint8_t *B = wb + bp_bytes * (size_t)t;
        float *BS = Bs + bs_bytes / sizeof(float) * (size_t)t;
        for (int64_t k0 = 0; k0 < K; k0 += KQ) {
            const int64_t kc = K - k0 < KQ ? K - k0 : KQ;
            for (int64_t p = p0; p < p1; p++) {
                const int nr = R - p * Q8_NR < Q8_NR ? (int)(R - p * Q8_NR) : Q8_NR;
                q8_bpack(w, p * Q8_NR, nr, k0, kc, B, BS);
                for (int64_t tb = 0; tb < n_tb; tb++) {
                    const int m = n - tb * X24_MR < X24_MR ? (int)(n - tb * X24_MR) : X24_MR;
                    const float *am = Am + (size_t)tb * am_per_tb;
                    x24_ukernel(kc, U, Ap + (size_t)tb * ap_per_tb + k0 * X24_MR * 3, am + (k0 / U) * X24_MR,
                                am + (units + k0 / U) * X24_MR, B, BS, y + tb * X24_MR * R + p * Q8_NR, R, m, nr);
                }
            }
        }
    }
    free(own_a);
    free(own_b);
    return 0;
}

#else /* not x86-64: never called (pq__qmat_isa says portable) */

int pq__qmat_avx512_gemv_ok(const pq__qmat *w) {
    (void)w;
    return 0;
}
int pq__qmat_q8_ok(const pq__qmat *w) {
    (void)w;
    return 0;
}
int pq__qmat_gemm_q8(pq_ctx *ctx, const pq__qmat *w, const float *x, float *y, int64_t n, int nt) {
    (void)ctx, (void)w, (void)x, (void)y, (void)n, (void)nt;
    return -1;
}
int pq__qmat_gemm_x24(pq_ctx *ctx, const pq__qmat *w, const float *x, float *y, int64_t n, int nt) {
    (void)ctx, (void)w, (void)x, (void)y, (void)n, (void)nt;
    return -1;
}
void pq__qmat_xq_prepare_avx512(const pq__qmat *w, const float *x, pq__qmat_xq *xq) {
    (void)w, (void)x, (void)xq;
}
void pq__qmat_q8_quantize_avx512(const pq__qmat *w, const float *x, int64_t n, int8_t *q8, float *xs, float *sq) {
    pq__qmat_q8_quantize(w, x, n, q8, xs, sq);
}
int pq__qmat_nib_ok(const pq__qmat *w) {
    (void)w;
    return 0;
}
void pq__qmat_xq_nibble_avx512(const pq__qmat_xq *src, int64_t cols, pq__qmat_xq *dst) {
    (void)src, (void)cols, (void)dst;
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
