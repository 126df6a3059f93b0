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

int pq__qmat_kept64(const pq__qmat *w) {
    if (w->kind != PQ_QMAT_CODES || !w->mask || w->cols % 64 || w->rows < 1) return 0;
    const int64_t stride = pq__qmat_mask_stride(w);
    uint64_t v;
    memcpy(&v, w->mask, 8);
    const int K = __builtin_popcountll(v);
    for (int64_t r = 0; r < w->rows; r++)
        for (int64_t c = 0; c < w->cols; c += 64) {
            memcpy(&v, w->mask + r * stride + c / 8, 8);
            if (__builtin_popcountll(v) != K) return 0;
        }
    return K;
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
    for (; i + 8 <= c; i += 8)
        n += __builtin_popcount(m[i / 8]);
    if (i < c) n += __builtin_popcount(m[i / 8] & ((1u << (c - i)) - 1));
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

/* ---------------------------------------------------------------- 8-bit activations */

int64_t pq__qmat_q8_unit(const pq__qmat *w) {
    if (w->group_size <= 64) return w->group_size;
    for (int64_t u = 256; u > 64; u -= 64)
        if (w->group_size % u == 0) return u;
    return 64;
}

/* Activations of n tokens as int8 per unit: q = rint(x / xs), xs = max|x| / 127 over the unit,
 * into q8 [n, cols64] (zero past cols), xs and sq = sum q into [n, units]. */
void pq__qmat_q8_quantize(const pq__qmat *w, const float *x, int64_t n, int8_t *q8, float *xs, float *sq) {
    const int64_t U = pq__qmat_q8_unit(w), units = (w->cols + U - 1) / U, cols64 = (w->cols + 63) / 64 * 64;
    for (int64_t t = 0; t < n; t++) {
        int8_t *q = q8 + t * cols64;
        memset(q + w->cols, 0, (size_t)(cols64 - w->cols));
        for (int64_t u = 0; u < units; u++) {
            const float *xu = x + t * w->cols + u * U;
            const int64_t len = w->cols - u * U < U ? w->cols - u * U : U;
            float mx = 0.0f;
            for (int64_t i = 0; i < len; i++)
                mx = fmaxf(mx, fabsf(xu[i]));
            const float s = mx > 0.0f && mx <= 3.4e38f ? mx / 127.0f : 0.0f, inv = s > 0.0f ? 1.0f / s : 0.0f;
            int32_t sum = 0;
            for (int64_t i = 0; i < len; i++) {
                float v = nearbyintf(xu[i] * inv);
                v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v == v ? v : 0.0f;
                q[u * U + i] = (int8_t)v;
                sum += (int32_t)v;
            }
            xs[t * units + u] = s;
            sq[t * units + u] = (float)sum;
        }
    }
}

void pq__qmat_matmul_q8_ref(const pq__qmat *w, const float *x, const float *b, float *y, int64_t n) {
    const int64_t U = pq__qmat_q8_unit(w), units = (w->cols + U - 1) / U, cols64 = round_up(w->cols, 64);
    int8_t *q8 = malloc((size_t)(n * cols64) + 1);
    float *xs = malloc(sizeof(float) * (size_t)(2 * n * units) + 1);
    float *row = malloc(sizeof(float) * (size_t)w->cols + 1);
    if (q8 && xs && row) {
        pq__qmat_q8_quantize(w, x, n, q8, xs, xs + n * units);
        for (int64_t r = 0; r < w->rows; r++) {
            pq__qmat_rows_f32(w, r, 1, row);
            for (int64_t i = 0; i < n; i++) {
                double s = 0;
                for (int64_t c = 0; c < w->cols; c++)
                    s += (double)row[c] * (double)xs[i * units + c / U] * (double)q8[i * cols64 + c];
                y[i * w->rows + r] = (float)s + (b ? b[r] : 0.0f);
            }
        }
    }
    free(q8), free(xs), free(row);
}

/* ---------------------------------------------------------------- dispatch */

/* Rows per chunk of a product's rows dealt to threads: about 8 chunks per thread, so that a
 * thread slowed down (another process, a shared host) leaves its rest to the others instead of
 * keeping them waiting at the end; a multiple of 16 rows (whole cache lines of output), at
 * least 64 (the kernels' prefetch runs 8 rows ahead within a chunk). */
static int64_t chunk_rows(int64_t rows, int nt) {
    int64_t c = (rows / (8 * (int64_t)nt) + 15) / 16 * 16;
    return c < 64 ? 64 : c;
}

_Static_assert(PQ_QMAT_INT8_PROMPT == 1 && PQ_QMAT_INT8_DECODE == 2, "the flags pq_ctx_set_int8_* set");

/* The integer GEMV takes 8-bit activations for w: its groups are the 8-bit units. */
static int q8_gemv_ok(const pq__qmat *w) {
    return pq__qmat_q8_ok(w) && pq__qmat_q8_unit(w) == w->group_size;
}

/* The integer AVX-512 GEMV serves w. */
static int int_gemv(const pq__qmat *w, pq__isa isa) {
    return isa == PQ_ISA_AVX512 && w->kind == PQ_QMAT_CODES && pq__qmat_avx512_gemv_ok(w);
}

/* Most runs of chunks gemv_many deals (one per thread). */
#define PQ_QMAT_RUNS 64

/* Y_j [nv, rows_j] for nv <= PQ_QMAT_GEMV_MAX vectors and k matrices w_j that read the same x
 * (one activation preparation: the callers give matrices of the same columns and, for the
 * integer kernel, the same groups), in one parallel region: the chunks of every matrix's rows
 * dealt to the threads in runs (below). Each row is computed as a product with w_j alone
 * would compute it. */
static int gemv_many(pq_ctx *ctx, int k, const pq__qmat *const *ws, const float *x, int nv, float *const *ys, int nt,
                     pq__isa isa, int int8) {
    const pq__qmat *w = ws[0];
    const int use_int = int_gemv(w, isa);
    int8 = int8 && use_int && q8_gemv_ok(w);
    pq__qmat_xq xq[PQ_QMAT_GEMV_MAX], xqn; /* xqn: xq[0] in nibble order (pq__qmat_nib_ok) */
    void *buf = NULL, *own = NULL;
    float *scratch = NULL;
    const int64_t groups16 = pq__qmat_groups16(w);
    int nib = 0; /* some matrix takes the 4-bit nibble-order kernel (one vector) */
    for (int j = 0; j < k && use_int && nv == 1; j++)
        nib |= pq__qmat_nib_ok(ws[j]);
    if (use_int) {
        const int64_t cols64 = round_up(w->cols, 64);
        const size_t per = (size_t)(3 * cols64) + (size_t)(2 * groups16) * sizeof(float);
        const size_t sbytes = (size_t)(groups16 * PQ_QMAT_GEMV_MAX) * sizeof(float) * (size_t)nt;
        const size_t nbytes = nib ? (size_t)(3 * cols64) : 0;
        if (!(buf = pq__qmat_work(ctx, PQ_SCRATCH_WORK, per * (size_t)nv + nbytes + sbytes + 64, &own))) return -1;
        scratch = (float *)((uint8_t *)buf + (per * (size_t)nv + nbytes + 63) / 64 * 64);
        for (int j = 0; j < 3 && nib; j++)
            xqn.d[j] = (int8_t *)buf + per * (size_t)nv + (size_t)(j * cols64);
        for (int v = 0; v < nv; v++) {
            float *f = (float *)((uint8_t *)buf + per * (size_t)v);
            xq[v].xs = f;
            xq[v].sxs = f + groups16;
            int8_t *d = (int8_t *)(f + 2 * groups16);
            for (int j = 0; j < 3; j++)
                xq[v].d[j] = d + j * cols64;
            if (!int8) {
                pq__qmat_xq_prepare_avx512(w, x + v * w->cols, &xq[v]);
                continue;
            }
            /* 8-bit activations: one unit per group; sxs = xs * sum q */
            pq__qmat_q8_quantize_avx512(w, x + v * w->cols, 1, d, f, f + groups16);
            for (int64_t g = 0; g < groups16; g++) {
                if (g >= w->n_groups) f[g] = 0.0f, f[groups16 + g] = 0.0f;
                f[groups16 + g] *= f[g];
            }
            xq[v].planes = 1;
            xq[v].nib = 0;
        }
        if (nib) pq__qmat_xq_nibble_avx512(&xq[0], w->cols, &xqn);
    }
    int64_t total = 0, n_chunks = 0, first[PQ_QMAT_MANY_MAX + 1];
    for (int j = 0; j < k; j++)
        total += ws[j]->rows;
    const int64_t chunk = chunk_rows(total, nt);
    for (int j = 0; j < k; j++) {
        first[j] = n_chunks;
        n_chunks += (ws[j]->rows + chunk - 1) / chunk;
    }
    first[k] = n_chunks;
    /* The chunks in one run per thread (at most PQ_QMAT_RUNS): thread t takes the chunks of run
     * t in order, then helps the other runs from their fronts. Each thread so reads one long
     * stretch of consecutive rows while the runs last, and a slowed thread still leaves its rest
     * to the others (per-token A/B on the 1B shape's 112 GEMVs: +2 to +3 % over one counter for
     * all chunks, at 4 and 8 bits, both activation kinds). */
    int64_t next[PQ_QMAT_RUNS];
    const int runs = nt < PQ_QMAT_RUNS ? nt : PQ_QMAT_RUNS;
    for (int t = 0; t < runs; t++)
        next[t] = n_chunks * t / runs;
#pragma omp parallel num_threads(nt) if (nt > 1 && n_chunks > 1)
    for (int u = 0; u < runs;) {
        const int t = (omp_get_thread_num() + u) % runs;
        int64_t ci;
#pragma omp atomic capture
        ci = next[t]++;
        if (ci >= n_chunks * (t + 1) / runs) { /* run t is done */
            u++;
            continue;
        }
        int j = 0;
        while (ci >= first[j + 1])
            j++;
        const pq__qmat *wj = ws[j];
        const int64_t r0 = (ci - first[j]) * chunk, r1 = r0 + chunk < wj->rows ? r0 + chunk : wj->rows;
        float *y = ys[j];
        if (use_int)
            pq__qmat_gemv_avx512(wj, nib && pq__qmat_nib_ok(wj) ? &xqn : xq, nv, r0, r1, y, wj->rows,
                                 scratch + omp_get_thread_num() * groups16 * PQ_QMAT_GEMV_MAX);
        else if (isa == PQ_ISA_AVX512 && wj->kind != PQ_QMAT_CODES)
            pq__qmat_gemv_avx512_float(wj, x, nv, r0, r1, y, wj->rows);
        else if (isa >= PQ_ISA_AVX2)
            pq__qmat_gemv_avx2(wj, x, nv, r0, r1, y, wj->rows);
        else
            pq__qmat_gemv_portable(wj, x, nv, r0, r1, y, wj->rows);
    }
    free(own);
    return 0;
}

/* Whether a product of n vectors takes 8-bit activations: a token's (n <= PQ_QMAT_GEMV_MAX) as
 * PQ_QMAT_INT8_DECODE says, a prompt's as PQ_QMAT_INT8_PROMPT says. */
static int int8_of(int int8_act, int64_t n) {
    return (int8_act & (n > PQ_QMAT_GEMV_MAX ? PQ_QMAT_INT8_PROMPT : PQ_QMAT_INT8_DECODE)) != 0;
}

/* A prompt's product with 8-bit activations takes the 8-bit GEMM (pq__qmat_gemm_q8): beyond
 * PQ_QMAT_GEMV_CHUNKED_MAX vectors, or below where the GEMV's 8-bit units (the groups) are not
 * the GEMM's. */
static int q8_gemm(const pq__qmat *w, int64_t n, pq__isa want, int int8_act) {
    return (int8_act & PQ_QMAT_INT8_PROMPT) && n > PQ_QMAT_GEMV_MAX && !w->perm &&
           effective_isa(want) == PQ_ISA_AVX512 && pq__qmat_q8_ok(w) &&
           (n > PQ_QMAT_GEMV_CHUNKED_MAX || !q8_gemv_ok(w));
}

/* float32 weights take BLAS's sgemm beyond PQ_QMAT_GEMV_CHUNKED_MAX vectors: compress's
 * calibration passes among them, whose sums its output bytes keep. Fewer vectors (a token, a
 * short prompt) take the GEMVs: sgemv and sgemm through pq__matmul_wt run one thread below
 * PQ_PAR_MIN_FLOPS (every linear of the 1B shape for one token, most for five) and read the
 * weights at 16.5 GB/s in bench_qmat, the AVX-512 GEMV at 37 GB/s (Zen 5, 2 threads). */
static int f32_blas(const pq__qmat *w, int64_t n) {
    return w->kind == PQ_QMAT_F32 && n > PQ_QMAT_GEMV_CHUNKED_MAX;
}

/* gemv_many on n <= PQ_QMAT_GEMV_CHUNKED_MAX vectors, PQ_QMAT_GEMV_MAX at a time. */
static int gemv_chunked(pq_ctx *ctx, int k, const pq__qmat *const *ws, const float *x, int64_t n, float *const *ys,
                        int nt, pq__isa isa, int int8) {
    float *yv[PQ_QMAT_MANY_MAX];
    for (int64_t i = 0; i < n; i += PQ_QMAT_GEMV_MAX) {
        const int nv = n - i < PQ_QMAT_GEMV_MAX ? (int)(n - i) : PQ_QMAT_GEMV_MAX;
        for (int j = 0; j < k; j++)
            yv[j] = ys[j] + i * ws[j]->rows;
        if (gemv_many(ctx, k, ws, x + i * ws[0]->cols, nv, yv, nt, isa, int8)) return -1;
    }
    return 0;
}

/* Threads for a product of work multiply-adds: a second thread pays from about 16 M in a
 * GEMM; a GEMV streams its weights once from memory, which one thread does not saturate: from
 * 1 M weights (tens of microseconds, against a few for the fork) it is split too. */
static int product_threads(double work, int gemm, int n_threads) {
    const double par_min = gemm ? PQ_PAR_MIN_FLOPS / 4 : PQ_PAR_MIN_FLOPS / 64;
    return work < par_min ? 1 : (n_threads > 0 ? n_threads : 1);
}

static void add_bias(const float *b, float *y, int64_t n, int64_t rows) {
    if (b)
        for (int64_t i = 0; i < n; i++)
            for (int64_t r = 0; r < rows; r++)
                y[i * rows + r] += b[r];
}

int pq__qmat_matmul_many(pq_ctx *ctx, int k, const pq__qmat *const *w, const float *const *b, const float *x,
                         float *const *y, int64_t n, int n_threads, pq__isa want, int int8_act) {
    const pq__isa isa = effective_isa(want);
    int one_region = n <= PQ_QMAT_GEMV_CHUNKED_MAX && k >= 1 && k <= PQ_QMAT_MANY_MAX;
    double work = 0;
    for (int j = 0; j < k && one_region; j++) {
        const pq__qmat *a = w[j], *z = w[0];
        one_region = !a->perm && !f32_blas(a, n) && a->cols == z->cols && !q8_gemm(a, n, want, int8_act) &&
                     int_gemv(a, isa) == int_gemv(z, isa) && (!int_gemv(a, isa) || a->group_size == z->group_size);
        work += (double)n * (double)a->rows * (double)a->cols;
    }
    if (!one_region) {
        for (int j = 0; j < k; j++)
            if (pq__qmat_matmul_act(ctx, w[j], x, b ? b[j] : NULL, y[j], n, n_threads, want, int8_act)) return -1;
        return 0;
    }
    if (gemv_chunked(ctx, k, w, x, n, y, product_threads(work, 0, n_threads), isa, int8_of(int8_act, n))) return -1;
    for (int j = 0; j < k; j++)
        add_bias(b ? b[j] : NULL, y[j], n, w[j]->rows);
    return 0;
}

/* pq__qmat_matmul with int8: GEMVs take 8-bit activations where they can. */
static int matmul(pq_ctx *ctx, const pq__qmat *w, const float *x, const float *b, float *y, int64_t n, int n_threads,
                  pq__isa want, int int8) {
    if (w->perm) { /* gather the activations into the stored column order once */
        pq__qmat view = *w;
        view.perm = NULL;
        float *xp = permute_x(w, x, n);
        const int rc = xp ? matmul(ctx, &view, xp, b, y, n, n_threads, want, int8) : -1;
        free(xp);
        return rc;
    }
    if (f32_blas(w, n)) {
        pq__matmul_wt(x, w->data, b, y, n, w->rows, w->cols, n_threads);
        return 0;
    }
    const pq__isa isa = effective_isa(want);
    const int gemm = n > PQ_QMAT_GEMV_CHUNKED_MAX;
    const int nt = product_threads((double)n * (double)w->rows * (double)w->cols, gemm, n_threads);
    if (gemm && isa == PQ_ISA_AVX512 && w->kind == PQ_QMAT_CODES && pq__qmat_q8_ok(w)) {
        if (pq__qmat_gemm_x24(ctx, w, x, y, n, nt)) return -1;
        add_bias(b, y, n, w->rows);
        return 0;
    }
    if (gemm) return pq__qmat_gemm(ctx, w, x, b, y, n, nt, isa);
    if (gemv_chunked(ctx, 1, &w, x, n, &y, nt, isa, int8)) return -1;
    add_bias(b, y, n, w->rows);
    return 0;
}

int pq__qmat_matmul_act(pq_ctx *ctx, const pq__qmat *w, const float *x, const float *b, float *y, int64_t n,
                        int n_threads, pq__isa want, int int8_act) {
    if (!q8_gemm(w, n, want, int8_act)) return matmul(ctx, w, x, b, y, n, n_threads, want, int8_of(int8_act, n));
    if (pq__qmat_gemm_q8(ctx, w, x, y, n,
                         product_threads((double)n * (double)w->rows * (double)w->cols, 1, n_threads)))
        return -1;
    add_bias(b, y, n, w->rows);
    return 0;
}

int pq__qmat_matmul(pq_ctx *ctx, const pq__qmat *w, const float *x, const float *b, float *y, int64_t n,
                    int n_threads, pq__isa want) {
    return matmul(ctx, w, x, b, y, n, n_threads, want, 0);
}
