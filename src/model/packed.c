/* Packed-v1/v2 encoding and decoding of compressed linear layers (format in packed.h; the coded
 * keep mask of v2 in maskcode.c). */
#include "kernels/dtype.h"
#include "model/maskcode.h"
#include "model/packed.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define PQ_PACK_RUNS 64 /* most parallel runs of rows the code stream is packed in */

static int bit(const uint8_t *row, int64_t c) {
    return (row[c >> 3] >> (c & 7)) & 1;
}

/* ---------------------------------------------------------------- N:M keep index (packed-v2) */

/* 1 if every cell of m inputs of the mask [rows, cols] keeps the same count (into *kept);
 * rows in nt parallel runs, each stopping at its first cell that differs from row 0's first. */
static int uniform_cells(const uint8_t *bm, int64_t rows, int64_t cols, int m, int *kept, int nt) {
    if (cols % m || rows <= 0 || cols <= 0) return 0;
    const int64_t mrow = (cols + 7) / 8;
    int k0 = 0, bad = 0;
    for (int i = 0; i < m; i++)
        k0 += bit(bm, i);
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : bad) if (rows * cols > (1 << 20))
    for (int64_t r = 0; r < rows; r++) {
        if (bad) continue;
        for (int64_t c0 = 0; c0 < cols && !bad; c0 += m) {
            int k = 0;
            for (int i = 0; i < m; i++)
                k += bit(bm + r * mrow, c0 + i);
            bad |= k != k0;
        }
    }
    if (bad) return 0;
    *kept = k0;
    return k0 > 0 && k0 < m;
}

#define NM_MAX_M 16
static uint32_t binom(int n, int k) { /* n <= NM_MAX_M */
    if (k < 0 || k > n) return 0;
    uint32_t c = 1;
    for (int i = 1; i <= k; i++)
        c = c * (uint32_t)(n - k + i) / (uint32_t)i;
    return c;
}

/* The fewest bits B with 2^B >= n. */
static int bits_for(uint64_t n) {
    int b = 0;
    while (b < 64 && ((uint64_t)1 << b) < n)
        b++;
    return b;
}

/* The layout of an N:M index: cells of m inputs keeping k, g cells per index (C(m, k)^g
 * values, at most 2^32); per row `full` groups of B bits and a last one of `last` cells
 * (B_last bits), byte-aligned rows. */
typedef struct nm_shape {
    int m, k, g, B, B_last;
    uint64_t C;
    int64_t full, last, row_bytes;
} nm_shape;

static uint64_t upow(uint64_t c, int g) { /* callers keep c^g <= 2^32 */
    uint64_t v = 1;
    for (int i = 0; i < g; i++)
        v *= c;
    return v;
}

/* 0 unless 2 <= m <= NM_MAX_M divides cols, 0 < k < m and 1 <= g with C(m, k)^g <= 2^32. */
static int nm_shape_of(int64_t cols, int m, int k, int g, nm_shape *s) {
    if (m < 2 || m > NM_MAX_M || k < 1 || k >= m || cols % m || g < 1) return 0;
    s->m = m, s->k = k, s->g = g, s->C = binom(m, k);
    uint64_t v = 1;
    for (int i = 0; i < g; i++)
        if ((v *= s->C) > ((uint64_t)1 << 32)) return 0;
    const int64_t cells = cols / m;
    s->full = cells / g, s->last = cells % g;
    s->B = bits_for(v), s->B_last = bits_for(upow(s->C, (int)s->last));
    s->row_bytes = (s->full * s->B + s->B_last + 7) / 8;
    return 1;
}

/* The group size with the fewest bits per cell (the smallest such g). */
static int nm_best_group(int m, int k) {
    const uint64_t C = binom(m, k);
    int best = 1;
    double best_bpc = bits_for(C);
    uint64_t v = C;
    for (int g = 2; (v *= C) <= ((uint64_t)1 << 32); g++)
        if ((double)bits_for(v) / g < best_bpc - 1e-12) best = g, best_bpc = (double)bits_for(v) / g;
    return best;
}

/* The rank of a cell's kept set {c_1 < ... < c_k} among the k-subsets of 0..m-1 (the
 * combinatorial number system: sum C(c_i, i)), from mask row bm at column c0. */
static uint32_t nm_rank(const uint8_t *bm, int64_t c0, int m) {
    uint32_t r = 0;
    int i = 0;
    for (int c = 0; c < m; c++)
        if (bit(bm, c0 + c)) r += binom(c, ++i);
    return r;
}

/* Sets the kept bits of the cell of rank r (< C(m, k)) in mask row bm at column c0. */
static void nm_unrank(uint32_t r, int m, int k, uint8_t *bm, int64_t c0) {
    int c = m - 1;
    for (int i = k; i >= 1; i--) {
        while (binom(c, i) > r)
            c--;
        r -= binom(c, i);
        bm[(c0 + c) >> 3] |= (uint8_t)(1u << ((c0 + c) & 7));
        c--;
    }
}

/* The index layout with the fewest bits among the cell sizes m (2..NM_MAX_M dividing cols)
 * where every cell of the mask [rows, cols] keeps the same count; 0 if none beats the
 * bitmask's bit per weight. */
static int nm_choose(const uint8_t *bm, int64_t rows, int64_t cols, nm_shape *out, int nt) {
    int found = 0;
    for (int m = 2; m <= NM_MAX_M; m *= 2) {
        int k;
        nm_shape s;
        if (!uniform_cells(bm, rows, cols, m, &k, nt) || !nm_shape_of(cols, m, k, nm_best_group(m, k), &s)) continue;
        if (s.row_bytes < (found ? out->row_bytes : (cols + 7) / 8)) *out = s, found = 1;
    }
    return found;
}

/* n (<= 64) bits of v at bit pos of stream o (zeroed), bit i = bit i%8 of byte i/8 (read back
 * by get_bits_fast). */
static void put_bits(uint8_t *o, uint64_t pos, uint64_t v, int n) {
    for (int i = 0; i < n; i++, pos++)
        if ((v >> i) & 1) o[pos >> 3] |= (uint8_t)(1u << (pos & 7));
}

/* Writes the index of mask bm [rows, cols]: per row (from byte r * row_bytes) a bit stream of
 * the groups (bit i = bit i%8 of byte i/8), each the number sum_j rank_j C^j over its cells. */
static void nm_encode(const uint8_t *bm, int64_t rows, int64_t cols, const nm_shape *s, uint8_t *out, int nt) {
    const int64_t mrow = (cols + 7) / 8, cells = cols / s->m;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * cols > (1 << 20))
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *o = out + r * s->row_bytes;
        uint64_t pos = 0;
        for (int64_t c = 0; c < cells; c += s->g) {
            const int n = c + s->g <= cells ? s->g : (int)s->last, B = n == s->g ? s->B : s->B_last;
            uint64_t v = 0, w = 1;
            for (int j = 0; j < n; j++, w *= s->C)
                v += w * nm_rank(bm + r * mrow, (c + j) * s->m, s->m);
            put_bits(o, pos, v, B);
            pos += (uint64_t)B;
        }
    }
}

