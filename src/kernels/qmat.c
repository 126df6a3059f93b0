/* Products with stored weight matrices (qmat.h): the dispatch, the plain-loop reference, the
 * portable kernels and the activations of the AVX-512 integer GEMV. */
#include "kernels/qmat.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "kernels/qmat_impl.h"

/* ---------------------------------------------------------------- the CPU */

pq__isa pq__qmat_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2") &&
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2"))
        return PQ_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2") &&
        __builtin_cpu_supports("f16c"))
        return PQ_ISA_AVX2;
#endif
    return PQ_ISA_PORTABLE;
}

const char *pq__isa_name(pq__isa isa) {
    switch (isa) {
    case PQ_ISA_AVX512: return "avx512";
    case PQ_ISA_AVX2: return "avx2";
    case PQ_ISA_PORTABLE: return "portable";
    default: return "auto";
    }
}

/* The path to run: the one asked for, or the best below it that the CPU has. */
static pq__isa effective_isa(pq__isa want) {
    const pq__isa cpu = pq__qmat_isa();
    return want == PQ_ISA_AUTO || want > cpu ? cpu : want;
}

size_t pq__qmat_bytes(const pq__qmat *w) {
    switch (w->kind) {
    case PQ_QMAT_F32: return (size_t)(w->rows * w->cols) * 4;
    case PQ_QMAT_F16:
    case PQ_QMAT_BF16: return (size_t)(w->rows * w->cols) * 2;
    default: break;
    }
    size_t n = w->codes_bytes + (size_t)(w->rows * w->n_groups) * 3;
    if (w->mask) n += (size_t)(w->rows * pq__qmat_mask_stride(w));
    return n;
}

/* ---------------------------------------------------------------- decoding */

int64_t pq__qmat_kept_before(const uint8_t *m, int64_t c) {
    int64_t n = 0, i = 0;
    for (; i + 64 <= c; i += 64) {
        uint64_t v;
        memcpy(&v, m + i / 8, 8);
        n += __builtin_popcountll(v);
    }
    for (; i < c; i++)
        n += pq__bit(m, i);
    return n;
}

/* The b-bit code at stream bit pos (reads the second byte only when the code reaches it). */
static inline unsigned get_code(const uint8_t *q, uint64_t pos, int b) {
    const unsigned off = (unsigned)(pos & 7);
    unsigned v = (unsigned)q[pos >> 3] >> off;
    if (off + (unsigned)b > 8) v |= (unsigned)q[(pos >> 3) + 1] << (8 - off);
    return v & ((1u << b) - 1);
}

void pq__qmat_decode_seg(const pq__qmat *w, int64_t r, int64_t c0, int64_t n, float *dst) {
    const size_t off = (size_t)(r * w->cols + c0);
    if (w->kind == PQ_QMAT_F32) {
        memcpy(dst, (const float *)w->data + off, (size_t)n * sizeof(float));
        return;
    }
    if (w->kind == PQ_QMAT_F16 || w->kind == PQ_QMAT_BF16) {
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = pq__ld16(w->data, (int64_t)off + i);
            dst[i] = w->kind == PQ_QMAT_F16 ? pq__h2f(h) : pq__bf2f(h);
        }
        return;
    }
    const uint8_t *m = w->mask ? w->mask + r * pq__qmat_mask_stride(w) : NULL;
    const int b = w->bits;
    uint64_t pos = pq__qmat_row_bit(w, r) + (uint64_t)(m ? pq__qmat_kept_before(m, c0) : c0) * (uint64_t)b;
    const uint8_t *z = w->zeros + r * w->n_groups;
    for (int64_t i = 0; i < n; i++) {
        const int64_t c = c0 + i, g = c / w->group_size;
        if (m && !pq__bit(m, c)) {
            dst[i] = 0.0f;
            continue;
        }
        const unsigned code = get_code(w->codes, pos, b);
        pos += (uint64_t)b;
        dst[i] = ((float)code - (float)z[g]) * pq__h2f(pq__ld16(w->scales, r * w->n_groups + g));
    }
}

