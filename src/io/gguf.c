/* GGUF reader: parsing, validation, lookups, typed getters. See io/gguf.h. */
#include "kernels/dtype.h"
#include "io/gguf.h"
#include "kernels/ggml_types.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bounds that keep a hostile file from making us walk or allocate without limit. */
#define MAX_KEY_LEN 65535u /* spec: keys are at most 65535 bytes */
#define MAX_NAME_LEN 65535u
#define MAX_ARRAY_DEPTH 8 /* nested arrays; recursion depth */
/* Smallest encodings, used to reject counts that cannot fit in the rest of the file. */
#define MIN_KV_BYTES 14     /* key len u64 + 1-byte key + type u32 + 1-byte value */
#define MIN_TENSOR_BYTES 33 /* name len u64 + 1-byte name + n_dims u32 + 1 dim u64 + type + offset */

static const size_t scalar_size[PQ_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *pq__gguf_type_name(pq__gguf_type t) {
    static const char *const names[PQ_GGUF_TYPE_COUNT] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                          "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < PQ_GGUF_TYPE_COUNT ? names[t] : "unknown";
}

const char *pq__ggml_type_name(uint32_t t) {
    static const char *const names[] = {"F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
                                        "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
                                        "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
                                        "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

const char *pq__gguf_ftype_name(int64_t ftype) {
    /* LLAMA_FTYPE_* of llama.h (v0.4.0); the holes are file types llama.cpp removed */
    static const char *const names[] = {
        [0] = "F32",     [1] = "F16",     [2] = "Q4_0",      [3] = "Q4_1",    [7] = "Q8_0",     [8] = "Q5_0",
        [9] = "Q5_1",    [10] = "Q2_K",   [11] = "Q3_K_S",   [12] = "Q3_K_M", [13] = "Q3_K_L",  [14] = "Q4_K_S",
        [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M",   [18] = "Q6_K",   [19] = "IQ2_XXS", [20] = "IQ2_XS",
        [21] = "Q2_K_S", [22] = "IQ3_XS", [23] = "IQ3_XXS",  [24] = "IQ1_S",  [25] = "IQ4_NL",  [26] = "IQ3_S",
        [27] = "IQ3_M",  [28] = "IQ2_S",  [29] = "IQ2_M",    [30] = "IQ4_XS", [31] = "IQ1_M",   [32] = "BF16",
        [36] = "TQ1_0",  [37] = "TQ2_0",  [38] = "MXFP4_MOE"};
    return ftype >= 0 && ftype < (int64_t)(sizeof names / sizeof names[0]) ? names[ftype] : NULL;
}

int pq__gguf_dtype_from_ggml(uint32_t ggml_type, pq_dtype *out) {
    switch (ggml_type) {
    case PQ_GGML_F32: *out = PQ_DTYPE_F32; return 1;
    case PQ_GGML_F16: *out = PQ_DTYPE_F16; return 1;
    case PQ_GGML_BF16: *out = PQ_DTYPE_BF16; return 1;
    }
    const pq__ggml_info *gi = pq__ggml_info_by_id(ggml_type);
    if (!gi) return 0;
    *out = gi->dtype;
    return 1;
}

int pq__gguf_ggml_from_dtype(pq_dtype dtype, uint32_t *out) {
    switch (dtype) {
    case PQ_DTYPE_F32: *out = PQ_GGML_F32; return 1;
    case PQ_DTYPE_F16: *out = PQ_GGML_F16; return 1;
    case PQ_DTYPE_BF16: *out = PQ_GGML_BF16; return 1;
    default: break;
    }
    const pq__ggml_info *gi = pq__ggml_info_of(dtype);
    if (!gi) return 0;
    *out = gi->ggml_id;
    return 1;
}

/* ---------------------------------------------------------------- parser */

typedef struct parser {
    pq_ctx *ctx;
    const char *name;
    pq__reader r;
} parser;

/* Fails with "<file>: <message>". */
__attribute__((format(printf, 3, 4))) static pq_status bad(parser *p, pq_status st, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pq__fail(p->ctx, st, "%s: %s", p->name, msg);
}

static size_t remaining(const parser *p) {
    return p->r.size - p->r.pos;
}

static pq_status truncated(parser *p, const char *what, const char *field) {
    return bad(p, PQ_ERR_FORMAT, "%s: %s: truncated (file ends at byte %zu)", what, field, p->r.size);
}

static pq_status rd_u32(parser *p, const char *what, const char *field, uint32_t *v) {
    return pq__rd_u32(&p->r, v) ? PQ_OK : truncated(p, what, field);
}

static pq_status rd_u64(parser *p, const char *what, const char *field, uint64_t *v) {
    return pq__rd_u64(&p->r, v) ? PQ_OK : truncated(p, what, field);
}

/* Reads a length-prefixed string; the length is checked against the rest of the file. */
static pq_status rd_str(parser *p, const char *what, const char *field, uint64_t max_len, const uint8_t **s,
                        size_t *len) {
    uint64_t n;
    pq_status st = rd_u64(p, what, field, &n);
    if (st != PQ_OK) return st;
    if (n > remaining(p))
        return bad(p, PQ_ERR_FORMAT, "%s: %s: string length %llu exceeds the %zu bytes left in the file", what, field,
                   (unsigned long long)n, remaining(p));
    if (n > max_len)
        return bad(p, PQ_ERR_FORMAT, "%s: %s: string length %llu exceeds the limit of %llu", what, field,
                   (unsigned long long)n, (unsigned long long)max_len);
    pq__rd_bytes(&p->r, (size_t)n, s);
    *len = (size_t)n;
    return PQ_OK;
}

/* Copies a key or tensor name into a C string, refusing empty names and embedded NULs. */
static pq_status dup_name(parser *p, const char *what, const char *field, const uint8_t *s, size_t len, char **out) {
    if (len == 0) return bad(p, PQ_ERR_FORMAT, "%s: %s: empty", what, field);
    if (memchr(s, 0, len)) return bad(p, PQ_ERR_FORMAT, "%s: %s: contains a NUL byte", what, field);
    char *c = malloc(len + 1);
    if (!c) return bad(p, PQ_ERR_NOMEM, "%s: out of memory", what);
    memcpy(c, s, len);
    c[len] = 0;
    *out = c;
    return PQ_OK;
}

/* Validates and skips one value of the given type (recursing into arrays). */
static pq_status skip_value(parser *p, const char *what, uint32_t type, int depth) {
    if (type >= PQ_GGUF_TYPE_COUNT) return bad(p, PQ_ERR_FORMAT, "%s: value: type %u is unknown", what, type);
    const uint8_t *b;
    if (type == PQ_GGUF_STRING) {
        size_t len;
        return rd_str(p, what, "value", UINT64_MAX, &b, &len);
    }
    if (type == PQ_GGUF_BOOL) {
        if (!pq__rd_bytes(&p->r, 1, &b)) return truncated(p, what, "value");
        if (b[0] > 1) return bad(p, PQ_ERR_FORMAT, "%s: value: bool %u is neither 0 nor 1", what, b[0]);
        return PQ_OK;
    }
    if (type != PQ_GGUF_ARRAY) {
        return pq__rd_bytes(&p->r, scalar_size[type], &b) ? PQ_OK : truncated(p, what, "value");
    }
    if (depth >= MAX_ARRAY_DEPTH)
        return bad(p, PQ_ERR_FORMAT, "%s: value: arrays nested deeper than %d", what, MAX_ARRAY_DEPTH);
    uint32_t et;
    uint64_t n;
    pq_status st = rd_u32(p, what, "array type", &et);
    if (st == PQ_OK) st = rd_u64(p, what, "array count", &n);
    if (st != PQ_OK) return st;
    if (et >= PQ_GGUF_TYPE_COUNT)
        return bad(p, PQ_ERR_FORMAT, "%s: value: array element type %u is unknown", what, et);
    /* smallest encoding of one element: fixed size, or a u64 length, or an array header */
    size_t min_elem = et == PQ_GGUF_STRING ? 8 : et == PQ_GGUF_ARRAY ? 12 : scalar_size[et];
    if (n > remaining(p) / min_elem)
        return bad(p, PQ_ERR_FORMAT, "%s: value: array count %llu of %s cannot fit in the %zu bytes left in the file",
                   what, (unsigned long long)n, pq__gguf_type_name((pq__gguf_type)et), remaining(p));
    if (et != PQ_GGUF_STRING && et != PQ_GGUF_ARRAY && et != PQ_GGUF_BOOL) {
        pq__rd_bytes(&p->r, (size_t)n * min_elem, &b);
        return PQ_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        st = skip_value(p, what, et, depth + 1);
        if (st != PQ_OK) return st;
    }
    return PQ_OK;
}

/* The head of entry i of a list ("kv" key or "tensor" name, at most max bytes, then a u32:
 * the value type or n_dims) into *out and *u; what becomes "kv 'name'" for the messages that
 * follow. */
static pq_status read_entry_head(parser *p, const char *list, int64_t i, const char *field, size_t max, char **out,
                                 const char *u32_field, uint32_t *u, char what[96]) {
    snprintf(what, 96, "%s[%lld]", list, (long long)i);
    const uint8_t *s;
    size_t len;
    pq_status st = rd_str(p, what, field, max, &s, &len);
    if (st == PQ_OK) st = dup_name(p, what, field, s, len, out);
    if (st == PQ_OK) snprintf(what, 96, "%s '%.80s'", list, *out);
    if (st == PQ_OK) st = rd_u32(p, what, u32_field, u);
    return st;
}

static pq_status parse_kv(parser *p, int64_t i, pq__gguf_kv *kv) {
    char what[96];
    uint32_t type;
    pq_status st = read_entry_head(p, "kv", i, "key", MAX_KEY_LEN, &kv->key, "type", &type, what);
    if (st != PQ_OK) return st;
    if (type >= PQ_GGUF_TYPE_COUNT) return bad(p, PQ_ERR_FORMAT, "%s: type: %u is unknown", what, type);
    kv->type = (pq__gguf_type)type;
    size_t start = p->r.pos;
    st = skip_value(p, what, type, 0);
    if (st != PQ_OK) return st;
    kv->raw = p->r.p + start;
    kv->raw_size = p->r.pos - start;
    if (type == PQ_GGUF_ARRAY) { /* header already validated by skip_value */
        pq__reader r = {kv->raw, kv->raw_size, 0};
        uint32_t et;
        pq__rd_u32(&r, &et);
        pq__rd_u64(&r, &kv->arr_n);
        kv->arr_type = (pq__gguf_type)et;
        kv->arr = kv->raw + 12;
    }
    return PQ_OK;
}

static pq_status parse_tensor(parser *p, int64_t i, pq__gguf_tensor *t) {
    char what[96];
    uint32_t nd;
    pq_status st = read_entry_head(p, "tensor", i, "name", MAX_NAME_LEN, &t->name, "n_dims", &nd, what);
    if (st != PQ_OK) return st;
    if (nd < 1 || nd > 4) return bad(p, PQ_ERR_FORMAT, "%s: n_dims: %u (must be 1..4)", what, nd);
    t->n_dims = (int)nd;
    int64_t numel = 1;
    for (int d = 0; d < 4; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        st = rd_u64(p, what, "dims", &v);
        if (st != PQ_OK) return st;
        if (v == 0) return bad(p, PQ_ERR_FORMAT, "%s: dims[%u]: 0 (must be > 0)", what, d);
        if (v > (uint64_t)INT64_MAX / (uint64_t)numel)
            return bad(p, PQ_ERR_FORMAT, "%s: dims[%u]: %llu makes the element count overflow", what, d,
                       (unsigned long long)v);
        t->ne[d] = (int64_t)v;
        numel *= (int64_t)v;
    }
    st = rd_u32(p, what, "type", &t->ggml_type);
    if (st == PQ_OK) st = rd_u64(p, what, "offset", &t->offset);
    if (st != PQ_OK) return st;
    if (!pq__gguf_dtype_from_ggml(t->ggml_type, &t->dtype))
        return bad(
            p, PQ_ERR_UNSUPPORTED,
            "%s: type: ggml type %u (%s) is not supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K)",
            what, t->ggml_type, pq__ggml_type_name(t->ggml_type));
    int64_t block;
    pq__dtype_block_bytes(t->dtype, &block);
    if (t->ne[0] % block)
        return bad(p, PQ_ERR_FORMAT, "%s: dims[0]: %lld is not a multiple of the %s block size %lld", what,
                   (long long)t->ne[0], pq_dtype_name(t->dtype), (long long)block);
    t->nbytes = pq__dtype_nbytes(t->dtype, numel);
    if (t->nbytes == 0)
        return bad(p, PQ_ERR_FORMAT, "%s: dims: the byte size of %lld elements overflows", what, (long long)numel);
    return PQ_OK;
}

/* Builds an open-addressing table of n names for duplicate checks and lookups. */
static pq_status index_build(parser *p, const char *what, int64_t n,
                             const char *(*name_at)(const pq__gguf *, int64_t), const pq__gguf *g, int64_t **out,
                             size_t *mask_out) {
    size_t cap = 8;
    while (cap < (size_t)n * 2)
        cap *= 2;
    int64_t *tab = malloc(cap * sizeof *tab);
    if (!tab) return bad(p, PQ_ERR_NOMEM, "%s: out of memory indexing %lld names", what, (long long)n);
    memset(tab, 0xff, cap * sizeof *tab); /* all -1 */
    size_t mask = cap - 1;
    for (int64_t i = 0; i < n; i++) {
        const char *nm = name_at(g, i);
        size_t h = (size_t)pq__fnv1a(nm, strlen(nm), PQ_FNV_INIT) & mask;
        while (tab[h] >= 0) {
            if (!strcmp(name_at(g, tab[h]), nm)) {
                const int64_t first = tab[h];
                free(tab);
                return bad(p, PQ_ERR_FORMAT, "%s '%.80s': name: duplicate (entries %lld and %lld)", what, nm,
                           (long long)first, (long long)i);
            }
            h = (h + 1) & mask;
        }
        tab[h] = i;
    }
    *out = tab;
    *mask_out = mask;
    return PQ_OK;
}

static const char *kv_name_at(const pq__gguf *g, int64_t i) {
    return g->kv[i].key;
}
static const char *tensor_name_at(const pq__gguf *g, int64_t i) {
    return g->tensors[i].name;
}

static int64_t index_find(const int64_t *tab, size_t mask, const char *(*name_at)(const pq__gguf *, int64_t),
                          const pq__gguf *g, const char *name) {
    if (!tab) return -1;
    size_t h = (size_t)pq__fnv1a(name, strlen(name), PQ_FNV_INIT) & mask;
    while (tab[h] >= 0) {
        if (!strcmp(name_at(g, tab[h]), name)) return tab[h];
        h = (h + 1) & mask;
    }
    return -1;
}

static pq_status parse_alignment(parser *p, pq__gguf *g) {
    g->alignment = PQ_GGUF_DEFAULT_ALIGNMENT;
    int64_t a;
    int r = pq__gguf_get_int(g, "general.alignment", &a);
    if (r == PQ_GGUF_MISSING) return PQ_OK;
    if (r != PQ_GGUF_FOUND)
        return bad(p, PQ_ERR_FORMAT, "general.alignment: expected an integer, got %s",
                   pq__gguf_type_name(pq__gguf_find_kv(g, "general.alignment")->type));
    /* bounded so that rounding offsets up cannot overflow */
    if (a <= 0 || (a & (a - 1)) || a > (1 << 30))
        return bad(p, PQ_ERR_FORMAT, "general.alignment: %lld is not a power of two in 1..2^30", (long long)a);
    g->alignment = (size_t)a;
    return PQ_OK;
}

static pq_status parse_all(parser *p, pq__gguf *g) {
    const uint8_t *magic;
    if (!pq__rd_bytes(&p->r, 4, &magic)) return truncated(p, "header", "magic");
    if (memcmp(magic, "GGUF", 4)) return bad(p, PQ_ERR_FORMAT, "header: magic: not a GGUF file");
    pq_status st = rd_u32(p, "header", "version", &g->version);
    if (st != PQ_OK) return st;
    if (g->version == 1) return bad(p, PQ_ERR_UNSUPPORTED, "header: version: GGUF v1 is not supported (v2, v3 are)");
    if (g->version != 2 && g->version != 3) {
        /* a big-endian v2/v3 file reads as 0x02000000 / 0x03000000 */
        if (g->version == 0x02000000u || g->version == 0x03000000u)
            return bad(p, PQ_ERR_UNSUPPORTED, "header: version: big-endian GGUF is not supported");
        return bad(p, PQ_ERR_UNSUPPORTED, "header: version: %u is not supported (v2, v3 are)", g->version);
    }
    uint64_t nt, nkv;
    st = rd_u64(p, "header", "tensor_count", &nt);
    if (st == PQ_OK) st = rd_u64(p, "header", "kv_count", &nkv);
    if (st != PQ_OK) return st;
    if (nkv > remaining(p) / MIN_KV_BYTES)
        return bad(p, PQ_ERR_FORMAT, "header: kv_count: %llu entries cannot fit in a %zu-byte file",
                   (unsigned long long)nkv, p->r.size);
    if (nt > remaining(p) / MIN_TENSOR_BYTES)
        return bad(p, PQ_ERR_FORMAT, "header: tensor_count: %llu tensors cannot fit in a %zu-byte file",
                   (unsigned long long)nt, p->r.size);
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors)
        return bad(p, PQ_ERR_NOMEM, "header: out of memory for %llu kvs and %llu tensors", (unsigned long long)nkv,
                   (unsigned long long)nt);
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv = (int64_t)i + 1; /* counts the entry being parsed so that free sees its key */
        st = parse_kv(p, (int64_t)i, &g->kv[i]);
        if (st != PQ_OK) return st;
    }
    st = index_build(p, "kv", g->n_kv, kv_name_at, g, &g->kv_index, &g->kv_mask);
    if (st == PQ_OK) st = parse_alignment(p, g);
    if (st != PQ_OK) return st;
    for (uint64_t i = 0; i < nt; i++) {
        g->n_tensors = (int64_t)i + 1;
        st = parse_tensor(p, (int64_t)i, &g->tensors[i]);
        if (st != PQ_OK) return st;
    }
    st = index_build(p, "tensor", g->n_tensors, tensor_name_at, g, &g->tensor_index, &g->tensor_mask);
    if (st != PQ_OK) return st;

    /* data section: the end of the tensor infos rounded up to the alignment */
    size_t a = g->alignment, pos = p->r.pos;
    g->data_offset = pos + (a - pos % a) % a;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        pq__gguf_tensor *t = &g->tensors[i];
        if (t->offset % a)
            return bad(p, PQ_ERR_FORMAT, "tensor '%.80s': offset: %llu is not a multiple of the alignment %zu",
                       t->name, (unsigned long long)t->offset, a);
        size_t avail = g->data_offset <= p->r.size ? p->r.size - g->data_offset : 0;
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return bad(p, PQ_ERR_FORMAT,
                       "tensor '%.80s': offset: %llu + %zu bytes runs past the end of the data section (%zu bytes)",
                       t->name, (unsigned long long)t->offset, t->nbytes, avail);
        t->data = p->r.p + g->data_offset + t->offset;
    }
    return PQ_OK;
}

pq_status pq__gguf_parse(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size, pq__gguf **out) {
    *out = NULL;
    if (!name) name = "<memory>";
    pq__gguf *g = calloc(1, sizeof *g);
    if (!g) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", name);
    g->name = strdup(name);
    if (!g->name) {
        free(g);
        return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", name);
    }
    g->buf = data;
    g->size = size;
    parser p = {ctx, name, {data, size, 0}};
    pq_status st = parse_all(&p, g);
    if (st != PQ_OK) {
        pq__gguf_free(g);
        return st;
    }
    *out = g;
    return PQ_OK;
}

pq_status pq__gguf_open(pq_ctx *ctx, const char *path, int use_mmap, pq__gguf **out) {
    *out = NULL;
    pq__file f;
    pq_status st = pq__file_open(ctx, path, use_mmap, &f);
    if (st != PQ_OK) return st;
    st = pq__gguf_parse(ctx, path, f.data, f.size, out);
    if (st != PQ_OK) {
        pq__file_close(&f);
        return st;
    }
    (*out)->file = f;
    return PQ_OK;
}

void pq__gguf_free(pq__gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++)
        free(g->kv[i].key);
    for (int64_t i = 0; i < g->n_tensors; i++)
        free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    free(g->kv_index);
    free(g->tensor_index);
    free(g->name);
    pq__file_close(&g->file);
    free(g);
}

