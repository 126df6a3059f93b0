#include "io/npy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prunequant-compress.h"

/* Longest header accepted: numpy itself refuses headers over 10000 bytes by default. */
#define NPY_MAX_HEADER 65536

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Finds the value after key ('key' or "key", then ':') in the dict text [p, end). */
static const char *find_key(const char *p, const char *end, const char *key) {
    const size_t kl = strlen(key);
    for (const char *q = p; q + kl + 2 <= end; q++) {
        if ((q[0] == '\'' || q[0] == '"') && (size_t)(end - q) > kl + 1 && memcmp(q + 1, key, kl) == 0 &&
            q[kl + 1] == q[0]) {
            const char *v = skip_ws(q + kl + 2, end);
            if (v < end && *v == ':') return skip_ws(v + 1, end);
        }
    }
    return NULL;
}

/* The magic, version and header length; sets version and data_offset, and *pre to the
 * bytes before the header dictionary. */
static pq_status parse_preamble(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size, pq__npy_header *out,
                                size_t *pre_out) {
    if (size < 10 || memcmp(data, "\x93NUMPY", 6) != 0)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: magic: not a .npy file", name);
    const int major = data[6];
    size_t hlen, pre;
    if (major == 1) {
        hlen = (size_t)data[8] | (size_t)data[9] << 8;
        pre = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header length: file truncated", name);
        hlen = (size_t)data[8] | (size_t)data[9] << 8 | (size_t)data[10] << 16 | (size_t)data[11] << 24;
        pre = 12;
    } else {
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: version: .npy format %d.%d not supported", name, major,
                        data[7]);
    }
    if (hlen > NPY_MAX_HEADER)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header length: %zu bytes is too long", name, hlen);
    if (hlen > size - pre)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header length: %zu bytes but the file has %zu", name, hlen,
                        size - pre);
    out->version = major;
    out->data_offset = pre + hlen;
    *pre_out = pre;
    return PQ_OK;
}

/* 'descr': '<f4' or '<f8' (sets f64). */
static pq_status parse_descr(pq_ctx *ctx, const char *name, const char *p, const char *end, pq__npy_header *out) {
    const char *v = find_key(p, end, "descr");
    if (!v || v >= end || (*v != '\'' && *v != '"')) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: descr: missing", name);
    const char q = *v++;
    const char *ve = memchr(v, q, (size_t)(end - v));
    if (!ve) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: descr: unterminated string", name);
    const size_t dl = (size_t)(ve - v);
    if (dl == 3 && (memcmp(v, "<f4", 3) == 0 || memcmp(v, "=f4", 3) == 0))
        out->f64 = 0;
    else if (dl == 3 && (memcmp(v, "<f8", 3) == 0 || memcmp(v, "=f8", 3) == 0))
        out->f64 = 1;
    else
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: descr: dtype '%.*s' not supported (need '<f4' or '<f8')", name,
                        (int)(dl < 32 ? dl : 32), v);
    return PQ_OK;
}

/* 'fortran_order': must be False. */
static pq_status parse_fortran_order(pq_ctx *ctx, const char *name, const char *p, const char *end) {
    const char *v = find_key(p, end, "fortran_order");
    if (!v) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: fortran_order: missing", name);
    if ((size_t)(end - v) >= 4 && memcmp(v, "True", 4) == 0)
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED,
                        "%s: fortran_order: Fortran-order arrays are not supported (save "
                        "with np.ascontiguousarray)",
                        name);
    if (!((size_t)(end - v) >= 5 && memcmp(v, "False", 5) == 0))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: fortran_order: expected True or False", name);
    return PQ_OK;
}

/* 'shape': (a,) or (a, b); sets ndim and shape (shape[1] = 1 for 1-D). */
static pq_status parse_shape(pq_ctx *ctx, const char *name, const char *p, const char *end, pq__npy_header *out) {
    const char *v = find_key(p, end, "shape");
    if (!v || v >= end || *v != '(') return pq__fail(ctx, PQ_ERR_FORMAT, "%s: shape: missing or not a tuple", name);
    v++;
    int nd = 0;
    int64_t dims[2] = {0, 0};
    for (;;) {
        v = skip_ws(v, end);
        if (v >= end) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: shape: unterminated tuple", name);
        if (*v == ')') break;
        if (*v < '0' || *v > '9') return pq__fail(ctx, PQ_ERR_FORMAT, "%s: shape: expected a dimension", name);
        uint64_t d = 0;
        while (v < end && *v >= '0' && *v <= '9') {
            if (d > (uint64_t)INT64_MAX / 10)
                return pq__fail(ctx, PQ_ERR_FORMAT, "%s: shape: dimension overflows", name);
            d = d * 10 + (uint64_t)(*v++ - '0');
        }
        if (d > (uint64_t)INT64_MAX / 2) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: shape: dimension overflows", name);
        if (nd == 2)
            return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: shape: only 1-D and 2-D arrays are supported", name);
        dims[nd++] = (int64_t)d;
        v = skip_ws(v, end);
        if (v < end && *v == ',') v++;
    }
    if (nd == 0) return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: shape: scalars are not supported", name);
    out->ndim = nd;
    out->shape[0] = dims[0];
    out->shape[1] = nd == 2 ? dims[1] : 1;
    return PQ_OK;
}