/* A b-bit code spans at most two bytes of the stream (b <= 8): OR it in with two shifts. */
void pq__bits_pack(uint8_t *q, uint64_t *pos, const uint8_t *codes, const uint8_t *bm_row, int64_t n, int b) {
    const uint32_t mask = (1u << b) - 1;
    uint64_t p = *pos;
    for (int64_t c = 0; c < n; c++) {
        if (bm_row && !bit(bm_row, c)) continue;
        const uint32_t v = codes[c] & mask, off = (uint32_t)(p & 7);
        q[p >> 3] |= (uint8_t)(v << off);
        if (off + (uint32_t)b > 8) q[(p >> 3) + 1] |= (uint8_t)(v >> (8 - off));
        p += (uint64_t)b;
    }
    *pos = p;
}

void pq__bits_pack_ref(uint8_t *q, uint64_t *pos, const uint8_t *codes, const uint8_t *bm_row, int64_t n, int b) {
    for (int64_t c = 0; c < n; c++) {
        if (bm_row && !bit(bm_row, c)) continue;
        for (int k = 0; k < b; k++, (*pos)++)
            if ((codes[c] >> k) & 1) q[*pos >> 3] |= (uint8_t)(1u << (*pos & 7));
    }
}

void pq__bits_unpack(const uint8_t *q, uint64_t *pos, const uint8_t *bm_row, int64_t n, int b, uint8_t *codes) {
    const uint32_t mask = (1u << b) - 1;
    uint64_t p = *pos;
    for (int64_t c = 0; c < n; c++) {
        if (bm_row && !bit(bm_row, c)) continue;
        const uint32_t off = (uint32_t)(p & 7);
        uint32_t v = (uint32_t)q[p >> 3] >> off;
        if (off + (uint32_t)b > 8) v |= (uint32_t)q[(p >> 3) + 1] << (8 - off);
        codes[c] = (uint8_t)(v & mask);
        p += (uint64_t)b;
    }
    *pos = p;
}

void pq__bits_unpack_ref(const uint8_t *q, uint64_t *pos, const uint8_t *bm_row, int64_t n, int b, uint8_t *codes) {
    for (int64_t c = 0; c < n; c++) {
        if (bm_row && !bit(bm_row, c)) continue;
        uint32_t v = 0;
        for (int k = 0; k < b; k++, (*pos)++)
            v |= (uint32_t)((q[*pos >> 3] >> (*pos & 7)) & 1) << k;
        codes[c] = (uint8_t)v;
    }
}

void pq__packed_snap(float *W, int64_t rows, int64_t cols, const uint8_t *mask, pq_qcodes *codes) {
    if (codes && codes->bits > 0) {
        for (int64_t i = 0; i < rows * codes->n_groups; i++)
            codes->scales[i] = pq__f16_to_f32(pq__f32_to_f16(codes->scales[i]));
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                const int64_t g = r * codes->n_groups + codes->g_idx[c];
                W[r * cols + c] = pq__packed_dq(codes->codes[r * cols + c], codes->zeros[g], codes->scales[g]);
            }
        return;
    }
    for (int64_t i = 0; i < rows * cols; i++)
        W[i] = (mask && !mask[i]) ? 0.0f : pq__f16_to_f32(pq__f32_to_f16(W[i]));
}

static void *add(pq_ctx *ctx, pq__packed_linear *p, const char *base, const char *suffix, pq_dtype dt, int n_dims,
                 int64_t d0, int64_t d1, size_t nbytes) {
    int k = p->n;
    void *buf = pq__calloc(ctx, nbytes ? nbytes : 1, 1, suffix);
    if (!buf) return NULL;
    p->n++;
    p->bufs[k] = buf;
    snprintf(p->names[k], sizeof p->names[k], "%s.%s", base, suffix);
    p->e[k].name = p->names[k];
    p->e[k].dtype = dt;
    p->e[k].n_dims = n_dims;
    p->e[k].shape[0] = d0;
    p->e[k].shape[1] = d1;
    p->e[k].data = buf;
    p->e[k].nbytes = nbytes;
    return buf;
}

/* v2: the coded mask (maskcode.h) with its index, when the two are smaller than the bitmask.
 * Returns 1 written, 0 not (the bitmask is smaller), -1 on failure. */
static int put_kmask(pq_ctx *ctx, pq__packed_linear *out, const char *base, const uint8_t *bm, int64_t rows,
                     int64_t cols) {
    const int64_t nb = pq__kmask_blocks(rows, PQ__KMASK_BLOCK_ROWS);
    const size_t bitmask = (size_t)(rows * ((cols + 7) / 8)), ib = (size_t)(nb > 0 ? nb : 1) * 4;
    if (ib >= bitmask) return 0;
    const size_t cap = bitmask - ib - 1; /* strictly smaller than the bitmask */
    uint8_t *buf = pq__malloc(ctx, cap + 1, "coded keep mask");
    int32_t *idx = buf ? pq__malloc(ctx, ib, "coded keep mask index") : NULL;
    int rc = -1;
    if (idx) {
        const int64_t n = pq__kmask_encode(bm, rows, cols, PQ__KMASK_BLOCK_ROWS, buf, cap, idx);
        uint8_t *k = n < 0 ? NULL : add(ctx, out, base, "kmask", PQ_DTYPE_U8, 1, n, 0, (size_t)n);
        int32_t *i = k ? add(ctx, out, base, "kmask_idx", PQ_DTYPE_I32, 1, (int64_t)ib / 4, 0, ib) : NULL;
        if (i) {
            memcpy(k, buf, (size_t)n);
            memcpy(i, idx, ib);
        }
        rc = n < 0 ? 0 : i ? 1 : -1;
    }
    free(buf);
    free(idx);
    return rc;
}

/* Writes the kept set bm [rows, ceil(cols/8)]: v2 as an N:M index when every cell keeps the
 * same count, else as a coded mask when that is smaller; otherwise (and in v1) as a bitmask. */