/* ---------------------------------------------------------------- lookups */

const pq__gguf_kv *pq__gguf_find_kv(const pq__gguf *g, const char *key) {
    int64_t i = index_find(g->kv_index, g->kv_mask, kv_name_at, g, key);
    return i >= 0 ? &g->kv[i] : NULL;
}

int64_t pq__gguf_find_tensor(const pq__gguf *g, const char *name) {
    return index_find(g->tensor_index, g->tensor_mask, tensor_name_at, g, name);
}

static uint64_t le(const uint8_t *b, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

/* Reads one numeric scalar of type t at b: as an integer (is_int = 1) or a double. */
static int read_num(pq__gguf_type t, const uint8_t *b, int64_t *iv, double *dv, int *is_int) {
    uint64_t u;
    *is_int = 1;
    switch (t) {
    case PQ_GGUF_U8: *iv = b[0]; return 1;
    case PQ_GGUF_I8: *iv = (int8_t)b[0]; return 1;
    case PQ_GGUF_U16: *iv = (int64_t)le(b, 2); return 1;
    case PQ_GGUF_I16: *iv = (int16_t)(uint16_t)le(b, 2); return 1;
    case PQ_GGUF_U32: *iv = (int64_t)le(b, 4); return 1;
    case PQ_GGUF_I32: *iv = (int32_t)(uint32_t)le(b, 4); return 1;
    case PQ_GGUF_U64:
        u = le(b, 8);
        if (u > (uint64_t)INT64_MAX) return 0;
        *iv = (int64_t)u;
        return 1;
    case PQ_GGUF_I64:
        u = le(b, 8);
        memcpy(iv, &u, 8);
        return 1;
    case PQ_GGUF_F32: {
        uint32_t w = (uint32_t)le(b, 4);
        float f;
        memcpy(&f, &w, 4);
        *dv = f;
        *is_int = 0;
        return 1;
    }
    case PQ_GGUF_F64: {
        u = le(b, 8);
        memcpy(dv, &u, 8);
        *is_int = 0;
        return 1;
    }
    default: return 0;
    }
}

int pq__gguf_get_str(const pq__gguf *g, const char *key, const char **s, size_t *len) {
    const pq__gguf_kv *kv = pq__gguf_find_kv(g, key);
    if (!kv) return PQ_GGUF_MISSING;
    if (kv->type != PQ_GGUF_STRING) return PQ_GGUF_BADTYPE;
    *len = (size_t)le(kv->raw, 8);
    *s = (const char *)kv->raw + 8;
    return PQ_GGUF_FOUND;
}

int pq__gguf_str_eq(const pq__gguf *g, const char *key, const char *s) {
    const char *v;
    size_t n;
    return pq__gguf_get_str(g, key, &v, &n) == PQ_GGUF_FOUND && n == strlen(s) && !memcmp(v, s, n);
}

int pq__gguf_get_int(const pq__gguf *g, const char *key, int64_t *v) {
    const pq__gguf_kv *kv = pq__gguf_find_kv(g, key);
    if (!kv) return PQ_GGUF_MISSING;
    int64_t iv;
    double dv;
    int is_int;
    if (!read_num(kv->type, kv->raw, &iv, &dv, &is_int) || !is_int) return PQ_GGUF_BADTYPE;
    *v = iv;
    return PQ_GGUF_FOUND;
}

int pq__gguf_get_float(const pq__gguf *g, const char *key, double *v) {
    const pq__gguf_kv *kv = pq__gguf_find_kv(g, key);
    if (!kv) return PQ_GGUF_MISSING;
    int64_t iv;
    double dv;
    int is_int;
    if (!read_num(kv->type, kv->raw, &iv, &dv, &is_int)) return PQ_GGUF_BADTYPE;
    *v = is_int ? (double)iv : dv;
    return PQ_GGUF_FOUND;
}

int pq__gguf_get_bool(const pq__gguf *g, const char *key, int *v) {
    const pq__gguf_kv *kv = pq__gguf_find_kv(g, key);
    if (!kv) return PQ_GGUF_MISSING;
    if (kv->type != PQ_GGUF_BOOL) return PQ_GGUF_BADTYPE;
    *v = kv->raw[0] != 0;
    return PQ_GGUF_FOUND;
}

int pq__gguf_get_array(const pq__gguf *g, const char *key, const pq__gguf_kv **out) {
    const pq__gguf_kv *kv = pq__gguf_find_kv(g, key);
    if (!kv) return PQ_GGUF_MISSING;
    if (kv->type != PQ_GGUF_ARRAY) return PQ_GGUF_BADTYPE;
    *out = kv;
    return PQ_GGUF_FOUND;
}

/* Calls put for each element of kv, an array of numbers (not of bools); 0 if kv is not one,
 * or as soon as put returns 0 (the value does not fit). */
static int each_num(const pq__gguf_kv *kv, void *dst,
                    int (*put)(void *dst, uint64_t i, int64_t iv, double dv, int is_int)) {
    if (kv->type != PQ_GGUF_ARRAY || kv->arr_type >= PQ_GGUF_TYPE_COUNT || !scalar_size[kv->arr_type] ||
        kv->arr_type == PQ_GGUF_BOOL)
        return 0;
    const size_t es = scalar_size[kv->arr_type];
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        int64_t iv;
        double dv;
        int is_int;
        if (!read_num(kv->arr_type, kv->arr + i * es, &iv, &dv, &is_int) || !put(dst, i, iv, dv, is_int)) return 0;
    }
    return 1;
}

