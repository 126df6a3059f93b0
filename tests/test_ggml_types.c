/* ggml block types (src/quant/ggml_types.h): table, layouts (unpack/encode round trips on
 * random bytes), grids (value and nearest rounding vs brute force), decode == grid values,
 * the fitted quantizer vs a brute-force optimum (Q4_0 / Q5_0: every f16 scale) and vs the
 * plain max-based rounding on every type.
 *
 * With arguments it is the helper of tests/cli_gguf_types.sh (compared with real llama.cpp):
 *   test_ggml_types --random-blocks TYPE NBLOCKS SEED OUT.bin   random valid blocks
 *   test_ggml_types --decode TYPE IN.bin OUT.f32                our decode
 *   test_ggml_types --quantize TYPE NCOLS IN.f32 IMATRIX|- OUT.bin   our quantizer, llama.cpp weights
 *   test_ggml_types --err TYPE NCOLS IN.f32 IMATRIX|- A.bin         prints the weighted error of A
 *   test_ggml_types --encode-check TYPE IN.bin                  unpack -> encode gives IN again */
#include "kernels/dtype.h"
#include "kernels/ggml_types.h"
#include "randgen.h"
#include "test.h"

static const pq_dtype all_types[] = {PQ_DTYPE_Q4_0, PQ_DTYPE_Q4_1, PQ_DTYPE_Q5_0, PQ_DTYPE_Q5_1, PQ_DTYPE_Q8_0,
                                     PQ_DTYPE_Q2_K, PQ_DTYPE_Q3_K, PQ_DTYPE_Q4_K, PQ_DTYPE_Q5_K, PQ_DTYPE_Q6_K};
#define N_TYPES ((int)(sizeof all_types / sizeof all_types[0]))

/* Offsets of the f16 fields of a block (-1: none). */
static void f16_fields(pq_dtype t, int *o0, int *o1) {
    *o0 = 0, *o1 = -1;
    if (t == PQ_DTYPE_Q4_1 || t == PQ_DTYPE_Q5_1 || t == PQ_DTYPE_Q4_K || t == PQ_DTYPE_Q5_K) *o1 = 2;
    if (t == PQ_DTYPE_Q2_K) *o0 = 80, *o1 = 82;
    if (t == PQ_DTYPE_Q3_K) *o0 = 108;
    if (t == PQ_DTYPE_Q6_K) *o0 = 208;
}

/* Random bytes with finite f16 fields of magnitude 2^-12 .. 2^0 (any other bits are valid). */
static void random_blocks(const pq__ggml_info *ti, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb * ti->bytes; i++)
        b[i] = (uint8_t)(urand() * 256);
    int o[2];
    f16_fields(ti->dtype, &o[0], &o[1]);
    for (int64_t k = 0; k < nb; k++)
        for (int f = 0; f < 2; f++) {
            if (o[f] < 0) continue;
            float v = (float)(exp2(-12 + 12 * urand()) * (urand() < 0.5 ? -1 : 1));
            uint16_t h = pq__f32_to_f16(v);
            if (urand() < 0.02) h = 0;
            memcpy(b + k * ti->bytes + o[f], &h, 2);
        }
}

static void test_table(void) {
    for (int i = 0; i < N_TYPES; i++) {
        const pq__ggml_info *ti = pq__ggml_info_of(all_types[i]);
        CHECK(ti && pq__ggml_info_by_id(ti->ggml_id) == ti);
        if (!ti) continue;
        int64_t be;
        CHECK(pq__dtype_block_bytes(ti->dtype, &be) == (size_t)ti->bytes && be == ti->block);
        CHECK(!strcmp(pq_dtype_name(ti->dtype), ti->name));
        pq_dtype back;
        CHECK(pq_dtype_parse(ti->name, &back) == 0 && back == ti->dtype);
        CHECK(ti->block % ti->sub == 0 && ti->block / ti->sub <= PQ_GGML_MAX_SUB);
    }
    CHECK(pq__ggml_info_of(PQ_DTYPE_F32) == NULL && pq__ggml_info_by_id(15) == NULL);
    const pq__ggml_info *q4k = pq__ggml_info_of(PQ_DTYPE_Q4_K), *q6k = pq__ggml_info_of(PQ_DTYPE_Q6_K);
    CHECK(q4k->bits == 4.5 && q6k->bits == 6.5625 && pq__ggml_info_of(PQ_DTYPE_Q3_K)->bits == 3.4375);
}

