/* ggml block types: table, bit layouts, exact decode, encode, grids (see ggml_types.h).
 * Layout facts from ggml-common.h / ggml-quants.c of llama.cpp v0.4.0; code our own.
 * Products and sums are separate statements, so that no compiler contracts them into an
 * FMA that ggml's (plain x86-64) build does not use. */
#include "kernels/ggml_types.h"

#include "common/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define I(dt, id, nm, blk, by, sb, mq, zz, kq, scl, sch, mnh)                                                        \
    {                                                                                                                \
        .dtype = dt, .ggml_id = id, .name = nm, .block = blk, .bytes = by, .bits = 8.0 * (by) / (blk), .sub = sb,    \
        .maxq = mq, .z = zz, .kquant = kq, .sc_min = scl, .sc_max = sch, .mn_max = mnh                               \
    }
static const pq__ggml_info infos[] = {
    I(PQ_DTYPE_Q4_0, 2, "Q4_0", 32, 18, 32, 15, 8, 0, 0, 0, 0),
    I(PQ_DTYPE_Q4_1, 3, "Q4_1", 32, 20, 32, 15, 0, 0, 0, 0, 0),
    I(PQ_DTYPE_Q5_0, 6, "Q5_0", 32, 22, 32, 31, 16, 0, 0, 0, 0),
    I(PQ_DTYPE_Q5_1, 7, "Q5_1", 32, 24, 32, 31, 0, 0, 0, 0, 0),
    I(PQ_DTYPE_Q8_0, 8, "Q8_0", 32, 34, 32, 255, 128, 0, 0, 0, 0),
    I(PQ_DTYPE_Q2_K, 10, "Q2_K", 256, 84, 16, 3, 0, 1, 0, 15, 15),
    I(PQ_DTYPE_Q3_K, 11, "Q3_K", 256, 110, 16, 7, 4, 1, -32, 31, 0),
    I(PQ_DTYPE_Q4_K, 12, "Q4_K", 256, 144, 32, 15, 0, 1, 0, 63, 63),
    I(PQ_DTYPE_Q5_K, 13, "Q5_K", 256, 176, 32, 31, 0, 1, 0, 63, 63),
    I(PQ_DTYPE_Q6_K, 14, "Q6_K", 256, 210, 16, 63, 32, 1, -128, 127, 0),
};
#undef I
#define N_INFOS ((int)(sizeof infos / sizeof infos[0]))

const pq__ggml_info *pq__ggml_info_of(pq_dtype t) {
    for (int i = 0; i < N_INFOS; i++)
        if (infos[i].dtype == t) return &infos[i];
    return NULL;
}

const pq__ggml_info *pq__ggml_info_by_id(uint32_t id) {
    for (int i = 0; i < N_INFOS; i++)
        if (infos[i].ggml_id == id) return &infos[i];
    return NULL;
}

/* ---------------------------------------------------------------- grids */

static float f16(uint16_t h) {
    return pq__f16_to_f32(h);
}

void pq__ggml_grid_of(const pq__ggml_info *ti, const pq__ggml_params *p, int s, pq__ggml_grid *g) {
    g->z = ti->z;
    g->maxq = ti->maxq;
    float d = f16(p->d);
    if (!ti->kquant) {
        g->a = d;
        g->b = ti->z ? -d * (float)ti->z : f16(p->dmin);
        return;
    }
    g->a = d * (float)p->sc[s];
    if (ti->z) {
        g->b = -g->a * (float)ti->z;
    } else {
        float ml = f16(p->dmin) * (float)p->mn[s];
        g->b = -ml;
    }
}

void pq__ggml_grid_at(const pq__ggml_info *ti, const pq__ggml_params *p, int64_t col, pq__ggml_grid *g) {
    pq__ggml_grid_of(ti, &p[col / ti->block], (int)(col % ti->block) / ti->sub, g);
}

float pq__ggml_grid_value(const pq__ggml_grid *g, int q) {
    if (g->z) return g->a * (float)(q - g->z);
    float t = g->a * (float)q;
    return t + g->b;
}

int pq__ggml_grid_round(const pq__ggml_grid *g, float x, float *v) {
    int q0;
    if (!(g->a != 0.0f) || !isfinite(g->a)) {
        q0 = g->z;
    } else {
        float t = g->z ? x / g->a + (float)g->z : (x - g->b) / g->a;
        q0 = !(t > 0.0f) ? 0 : t >= (float)g->maxq ? g->maxq : (int)lrintf(t);
    }
    int best = q0;
    float bv = pq__ggml_grid_value(g, q0), be = fabsf(x - bv);
    for (int q = q0 - 1; q <= q0 + 1; q += 2) {
        if (q < 0 || q > g->maxq) continue;
        float qv = pq__ggml_grid_value(g, q), e = fabsf(x - qv);
        if (e < be || (e == be && q < best)) best = q, bv = qv, be = e;
    }
    if (v) *v = bv;
    return best;
}

