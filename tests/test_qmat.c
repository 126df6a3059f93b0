/* The stored-weight products of kernels/qmat.h against their reference, on every path this CPU
 * runs (AVX-512, AVX2, portable), for f16 / bf16 rows and b-bit codes (b = 1..8) with group
 * sizes 32, 64, 128, 8 and one per row, with and without keep masks (random and N:M), odd
 * shapes, 1..4 vectors (GEMV) and more (GEMM).
 *
 * Decoding is exact: pq__qmat_rows_f32 and the GEMM's panels give each weight as
 * ((float)code - (float)zero) * scale, which is checked bit for bit against an independent
 * decode of the generating codes.
 *
 * Error bound of a product y = sum_c w_c x_c (Higham ch. 3): the reference and the float paths
 * each sum the same exact-or-once-rounded products in some order, so each is within
 * gamma_{K+2} sum |w_c x_c| of the exact value and they differ by at most twice that. The
 * AVX-512 integer path represents each activation as xs * X (|x - xs X| <= 1.5 xs, xs = the
 * group's max |x| / 8355000) and sums code * X exactly, then forms per flush of at most 256
 * columns t * 256 + lo in float and adds scale * xs * that, minus sum_g scale zero sum(x): its
 * rounding acts on the magnitudes before the zero is subtracted, sum_c |code_c x_c| |scale| +
 * sum_g |scale_g zero_g| sum |x_g|, so its bound is
 *     2 gamma_{K+8} (sum |w x| + sum |code x scale| + sum |scale zero x|) + 1.5 sum_c |w'_c| xs_g
 * with w'_c = code_c * scale (the representation error meets the code, the zero part cancels
 * exactly in integers). The worst observed error as a fraction of the bound is printed. */
#include <stdint.h>
#include <string.h>

#include "kernels/qmat.h"
#include "kernels/qmat_impl.h"
#include "model/packed.h"
#include "test.h"
#define RANDGEN_SEED 0x51ed270b2f3e4d5bULL
#include "randgen.h"

#define U_F32 (1.0 / 16777216.0)

static pq_ctx *ctx; /* its scratch serves the two-thread runs; the one-thread runs allocate */

static double gam(double k) {
    return k * U_F32 / (1.0 - k * U_F32);
}

static uint16_t f2h(float f) { /* round to nearest half through the project's own conversion */
    return pq__f32_to_f16(f);
}

/* A generated matrix and what it holds, independently of the qmat decoder. */
typedef struct gen {
    pq__qmat w;
    float *dense;     /* [rows, cols] expected weights */
    float *wabs_code; /* [rows, cols] |code * scale| (0 masked) */
    float *wzero;     /* [rows, n_groups] |scale * zero| */
    void *bufs[6];
} gen;

static void gen_free(gen *g) {
    for (int i = 0; i < 6; i++)
        free(g->bufs[i]);
    free(g->dense);
    free(g->wabs_code);
    free(g->wzero);
    memset(g, 0, sizeof *g);
}

/* mask_kind 0: none, 1: random (keep prob 0.6), 2: N:M 2:4 (each four columns keep one of the six
 * pairs, drawn), 3: N:M 1:4. */