/* unpack -> encode reproduces random bytes; decode equals the grid values of the unpacked
 * parameters and codes; pq__to_f32 equals decode. */
static void test_layouts(void) {
    for (int i = 0; i < N_TYPES; i++) {
        const pq__ggml_info *ti = pq__ggml_info_of(all_types[i]);
        const int64_t nb = 40, n = nb * ti->block;
        uint8_t *b = malloc((size_t)(nb * ti->bytes)), *b2 = malloc((size_t)(nb * ti->bytes)),
                *codes = malloc((size_t)n);
        pq__ggml_params *p = malloc((size_t)nb * sizeof *p);
        float *y = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
        random_blocks(ti, b, nb);
        pq__ggml_unpack_row(ti, b, n, p, codes);
        pq__ggml_encode_row(ti, p, codes, n, b2);
        CHECK_MSG(!memcmp(b, b2, (size_t)(nb * ti->bytes)), "%s: unpack/encode round trip", ti->name);
        pq__ggml_decode_row(ti, b, y, n);
        int same = 1, inrange = 1;
        for (int64_t e = 0; e < n; e++) {
            pq__ggml_grid g;
            pq__ggml_grid_at(ti, p, e, &g);
            float v = pq__ggml_grid_value(&g, codes[e]);
            same &= !memcmp(&v, &y[e], 4);
            inrange &= codes[e] <= ti->maxq;
        }
        CHECK_MSG(same && inrange, "%s: decode == grid values", ti->name);
        CHECK(pq__to_f32(ti->dtype, b, y2, n) && !memcmp(y, y2, (size_t)n * 4));
        free(b), free(b2), free(codes), free(p), free(y), free(y2);
    }
}

/* Hand-made blocks: values from the format description, independent of our layout code. */
static void test_known_blocks(void) {
    uint8_t b[24] = {0};
    uint16_t h = pq__f32_to_f16(0.5f), m = pq__f32_to_f16(-1.0f);
    memcpy(b, &h, 2);
    memcpy(b + 2, &m, 2);
    b[4] = 0x21; /* Q4_1: element 0 code 1, element 16 code 2 */
    float y[32];
    pq__ggml_decode_row(pq__ggml_info_of(PQ_DTYPE_Q4_1), b, y, 32);
    CHECK(y[0] == -0.5f && y[16] == 0.0f && y[1] == -1.0f);
    memset(b, 0, sizeof b);
    memcpy(b, &h, 2);
    b[2 + 3] = 0x80;  /* Q5_0: qh bit 31 = high bit of element 31 */
    b[6 + 15] = 0xf0; /* element 31 low nibble 15 */
    pq__ggml_decode_row(pq__ggml_info_of(PQ_DTYPE_Q5_0), b, y, 32);
    CHECK(y[31] == 0.5f * 15 && y[0] == 0.5f * -16);
}