/* ---------------------------------------------------------------- bit layouts */

static uint16_t rd16(const uint8_t *b) {
    return (uint16_t)(b[0] | b[1] << 8);
}
static void wr16(uint8_t *b, uint16_t v) {
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
}

/* Code of element e of one block. */
static int get_code(const pq__ggml_info *ti, const uint8_t *b, int e) {
    int h = e / 128, r = e % 128, j = r / 32, l = r % 32, c = e / 64, r64 = e % 64;
    switch (ti->dtype) {
    case PQ_DTYPE_Q4_0: return e < 16 ? b[2 + e] & 15 : b[2 + e - 16] >> 4;
    case PQ_DTYPE_Q4_1: return e < 16 ? b[4 + e] & 15 : b[4 + e - 16] >> 4;
    case PQ_DTYPE_Q5_0:
    case PQ_DTYPE_Q5_1: {
        const uint8_t *qh = b + (ti->dtype == PQ_DTYPE_Q5_0 ? 2 : 4), *qs = qh + 4;
        int lo = e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
        return lo | ((qh[e / 8] >> (e % 8)) & 1) << 4;
    }
    case PQ_DTYPE_Q8_0: return (int)(int8_t)b[2 + e] + 128;
    case PQ_DTYPE_Q2_K: return (b[16 + 32 * h + l] >> (2 * j)) & 3;
    case PQ_DTYPE_Q3_K: return ((b[32 + 32 * h + l] >> (2 * j)) & 3) | ((b[l] >> (4 * h + j)) & 1) << 2;
    case PQ_DTYPE_Q4_K: return r64 < 32 ? b[16 + 32 * c + r64] & 15 : b[16 + 32 * c + r64 - 32] >> 4;
    case PQ_DTYPE_Q5_K: {
        int lo = r64 < 32 ? b[48 + 32 * c + r64] & 15 : b[48 + 32 * c + r64 - 32] >> 4;
        return lo | ((b[16 + r64 % 32] >> (2 * c + r64 / 32)) & 1) << 4;
    }
    case PQ_DTYPE_Q6_K: {
        uint8_t ql = b[64 * h + l + (j & 1) * 32];
        int lo = j >= 2 ? ql >> 4 : ql & 15;
        return lo | ((b[128 + 32 * h + l] >> (2 * j)) & 3) << 4;
    }
    default: return 0;
    }
}

/* ORs code q of element e into a zeroed block. */
static void put_code(const pq__ggml_info *ti, uint8_t *b, int e, int q) {
    int h = e / 128, r = e % 128, j = r / 32, l = r % 32, c = e / 64, r64 = e % 64;
    switch (ti->dtype) {
    case PQ_DTYPE_Q4_0: b[2 + e % 16] |= (uint8_t)(q << (e < 16 ? 0 : 4)); break;
    case PQ_DTYPE_Q4_1: b[4 + e % 16] |= (uint8_t)(q << (e < 16 ? 0 : 4)); break;
    case PQ_DTYPE_Q5_0:
    case PQ_DTYPE_Q5_1: {
        uint8_t *qh = b + (ti->dtype == PQ_DTYPE_Q5_0 ? 2 : 4), *qs = qh + 4;
        qs[e % 16] |= (uint8_t)((q & 15) << (e < 16 ? 0 : 4));
        qh[e / 8] |= (uint8_t)(((q >> 4) & 1) << (e % 8));
        break;
    }
    case PQ_DTYPE_Q8_0: b[2 + e] = (uint8_t)(int8_t)(q - 128); break;
    case PQ_DTYPE_Q2_K: b[16 + 32 * h + l] |= (uint8_t)((q & 3) << (2 * j)); break;
    case PQ_DTYPE_Q3_K:
        b[32 + 32 * h + l] |= (uint8_t)((q & 3) << (2 * j));
        b[l] |= (uint8_t)(((q >> 2) & 1) << (4 * h + j));
        break;
    case PQ_DTYPE_Q4_K: b[16 + 32 * c + r64 % 32] |= (uint8_t)(q << (r64 < 32 ? 0 : 4)); break;
    case PQ_DTYPE_Q5_K:
        b[48 + 32 * c + r64 % 32] |= (uint8_t)((q & 15) << (r64 < 32 ? 0 : 4));
        b[16 + r64 % 32] |= (uint8_t)(((q >> 4) & 1) << (2 * c + r64 / 32));
        break;
    case PQ_DTYPE_Q6_K:
        b[64 * h + l + (j & 1) * 32] |= (uint8_t)((q & 15) << (j >= 2 ? 4 : 0));
        b[128 + 32 * h + l] |= (uint8_t)(((q >> 4) & 3) << (2 * j));
        break;
    default: break;
    }
}