static void gen_codes(gen *g, int64_t rows, int64_t cols, int bits, int64_t gs, int mask_kind) {
    memset(g, 0, sizeof *g);
    pq__qmat *w = &g->w;
    w->kind = PQ_QMAT_CODES;
    w->rows = rows, w->cols = cols, w->bits = bits;
    w->group_size = gs, w->n_groups = cols / gs;
    const int64_t ng = w->n_groups, ms = (cols + 7) / 8;
    uint8_t *codes = malloc((size_t)(rows * cols)), *mask = mask_kind ? calloc((size_t)(rows * ms), 1) : NULL;
    uint16_t *scales = malloc((size_t)(rows * ng) * 2);
    uint8_t *zeros = malloc((size_t)(rows * ng));
    for (int64_t i = 0; i < rows * ng; i++) {
        scales[i] = f2h((float)(0.002 + 0.05 * urand()) * (urand() < 0.5 ? -1.0f : 1.0f));
        zeros[i] = (uint8_t)(urand() * (double)(1 << bits));
    }
    for (int64_t i = 0; i < rows * cols; i++)
        codes[i] = (uint8_t)(urand() * (double)(1 << bits));
    static const uint8_t pairs[6] = {0x3, 0x5, 0x6, 0x9, 0xA, 0xC}; /* the 2:4 choices of a group of 4 */
    if (mask)
        for (int64_t r = 0; r < rows; r++) {
            unsigned pair = 0;
            for (int64_t c = 0; c < cols; c++) {
                int keep;
                if (mask_kind == 1) {
                    keep = urand() < 0.6;
                } else if (mask_kind == 3) {
                    keep = (c % 4) == (r % 4);
                } else { /* 2:4: each group of 4 columns keeps one of the six pairs */
                    if (c % 4 == 0) pair = pairs[(size_t)(urand() * 6) % 6];
                    keep = (pair >> (c % 4)) & 1;
                }
                if (keep) mask[r * ms + c / 8] |= (uint8_t)(1u << (c % 8));
            }
        }
    uint64_t *row_bit = mask ? malloc((size_t)rows * 8) : NULL;
    int64_t kept = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (row_bit) row_bit[r] = (uint64_t)kept * (uint64_t)bits;
        for (int64_t c = 0; c < cols; c++)
            kept += !mask || pq__bit(mask + r * ms, c);
    }
    const size_t nbytes = (size_t)((kept * bits + 7) / 8);
    uint8_t *stream = calloc(nbytes + 1, 1);
    uint64_t pos = 0;
    for (int64_t r = 0; r < rows; r++)
        pq__bits_pack(stream, &pos, codes + r * cols, mask ? mask + r * ms : NULL, cols, bits);
    w->codes = stream, w->codes_bytes = nbytes, w->row_bit = row_bit, w->scales = scales, w->zeros = zeros;
    w->mask = mask;
    w->kept64 = pq__qmat_kept64(w); /* the 2:4 masks: the N:M kernel where the shape allows */
    g->dense = malloc(sizeof(float) * (size_t)(rows * cols));
    g->wabs_code = malloc(sizeof(float) * (size_t)(rows * cols));
    g->wzero = malloc(sizeof(float) * (size_t)(rows * ng));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t gg = 0; gg < ng; gg++)
            g->wzero[r * ng + gg] = fabsf(pq__f16_to_f32(scales[r * ng + gg]) * (float)zeros[r * ng + gg]);
        for (int64_t c = 0; c < cols; c++) {
            const int64_t gi = r * ng + c / gs;
            const int keep = !mask || pq__bit(mask + r * ms, c);
            const float s = pq__f16_to_f32(scales[gi]);
            g->dense[r * cols + c] = keep ? ((float)codes[r * cols + c] - (float)zeros[gi]) * s : 0.0f;
            g->wabs_code[r * cols + c] = keep ? fabsf((float)codes[r * cols + c] * s) : 0.0f;
        }
    }
    free(codes);
    g->bufs[0] = stream, g->bufs[1] = row_bit, g->bufs[2] = scales, g->bufs[3] = zeros, g->bufs[4] = mask;
}

/* Float rows: f32, f16 or bf16. */
static void gen_float(gen *g, int64_t rows, int64_t cols, pq__qmat_kind kind) {
    memset(g, 0, sizeof *g);
    g->w.kind = kind, g->w.rows = rows, g->w.cols = cols;
    const size_t eb = pq__qmat_fbytes(kind);
    uint16_t *h = malloc((size_t)(rows * cols) * eb + 1);
    g->dense = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++) {
        const float v = 0.05f * nrand();
        if (kind == PQ_QMAT_F32) {
            memcpy((float *)h + i, &v, 4);
            g->dense[i] = v;
        } else if (kind == PQ_QMAT_F16) {
            h[i] = f2h(v);
            g->dense[i] = pq__f16_to_f32(h[i]);
        } else {
            uint32_t u;
            memcpy(&u, &v, 4);
            h[i] = (uint16_t)(u >> 16);
            g->dense[i] = pq__bf2f(h[i]);
        }
    }
    /* misaligned on purpose: stored half rows may sit at any byte offset of a mapped file, f32
     * rows at any multiple of 4 (pq__qmat: the loader copies others) */
    const size_t off = kind == PQ_QMAT_F32 ? 4 : 1;
    uint8_t *mis = malloc((size_t)(rows * cols) * eb + off);
    memcpy(mis + off, h, (size_t)(rows * cols) * eb);
    free(h);
    g->w.data = mis + off;
    g->bufs[0] = mis;
}