static pq_status put_keep_mask(pq_ctx *ctx, pq__packed_linear *out, const char *base, const uint8_t *bm, int64_t rows,
                               int64_t cols, int version) {
    const int64_t mrow = (cols + 7) / 8;
    nm_shape ns = {0};
    if (version >= 2 && nm_choose(bm, rows, cols, &ns, pq__threads(ctx))) {
        const int64_t rb = ns.row_bytes;
        uint8_t *nm = add(ctx, out, base, "nm", PQ_DTYPE_U8, 2, rows, rb, (size_t)(rows * rb));
        uint8_t *km = nm ? add(ctx, out, base, "nm_km", PQ_DTYPE_U8, 1, 3, 0, 3) : NULL;
        if (!km) return ctx->status;
        nm_encode(bm, rows, cols, &ns, nm, pq__threads(ctx));
        km[0] = (uint8_t)ns.k, km[1] = (uint8_t)ns.m, km[2] = (uint8_t)ns.g;
        return PQ_OK;
    }
    const int coded = version >= 2 ? put_kmask(ctx, out, base, bm, rows, cols) : 0;
    if (coded) return coded > 0 ? PQ_OK : ctx->status;
    uint8_t *mt = add(ctx, out, base, "mask", PQ_DTYPE_U8, 2, rows, mrow, (size_t)(rows * mrow));
    if (!mt) return ctx->status;
    memcpy(mt, bm, (size_t)(rows * mrow));
    return PQ_OK;
}

pq_status pq__packed_encode(pq_ctx *ctx, const char *base, const float *W, int64_t rows, int64_t cols,
                            const uint8_t *mask, const pq_qcodes *codes, int version, pq__packed_linear *out) {
    memset(out, 0, sizeof *out);
    const int quant = codes && codes->bits > 0;
    const int64_t mrow = (cols + 7) / 8;
    const int nt = pq__threads(ctx);
    uint8_t *bm = NULL; /* the kept set, written as .mask or (v2) as an N:M index or a coded mask */
    int64_t n_stored = rows * cols, *row_start = NULL; /* first code of each row in the stream */
    if (!(row_start = pq__malloc(ctx, sizeof(int64_t) * (size_t)(rows + 1), "packed rows"))) goto fail;
    if (mask) {
        if (!(bm = pq__calloc(ctx, (size_t)(rows * mrow), 1, "keep mask"))) goto fail;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * cols > (1 << 20))
        for (int64_t r = 0; r < rows; r++) {
            int64_t kept = 0;
            for (int64_t c = 0; c < cols; c++) {
                const int64_t i = r * cols + c;
                /* a weight GPTQ moved off zero in mode a is kept even though the mask pruned it */
                int keep = mask[i] || (quant ? codes->codes[i] != codes->zeros[r * codes->n_groups + codes->g_idx[c]]
                                             : W[i] != 0.0f);
                bm[r * mrow + (c >> 3)] |= (uint8_t)((unsigned)keep << (c & 7));
                kept += keep;
            }
            row_start[r + 1] = kept;
        }
        if (put_keep_mask(ctx, out, base, bm, rows, cols, version) != PQ_OK) goto fail;
    } else {
        for (int64_t r = 0; r < rows; r++)
            row_start[r + 1] = cols;
    }
    row_start[0] = 0;
    for (int64_t r = 0; r < rows; r++)
        row_start[r + 1] += row_start[r];
    n_stored = row_start[rows];
    if (quant) {
        const int b = codes->bits;
        const int64_t G = codes->n_groups, padded = n_stored < 8 ? 8 : n_stored;
        const size_t nbytes = (size_t)((padded * b + 7) / 8);
        uint8_t *q = add(ctx, out, base, "qcodes", PQ_DTYPE_U8, 1, (int64_t)nbytes, 0, nbytes);
        uint16_t *s = q ? add(ctx, out, base, "scales", PQ_DTYPE_F16, 2, rows, G, (size_t)(rows * G) * 2) : NULL;
        uint8_t *z = s ? add(ctx, out, base, "zeros", PQ_DTYPE_U8, 2, rows, G, (size_t)(rows * G)) : NULL;
        if (!z) goto fail;
        for (int64_t i = 0; i < rows * G; i++) {
            s[i] = pq__f32_to_f16(codes->scales[i]);
            z[i] = codes->zeros[i];
        }
        /* rows in nt runs, each starting on a whole byte of the stream (no byte is shared, and
           the codes land where one sequential pass puts them) */
        int64_t cut[PQ_PACK_RUNS + 1];
        int nrun = 0;
        cut[0] = 0;
        for (int t = 1; t < nt && t < PQ_PACK_RUNS && rows * cols > (1 << 20); t++) {
            int64_t r = rows * t / nt;
            while (r < rows && (row_start[r] * b) % 8)
                r++;
            if (r > cut[nrun] && r < rows) cut[++nrun] = r;
        }
        cut[++nrun] = rows;
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nrun > 1)
        for (int t = 0; t < nrun; t++) {
            uint64_t pos = (uint64_t)row_start[cut[t]] * (uint64_t)b;
            for (int64_t r = cut[t]; r < cut[t + 1]; r++)
                pq__bits_pack(q, &pos, codes->codes + r * cols, bm ? bm + r * mrow : NULL, cols, b);
        }
        const int64_t gs = cols / G;
        int natural = 1;
        for (int64_t c = 0; c < cols; c++)
            natural &= codes->g_idx[c] == c / gs;
        if (!natural) {
            int32_t *gi = add(ctx, out, base, "g_idx", PQ_DTYPE_I32, 1, cols, 0, (size_t)cols * 4);
            if (!gi) goto fail;
            memcpy(gi, codes->g_idx, (size_t)cols * 4);
        }
    } else {
        uint16_t *v = add(ctx, out, base, "values", PQ_DTYPE_F16, 1, n_stored, 0, (size_t)n_stored * 2);
        if (!v) goto fail;
        int64_t k = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                if (!bm || bit(bm + r * mrow, c)) v[k++] = pq__f32_to_f16(W[r * cols + c]);
    }
    free(bm);
    free(row_start);
    return PQ_OK;
fail:
    free(bm);
    free(row_start);
    pq__packed_linear_free(out);
    return ctx->status;
}

void pq__packed_linear_free(pq__packed_linear *p) {
    for (int i = 0; i < p->n; i++)
        free(p->bufs[i]);
    memset(p, 0, sizeof *p);
}

static const pq__tensor *find(const pq__source *src, const char *base, const char *suffix) {
    char n[200];
    snprintf(n, sizeof n, "%s.%s", base, suffix);
    return pq__source_find(src, n);
}

size_t pq__packed_bytes(const pq__source *src, const char *base) {
    static const char *const sfx[] = {"qcodes", "scales", "zeros", "g_idx",     "mask",
                                      "nm",     "nm_km",  "kmask", "kmask_idx", "values"};
    size_t n = 0;
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        const pq__tensor *t = find(src, base, sfx[i]);
        if (t) n += t->nbytes;
    }
    return n;
}

size_t pq__linear_stored_bytes(const pq__source *src, const char *base, int64_t numel) {
    if (pq__source_has_packed(src, base)) return pq__packed_bytes(src, base);
    const pq__tensor *t = find(src, base, "weight");
    return t ? t->nbytes : (size_t)numel * sizeof(float);
}