pq_status pq__npy_parse_header(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size, pq__npy_header *out) {
    memset(out, 0, sizeof *out);
    size_t pre = 0;
    pq_status st = parse_preamble(ctx, name, data, size, out, &pre);
    if (st != PQ_OK) return st;
    const char *h = (const char *)data + pre, *end = (const char *)data + out->data_offset;
    const char *p = skip_ws(h, end);
    if (p >= end || *p != '{') return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header: not a dictionary", name);
    if ((st = parse_descr(ctx, name, p, end, out)) != PQ_OK) return st;
    if ((st = parse_fortran_order(ctx, name, p, end)) != PQ_OK) return st;
    if ((st = parse_shape(ctx, name, p, end, out)) != PQ_OK) return st;
    size_t numel, nbytes;
    if (!pq__mul_ok((size_t)out->shape[0], (size_t)out->shape[1], &numel) ||
        !pq__mul_ok(numel, out->f64 ? 8 : 4, &nbytes))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: shape: (%lld, %lld) overflows", name, (long long)out->shape[0],
                        (long long)out->shape[1]);
    if (nbytes > size - out->data_offset)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: data: shape needs %zu bytes but the file has %zu", name, nbytes,
                        size - out->data_offset);
    out->data_bytes = nbytes;
    return PQ_OK;
}

pq_status pq__npy_decode(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size, float **out,
                         int64_t shape[2], int *ndim) {
    *out = NULL;
    pq__npy_header h;
    pq_status st = pq__npy_parse_header(ctx, name, data, size, &h);
    if (st != PQ_OK) return st;
    const size_t numel = h.data_bytes / (h.f64 ? 8 : 4);
    float *x = pq__malloc(ctx, sizeof(float) * (numel ? numel : 1), name);
    if (!x) return PQ_ERR_NOMEM;
    const uint8_t *src = data + h.data_offset;
    for (size_t i = 0; i < numel; i++) {
        if (h.f64) {
            uint64_t u = 0;
            for (int b = 0; b < 8; b++)
                u |= (uint64_t)src[i * 8 + (size_t)b] << (8 * b);
            double d;
            memcpy(&d, &u, sizeof d);
            x[i] = (float)d;
        } else {
            uint32_t u = 0;
            for (int b = 0; b < 4; b++)
                u |= (uint32_t)src[i * 4 + (size_t)b] << (8 * b);
            memcpy(&x[i], &u, sizeof u);
        }
    }
    *out = x;
    shape[0] = h.shape[0];
    shape[1] = h.shape[1];
    *ndim = h.ndim;
    return PQ_OK;
}

pq_status pq_npy_read(pq_ctx *ctx, const char *path, float **data, int64_t shape[2], int *ndim) {
    *data = NULL;
    pq__file f;
    pq_status st = pq__file_open(ctx, path, 1, &f);
    if (st != PQ_OK) return st;
    st = pq__npy_decode(ctx, path, f.data, f.size, data, shape, ndim);
    pq__file_close(&f);
    return st;
}

pq_status pq_npy_write(pq_ctx *ctx, const char *path, const float *data, const int64_t *shape, int ndim) {
    if (ndim != 1 && ndim != 2)
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: only 1-D and 2-D arrays can be written", path);
    if (shape[0] < 0 || (ndim == 2 && shape[1] < 0)) return pq__fail(ctx, PQ_ERR_INVALID, "%s: negative shape", path);
    char dict[160];
    if (ndim == 1)
        snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld,), }",
                 (long long)shape[0]);
    else
        snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                 (long long)shape[0], (long long)shape[1]);
    /* version 1.0: 10-byte preamble; the header is padded with spaces to a multiple of 64
     * and ends with '\n' */
    size_t hl = strlen(dict) + 1;
    const size_t total = (10 + hl + 63) / 64 * 64;
    uint8_t head[256];
    const size_t hlen = total - 10;
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (uint8_t)(hlen & 0xff);
    head[9] = (uint8_t)(hlen >> 8);
    memcpy(head + 10, dict, strlen(dict));
    memset(head + 10 + strlen(dict), ' ', hlen - strlen(dict) - 1);
    head[total - 1] = '\n';
    size_t numel;
    if (!pq__mul_ok((size_t)shape[0], ndim == 2 ? (size_t)shape[1] : 1, &numel) || numel > SIZE_MAX / 4)
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: shape overflows", path);
    pq__atomic a;
    pq_status st = pq__atomic_open(ctx, path, &a);
    if (st != PQ_OK) return st;
    st = pq__atomic_write(ctx, &a, head, total);
    /* little-endian floats, in chunks */
    uint8_t buf[4096];
    for (size_t i = 0; st == PQ_OK && i < numel;) {
        size_t k = 0;
        for (; k < sizeof buf / 4 && i < numel; k++, i++) {
            uint32_t u;
            memcpy(&u, &data[i], sizeof u);
            for (int b = 0; b < 4; b++)
                buf[k * 4 + (size_t)b] = (uint8_t)(u >> (8 * b));
        }
        st = pq__atomic_write(ctx, &a, buf, k * 4);
    }
    if (st != PQ_OK) {
        pq__atomic_abort(&a);
        return st;
    }
    return pq__atomic_commit(ctx, &a);
}