/* grid_round is the nearest code by brute force (ties to the lower code). */
static void test_grid_round(void) {
    int bad = 0;
    for (int it = 0; it < 2000; it++) {
        const pq__ggml_info *ti = pq__ggml_info_of(all_types[it % N_TYPES]);
        pq__ggml_grid g = {.a = (float)(nrand() * 0.1), .b = (float)(nrand() * 0.3), .z = ti->z, .maxq = ti->maxq};
        if (g.z) g.b = 0;
        float x = nrand() * fabsf(g.a) * (float)ti->maxq * 0.7f + (ti->z ? 0 : g.b + g.a * (float)ti->maxq / 2);
        float v;
        int q = pq__ggml_grid_round(&g, x, &v);
        int bq = 0;
        for (int c = 1; c <= ti->maxq; c++)
            if (fabsf(x - pq__ggml_grid_value(&g, c)) < fabsf(x - pq__ggml_grid_value(&g, bq))) bq = c;
        bad += q != bq || v != pq__ggml_grid_value(&g, bq);
    }
    CHECK_MSG(bad == 0, "%d of 2000 roundings not the nearest code", bad);
}

/* Symmetric 32-blocks: the best f16 scale over all f16 values near amax/z. */
static double brute_sym(const pq__ggml_info *ti, const float *x, const float *w) {
    float amax = 0;
    for (int i = 0; i < 32; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    double best = INFINITY;
    for (int sgn = 0; sgn < 2; sgn++)
        for (uint32_t h = pq__f32_to_f16(amax / (float)ti->z / 1.6f); h <= pq__f32_to_f16(amax / (float)ti->z * 1.6f);
             h++) {
            pq__ggml_params p = {.d = (uint16_t)(h | (sgn ? 0x8000 : 0))};
            pq__ggml_grid g;
            pq__ggml_grid_of(ti, &p, 0, &g);
            double e = 0;
            for (int i = 0; i < 32; i++) {
                float v;
                pq__ggml_grid_round(&g, x[i], &v);
                e += w[i] * ((double)x[i] - v) * ((double)x[i] - v);
            }
            best = e < best ? e : best;
        }
    return best;
}

static void test_vs_brute(void) {
    pq_dtype ts[2] = {PQ_DTYPE_Q4_0, PQ_DTYPE_Q5_0};
    for (int k = 0; k < 2; k++) {
        const pq__ggml_info *ti = pq__ggml_info_of(ts[k]);
        double ours = 0, opt = 0;
        int below = 0;
        for (int it = 0; it < 200; it++) {
            float x[32], w[32], y[32];
            uint8_t blk[32];
            for (int i = 0; i < 32; i++)
                x[i] = nrand() * (it % 3 ? 1.0f : 0.01f), w[i] = (float)(0.1 + urand());
            CHECK(pq__ggml_quantize_row(ti, x, w, 32, blk));
            pq__ggml_decode_row(ti, blk, y, 32);
            double e = pq__ggml_wsse(x, y, w, 32), o = brute_sym(ti, x, w);
            below += e < o * (1 - 1e-9);
            ours += e, opt += o;
        }
        printf("%s: fitted / brute-force optimum weighted error = %.5f\n", ti->name, ours / opt);
        CHECK(below == 0); /* nothing beats the optimum: the brute force covers the fit */
        CHECK_MSG(ours <= 1.01 * opt, "%s: %.5f of the optimum", ti->name, ours / opt);
    }
}

/* Plain max-based parameters (the simplest valid quantization) for comparison. */
static void naive_params(const pq__ggml_info *ti, const float *x, pq__ggml_params *p) {
    memset(p, 0, sizeof *p);
    const int ns = ti->block / ti->sub, sym = ti->z != 0;
    double s[16], mn[16], top = 0, mtop = 0;
    for (int j = 0; j < ns; j++) {
        float lo = 0, hi = 0, mx = 0;
        for (int i = j * ti->sub; i < (j + 1) * ti->sub; i++) {
            lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
            if (fabsf(x[i]) > fabsf(mx)) mx = x[i];
        }
        s[j] = sym ? mx / -(double)ti->z : (hi - lo) / ti->maxq;
        mn[j] = -lo;
        if (fabs(s[j]) > fabs(top)) top = s[j];
        mtop = fmax(mtop, mn[j]);
    }
    if (!ti->kquant) {
        p->d = pq__f32_to_f16((float)s[0]);
        p->dmin = sym ? 0 : pq__f32_to_f16((float)-mn[0]);
        return;
    }
    double smax = top < 0 ? ti->sc_min : ti->sc_max;
    p->d = pq__f32_to_f16((float)(top / smax));
    p->dmin = ti->mn_max ? pq__f32_to_f16((float)(mtop / ti->mn_max)) : 0;
    float d = pq__f16_to_f32(p->d), dm = pq__f16_to_f32(p->dmin);
    for (int j = 0; j < ns; j++) {
        long c = d ? lrint(s[j] / d) : 0, m = dm ? lrint(mn[j] / dm) : 0;
        p->sc[j] = (int16_t)(c < ti->sc_min ? ti->sc_min : c > ti->sc_max ? ti->sc_max : c);
        p->mn[j] = (int16_t)(m < 0 ? 0 : m > ti->mn_max ? ti->mn_max : m);
    }
}

static void test_vs_naive(void) {
    for (int k = 0; k < N_TYPES; k++) {
        const pq__ggml_info *ti = pq__ggml_info_of(all_types[k]);
        const int n = 512;
        float x[512], w[512], y[512], qw[512];
        uint8_t codes[512];
        pq__ggml_params p[16];
        double ours = 0, naive = 0;
        int worse = 0;
        for (int it = 0; it < 6; it++) {
            for (int i = 0; i < n; i++)
                x[i] = nrand() * (float)(1 + 3 * (i % 7 == 0)), qw[i] = (float)urand();
            pq__ggml_weights(ti, x, it % 2 ? qw : NULL, n, w);
            pq__ggml_fit_row(ti, x, w, n, p);
            pq__ggml_round_row(ti, p, x, n, codes, y);
            double e = pq__ggml_wsse(x, y, w, n);
            for (int b = 0; b < n / ti->block; b++)
                naive_params(ti, x + b * ti->block, &p[b]);
            pq__ggml_round_row(ti, p, x, n, codes, y);
            double e0 = pq__ggml_wsse(x, y, w, n);
            worse += e > e0;
            ours += e, naive += e0;
        }
        printf("%s: fitted / max-based weighted error = %.4f\n", ti->name, ours / naive);
        CHECK_MSG(worse == 0, "%s: the fit is worse than max-based rounding on %d rows", ti->name, worse);
    }
}

/* Q8_0, zero rows, constant rows: exact or zero error where the grid allows. */
static void test_edges(void) {
    for (int k = 0; k < N_TYPES; k++) {
        const pq__ggml_info *ti = pq__ggml_info_of(all_types[k]);
        float x[256] = {0}, y[256];
        uint8_t b[256];
        const int n = ti->block;
        CHECK(pq__ggml_quantize_row(ti, x, NULL, n, b));
        pq__ggml_decode_row(ti, b, y, n);
        CHECK_MSG(pq__ggml_wsse(x, y, NULL, n) == 0, "%s: zero row", ti->name);
        double energy = 0;
        for (int i = 0; i < n; i++) { /* on an integer grid: exactly representable */
            x[i] = (float)((i * 7) % (ti->maxq + 1) - ti->z) * 0.25f;
            energy += (double)x[i] * x[i];
        }
        CHECK(pq__ggml_quantize_row(ti, x, NULL, n, b));
        pq__ggml_decode_row(ti, b, y, n);
        /* legacy: found exactly; K-quants map the largest scale to the top code, so d*sc =
         * 0.25 is met only to the f16 precision of d */
        double e = pq__ggml_wsse(x, y, NULL, n);
        CHECK_MSG(ti->kquant ? e < 1e-6 * energy : e == 0, "%s: grid row error %g", ti->name, e);
    }
}

/* ---------------------------------------------------------------- helper modes */

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(sz > 0 ? (size_t)sz : 1);
    *n = p ? fread(p, 1, (size_t)sz, f) : 0;
    fclose(f);
    return p;
}
static int spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(p, 1, n, f) == n;
    if (f) ok &= fclose(f) == 0;
    return ok;
}