void pq__qmat_rows_f32(const pq__qmat *w, int64_t r0, int64_t n, float *dst) {
    if (!w->perm) {
        for (int64_t r = 0; r < n; r++)
            pq__qmat_decode_seg(w, r0 + r, 0, w->cols, dst + r * w->cols);
        return;
    }
    float seg[256];
    for (int64_t r = 0; r < n; r++)
        for (int64_t c0 = 0; c0 < w->cols; c0 += 256) { /* stored order, scattered to W's */
            const int64_t len = w->cols - c0 < 256 ? w->cols - c0 : 256;
            pq__qmat_decode_seg(w, r0 + r, c0, len, seg);
            for (int64_t c = 0; c < len; c++)
                dst[r * w->cols + w->perm[c0 + c]] = seg[c];
        }
}

int64_t pq__qmat_count_zeros(const pq__qmat *w) { /* order-free: stored order */
    float seg[256];
    int64_t z = 0;
    for (int64_t r = 0; r < w->rows; r++)
        for (int64_t c0 = 0; c0 < w->cols; c0 += 256) {
            const int64_t len = w->cols - c0 < 256 ? w->cols - c0 : 256;
            pq__qmat_decode_seg(w, r, c0, len, seg);
            for (int64_t c = 0; c < len; c++)
                z += seg[c] == 0.0f;
        }
    return z;
}

float pq__qmat_at(const pq__qmat *w, int64_t r, int64_t c) {
    if (w->perm)
        for (int64_t j = 0; j < w->cols; j++)
            if (w->perm[j] == c) {
                c = j;
                break;
            }
    float v;
    pq__qmat_decode_seg(w, r, c, 1, &v);
    return v;
}

/* ---------------------------------------------------------------- reference and portable */

#define SEG 256

/* x [n, cols] in the stored column order of w (malloc'ed; NULL on failure). */
static float *permute_x(const pq__qmat *w, const float *x, int64_t n) {
    float *xp = malloc(sizeof(float) * (size_t)(n * w->cols) + 1);
    if (xp)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < w->cols; j++)
                xp[i * w->cols + j] = x[i * w->cols + w->perm[j]];
    return xp;
}

void pq__qmat_matmul_ref(const pq__qmat *w, const float *x, const float *b, float *y, int64_t n) {
    if (w->perm) { /* the same sum in the stored column order */
        pq__qmat view = *w;
        view.perm = NULL;
        float *xp = permute_x(w, x, n);
        if (xp) pq__qmat_matmul_ref(&view, xp, b, y, n);
        free(xp);
        return;
    }
    float seg[SEG];
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < w->rows; r++) {
            float s = 0.0f;
            for (int64_t c0 = 0; c0 < w->cols; c0 += SEG) {
                const int64_t len = w->cols - c0 < SEG ? w->cols - c0 : SEG;
                pq__qmat_decode_seg(w, r, c0, len, seg);
                for (int64_t c = 0; c < len; c++)
                    s += seg[c] * x[i * w->cols + c0 + c];
            }
            y[i * w->rows + r] = s + (b ? b[r] : 0.0f);
        }
}

void pq__qmat_gemv_portable(const pq__qmat *w, const float *x, int nv, int64_t r0, int64_t r1, float *y,
                            int64_t ldy) {
    float seg[SEG];
    for (int64_t r = r0; r < r1; r++) {
        float s[PQ_QMAT_GEMV_MAX] = {0};
        for (int64_t c0 = 0; c0 < w->cols; c0 += SEG) {
            const int64_t len = w->cols - c0 < SEG ? w->cols - c0 : SEG;
            pq__qmat_decode_seg(w, r, c0, len, seg);
            for (int v = 0; v < nv; v++) {
                const float *xv = x + v * w->cols + c0;
                float t = 0.0f;
                for (int64_t c = 0; c < len; c++)
                    t += seg[c] * xv[c];
                s[v] += t;
            }
        }
        for (int v = 0; v < nv; v++)
            y[v * ldy + r] = s[v];
    }
}

static inline int64_t round_up(int64_t v, int64_t m) {
    return (v + m - 1) / m * m;
}

/* ---------------------------------------------------------------- dispatch */