static double worst_int = 0, worst_float = 0;
static int x24_runs = 0; /* runs of the integer GEMM (pq__qmat_gemm_x24) */

/* Every path on n vectors x; y compared with the reference within the bound above. */
static void check_products(const gen *g, int64_t n, const char *what) {
    const pq__qmat *w = &g->w;
    const int64_t R = w->rows, K = w->cols;
    float *x = malloc(sizeof(float) * (size_t)(n * K)), *b = malloc(sizeof(float) * (size_t)R);
    float *yr = malloc(sizeof(float) * (size_t)(n * R)), *y = malloc(sizeof(float) * (size_t)(n * R));
    for (int64_t i = 0; i < n * K; i++)
        x[i] = nrand() * (urand() < 0.05 ? 20.0f : 1.0f); /* a few outliers, as activations have */
    for (int64_t r = 0; r < R; r++)
        b[r] = 0.1f * nrand();
    pq__qmat_matmul_ref(w, x, b, yr, n);
    const pq__isa cpu = pq__qmat_isa();
    for (int isa = PQ_ISA_PORTABLE; isa <= (int)cpu; isa++) {
        for (int nt = 1; nt <= 2; nt++) {
            memset(y, 0xff, sizeof(float) * (size_t)(n * R));
            CHECK(pq__qmat_matmul(nt == 2 ? ctx : NULL, w, x, b, y, n, nt, (pq__isa)isa) == 0);
            /* the integer GEMV, or for a prompt the integer GEMM (its units' max |x| is at most
               the group's, so the group's xs bounds its representation error too) */
            const int gemm = n > PQ_QMAT_GEMV_CHUNKED_MAX,
                      int_path = isa == PQ_ISA_AVX512 && w->kind == PQ_QMAT_CODES &&
                                 (gemm ? pq__qmat_q8_ok(w) : pq__qmat_avx512_gemv_ok(w));
            x24_runs += int_path && gemm;
            double worst = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t r = 0; r < R; r++) {
                    double s_wx = fabs(b[r]), s_code = 0, s_zero = 0, s_rep = 0;
                    for (int64_t c = 0; c < K; c++) {
                        const double xv = fabs(x[i * K + c]);
                        s_wx += fabs(g->dense[r * K + c]) * xv;
                        if (int_path) {
                            s_code += g->wabs_code[r * K + c] * xv;
                            s_zero += g->wzero[r * w->n_groups + c / w->group_size] * xv;
                        }
                    }
                    if (int_path)
                        for (int64_t gg = 0; gg < w->n_groups; gg++) {
                            double mx = 0, sw = 0;
                            for (int64_t c = gg * w->group_size; c < (gg + 1) * w->group_size; c++) {
                                mx = fmax(mx, fabs(x[i * K + c]));
                                sw += g->wabs_code[r * K + c];
                            }
                            s_rep += sw * (mx / 8355000.0) * 1.5 * (1 + 4 * U_F32);
                        }
                    const double bound = 2 * gam((double)K + 8) * (s_wx + s_code + s_zero) + s_rep + 1e-30;
                    const double e = fabs((double)y[i * R + r] - (double)yr[i * R + r]);
                    if (!(e <= bound))
                        CHECK_MSG(0, "%s isa %s nt %d n %lld row %lld: %g vs %g, bound %g", what,
                                  pq__isa_name((pq__isa)isa), nt, (long long)n, (long long)r, y[i * R + r],
                                  yr[i * R + r], bound);
                    worst = fmax(worst, e / bound);
                }
            test_checks++;
            if (int_path && w->kept64) { /* the N:M kernel gives the general masked kernels' sums bit for bit */
                pq__qmat plain = *w;
                plain.kept64 = 0;
                float *y2 = malloc(sizeof(float) * (size_t)(n * R));
                CHECK(pq__qmat_matmul(nt == 2 ? ctx : NULL, &plain, x, b, y2, n, nt, (pq__isa)isa) == 0);
                CHECK_MSG(!memcmp(y, y2, sizeof(float) * (size_t)(n * R)), "%s nt %d n %lld: N:M kernel differs",
                          what, nt, (long long)n);
                free(y2);
            }
            if (int_path)
                worst_int = fmax(worst_int, worst);
            else
                worst_float = fmax(worst_float, worst);
        }
    }
    free(x), free(b), free(yr), free(y);
}