static int shape_is(const pq__tensor *t, pq_dtype dt, int n_dims, int64_t d0, int64_t d1) {
    if (!t || t->dtype != dt || t->n_dims != n_dims || t->shape[0] != d0 || (n_dims > 1 && t->shape[1] != d1))
        return 0;
    return t->nbytes >= pq__dtype_nbytes(dt, pq__tensor_numel(t));
}

/* Stored weights of a mask [rows, mrow bytes] (NULL: all). */
static int64_t count_stored(const uint8_t *bm, int64_t rows, int64_t cols) {
    if (!bm) return rows * cols;
    const int64_t mrow = (cols + 7) / 8;
    int64_t n = 0;
    for (int64_t r = 0; r < rows; r++)
        n += pq__qmat_kept_before(bm + r * mrow, cols);
    return n;
}

static double log2_binom(int64_t n, int64_t k) {
    return (lgamma((double)n + 1) - lgamma((double)k + 1) - lgamma((double)(n - k) + 1)) / log(2.0);
}

/* The keep mask [rows, ceil(cols/8)] decoded from base's .kmask into a malloc'ed buffer; NULL
 * when there is none or it does not decode (the accounting then sees no mask, as for a
 * mis-shaped .mask; the decoder reports the error). */
static uint8_t *kmask_bitmask(const pq__source *src, const char *base, int64_t rows, int64_t cols) {
    const pq__tensor *tk = find(src, base, "kmask");
    pq_ctx *c = tk ? pq_ctx_new() : NULL;
    uint8_t *bm = c ? pq__calloc(c, (size_t)rows, (size_t)((cols + 7) / 8), "keep mask") : NULL;
    if (bm && pq__kmask_decode(c, "", base, tk, find(src, base, "kmask_idx"), rows, cols, bm) != PQ_OK) {
        free(bm);
        bm = NULL;
    }
    pq_ctx_free(c);
    return bm;
}

/* The bound of a mask given as a bitmask: per cell when every cell of some M keeps the same
 * count (the M with the fewest bits), else per row with the count. */
static void bitmask_bound(const uint8_t *bm, int64_t rows, int64_t cols, pq__packed_parts *out) {
    const int64_t mrow = (cols + 7) / 8;
    for (int m = 2; m <= NM_MAX_M; m *= 2) { /* the cell size of the index's range with the fewest bits */
        int k;
        const double b = uniform_cells(bm, rows, cols, m, &k, 1) ? (double)(rows * (cols / m)) * log2_binom(m, k) : 0;
        if (b > 0 && (!out->cell_m || b < out->mask_bound_bits))
            out->cell_m = m, out->cell_kept = k, out->mask_bound_bits = b;
    }
    if (out->cell_m) return;
    for (int64_t r = 0; r < rows; r++)
        out->mask_bound_bits += log2_binom(cols, count_stored(bm + r * mrow, 1, cols)) + log2((double)cols + 1);
}

static int64_t nbytes_of(const pq__tensor *t) {
    return t ? (int64_t)t->nbytes : 0;
}

void pq__packed_parts_of(const pq__source *src, const char *base, int64_t rows, int64_t cols, pq__packed_parts *out) {
    memset(out, 0, sizeof *out);
    const pq__tensor *q = find(src, base, "qcodes"), *s = find(src, base, "scales"), *z = find(src, base, "zeros");
    const pq__tensor *g = find(src, base, "g_idx"), *mk = find(src, base, "mask"), *v = find(src, base, "values");
    const pq__tensor *w = find(src, base, "weight"), *tn = find(src, base, "nm"), *tk = find(src, base, "nm_km");
    out->codes = nbytes_of(q), out->scales = nbytes_of(s), out->zeros = nbytes_of(z), out->g_idx = nbytes_of(g);
    out->mask = nbytes_of(mk) + nbytes_of(tn) + nbytes_of(tk) + nbytes_of(find(src, base, "kmask")) +
                nbytes_of(find(src, base, "kmask_idx"));
    out->values = nbytes_of(v);
    out->weight = w && !q && !v ? (int64_t)w->nbytes : 0;
    const int64_t mrow = (cols + 7) / 8;
    const int mask_ok = mk && mk->data && mk->nbytes >= (size_t)(rows * mrow);
    uint8_t *coded = !mk && !tn ? kmask_bitmask(src, base, rows, cols) : NULL; /* v2 coded mask */
    const uint8_t *bm = mask_ok ? mk->data : coded;
    out->kept = count_stored(bm, rows, cols);
    const int nm_ok = tn && tk && tk->data && tk->nbytes == 3 && !mk;
    nm_shape ns;
    const uint8_t *km = nm_ok ? tk->data : NULL;
    if (km && nm_shape_of(cols, km[1], km[0], km[2], &ns)) { /* v2 index: k of every cell of m */
        out->cell_kept = ns.k, out->cell_m = ns.m;
        out->kept = rows * cols / ns.m * ns.k;
        out->mask_bound_bits = (double)(rows * (cols / ns.m)) * log2_binom(ns.m, ns.k);
    }
    if (q) {
        const int64_t n = out->kept > 8 ? out->kept : 8;
        out->bits = (int)(8 * (int64_t)q->nbytes / n);
    }
    if (bm && !nm_ok) bitmask_bound(bm, rows, cols, out);
    free(coded);
}

/* One packed linear being decoded into W [rows, cols] (zeroed). */
typedef struct decode_job {
    const pq__source *src;
    const char *base, *path;
    const uint8_t *bm; /* [rows, mrow] or NULL */
    int64_t rows, cols, mrow, n_stored;
    float *W;
} decode_job;

/* Checks the tensors of a quantized linear; returns the code width b, 0 after a failure. */
static int check_quant(pq_ctx *ctx, const decode_job *j, const pq__tensor *tq, const pq__tensor *ts,
                       const pq__tensor *tz, const pq__tensor *tg, int64_t *G) {
    const int64_t padded = j->n_stored < 8 ? 8 : j->n_stored;
    *G = ts && ts->n_dims == 2 ? ts->shape[1] : 0;
    const int b = tq->n_dims == 1 ? (int)((int64_t)tq->nbytes * 8 / padded) : 0;
    if (b < 1 || b > 8 || tq->dtype != PQ_DTYPE_U8 || (size_t)((padded * b + 7) / 8) != tq->nbytes) {
        pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.qcodes': %zu bytes do not hold %lld codes", j->path, j->base,
                 tq->nbytes, (long long)j->n_stored);
        return 0;
    }
    if (*G <= 0 || j->cols % *G || !shape_is(ts, PQ_DTYPE_F16, 2, j->rows, *G) ||
        !shape_is(tz, PQ_DTYPE_U8, 2, j->rows, *G) || (tg && !shape_is(tg, PQ_DTYPE_I32, 1, j->cols, 0))) {
        pq__fail(ctx, PQ_ERR_FORMAT, "%s: '%s': scales/zeros/g_idx missing or mis-shaped", j->path, j->base);
        return 0;
    }
    return b;
}