/* Q4_K/Q5_K: 8 6-bit scales and mins in 12 bytes s. */
static void k4_get(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *mn = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}
static void k4_put(uint8_t *s, int j, int sc, int mn) {
    if (j < 4) {
        s[j] |= (uint8_t)sc;
        s[j + 4] |= (uint8_t)mn;
    } else {
        s[j + 4] = (uint8_t)((sc & 15) | (mn & 15) << 4);
        s[j - 4] |= (uint8_t)((sc >> 4) << 6);
        s[j] |= (uint8_t)((mn >> 4) << 6);
    }
}
/* Q3_K: 16 6-bit scales (stored +32) in 12 bytes s. */
static int k3_get(const uint8_t *s, int j) {
    int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    return (lo | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}
static void k3_put(uint8_t *s, int j, int sc) {
    int u = sc + 32;
    s[j % 8] |= (uint8_t)((u & 15) << (j < 8 ? 0 : 4));
    s[8 + j % 4] |= (uint8_t)(((u >> 4) & 3) << (2 * (j / 4)));
}

static void get_params(const pq__ggml_info *ti, const uint8_t *b, pq__ggml_params *p) {
    memset(p, 0, sizeof *p);
    switch (ti->dtype) {
    case PQ_DTYPE_Q4_0:
    case PQ_DTYPE_Q5_0:
    case PQ_DTYPE_Q8_0: p->d = rd16(b); break;
    case PQ_DTYPE_Q4_1:
    case PQ_DTYPE_Q5_1:
    case PQ_DTYPE_Q4_K:
    case PQ_DTYPE_Q5_K:
        p->d = rd16(b);
        p->dmin = rd16(b + 2);
        for (int j = 0; ti->kquant && j < 8; j++) {
            int sc, mn;
            k4_get(b + 4, j, &sc, &mn);
            p->sc[j] = (int16_t)sc;
            p->mn[j] = (int16_t)mn;
        }
        break;
    case PQ_DTYPE_Q2_K:
        p->d = rd16(b + 80);
        p->dmin = rd16(b + 82);
        for (int j = 0; j < 16; j++)
            p->sc[j] = b[j] & 15, p->mn[j] = b[j] >> 4;
        break;
    case PQ_DTYPE_Q3_K:
        p->d = rd16(b + 108);
        for (int j = 0; j < 16; j++)
            p->sc[j] = (int16_t)k3_get(b + 96, j);
        break;
    case PQ_DTYPE_Q6_K:
        p->d = rd16(b + 208);
        for (int j = 0; j < 16; j++)
            p->sc[j] = (int8_t)b[192 + j];
        break;
    default: break;
    }
}

/* Writes the parameters into a zeroed block (codes below their ranges' bits are masked). */
static void put_params(const pq__ggml_info *ti, uint8_t *b, const pq__ggml_params *p) {
    switch (ti->dtype) {
    case PQ_DTYPE_Q4_0:
    case PQ_DTYPE_Q5_0:
    case PQ_DTYPE_Q8_0: wr16(b, p->d); break;
    case PQ_DTYPE_Q4_1:
    case PQ_DTYPE_Q5_1:
    case PQ_DTYPE_Q4_K:
    case PQ_DTYPE_Q5_K:
        wr16(b, p->d);
        wr16(b + 2, p->dmin);
        for (int j = 0; ti->kquant && j < 8; j++)
            k4_put(b + 4, j, p->sc[j] & 63, p->mn[j] & 63);
        break;
    case PQ_DTYPE_Q2_K:
        wr16(b + 80, p->d);
        wr16(b + 82, p->dmin);
        for (int j = 0; j < 16; j++)
            b[j] = (uint8_t)((p->sc[j] & 15) | (p->mn[j] & 15) << 4);
        break;
    case PQ_DTYPE_Q3_K:
        wr16(b + 108, p->d);
        for (int j = 0; j < 16; j++)
            k3_put(b + 96, j, p->sc[j] < -32 ? -32 : p->sc[j] > 31 ? 31 : p->sc[j]);
        break;
    case PQ_DTYPE_Q6_K:
        wr16(b + 208, p->d);
        for (int j = 0; j < 16; j++)
            b[192 + j] = (uint8_t)(int8_t)p->sc[j];
        break;
    default: break;
    }
}

void pq__ggml_encode_row(const pq__ggml_info *ti, const pq__ggml_params *p, const uint8_t *codes, int64_t n,
                         void *dst) {
    uint8_t *b = dst;
    for (int64_t k = 0; k < n / ti->block; k++, b += ti->bytes) {
        memset(b, 0, (size_t)ti->bytes);
        put_params(ti, b, &p[k]);
        const uint8_t *c = codes + k * ti->block;
        for (int e = 0; e < ti->block; e++)
            put_code(ti, b, e, c[e] > ti->maxq ? ti->maxq : c[e]);
    }
}

void pq__ggml_unpack_row(const pq__ggml_info *ti, const void *src, int64_t n, pq__ggml_params *p, uint8_t *codes) {
    const uint8_t *b = src;
    for (int64_t k = 0; k < n / ti->block; k++, b += ti->bytes) {
        if (p) get_params(ti, b, &p[k]);
        for (int e = 0; codes && e < ti->block; e++)
            codes[k * ti->block + e] = (uint8_t)get_code(ti, b, e);
    }
}

void pq__ggml_decode_row(const pq__ggml_info *ti, const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t k = 0; k < n / ti->block; k++, b += ti->bytes) {
        pq__ggml_params p;
        get_params(ti, b, &p);
        for (int s = 0; s < ti->block / ti->sub; s++) {
            pq__ggml_grid g;
            pq__ggml_grid_of(ti, &p, s, &g);
            for (int e = s * ti->sub; e < (s + 1) * ti->sub; e++)
                dst[k * ti->block + e] = pq__ggml_grid_value(&g, get_code(ti, b, e));
        }
    }
}