/* 8-bit activations (pq__qmat_matmul_act): the same activation rounding as the reference, exact
 * int32 sums per unit; the float steps per unit (s * sum, (s z) * sq, their difference, times xs,
 * accumulated over the units) each round once, on terms no larger than (|code s| + |s z|) xs |q|,
 * so |y - ref| <= 2 (units + 6) u sum_c (|code_c s| + |s z|) xs |q_c|. */
static double worst_q8 = 0;
static void check_q8(const gen *g, int64_t n, const char *what) {
    const pq__qmat *w = &g->w;
    if (pq__qmat_isa() != PQ_ISA_AVX512 || !pq__qmat_q8_ok(w)) return;
    if (n <= PQ_QMAT_GEMV_MAX && pq__qmat_q8_unit(w) != w->group_size) return; /* the GEMV's 8-bit units */
    const int64_t R = w->rows, K = w->cols, U = pq__qmat_q8_unit(w), units = (K + U - 1) / U,
                  cols64 = (K + 63) / 64 * 64;
    float *x = malloc(sizeof(float) * (size_t)(n * K)), *yr = malloc(sizeof(float) * (size_t)(n * R)),
          *y = malloc(sizeof(float) * (size_t)(n * R)), *xs = malloc(sizeof(float) * (size_t)(2 * n * units));
    int8_t *q8 = malloc((size_t)(n * cols64));
    for (int64_t i = 0; i < n * K; i++)
        x[i] = nrand() * (urand() < 0.05 ? 20.0f : 1.0f);
    pq__qmat_q8_quantize(w, x, n, q8, xs, xs + n * units);
    pq__qmat_matmul_q8_ref(w, x, NULL, yr, n);
    for (int nt = 1; nt <= 2; nt++) {
        const int flags = PQ_QMAT_INT8_PROMPT | PQ_QMAT_INT8_DECODE;
        CHECK(pq__qmat_matmul_act(nt == 2 ? ctx : NULL, w, x, NULL, y, n, nt, PQ_ISA_AUTO, flags) == 0);
        if (w->kept64 && n <= PQ_QMAT_GEMV_CHUNKED_MAX && pq__qmat_q8_unit(w) == w->group_size) {
            /* the GEMV's N:M kernel: the general kernel's sums */
            pq__qmat plain = *w;
            plain.kept64 = 0;
            float *y2 = malloc(sizeof(float) * (size_t)(n * R));
            CHECK(pq__qmat_matmul_act(nt == 2 ? ctx : NULL, &plain, x, NULL, y2, n, nt, PQ_ISA_AUTO, flags) == 0);
            CHECK_MSG(!memcmp(y, y2, sizeof(float) * (size_t)(n * R)), "%s: 8-bit N:M kernel differs", what);
            free(y2);
        }
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t r = 0; r < R; r++) {
                double m = 0;
                for (int64_t c = 0; c < K; c++)
                    m += ((double)g->wabs_code[r * K + c] + g->wzero[r * w->n_groups + c / w->group_size]) *
                         xs[i * units + c / U] * fabs((double)q8[i * cols64 + c]);
                const double bound = 2 * ((double)units + 6) * U_F32 * m + 1e-30,
                             e = fabs((double)y[i * R + r] - (double)yr[i * R + r]);
                worst_q8 = fmax(worst_q8, e / bound);
                bad += !(e <= bound);
            }
        CHECK_MSG(bad == 0, "%s: 8-bit activations n %lld nt %d: %d outside the bound", what, (long long)n, nt, bad);
    }
    free(x), free(yr), free(y), free(xs), free(q8);
}

static void check_decode(const gen *g, const char *what) {
    const pq__qmat *w = &g->w;
    float *d = malloc(sizeof(float) * (size_t)(w->rows * w->cols));
    pq__qmat_rows_f32(w, 0, w->rows, d);
    CHECK_MSG(!memcmp(d, g->dense, sizeof(float) * (size_t)(w->rows * w->cols)), "%s: decode", what);
    free(d);
}

/* pq__qmat_matmul_many: every Y_j bit for bit the product with W_j alone, for matrices that
 * share one product (same columns and groups: q, k, v) and for ones that do not. */