static pq_status decode_quant(pq_ctx *ctx, const decode_job *j, const pq__tensor *tq) {
    const pq__tensor *ts = find(j->src, j->base, "scales"), *tz = find(j->src, j->base, "zeros"),
                     *tg = find(j->src, j->base, "g_idx");
    int64_t G;
    const int b = check_quant(ctx, j, tq, ts, tz, tg, &G);
    if (!b) return ctx->status;
    uint8_t *code = pq__malloc(ctx, (size_t)j->cols, "decoded codes");
    if (!code) return ctx->status;
    const uint8_t *z = tz->data, *sb = ts->data;
    const int64_t gs = j->cols / G;
    uint64_t pos = 0;
    for (int64_t r = 0; r < j->rows; r++) {
        const uint8_t *bm_row = j->bm ? j->bm + r * j->mrow : NULL;
        pq__bits_unpack(tq->data, &pos, bm_row, j->cols, b, code);
        for (int64_t c = 0; c < j->cols; c++) {
            if (bm_row && !bit(bm_row, c)) continue;
            int64_t g = c / gs;
            if (tg) {
                int32_t gv;
                memcpy(&gv, (const uint8_t *)tg->data + c * 4, 4);
                g = gv;
                if (g < 0 || g >= G) {
                    free(code);
                    return pq__fail(ctx, PQ_ERR_FORMAT, "%s: '%s.g_idx'[%lld] = %lld out of range", j->path, j->base,
                                    (long long)c, (long long)g);
                }
            }
            uint16_t h;
            memcpy(&h, sb + (r * G + g) * 2, 2);
            j->W[r * j->cols + c] = pq__packed_dq(code[c], z[r * G + g], pq__f16_to_f32(h));
        }
    }
    free(code);
    return PQ_OK;
}

static pq_status decode_values(pq_ctx *ctx, const decode_job *j, const pq__tensor *tv) {
    if (!shape_is(tv, PQ_DTYPE_F16, 1, j->n_stored, 0))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.values': expected F16 [%lld]", j->path, j->base,
                        (long long)j->n_stored);
    const uint8_t *vb = tv->data;
    int64_t k = 0;
    for (int64_t r = 0; r < j->rows; r++)
        for (int64_t c = 0; c < j->cols; c++)
            if (!j->bm || bit(j->bm + r * j->mrow, c)) {
                uint16_t h;
                memcpy(&h, vb + 2 * k++, 2);
                j->W[r * j->cols + c] = pq__f16_to_f32(h);
            }
    return PQ_OK;
}

/* n (<= 32) bits of a row's stream at bit pos, read as 8 bytes at once where the stream has
 * them, else a byte at a time; the stream has len bytes (the bits asked for lie inside it). */
static inline uint32_t get_bits_fast(const uint8_t *in, uint64_t pos, int n, int64_t len) {
    const int64_t b0 = (int64_t)(pos >> 3), b1 = (int64_t)((pos + (uint64_t)n + 7) >> 3);
    uint64_t v = 0;
    if (b0 + 8 <= len) { /* n + 7 <= 39 bits: one 8-byte read inside the stream (little-endian) */
        memcpy(&v, in + b0, 8);
    } else {
        for (int64_t b = b0; b < b1 && b < len; b++)
            v |= (uint64_t)in[b] << (8 * (b - b0));
    }
    v >>= pos & 7;
    return (uint32_t)(n == 32 ? v : v & (((uint64_t)1 << n) - 1));
}

/* Row r of the N:M index into mask row out (zeroed): each full group's bits from the table tab
 * (index value -> the group's g m bits) when there is one, else each cell's kept set from pat
 * (rank -> the cell's m bits); -1 when the row is good, else the first bad cell group. C is
 * s->C, a constant in the callers of the usual patterns (divisions become multiplications).
 * With both, `generate` on the 1B-shaped 2:4 + 4-bit model starts in 0.52-0.59 s instead of
 * 1.47-1.51 s (with count_stored's popcounts; plain 4-bit: 0.31-0.38 s). */
static inline __attribute__((always_inline)) int64_t nm_decode_row_c(const uint8_t *in, const nm_shape *s,
                                                                     int64_t cells, const uint16_t *pat,
                                                                     const uint32_t *tab, uint8_t *out,
                                                                     uint32_t *bad_v, const uint32_t C) {
    const uint64_t lim = upow(C, s->g), lim_last = upow(C, (int)s->last);
    uint64_t pos = 0;
    for (int64_t c = 0; c < cells; c += s->g) {
        const int full = c + s->g <= cells, n = full ? s->g : (int)s->last, B = full ? s->B : s->B_last;
        uint32_t v = get_bits_fast(in, pos, B, s->row_bytes);
        pos += (uint64_t)B;
        if ((uint64_t)v >= (full ? lim : lim_last)) {
            *bad_v = v;
            return c;
        }
        if (full && tab) { /* the group's g m bits at once */
            const int64_t c0 = c * s->m;
            uint32_t bits = tab[v] << (c0 & 7); /* g m + 7 <= 31 bits */
            for (uint8_t *o = out + (c0 >> 3); bits; bits >>= 8, o++)
                *o |= (uint8_t)bits;
            continue;
        }
        for (int i = 0; i < n; i++, v /= C) {
            const int64_t c0 = (c + i) * s->m;
            uint32_t bits = (uint32_t)pat[v % C] << (c0 & 7); /* m + 7 <= 23 bits */
            for (uint8_t *o = out + (c0 >> 3); bits; bits >>= 8, o++)
                *o |= (uint8_t)bits;
        }
    }
    return -1;
}

static int64_t nm_decode_row(const uint8_t *in, const nm_shape *s, int64_t cells, const uint16_t *pat,
                             const uint32_t *tab, uint8_t *out, uint32_t *bad_v) {
    switch (s->C) {
    case 4: return nm_decode_row_c(in, s, cells, pat, tab, out, bad_v, 4);   /* 1:4, 3:4 */
    case 6: return nm_decode_row_c(in, s, cells, pat, tab, out, bad_v, 6);   /* 2:4 */
    case 28: return nm_decode_row_c(in, s, cells, pat, tab, out, bad_v, 28); /* 2:8, 6:8 */
    case 70: return nm_decode_row_c(in, s, cells, pat, tab, out, bad_v, 70); /* 4:8 */
    default: return nm_decode_row_c(in, s, cells, pat, tab, out, bad_v, (uint32_t)s->C);
    }
}