static int put_f32(void *dst, uint64_t i, int64_t iv, double dv, int is_int) {
    if (!is_int && isfinite(dv) && fabs(dv) > FLT_MAX) return 0; /* the cast would be undefined */
    ((float *)dst)[i] = is_int ? (float)iv : (float)dv;
    return 1;
}

static int put_i32(void *dst, uint64_t i, int64_t iv, double dv, int is_int) {
    (void)dv;
    if (!is_int || iv < INT32_MIN || iv > INT32_MAX) return 0;
    ((int32_t *)dst)[i] = (int32_t)iv;
    return 1;
}

int pq__gguf_array_f32(const pq__gguf_kv *kv, float *dst) {
    return each_num(kv, dst, put_f32);
}

int pq__gguf_array_i32(const pq__gguf_kv *kv, int32_t *dst) {
    return each_num(kv, dst, put_i32);
}

pq_status pq__gguf_array_strings(pq_ctx *ctx, const pq__gguf *g, const pq__gguf_kv *kv, const char ***ptrs,
                                 size_t **lens) {
    *ptrs = NULL;
    *lens = NULL;
    if (kv->type != PQ_GGUF_ARRAY || kv->arr_type != PQ_GGUF_STRING)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s: expected an array of strings", g->name, kv->key);
    const char **pp = pq__calloc(ctx, kv->arr_n, sizeof *pp, kv->key);
    size_t *ll = pp ? pq__calloc(ctx, kv->arr_n, sizeof *ll, kv->key) : NULL;
    if (!ll) {
        free(pp);
        return PQ_ERR_NOMEM;
    }
    /* lengths were validated against the buffer at parse time */
    const uint8_t *b = kv->arr;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        ll[i] = (size_t)le(b, 8);
        pp[i] = (const char *)b + 8;
        b += 8 + ll[i];
    }
    *ptrs = pp;
    *lens = ll;
    return PQ_OK;
}

