/* GGUF v3 writer. KVs are serialised into a byte buffer as they are added; tensors keep
 * borrowed data pointers and are laid out (aligned to 32) at save. */
#include <stdlib.h>
#include <string.h>

#include "kernels/dtype.h"
#include "io/gguf.h"

#define WRITER_ALIGNMENT 32
#define MAX_TENSOR_NAME 63 /* llama.cpp refuses names of 64 bytes or more */

typedef struct wtensor {
    char *name;
    uint32_t ggml_type;
    int n_dims;
    uint64_t ne[4];   /* innermost first, as written */
    const void *data; /* borrowed until save */
    size_t nbytes;
} wtensor;

struct pq__gguf_writer {
    uint8_t *kv; /* serialised KVs (without general.alignment) */
    size_t kv_len, kv_cap;
    int64_t n_kv;
    char **keys; /* [n_kv] for duplicate checks */
    wtensor *t;
    int64_t n_t, cap_t;
    pq_status err; /* first failure, reported by save */
    char msg[512];
};

__attribute__((format(printf, 3, 4))) static void werr(pq__gguf_writer *w, pq_status st, const char *fmt, ...) {
    if (w->err != PQ_OK) return;
    w->err = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
}

pq_status pq__gguf_writer_new(pq_ctx *ctx, pq__gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? PQ_OK : pq__fail(ctx, PQ_ERR_NOMEM, "out of memory creating a GGUF writer");
}

void pq__gguf_writer_free(pq__gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    for (int64_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w);
}

static int reserve(pq__gguf_writer *w, size_t extra) {
    if (w->err != PQ_OK) return 0;
    if (extra > SIZE_MAX - w->kv_len) {
        werr(w, PQ_ERR_NOMEM, "metadata size overflows");
        return 0;
    }
    if (w->kv_len + extra <= w->kv_cap) return 1;
    size_t cap = w->kv_cap ? w->kv_cap : 4096;
    while (cap < w->kv_len + extra)
        cap = cap > SIZE_MAX / 2 ? w->kv_len + extra : cap * 2;
    uint8_t *nb = realloc(w->kv, cap);
    if (!nb) {
        werr(w, PQ_ERR_NOMEM, "out of memory growing the metadata to %zu bytes", cap);
        return 0;
    }
    w->kv = nb;
    w->kv_cap = cap;
    return 1;
}

/* Appends raw bytes (space reserved by the caller's reserve()). */
static void put(pq__gguf_writer *w, const void *p, size_t n) {
    if (n) memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_le(pq__gguf_writer *w, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++)
        w->kv[w->kv_len++] = (uint8_t)(v >> (8 * i));
}

/* Starts a KV: checks the key, records it, writes key and type. Returns 0 to skip. */
static int begin_kv(pq__gguf_writer *w, const char *key, pq__gguf_type type, size_t value_bytes) {
    if (w->err != PQ_OK) return 0;
    if (!key || !*key) {
        werr(w, PQ_ERR_INVALID, "empty metadata key");
        return 0;
    }
    if (!strcmp(key, "general.alignment")) return 0; /* written by save */
    for (int64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) {
            werr(w, PQ_ERR_INVALID, "metadata key '%s' added twice", key);
            return 0;
        }
    size_t kl = strlen(key);
    if (kl > 65535) {
        werr(w, PQ_ERR_INVALID, "metadata key of %zu bytes (at most 65535)", kl);
        return 0;
    }
    if (value_bytes > SIZE_MAX - 12 - kl || !reserve(w, 12 + kl + value_bytes)) {
        werr(w, PQ_ERR_NOMEM, "metadata '%s': value too large", key);
        return 0;
    }
    char **nk = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *nk);
    if (nk) w->keys = nk;
    char *copy = strdup(key);
    if (!nk || !copy) {
        free(copy);
        werr(w, PQ_ERR_NOMEM, "out of memory adding metadata '%s'", key);
        return 0;
    }
    w->keys[w->n_kv++] = copy;
    put_le(w, kl, 8);
    put(w, key, kl);
    put_le(w, (uint64_t)type, 4);
    return 1;
}

static void add_scalar(pq__gguf_writer *w, const char *key, pq__gguf_type type, uint64_t bits, size_t n) {
    if (begin_kv(w, key, type, n)) put_le(w, bits, n);
}

void pq__gguf_writer_add_u32(pq__gguf_writer *w, const char *key, uint32_t v) {
    add_scalar(w, key, PQ_GGUF_U32, v, 4);
}

void pq__gguf_writer_add_i32(pq__gguf_writer *w, const char *key, int32_t v) {
    add_scalar(w, key, PQ_GGUF_I32, (uint32_t)v, 4);
}