/* The keep mask [rows, mrow] of an N:M index (v2) into a malloc'ed *out; rows in parallel. */
static pq_status nm_decode(pq_ctx *ctx, const decode_job *j, const pq__tensor *tn, uint8_t **out) {
    const pq__tensor *tk = find(j->src, j->base, "nm_km");
    if (!shape_is(tk, PQ_DTYPE_U8, 1, 3, 0))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.nm_km': missing or not U8 [3]", j->path, j->base);
    const uint8_t *km = tk->data;
    nm_shape s;
    if (!nm_shape_of(j->cols, km[1], km[0], km[2], &s))
        return pq__fail(ctx, PQ_ERR_FORMAT,
                        "%s: tensor '%s.nm_km': %d of %d kept per cell, %d cells per index (cells of 2..%d that "
                        "divide %lld, at most 2^32 values per index)",
                        j->path, j->base, km[0], km[1], km[2], NM_MAX_M, (long long)j->cols);
    if (!shape_is(tn, PQ_DTYPE_U8, 2, j->rows, s.row_bytes))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.nm': expected U8 [%lld, %lld] for %d of %d", j->path,
                        j->base, (long long)j->rows, (long long)s.row_bytes, s.k, s.m);
    uint16_t *pat = pq__calloc(ctx, (size_t)s.C, sizeof *pat, "N:M patterns"); /* C(16, 8) at most */
    uint8_t *bm = pat ? pq__calloc(ctx, (size_t)(j->rows * j->mrow), 1, "N:M keep mask") : NULL;
    if (!bm) {
        free(pat);
        return ctx->status;
    }
    for (uint32_t r = 0; r < (uint32_t)s.C; r++) {
        uint8_t cell[2] = {0, 0};
        nm_unrank(r, s.m, s.k, cell, 0);
        pat[r] = (uint16_t)(cell[0] | cell[1] << 8);
    }
    /* a whole group's mask bits by its index value, where the table is small and they fit in
       24 bits (2:4 in groups of 5: 7776 entries of 20 bits) */
    const uint64_t groups = upow(s.C, s.g);
    uint32_t *tab = s.full > 0 && groups <= 65536 && s.g * s.m <= 24
                        ? malloc((size_t)groups * sizeof *tab) /* optional: without it, cell by cell */
                        : NULL;
    for (uint64_t v = 0; tab && v < groups; v++) {
        uint32_t bits = 0, u = (uint32_t)v;
        for (int i = 0; i < s.g; i++, u /= (uint32_t)s.C)
            bits |= (uint32_t)pat[u % (uint32_t)s.C] << (i * s.m);
        tab[v] = bits;
    }
    const int64_t cells = j->cols / s.m;
    int64_t bad_row = j->rows, bad_cell = 0;
    uint32_t bad_v = 0;
#pragma omp parallel for num_threads(pq__threads(ctx)) schedule(static) if (j->rows * cells >= (1 << 16))
    for (int64_t r = 0; r < j->rows; r++) {
        uint32_t v = 0;
        const int64_t c =
            nm_decode_row((const uint8_t *)tn->data + r * s.row_bytes, &s, cells, pat, tab, bm + r * j->mrow, &v);
        if (c >= 0) {
#pragma omp critical(pq_nm_bad)
            if (r < bad_row) bad_row = r, bad_cell = c, bad_v = v;
        }
    }
    free(pat);
    free(tab);
    if (bad_row < j->rows) {
        free(bm);
        const int n = bad_cell + s.g <= cells ? s.g : (int)s.last;
        return pq__fail(ctx, PQ_ERR_FORMAT,
                        "%s: tensor '%s.nm': row %lld cells %lld..%lld: index %llu out of range (%llu sets)", j->path,
                        j->base, (long long)bad_row, (long long)bad_cell, (long long)(bad_cell + n - 1),
                        (unsigned long long)bad_v, (unsigned long long)upow(s.C, n));
    }
    *out = bm;
    return PQ_OK;
}

/* The keep mask of j: .mask as stored, or decoded (v2) from an N:M index or a coded mask into
 * *own (malloc'ed); NULL when not pruned. At most one of the three may be present. */
static pq_status keep_mask(pq_ctx *ctx, decode_job *j, uint8_t **own) {
    const pq__tensor *tm = find(j->src, j->base, "mask"), *tn = find(j->src, j->base, "nm");
    const pq__tensor *tk = find(j->src, j->base, "kmask"), *ti = find(j->src, j->base, "kmask_idx");
    *own = NULL;
    if (tm && !shape_is(tm, PQ_DTYPE_U8, 2, j->rows, j->mrow))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.mask': expected U8 [%lld, %lld]", j->path, j->base,
                        (long long)j->rows, (long long)j->mrow);
    if (tm && tn) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: '%s' has both a .mask and an .nm index", j->path, j->base);
    if ((tm || tn) && (tk || ti))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: '%s' has both a .%s and a coded .kmask", j->path, j->base,
                        tm ? "mask" : "nm");
    if (ti && !tk)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.kmask_idx' without '%s.kmask'", j->path, j->base,
                        j->base);
    pq_status st = PQ_OK;
    if (tn) st = nm_decode(ctx, j, tn, own);
    if (tk && (*own = pq__calloc(ctx, (size_t)j->rows, (size_t)j->mrow, "coded keep mask")) == NULL) st = ctx->status;
    if (tk && *own) st = pq__kmask_decode(ctx, j->path, j->base, tk, ti, j->rows, j->cols, *own);
    j->bm = tm ? tm->data : *own;
    return st;
}

/* The start shared by decoding and running a packed linear: the job, its .qcodes or .values,
 * the keep mask (*own malloc'ed when decoded; freed here on failure) and the stored count. */
static pq_status job_begin(pq_ctx *ctx, const pq__source *src, const char *base, int64_t rows, int64_t cols,
                           decode_job *j, uint8_t **own, const pq__tensor **tq, const pq__tensor **tv) {
    *j = (decode_job){.src = src,
                      .base = base,
                      .path = src->path ? src->path : "model",
                      .rows = rows,
                      .cols = cols,
                      .mrow = (cols + 7) / 8};
    *own = NULL;
    *tq = find(src, base, "qcodes"), *tv = find(src, base, "values");
    if (!*tq && !*tv) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: missing tensor '%s.weight'", j->path, base);
    const pq_status st = keep_mask(ctx, j, own);
    if (st != PQ_OK) {
        free(*own);
        *own = NULL;
        return st;
    }
    j->n_stored = count_stored(j->bm, rows, cols);
    return PQ_OK;
}