/* ---------------------------------------------------------------- tensor names */

typedef struct name_pair {
    const char *gguf, *hf;
} name_pair;

static const name_pair global_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

/* Per-layer suffixes after "blk.N." / "model.layers.N.". */
static const name_pair layer_names[] = {
    {"attn_norm.weight", "input_layernorm.weight"},    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},      {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"}, {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},          {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.bias", "self_attn.o_proj.bias"},     {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},       {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

#define N_LAYER_NAMES (sizeof layer_names / sizeof layer_names[0])

/* Parses "<prefix><N>." with a canonical decimal N (no sign, no leading zeros, < 10^9);
 * returns the rest of the name or NULL. */
static const char *layer_prefix(const char *name, const char *prefix, long *layer) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl)) return NULL;
    const char *s = name + pl;
    long v = 0;
    int nd = 0;
    while (*s >= '0' && *s <= '9') {
        if (++nd > 9) return NULL;
        v = v * 10 + (*s++ - '0');
    }
    if (nd == 0 || *s != '.' || (nd > 1 && name[pl] == '0')) return NULL;
    *layer = v;
    return s + 1;
}

static int map_name(const char *in, char *buf, size_t n, int to_hf) {
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++) {
        const char *from = to_hf ? global_names[i].gguf : global_names[i].hf;
        const char *to = to_hf ? global_names[i].hf : global_names[i].gguf;
        if (!strcmp(in, from)) return (size_t)snprintf(buf, n, "%s", to) < n;
    }
    long layer;
    const char *rest = layer_prefix(in, to_hf ? "blk." : "model.layers.", &layer);
    if (!rest) return 0;
    for (size_t i = 0; i < N_LAYER_NAMES; i++) {
        const char *from = to_hf ? layer_names[i].gguf : layer_names[i].hf;
        const char *to = to_hf ? layer_names[i].hf : layer_names[i].gguf;
        if (!strcmp(rest, from)) {
            int w = snprintf(buf, n, "%s%ld.%s", to_hf ? "model.layers." : "blk.", layer, to);
            return w >= 0 && (size_t)w < n;
        }
    }
    return 0;
}

int pq__gguf_name_to_hf(const char *gguf, char *buf, size_t n) {
    return map_name(gguf, buf, n, 1);
}

int pq__gguf_name_from_hf(const char *hf, char *buf, size_t n) {
    return map_name(hf, buf, n, 0);
}