static const pq__ggml_info *type_arg(const char *s) {
    pq_dtype t;
    return pq_dtype_parse(s, &t) ? NULL : pq__ggml_info_of(t);
}

/* Weighted error (llama.cpp's weights) of encoded rows against the f32 rows. */
static int mode_err(const pq__ggml_info *ti, int64_t ncols, const float *x, size_t nx, const float *qw,
                    const uint8_t *q, size_t nq) {
    int64_t rows = (int64_t)nx / ncols;
    size_t rb = (size_t)(ncols / ti->block * ti->bytes);
    if (nq != rb * (size_t)rows) return fprintf(stderr, "size mismatch\n"), 1;
    float *w = malloc((size_t)ncols * 4), *y = malloc((size_t)ncols * 4);
    double tot = 0;
    for (int64_t r = 0; r < rows; r++) {
        pq__ggml_weights(ti, x + r * ncols, qw, ncols, w);
        pq__ggml_decode_row(ti, q + r * rb, y, ncols);
        double e = pq__ggml_wsse(x + r * ncols, y, w, ncols);
        printf("row %lld %.17g\n", (long long)r, e);
        tot += e;
    }
    printf("total %.17g\n", tot);
    free(w), free(y);
    return 0;
}

static int helper(int argc, char **argv) {
    const pq__ggml_info *ti = argc > 2 ? type_arg(argv[2]) : NULL;
    if (!ti) return fprintf(stderr, "usage: see tests/test_ggml_types.c\n"), 2;
    size_t n1 = 0, n2 = 0, n3 = 0;
    if (!strcmp(argv[1], "--random-blocks") && argc == 6) {
        int64_t nb = atoll(argv[3]);
        rng = strtoull(argv[4], NULL, 10) * 0x9e3779b97f4a7c15ULL + 1;
        uint8_t *b = malloc((size_t)(nb * ti->bytes));
        if (!b) return 1;
        random_blocks(ti, b, nb);
        const int rc = !spit(argv[5], b, (size_t)(nb * ti->bytes));
        free(b);
        return rc;
    }
    if (!strcmp(argv[1], "--decode") && argc == 5) {
        uint8_t *b = slurp(argv[3], &n1);
        int64_t n = (int64_t)(n1 / (size_t)ti->bytes) * ti->block;
        float *y = malloc((size_t)n * 4 + 4);
        if (!b || !y) return free(b), free(y), 1;
        pq__ggml_decode_row(ti, b, y, n);
        const int rc = !spit(argv[4], y, (size_t)n * 4);
        free(b), free(y);
        return rc;
    }
    if (!strcmp(argv[1], "--encode-check") && argc == 4) {
        uint8_t *b = slurp(argv[3], &n1), *b2 = malloc(n1 + 1);
        int64_t n = (int64_t)(n1 / (size_t)ti->bytes) * ti->block;
        pq__ggml_params *p = malloc((size_t)(n / ti->block + 1) * sizeof *p);
        uint8_t *c = malloc((size_t)n + 1);
        int rc = 1;
        if (b && b2 && p && c) {
            pq__ggml_unpack_row(ti, b, n, p, c);
            pq__ggml_encode_row(ti, p, c, n, b2);
            rc = memcmp(b, b2, n1) != 0;
        }
        free(b), free(b2), free(p), free(c);
        return rc;
    }
    if ((!strcmp(argv[1], "--quantize") && argc == 7) || (!strcmp(argv[1], "--err") && argc == 7)) {
        int64_t ncols = atoll(argv[3]);
        float *x = slurp(argv[4], &n1), *qw = strcmp(argv[5], "-") ? slurp(argv[5], &n2) : NULL;
        if (!x || ncols <= 0 || ncols % ti->block || n1 % (size_t)(ncols * 4) || (qw && n2 != (size_t)ncols * 4))
            return free(x), free(qw), fprintf(stderr, "bad input sizes\n"), 2;
        if (!strcmp(argv[1], "--err")) {
            uint8_t *q = slurp(argv[6], &n3);
            const int rc = mode_err(ti, ncols, x, n1 / 4, qw, q, n3);
            free(x), free(qw), free(q);
            return rc;
        }
        int64_t rows = (int64_t)(n1 / 4) / ncols;
        size_t rb = (size_t)(ncols / ti->block * ti->bytes);
        uint8_t *out = malloc(rb * (size_t)rows);
        float *w = malloc((size_t)ncols * 4);
        int rc = !out || !w;
        for (int64_t r = 0; r < rows && !rc; r++) {
            pq__ggml_weights(ti, x + r * ncols, qw, ncols, w);
            rc = !pq__ggml_quantize_row(ti, x + r * ncols, w, ncols, out + r * rb);
        }
        if (!rc) rc = !spit(argv[6], out, rb * (size_t)rows);
        free(x), free(qw), free(out), free(w);
        return rc;
    }
    return fprintf(stderr, "usage: see tests/test_ggml_types.c\n"), 2;
}