void pq__gguf_writer_add_u64(pq__gguf_writer *w, const char *key, uint64_t v) {
    add_scalar(w, key, PQ_GGUF_U64, v, 8);
}

void pq__gguf_writer_add_f32(pq__gguf_writer *w, const char *key, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    add_scalar(w, key, PQ_GGUF_F32, bits, 4);
}

void pq__gguf_writer_add_bool(pq__gguf_writer *w, const char *key, int v) {
    add_scalar(w, key, PQ_GGUF_BOOL, v != 0, 1);
}

void pq__gguf_writer_add_str(pq__gguf_writer *w, const char *key, const char *v) {
    size_t n = v ? strlen(v) : 0;
    if (!begin_kv(w, key, PQ_GGUF_STRING, 8 + n)) return;
    put_le(w, n, 8);
    put(w, v, n);
}

/* Array header; total is the byte size of the elements. */
static int begin_arr(pq__gguf_writer *w, const char *key, pq__gguf_type et, int64_t n, size_t total) {
    if (w->err != PQ_OK) return 0;
    if (n < 0) {
        werr(w, PQ_ERR_INVALID, "metadata '%s': negative array length", key ? key : "");
        return 0;
    }
    if (total > SIZE_MAX - 12 || !begin_kv(w, key, PQ_GGUF_ARRAY, 12 + total)) return 0;
    put_le(w, (uint64_t)et, 4);
    put_le(w, (uint64_t)n, 8);
    return 1;
}

void pq__gguf_writer_add_arr_f32(pq__gguf_writer *w, const char *key, const float *v, int64_t n) {
    size_t total;
    if (!pq__mul_ok(n > 0 ? (size_t)n : 0, 4, &total)) total = SIZE_MAX;
    if (!begin_arr(w, key, PQ_GGUF_F32, n, total)) return;
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], 4);
        put_le(w, bits, 4);
    }
}

void pq__gguf_writer_add_arr_i32(pq__gguf_writer *w, const char *key, const int32_t *v, int64_t n) {
    size_t total;
    if (!pq__mul_ok(n > 0 ? (size_t)n : 0, 4, &total)) total = SIZE_MAX;
    if (!begin_arr(w, key, PQ_GGUF_I32, n, total)) return;
    for (int64_t i = 0; i < n; i++)
        put_le(w, (uint32_t)v[i], 4);
}

void pq__gguf_writer_add_arr_str(pq__gguf_writer *w, const char *key, const char *const *v, const size_t *lens,
                                 int64_t n) {
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(v[i]);
        if (total > SIZE_MAX - 8 - l) {
            total = SIZE_MAX;
            break;
        }
        total += 8 + l;
    }
    if (!begin_arr(w, key, PQ_GGUF_STRING, n, total)) return;
    for (int64_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(v[i]);
        put_le(w, l, 8);
        put(w, v[i], l);
    }
}

void pq__gguf_writer_add_kv(pq__gguf_writer *w, const pq__gguf_kv *kv) {
    if (begin_kv(w, kv->key, kv->type, kv->raw_size)) put(w, kv->raw, kv->raw_size);
}

void pq__gguf_writer_add_tensor(pq__gguf_writer *w, const char *name, pq_dtype dtype, int n_dims,
                                const int64_t *shape, const void *data, size_t nbytes) {
    if (w->err != PQ_OK) return;
    const char *nm = name ? name : "";
    size_t nl = strlen(nm);
    if (nl == 0 || nl > MAX_TENSOR_NAME) {
        werr(w, PQ_ERR_INVALID, "tensor '%s': name must be 1..%d bytes", nm, MAX_TENSOR_NAME);
        return;
    }
    uint32_t gt;
    if (!pq__gguf_ggml_from_dtype(dtype, &gt)) {
        werr(w, PQ_ERR_UNSUPPORTED, "tensor '%s': dtype %s cannot be written to GGUF", nm, pq_dtype_name(dtype));
        return;
    }
    if (n_dims < 1 || n_dims > 4) {
        werr(w, PQ_ERR_INVALID, "tensor '%s': %d dimensions (must be 1..4)", nm, n_dims);
        return;
    }
    int64_t numel = 1, block;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] <= 0 || shape[d] > INT64_MAX / numel) {
            werr(w, PQ_ERR_INVALID, "tensor '%s': dimension %d is %lld", nm, d, (long long)shape[d]);
            return;
        }
        numel *= shape[d];
    }
    pq__dtype_block_bytes(dtype, &block);
    size_t want = pq__dtype_nbytes(dtype, numel);
    if (shape[n_dims - 1] % block) {
        werr(w, PQ_ERR_INVALID, "tensor '%s': rows of %lld are not a multiple of the %s block size %lld", nm,
             (long long)shape[n_dims - 1], pq_dtype_name(dtype), (long long)block);
        return;
    }
    if (want != nbytes || !data) {
        werr(w, PQ_ERR_INVALID, "tensor '%s': %zu bytes given, %s of %lld elements needs %zu", nm, nbytes,
             pq_dtype_name(dtype), (long long)numel, want);
        return;
    }
    for (int64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, nm)) {
            werr(w, PQ_ERR_INVALID, "tensor '%s' added twice", nm);
            return;
        }
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) {
            werr(w, PQ_ERR_NOMEM, "out of memory adding tensor '%s'", nm);
            return;
        }
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(nm))) {
        werr(w, PQ_ERR_NOMEM, "out of memory adding tensor '%s'", nm);
        return;
    }
    t->ggml_type = gt;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++)
        t->ne[d] = (uint64_t)shape[n_dims - 1 - d]; /* innermost first */
    t->data = data;
    t->nbytes = nbytes;
    w->n_t++;
}