double pq__ggml_wsse(const float *x, const float *y, const float *w, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)x[i] - (double)y[i];
        s += (w ? (double)w[i] : 1.0) * e * e;
    }
    return s;
}

int pq__ggml_to_qmat(pq_dtype t, const void *data, int64_t rows, int64_t cols, int nt, pq__qmat *out,
                     void *owned[3]) {
    owned[0] = owned[1] = owned[2] = NULL;
    const pq__ggml_info *ti = pq__ggml_info_of(t);
    if (!ti || ti->kquant || ti->z == 0 || ti->block != 32 || cols % 32) return 0;
    const int b = ti->maxq == 255 ? 8 : ti->maxq == 31 ? 5 : 4;
    const int64_t ng = cols / 32, n = rows * cols;
    /* in large pages (its first touch is most of the work), every byte written below */
    size_t cap;
    uint8_t *codes = pq__huge_alloc((size_t)((n * b + 7) / 8) + 1, &cap), *zeros = malloc((size_t)(rows * ng) + 1);
    uint16_t *scales = malloc((size_t)(rows * ng) * 2 + 1);
    if (!codes || !zeros || !scales) {
        free(codes), free(zeros), free(scales);
        return -1;
    }
    const uint8_t *src = data;
    /* blocks run along each row, rows in order; block k's 32 codes are stream bytes [4 b k, 4 b
       (k + 1)) (code i at stream bits i b.., low first): blocks in parallel */
#pragma omp parallel for num_threads(nt > 0 ? nt : 1) schedule(static) if (n >= (1 << 20))
    for (int64_t blk = 0; blk < rows * ng; blk++) {
        const uint8_t *bl = src + (size_t)blk * (size_t)ti->bytes;
        uint8_t *o = codes + (size_t)blk * (size_t)(4 * b);
        scales[blk] = rd16(bl);
        zeros[blk] = (uint8_t)ti->z;
        if (t == PQ_DTYPE_Q8_0) { /* int8 q: code q + 128 */
            for (int e = 0; e < 32; e++)
                o[e] = (uint8_t)(bl[2 + e] ^ 0x80);
        } else if (t == PQ_DTYPE_Q4_0) { /* codes 0-15 in the low nibbles of qs, 16-31 in the high */
            for (int j = 0; j < 8; j++) {
                o[j] = (uint8_t)((bl[2 + 2 * j] & 15) | (bl[3 + 2 * j] & 15) << 4);
                o[8 + j] = (uint8_t)((bl[2 + 2 * j] >> 4) | (bl[3 + 2 * j] & 0xF0));
            }
        } else {
            memset(o, 0, (size_t)(4 * b));
            for (unsigned e = 0, pos = 0; e < 32; e++, pos += (unsigned)b) {
                const unsigned q = (unsigned)get_code(ti, bl, (int)e), off = pos & 7;
                o[pos >> 3] |= (uint8_t)(q << off);
                if (off + (unsigned)b > 8) o[(pos >> 3) + 1] |= (uint8_t)(q >> (8 - off));
            }
        }
    }
    codes[(n * b + 7) / 8] = 0;
    memset(out, 0, sizeof *out);
    out->kind = PQ_QMAT_CODES, out->rows = rows, out->cols = cols, out->bits = b;
    out->group_size = 32, out->n_groups = ng;
    out->codes = codes, out->codes_bytes = (size_t)((n * b + 7) / 8), out->scales = scales, out->zeros = zeros;
    owned[0] = codes, owned[1] = scales, owned[2] = zeros;
    return 1;
}