/* pq__ggml_to_qmat's stream (code i at bits i b.., low first), scales and zeros against each
 * block's codes and scale as pq__ggml_unpack_row reads them, on one thread and on two (blocks
 * in parallel from 2^20 weights). */
static void test_to_qmat(void) {
    static const pq_dtype ts[] = {PQ_DTYPE_Q4_0, PQ_DTYPE_Q5_0, PQ_DTYPE_Q8_0};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
        for (int big = 0; big <= 1; big++) {
            const pq__ggml_info *ti = pq__ggml_info_of(ts[k]);
            const int64_t rows = big ? 256 : 3, cols = big ? 4096 : 96, nb = rows * cols / 32;
            uint8_t *blocks = malloc((size_t)(nb * ti->bytes)), *want = malloc((size_t)(rows * cols));
            random_blocks(ti, blocks, nb);
            for (int64_t r = 0; r < rows; r++)
                pq__ggml_unpack_row(ti, blocks + r * (cols / 32) * ti->bytes, cols, NULL, want + r * cols);
            pq__qmat w;
            void *own[3];
            CHECK(pq__ggml_to_qmat(ts[k], blocks, rows, cols, 2, &w, own) == 1);
            const int b = w.bits;
            CHECK(b == (ts[k] == PQ_DTYPE_Q8_0 ? 8 : ts[k] == PQ_DTYPE_Q5_0 ? 5 : 4) && w.group_size == 32);
            int64_t bad = 0;
            for (int64_t i = 0; i < rows * cols; i++) {
                const uint64_t pos = (uint64_t)i * (uint64_t)b;
                const unsigned v = (unsigned)(w.codes[pos >> 3] | w.codes[(pos >> 3) + 1] << 8) >> (pos & 7);
                bad += (int)(v & ((1u << b) - 1)) != want[i];
            }
            for (int64_t g = 0; g < nb; g++) {
                uint16_t h;
                memcpy(&h, blocks + g * ti->bytes, 2);
                bad += w.scales[g] != h || w.zeros[g] != (uint8_t)ti->z;
            }
            CHECK_MSG(!bad, "%s %lldx%lld: %lld codes, scales or zeros differ", ti->name, (long long)rows,
                      (long long)cols, (long long)bad);
            for (int i = 0; i < 3; i++)
                free(own[i]);
            free(blocks);
            free(want);
        }
}

int main(int argc, char **argv) {
    if (argc > 1) return helper(argc, argv);
    test_to_qmat();
    test_table();
    test_layouts();
    test_known_blocks();
    test_grid_round();
    test_vs_brute();
    test_vs_naive();
    test_edges();
    return test_end("test_ggml_types");
}