static pq_status write_le(pq_ctx *ctx, pq__atomic *a, uint64_t v, size_t n) {
    uint8_t b[8];
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return pq__atomic_write(ctx, a, b, n);
}

static pq_status write_pad(pq_ctx *ctx, pq__atomic *a, uint64_t *pos) {
    static const uint8_t zeros[WRITER_ALIGNMENT];
    size_t pad = (size_t)((WRITER_ALIGNMENT - *pos % WRITER_ALIGNMENT) % WRITER_ALIGNMENT);
    *pos += pad;
    return pq__atomic_write(ctx, a, zeros, pad);
}

static pq_status write_all(pq_ctx *ctx, pq__gguf_writer *w, pq__atomic *a) {
    static const char align_key[] = "general.alignment";
    uint64_t pos = 0;
    pq_status st = pq__atomic_write(ctx, a, "GGUF", 4);
    if (st == PQ_OK) st = write_le(ctx, a, 3, 4);
    if (st == PQ_OK) st = write_le(ctx, a, (uint64_t)w->n_t, 8);
    if (st == PQ_OK) st = write_le(ctx, a, (uint64_t)w->n_kv + 1, 8);
    /* general.alignment first, then the KVs in call order */
    if (st == PQ_OK) st = write_le(ctx, a, sizeof align_key - 1, 8);
    if (st == PQ_OK) st = pq__atomic_write(ctx, a, align_key, sizeof align_key - 1);
    if (st == PQ_OK) st = write_le(ctx, a, PQ_GGUF_U32, 4);
    if (st == PQ_OK) st = write_le(ctx, a, WRITER_ALIGNMENT, 4);
    if (st == PQ_OK) st = pq__atomic_write(ctx, a, w->kv, w->kv_len);
    pos = 24 + 8 + (sizeof align_key - 1) + 8 + w->kv_len;
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t && st == PQ_OK; i++) {
        const wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        st = write_le(ctx, a, nl, 8);
        if (st == PQ_OK) st = pq__atomic_write(ctx, a, t->name, nl);
        if (st == PQ_OK) st = write_le(ctx, a, (uint64_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims && st == PQ_OK; d++)
            st = write_le(ctx, a, t->ne[d], 8);
        if (st == PQ_OK) st = write_le(ctx, a, t->ggml_type, 4);
        if (st == PQ_OK) st = write_le(ctx, a, off, 8);
        pos += 8 + nl + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        off += t->nbytes;
        off += (WRITER_ALIGNMENT - off % WRITER_ALIGNMENT) % WRITER_ALIGNMENT;
    }
    if (w->n_t > 0 && st == PQ_OK) st = write_pad(ctx, a, &pos);
    for (int64_t i = 0; i < w->n_t && st == PQ_OK; i++) {
        st = pq__atomic_write(ctx, a, w->t[i].data, w->t[i].nbytes);
        pos += w->t[i].nbytes;
        if (st == PQ_OK) st = write_pad(ctx, a, &pos);
    }
    return st;
}

pq_status pq__gguf_writer_save(pq_ctx *ctx, pq__gguf_writer *w, const char *path) {
    if (!w) return pq__fail(ctx, PQ_ERR_INVALID, "%s: no GGUF writer", path);
    if (w->err != PQ_OK) return pq__fail(ctx, w->err, "%s: %s", path, w->msg);
    pq__atomic a;
    pq_status st = pq__atomic_open_large(ctx, path, &a);
    if (st != PQ_OK) return st;
    st = write_all(ctx, w, &a);
    if (st != PQ_OK) {
        pq__atomic_abort(&a);
        return st;
    }
    return pq__atomic_commit(ctx, &a);
}