static void check_many(void) {
    static const struct {
        int64_t rows;
        int bits;
        int64_t gs;
        int mask;
    } sets[2][3] = {{{600, 4, 64, 0}, {200, 4, 64, 2}, {300, 8, 64, 0}},
                    {{600, 4, 64, 0}, {200, 3, 32, 1}, {300, 4, 128, 2}}};
    const int64_t cols = 1024; /* together past the GEMV's threshold for two threads, each alone not */
    for (int si = 0; si < 2; si++)
        for (int ni = 0; ni < 4; ni++) {
            const int64_t n = (int64_t[]){1, 3, 5, PQ_QMAT_GEMV_CHUNKED_MAX + 1}[ni];
            gen g[3];
            const pq__qmat *w[3];
            float *x = malloc(sizeof(float) * (size_t)(n * cols)), *y[3], *y1[3], b0[600];
            const float *b[3] = {b0, NULL, NULL};
            for (int64_t i = 0; i < n * cols; i++)
                x[i] = nrand();
            for (int i = 0; i < 600; i++)
                b0[i] = nrand();
            for (int j = 0; j < 3; j++) {
                gen_codes(&g[j], sets[si][j].rows, cols, sets[si][j].bits, sets[si][j].gs, sets[si][j].mask);
                w[j] = &g[j].w;
                y[j] = malloc(sizeof(float) * (size_t)(n * w[j]->rows));
                y1[j] = malloc(sizeof(float) * (size_t)(n * w[j]->rows));
            }
            float *one[2][3];                 /* [8-bit activations][j]: the products on one thread */
            for (int nt = 1; nt <= 4; nt++) { /* 3, 4: 8-bit activations */
                const int fl = nt > 2 ? PQ_QMAT_INT8_DECODE | PQ_QMAT_INT8_PROMPT : 0, i8 = nt > 2,
                          threads = 2 - nt % 2;
                for (int j = 0; j < 3; j++) { /* no row left from the last run */
                    memset(y[j], 0xFF, sizeof(float) * (size_t)(n * w[j]->rows));
                    memset(y1[j], 0xFF, sizeof(float) * (size_t)(n * w[j]->rows));
                }
                CHECK(pq__qmat_matmul_many(ctx, 3, w, b, x, y, n, threads, PQ_ISA_AUTO, fl) == 0);
                for (int j = 0; j < 3; j++) {
                    const size_t bytes = sizeof(float) * (size_t)(n * w[j]->rows);
                    CHECK(pq__qmat_matmul_act(ctx, w[j], x, b[j], y1[j], n, threads, PQ_ISA_AUTO, fl) == 0);
                    CHECK_MSG(!memcmp(y[j], y1[j], bytes),
                              "matmul_many set %d n %lld nt %d: matrix %d differs from its own product", si,
                              (long long)n, nt, j);
                    if (threads == 1) {
                        one[i8][j] = malloc(bytes);
                        memcpy(one[i8][j], y1[j], bytes);
                        continue;
                    }
                    /* the rows dealt to 2 and 3 threads (runs of chunks, help at the others'
                     * fronts) give the one-thread bits */
                    CHECK_MSG(!memcmp(y1[j], one[i8][j], bytes), "set %d n %lld nt %d: matrix %d, 2 threads", si,
                              (long long)n, nt, j);
                    memset(y1[j], 0xFF, bytes);
                    CHECK(pq__qmat_matmul_act(ctx, w[j], x, b[j], y1[j], n, 3, PQ_ISA_AUTO, fl) == 0);
                    CHECK_MSG(!memcmp(y1[j], one[i8][j], bytes), "set %d n %lld nt %d: matrix %d, 3 threads", si,
                              (long long)n, nt, j);
                }
            }
            for (int j = 0; j < 3; j++) {
                gen_free(&g[j]);
                free(y[j]), free(y1[j]), free(one[0][j]), free(one[1][j]);
            }
            free(x);
        }
}