pq_status pq__packed_decode(pq_ctx *ctx, const pq__source *src, const char *base, int64_t rows, int64_t cols,
                            float **out) {
    *out = NULL;
    decode_job j;
    uint8_t *own;
    const pq__tensor *tq, *tv;
    pq_status st = job_begin(ctx, src, base, rows, cols, &j, &own, &tq, &tv);
    if (st != PQ_OK) return st;
    if (!(j.W = pq__calloc(ctx, (size_t)(rows * cols), sizeof(float), base))) {
        free(own);
        return ctx->status;
    }
    st = tq ? decode_quant(ctx, &j, tq) : decode_values(ctx, &j, tv);
    free(own);
    if (st != PQ_OK) {
        free(j.W);
        return st;
    }
    *out = j.W;
    return PQ_OK;
}

void pq__permute_rope_rows(const void *src, void *dst, int64_t heads, int64_t hd, size_t row_bytes,
                           int to_halfsplit) {
    const int64_t half = hd / 2;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < half; i++)
            for (int64_t k = 0; k < 2; k++) {
                int64_t inter = h * hd + 2 * i + k, split = h * hd + k * half + i;
                int64_t from = to_halfsplit ? inter : split, to = to_halfsplit ? split : inter;
                memcpy((uint8_t *)dst + to * row_bytes, (const uint8_t *)src + from * row_bytes, row_bytes);
            }
}

/* ---------------------------------------------------------------- running packed linears */

/* 1 when g_idx (I32 [cols]) gives every column the group c / (cols / G), as no g_idx does. */
static int natural_groups(const pq__tensor *tg, int64_t cols, int64_t G) {
    if (!tg) return 1;
    const int64_t gs = cols / G;
    for (int64_t c = 0; c < cols; c++) {
        int32_t g;
        memcpy(&g, (const uint8_t *)tg->data + 4 * c, 4);
        if (g != c / gs) return 0;
    }
    return 1;
}

/* The first stream bit of each row's codes under keep mask bm, malloc'ed [rows]. */
static uint64_t *row_bits(pq_ctx *ctx, const uint8_t *bm, int64_t rows, int64_t cols, int b) {
    uint64_t *rb = pq__malloc(ctx, (size_t)rows * sizeof *rb, "row offsets");
    if (!rb) return NULL;
    const int64_t mrow = (cols + 7) / 8;
    uint64_t pos = 0;
    for (int64_t r = 0; r < rows; r++) {
        rb[r] = pos;
        pos += (uint64_t)count_stored(bm + r * mrow, 1, cols) * (uint64_t)b;
    }
    return rb;
}

/* Prune-only linears run as float16 rows: the stored values in place of the kept weights. */
static pq_status values_f16(pq_ctx *ctx, const decode_job *j, const pq__tensor *tv, uint16_t **out) {
    if (!shape_is(tv, PQ_DTYPE_F16, 1, j->n_stored, 0))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s.values': expected F16 [%lld]", j->path, j->base,
                        (long long)j->n_stored);
    uint16_t *h = pq__calloc(ctx, (size_t)(j->rows * j->cols), sizeof *h, j->base);
    if (!h) return ctx->status;
    const uint8_t *vb = tv->data;
    int64_t k = 0;
    for (int64_t r = 0; r < j->rows; r++)
        for (int64_t c = 0; c < j->cols; c++)
            if (!j->bm || bit(j->bm + r * j->mrow, c)) memcpy(&h[r * j->cols + c], vb + 2 * k++, 2);
    *out = h;
    return PQ_OK;
}

/* Act-order linears whose groups are not column ranges (g_idx): the codes and the mask rewritten
 * in a column order that makes every group contiguous (stable by group), with perm recording it;
 * 0 when the groups are not all group_size columns (then they run as float32). */
static int act_order_layout(pq_ctx *ctx, const decode_job *j, const pq__tensor *tq, const pq__tensor *tg, int b,
                            int64_t G, pq__qmat *out, void *owned[4]) {
    const int64_t rows = j->rows, cols = j->cols, gs = cols / G, mrow = j->mrow;
    int32_t *perm = pq__malloc(ctx, (size_t)cols * 4, "column order");
    int64_t *fill = perm ? pq__calloc(ctx, (size_t)G, sizeof *fill, "column order") : NULL;
    uint8_t *row = fill ? pq__malloc(ctx, (size_t)cols * 2, "codes row") : NULL;
    int ok = row != NULL;
    for (int64_t c = 0; c < cols && ok; c++) { /* stable counting sort by group */
        int32_t g;
        memcpy(&g, (const uint8_t *)tg->data + 4 * c, 4);
        ok = g >= 0 && g < G && fill[g] < gs;
        if (ok) perm[g * gs + fill[g]++] = (int32_t)c;
    }
    uint8_t *codes = ok ? pq__calloc(ctx, tq->nbytes, 1, "codes") : NULL;
    uint8_t *mask = codes && j->bm ? pq__calloc(ctx, (size_t)(rows * mrow), 1, "keep mask") : NULL;
    if (codes && (!j->bm || mask)) {
        uint64_t in = 0, outp = 0;
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *bm = j->bm ? j->bm + r * mrow : NULL;
            pq__bits_unpack(tq->data, &in, bm, cols, b, row);
            for (int64_t c = 0; c < cols; c++) {
                row[cols + c] = row[perm[c]];
                if (bm && bit(bm, perm[c])) mask[r * mrow + c / 8] |= (uint8_t)(1u << (c % 8));
            }
            pq__bits_pack(codes, &outp, row + cols, mask ? mask + r * mrow : NULL, cols, b);
        }
        out->codes = codes, out->mask = mask, out->perm = perm;
        owned[0] = codes, owned[1] = mask, owned[2] = perm;
        free(fill);
        free(row);
        return 1;
    }
    free(codes);
    free(perm);
    free(fill);
    free(row);
    return 0;
}