/* Row ranges per thread: multiples of 16 rows (whole cache lines of output). */
static void thread_rows(int64_t rows, int nt, int t, int64_t *r0, int64_t *r1) {
    const int64_t blocks = (rows + 15) / 16;
    *r0 = blocks * t / nt * 16;
    *r1 = blocks * (t + 1) / nt * 16;
    if (*r1 > rows) *r1 = rows;
    if (*r0 > rows) *r0 = rows;
}

/* Y [nv, rows] for nv <= PQ_QMAT_GEMV_MAX vectors. */
static int gemv(const pq__qmat *w, const float *x, int nv, float *y, int nt, pq__isa isa) {
    const int use_int = isa == PQ_ISA_AVX512 && w->kind == PQ_QMAT_CODES && pq__qmat_avx512_gemv_ok(w);
    pq__qmat_xq xq[PQ_QMAT_GEMV_MAX];
    void *buf = NULL;
    float *scratch = NULL;
    const int64_t groups16 = pq__qmat_groups16(w);
    if (use_int) {
        const int64_t cols64 = round_up(w->cols, 64);
        const size_t per = (size_t)(3 * cols64) + (size_t)(2 * groups16) * sizeof(float);
        const size_t sbytes = (size_t)(groups16 * PQ_QMAT_GEMV_MAX) * sizeof(float) * (size_t)nt;
        if (!(buf = malloc(per * (size_t)nv + sbytes + 64))) return -1;
        scratch = (float *)((uint8_t *)buf + (per * (size_t)nv + 63) / 64 * 64);
        for (int v = 0; v < nv; v++) {
            float *f = (float *)((uint8_t *)buf + per * (size_t)v);
            xq[v].xs = f;
            xq[v].sxs = f + groups16;
            int8_t *d = (int8_t *)(f + 2 * groups16);
            for (int k = 0; k < 3; k++)
                xq[v].d[k] = d + k * cols64;
            pq__qmat_xq_prepare_avx512(w, x + v * w->cols, &xq[v]);
        }
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int64_t r0, r1;
        thread_rows(w->rows, omp_get_num_threads(), omp_get_thread_num(), &r0, &r1);
        if (r0 < r1) {
            if (use_int)
                pq__qmat_gemv_avx512(w, xq, nv, r0, r1, y, w->rows,
                                     scratch + omp_get_thread_num() * groups16 * PQ_QMAT_GEMV_MAX);
            else if (isa == PQ_ISA_AVX512 && w->kind != PQ_QMAT_CODES)
                pq__qmat_gemv_avx512_float(w, x, nv, r0, r1, y, w->rows);
            else if (isa >= PQ_ISA_AVX2)
                pq__qmat_gemv_avx2(w, x, nv, r0, r1, y, w->rows);
            else
                pq__qmat_gemv_portable(w, x, nv, r0, r1, y, w->rows);
        }
    }
    free(buf);
    return 0;
}

int pq__qmat_matmul(const pq__qmat *w, const float *x, const float *b, float *y, int64_t n, int n_threads,
                    pq__isa want) {
    if (w->perm) { /* gather the activations into the stored column order once */
        pq__qmat view = *w;
        view.perm = NULL;
        float *xp = permute_x(w, x, n);
        const int rc = xp ? pq__qmat_matmul(&view, xp, b, y, n, n_threads, want) : -1;
        free(xp);
        return rc;
    }
    if (w->kind == PQ_QMAT_F32) { /* BLAS */
        pq__matmul_wt(x, w->data, b, y, n, w->rows, w->cols, n_threads);
        return 0;
    }
    const pq__isa isa = effective_isa(want);
    const double work = (double)n * (double)w->rows * (double)w->cols;
    const int nt = work < PQ_PAR_MIN_FLOPS / 4 ? 1 : (n_threads > 0 ? n_threads : 1);
    if (n > PQ_QMAT_GEMV_MAX) return pq__qmat_gemm(w, x, b, y, n, nt, isa);
    if (gemv(w, x, (int)n, y, nt, isa)) return -1;
    if (b)
        for (int64_t i = 0; i < n; i++)
            for (int64_t r = 0; r < w->rows; r++)
                y[i * w->rows + r] += b[r];
    return 0;
}