int main(void) {
    static const int64_t shapes[][2] = {{33, 64}, {48, 352}, {17, 128}, {40, 2048}, {5, 96}, {64, 512}};
    static const int64_t gsizes[] = {32, 64, 128, 8, -1};
    char what[160];
    printf("test_qmat: paths up to %s\n", pq__isa_name(pq__qmat_isa()));
    ctx = pq_ctx_new();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int bits = 1; bits <= 8; bits++)
            for (size_t gi = 0; gi < sizeof gsizes / sizeof gsizes[0]; gi++)
                for (int mk = 0; mk <= 3; mk++) {
                    const int64_t rows = shapes[s][0], cols = shapes[s][1], gs = gsizes[gi] > 0 ? gsizes[gi] : cols;
                    if (cols % gs || (bits != 4 && bits != 3 && (s % 2) && gi != 0)) continue; /* keep it quick */
                    if (mk == 3 && cols % 128) continue; /* 1:4: the N:M kernel's shapes */
                    gen g;
                    gen_codes(&g, rows, cols, bits, gs, mk);
                    snprintf(what, sizeof what, "codes %lldx%lld b%d g%lld mask%d", (long long)rows, (long long)cols,
                             bits, (long long)gs, mk);
                    check_decode(&g, what);
                    for (int64_t n = 1; n <= 4; n++)
                        check_products(&g, n, what);
                    check_products(&g, 13, what);                           /* GEMVs of 4, 4, 4, 1 vectors */
                    check_products(&g, PQ_QMAT_GEMV_CHUNKED_MAX + 1, what); /* the GEMM */
                    check_q8(&g, 13, what);
                    check_q8(&g, PQ_QMAT_GEMV_CHUNKED_MAX + 1, what);
                    for (int64_t n = 1; n <= 4; n += 3)
                        check_q8(&g, n, what);
                    if (cols <= 512) check_products(&g, 40, what);
                    gen_free(&g);
                }
    { /* more columns than one KC block of either GEMM holds, and a last block shorter than KC */
        gen g;
        const int64_t cols = PQ_GEMM_Q8_KC + PQ_GEMM_KC / 4;
        _Static_assert((PQ_GEMM_Q8_KC + PQ_GEMM_KC / 4) % PQ_GEMM_KC, "a partial last block");
        for (int mk = 0; mk <= 1; mk++) {
            gen_codes(&g, 5, cols, 4, 128, mk);
            snprintf(what, sizeof what, "codes 5x%lld b4 g128 mask%d (KC blocks)", (long long)cols, mk);
            check_products(&g, PQ_QMAT_GEMV_CHUNKED_MAX + 1, what);
            check_q8(&g, PQ_QMAT_GEMV_CHUNKED_MAX + 1, what);
            gen_free(&g);
        }
    }
    { /* N:M rows of more than 16 groups of 128 (the N:M decoding kernel holds 16 groups' scales
         and zeros at a time), with a partial last block of groups: 2:4 and 1:4 */
        gen g;
        for (int mk = 2; mk <= 3; mk++) {
            gen_codes(&g, 12, 19 * 128, 4, 128, mk);
            snprintf(what, sizeof what, "codes 12x%d b4 g128 mask%d (19 groups)", 19 * 128, mk);
            for (int64_t n = 1; n <= 2; n++)
                check_products(&g, n, what);
            check_q8(&g, 1, what);
            gen_free(&g);
        }
    }
    static const pq__qmat_kind kinds[] = {PQ_QMAT_F16, PQ_QMAT_BF16, PQ_QMAT_F32};
    static const char *const kind_names[] = {"f16", "bf16", "f32"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            gen g;
            gen_float(&g, shapes[s][0] + 3, shapes[s][1] + (s % 2), kinds[k]);
            snprintf(what, sizeof what, "%s %lldx%lld", kind_names[k], (long long)g.w.rows, (long long)g.w.cols);
            check_decode(&g, what);
            for (int64_t n = 1; n <= 4; n++)
                check_products(&g, n, what);
            check_products(&g, 13, what); /* GEMVs of 4, 4, 4, 1 vectors */
            check_products(&g, 29, what);
            gen_free(&g);
        }
    check_many();
    if (pq__qmat_isa() == PQ_ISA_AVX512) CHECK_MSG(x24_runs > 0, "the integer GEMM never ran");
    printf("test_qmat: %d runs of the integer GEMM\n", x24_runs);
    printf("test_qmat: worst error / bound: float paths %.3g, integer GEMV %.3g, 8-bit activations %.3g\n",
           worst_float, worst_int, worst_q8);
    pq_ctx_free(ctx);
    return test_end("test_qmat");
}