pq_status pq__packed_qmat(pq_ctx *ctx, const pq__source *src, const char *base, int64_t rows, int64_t cols,
                          pq__qmat *out, void *owned[4]) {
    owned[0] = owned[1] = owned[2] = owned[3] = NULL;
    memset(out, 0, sizeof *out);
    out->rows = rows, out->cols = cols;
    decode_job j;
    uint8_t *own;
    const pq__tensor *tq, *tv;
    pq_status st = job_begin(ctx, src, base, rows, cols, &j, &own, &tq, &tv);
    if (st != PQ_OK) return st;
    if (!tq) { /* prune-only */
        uint16_t *h = NULL;
        st = values_f16(ctx, &j, tv, &h);
        free(own);
        out->kind = PQ_QMAT_F16, out->data = h, owned[0] = h;
        return st;
    }
    const pq__tensor *ts = find(src, base, "scales"), *tz = find(src, base, "zeros"), *tg = find(src, base, "g_idx");
    int64_t G;
    const int b = check_quant(ctx, &j, tq, ts, tz, tg, &G);
    if (!b) {
        free(own);
        return ctx->status;
    }
    out->kind = PQ_QMAT_CODES, out->bits = b, out->n_groups = G, out->group_size = cols / G;
    out->codes = tq->data, out->codes_bytes = tq->nbytes, out->scales = ts->data, out->zeros = tz->data;
    out->mask = j.bm;
    if (!natural_groups(tg, cols, G)) {
        const int done = act_order_layout(ctx, &j, tq, tg, b, G, out, owned);
        free(own);
        own = NULL;
        if (!done) { /* groups of unequal sizes: float32 */
            if (ctx->status == PQ_ERR_NOMEM) return ctx->status;
            memset(out, 0, sizeof *out);
            out->rows = rows, out->cols = cols;
            float *W = NULL;
            st = pq__packed_decode(ctx, src, base, rows, cols, &W);
            out->kind = PQ_QMAT_F32, out->data = W, owned[0] = W;
            return st;
        }
    } else {
        owned[0] = own;
    }
    if (out->mask && !(out->row_bit = owned[3] = row_bits(ctx, out->mask, rows, cols, b))) return ctx->status;
    out->kept64 = pq__qmat_kept64(out);
    return PQ_OK;
}

/* ---------------------------------------------------------------- bytes of a recipe, before compressing */

/* Bytes of the N:M index of cells of M keeping k (every multiple m of M that is a cell size of
 * the index and divides cols keeps k m / M per cell: the writer takes the smallest), -1 when
 * none is smaller than the bitmask (the writer then codes the mask or keeps the bitmask). */
static int64_t nm_index_bytes(int64_t rows, int64_t cols, int M, int k) {
    int64_t best = -1;
    for (int m = 2; m <= NM_MAX_M; m *= 2) {
        nm_shape s;
        if (m % M || !nm_shape_of(cols, m, k * (m / M), nm_best_group(m, k * (m / M)), &s)) continue;
        if (s.row_bytes < (cols + 7) / 8 && (best < 0 || s.row_bytes * rows < best)) best = s.row_bytes * rows;
    }
    return best < 0 ? -1 : best + 3; /* + .nm_km */
}

/* An upper bound on the coded mask of rows rows keeping between kmin and kmax weights in all:
 * per row the count (log2(cols + 1)) and the kept set at the worst mean count (log2 C(cols, k)
 * is concave in k, so rows equal counts maximise the sum), the range coder's floors, under 8 bits
 * per block for the termination (24 counted) and the index's 4 bytes per block. */
static int64_t coded_mask_bound(int64_t rows, int64_t cols, int64_t kmin, int64_t kmax) {
    double k = (double)cols / 2; /* the maximum of log2 C(cols, k), when within the range */
    if (k < (double)kmin / (double)rows) k = (double)kmin / (double)rows;
    if (k > (double)kmax / (double)rows) k = (double)kmax / (double)rows;
    const double lc = (lgamma((double)cols + 1) - lgamma(k + 1) - lgamma((double)cols - k + 1)) / log(2.0);
    const double floors = 1.45 * (double)cols * (1 + log((double)cols)) / 16777216.0;
    const int64_t nb = pq__kmask_blocks(rows, PQ__KMASK_BLOCK_ROWS);
    const double bits = (double)rows * (log2((double)cols + 1) + lc + floors) + 24.0 * (double)nb;
    return (int64_t)ceil(bits / 8) + 4 * (nb > 0 ? nb : 1) + 8;
}

/* The kept weights (kmin..kmax) and the mask's bytes (-1: none) of recipe p on [rows, cols];
 * *exact 0 where only bounds are known. */
static int64_t mask_bytes_of(const pq_layer_params *p, int64_t rows, int64_t cols, int version, int64_t *kmin,
                             int64_t *kmax, int *exact) {
    const int64_t n = rows * cols, bitmask = rows * ((cols + 7) / 8);
    const int moved = p->quant != PQ_QUANT_NONE && p->joint == PQ_JOINT_A && !p->keep_mask;
    *kmin = *kmax = n;
    if (p->prune == PQ_PRUNE_NONE) return -1;
    *exact = 0;
    if (moved) { /* mode a without re-masking stores what GPTQ moved: anything up to all */
        *kmin = 0;
        return bitmask;
    }
    if (p->prune_m > 0) { /* every cell keeps exactly M - N */
        *kmin = *kmax = n / p->prune_m * (p->prune_m - p->prune_n);
        const int64_t idx = version >= 2 ? nm_index_bytes(rows, cols, p->prune_m, p->prune_m - p->prune_n) : -1;
        *exact = idx >= 0 || version < 2;
        return idx >= 0 ? idx : bitmask;
    }
    /* unstructured: each selection (a row, or a SparseGPT block of rows x columns) prunes
     * floor(its size * s), so at most max(rows, cols) fewer than n s in all; the reference rule
     * may prune more on ties */
    const double keep = (double)n * (1.0 - p->sparsity);
    *kmax = (int64_t)floor(keep) + (rows > cols ? rows : cols);
    if (*kmax > n) *kmax = n;
    *kmin = p->reference ? 0 : (int64_t)ceil(keep);
    if (version < 2) return bitmask;
    const int64_t coded = coded_mask_bound(rows, cols, *kmin, *kmax);
    return coded < bitmask ? coded : bitmask;
}

int64_t pq__packed_recipe_bytes(const pq_layer_params *p, int64_t rows, int64_t cols, int version, int *exact) {
    int ex = 1;
    if (exact) *exact = 0;
    if (rows <= 0 || cols <= 0 || (p->prune == PQ_PRUNE_NONE && p->quant == PQ_QUANT_NONE) ||
        p->gguf_type != PQ_DTYPE_F32)
        return -1;
    if ((p->prune != PQ_PRUNE_NONE && p->prune_m > 0 && cols % p->prune_m) ||
        (p->quant != PQ_QUANT_NONE && p->group_size > 0 && cols % p->group_size))
        return -1;
    int64_t kmin, kmax;
    const int64_t mask = mask_bytes_of(p, rows, cols, version, &kmin, &kmax, &ex);
    int64_t bytes = mask > 0 ? mask : 0;
    if (p->quant == PQ_QUANT_NONE) {
        bytes += 2 * kmax; /* f16 values */
    } else {
        const int64_t G = p->group_size > 0 ? cols / p->group_size : 1, padded = kmax < 8 ? 8 : kmax;
        bytes += (padded * p->bits + 7) / 8 + 3 * rows * G; /* codes, f16 scales, u8 zeros */
        if (p->act_order) bytes += 4 * cols, ex = 0;        /* g_idx, unless the groups stay natural */
    }
    if (exact) *exact = ex && kmin == kmax;
    return bytes;
}
