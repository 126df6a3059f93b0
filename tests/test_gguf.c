/* GGUF reader/writer tests: writer -> reader round trips (byte-exact), conversion into a
 * pq__source, name mapping, the real stories260K.gguf, and malformed inputs (every
 * truncation, huge counts and lengths, bad types, offsets and alignment). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/gguf.h"
#include "failalloc.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

static char tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static int read_file(const char *path, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc(n > 0 ? (size_t)n : 1);
    *size = (size_t)n;
    int ok = *data && fread(*data, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    return ok;
}

/* A failure must come with a one-line, non-empty message naming the input. */
static void check_msg(const pq_ctx *ctx, const char *name) {
    const char *m = pq_ctx_error(ctx);
    CHECK_MSG(m[0] != 0, "empty message");
    CHECK_MSG(!strchr(m, '\n'), "multi-line message: %s", m);
    CHECK_MSG(strstr(m, name) != NULL, "message does not name %s: %s", name, m);
}

/* Parses bytes; expects failure with status want (or any non-OK status if want == PQ_OK). */
static void expect_fail(const uint8_t *data, size_t size, pq_status want, const char *needle, const char *what) {
    pq_ctx *ctx = pq_ctx_new();
    pq__gguf *g = NULL;
    pq_status st = pq__gguf_parse(ctx, "mem.gguf", data, size, &g);
    CHECK_MSG(st != PQ_OK, "%s: parsed", what);
    CHECK_MSG(g == NULL, "%s: output set on failure", what);
    if (want != PQ_OK) CHECK_MSG(st == want, "%s: status %d, wanted %d (%s)", what, st, want, pq_ctx_error(ctx));
    if (st != PQ_OK) check_msg(ctx, "mem.gguf");
    if (getenv("PQ_TEST_VERBOSE")) printf("%-28s -> %s\n", what, pq_ctx_error(ctx));
    if (needle)
        CHECK_MSG(strstr(pq_ctx_error(ctx), needle) != NULL, "%s: '%s' not in: %s", what, needle, pq_ctx_error(ctx));
    pq__gguf_free(g);
    pq_ctx_free(ctx);
}

/* ---------------------------------------------------------------- byte builder */

typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
} bbuf;

static void b_bytes(bbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b_le(bbuf *b, uint64_t v, size_t n) {
    uint8_t t[8];
    for (size_t i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    b_bytes(b, t, n);
}
static void b_u32(bbuf *b, uint32_t v) {
    b_le(b, v, 4);
}
static void b_u64(bbuf *b, uint64_t v) {
    b_le(b, v, 8);
}
static void b_str(bbuf *b, const char *s) {
    b_u64(b, strlen(s));
    b_bytes(b, s, strlen(s));
}
static void b_pad(bbuf *b, size_t a) {
    while (b->n % a)
        b_le(b, 0, 1);
}

/* A tiny hand-made file: general.architecture = "llama", optional general.alignment,
 * extra raw KV bytes, and one tensor "t" [dims] of type ttype at offset, then data. */
typedef struct mini {
    uint32_t version;
    uint64_t n_tensors, n_kv; /* 0: computed */
    int align_kv;             /* add general.alignment */
    uint32_t align_type;
    uint64_t align;
    const bbuf *extra_kv; /* raw KV entries */
    uint64_t n_extra;
    uint32_t n_dims;
    uint64_t dims[5];
    uint32_t ttype;
    uint64_t offset;
    size_t data_bytes;
} mini;

static mini mini_default(void) {
    mini m = {3, 0, 0, 0, PQ_GGUF_U32, 32, NULL, 0, 1, {8, 1, 1, 1, 1}, PQ_GGML_F32, 0, 32};
    return m;
}

static bbuf mini_build(const mini *m) {
    bbuf b = {0};
    b_bytes(&b, "GGUF", 4);
    b_u32(&b, m->version);
    b_u64(&b, m->n_tensors ? m->n_tensors : 1);
    b_u64(&b, m->n_kv ? m->n_kv : 1 + (uint64_t)(m->align_kv != 0) + m->n_extra);
    b_str(&b, "general.architecture");
    b_u32(&b, PQ_GGUF_STRING);
    b_str(&b, "llama");
    if (m->align_kv) {
        b_str(&b, "general.alignment");
        b_u32(&b, m->align_type);
        if (m->align_type == PQ_GGUF_STRING)
            b_str(&b, "32");
        else
            b_le(&b, m->align, m->align_type == PQ_GGUF_U64 ? 8 : 4);
    }
    if (m->extra_kv) b_bytes(&b, m->extra_kv->p, m->extra_kv->n);
    b_str(&b, "t");
    b_u32(&b, m->n_dims);
    for (uint32_t d = 0; d < m->n_dims && d < 5; d++)
        b_u64(&b, m->dims[d]);
    b_u32(&b, m->ttype);
    b_u64(&b, m->offset);
    size_t a = m->align && !(m->align & (m->align - 1)) && m->align <= 4096 ? (size_t)m->align : 32;
    b_pad(&b, a);
    for (size_t i = 0; i < m->data_bytes; i++)
        b_le(&b, i & 0xff, 1);
    return b;
}

static void mini_expect(const mini *m, pq_status want, const char *needle, const char *what) {
    bbuf b = mini_build(m);
    expect_fail(b.p, b.n, want, needle, what);
    free(b.p);
}

static void test_mini(void) {
    /* the default mini file is valid */
    mini m = mini_default();
    bbuf b = mini_build(&m);
    pq_ctx *ctx = pq_ctx_new();
    pq__gguf *g = NULL;
    CHECK_MSG(pq__gguf_parse(ctx, "mem.gguf", b.p, b.n, &g) == PQ_OK, "%s", pq_ctx_error(ctx));
    if (g) {
        CHECK(g->n_tensors == 1 && g->n_kv == 1 && g->tensors[0].nbytes == 32);
        CHECK(g->tensors[0].data == b.p + g->data_offset);
        CHECK(pq__gguf_str_eq(g, "general.architecture", "llama"));
    }
    pq__gguf_free(g);
    pq_ctx_free(ctx);
    free(b.p);

    m = mini_default();
    m.version = 1;
    mini_expect(&m, PQ_ERR_UNSUPPORTED, "v1", "version 1");
    m = mini_default();
    m.version = 4;
    mini_expect(&m, PQ_ERR_UNSUPPORTED, "version", "version 4");
    m = mini_default();
    m.version = 0x03000000u;
    mini_expect(&m, PQ_ERR_UNSUPPORTED, "big-endian", "big-endian");
    m = mini_default();
    m.version = 2;
    b = mini_build(&m);
    ctx = pq_ctx_new();
    CHECK_MSG(pq__gguf_parse(ctx, "mem.gguf", b.p, b.n, &g) == PQ_OK, "v2: %s", pq_ctx_error(ctx));
    pq__gguf_free(g);
    pq_ctx_free(ctx);
    b.p[0] = 'X';
    expect_fail(b.p, b.n, PQ_ERR_FORMAT, "magic", "bad magic");
    free(b.p);

    uint64_t huge[] = {1ull << 63, UINT64_MAX, 1ull << 32, 1000};
    for (int i = 0; i < 4; i++) {
        m = mini_default();
        m.n_tensors = huge[i];
        mini_expect(&m, PQ_ERR_FORMAT, "tensor_count", "huge tensor count");
        m = mini_default();
        m.n_kv = huge[i];
        mini_expect(&m, PQ_ERR_FORMAT, NULL, "huge kv count");
    }
    m = mini_default();
    m.n_dims = 0;
    mini_expect(&m, PQ_ERR_FORMAT, "n_dims", "n_dims 0");
    m = mini_default();
    m.n_dims = 5;
    mini_expect(&m, PQ_ERR_FORMAT, "n_dims", "n_dims 5");
    m = mini_default();
    m.dims[0] = 0;
    mini_expect(&m, PQ_ERR_FORMAT, "dims[0]", "zero dim");
    m = mini_default();
    m.n_dims = 3;
    m.dims[0] = 1ull << 32;
    m.dims[1] = 1ull << 32;
    m.dims[2] = 4;
    mini_expect(&m, PQ_ERR_FORMAT, "overflow", "element count overflow");
    m = mini_default();
    m.n_dims = 2;
    m.dims[1] = 1ull << 59;
    mini_expect(&m, PQ_ERR_FORMAT, "byte size", "byte size overflow");
    m = mini_default();
    m.ttype = 16;
    mini_expect(&m, PQ_ERR_UNSUPPORTED, "tensor 't': type: ggml type 16 (IQ2_XXS)", "IQ2_XXS tensor");
    m = mini_default();
    m.ttype = 9999;
    mini_expect(&m, PQ_ERR_UNSUPPORTED, "9999", "unknown ggml type");
    m = mini_default();
    m.ttype = PQ_GGML_Q8_0;
    m.dims[0] = 48;
    m.data_bytes = 256;
    mini_expect(&m, PQ_ERR_FORMAT, "block", "Q8_0 row not a multiple of 32");
    m = mini_default();
    m.offset = 4;
    mini_expect(&m, PQ_ERR_FORMAT, "alignment", "misaligned offset");
    m = mini_default();
    m.offset = 32;
    mini_expect(&m, PQ_ERR_FORMAT, "offset", "offset past the end");
    m = mini_default();
    m.offset = 1ull << 63;
    mini_expect(&m, PQ_ERR_FORMAT, "offset", "huge offset");
    m = mini_default();
    m.data_bytes = 31;
    mini_expect(&m, PQ_ERR_FORMAT, "offset", "data cut short");
    m = mini_default();
    m.align_kv = 1;
    m.align = 48;
    mini_expect(&m, PQ_ERR_FORMAT, "general.alignment", "alignment 48");
    m = mini_default();
    m.align_kv = 1;
    m.align = 0;
    mini_expect(&m, PQ_ERR_FORMAT, "general.alignment", "alignment 0");
    m = mini_default();
    m.align_kv = 1;
    m.align_type = PQ_GGUF_STRING;
    mini_expect(&m, PQ_ERR_FORMAT, "general.alignment", "alignment string");
    m = mini_default();
    m.align_kv = 1;
    m.align_type = PQ_GGUF_U64;
    m.align = 1ull << 40;
    mini_expect(&m, PQ_ERR_FORMAT, "general.alignment", "alignment 2^40");
    /* a valid non-default alignment moves the data section */
    m = mini_default();
    m.align_kv = 1;
    m.align = 64;
    b = mini_build(&m);
    ctx = pq_ctx_new();
    CHECK_MSG(pq__gguf_parse(ctx, "mem.gguf", b.p, b.n, &g) == PQ_OK, "align 64: %s", pq_ctx_error(ctx));
    if (g) CHECK(g->alignment == 64 && g->data_offset % 64 == 0);
    pq__gguf_free(g);
    pq_ctx_free(ctx);
    free(b.p);

    /* KV-level problems, appended as one extra raw entry */
    struct {
        const char *what, *needle;
        pq_status want;
    } kcases[] = {
        {"huge key length", "key", PQ_ERR_FORMAT},
        {"huge string value", "string length", PQ_ERR_FORMAT},
        {"unknown kv type", "type", PQ_ERR_FORMAT},
        {"unknown array type", "element type", PQ_ERR_FORMAT},
        {"huge array count", "array count", PQ_ERR_FORMAT},
        {"huge string array count", "array count", PQ_ERR_FORMAT},
        {"deep nesting", "nested", PQ_ERR_FORMAT},
        {"bool 2", "bool", PQ_ERR_FORMAT},
        {"duplicate key", "duplicate", PQ_ERR_FORMAT},
        {"NUL in key", "NUL", PQ_ERR_FORMAT},
        {"empty key", "empty", PQ_ERR_FORMAT},
        {"huge string in array", "string length", PQ_ERR_FORMAT},
    };
    for (int c = 0; c < (int)(sizeof kcases / sizeof kcases[0]); c++) {
        bbuf kv = {0};
        switch (c) {
        case 0: b_u64(&kv, 1ull << 62); break;
        case 1:
            b_str(&kv, "k");
            b_u32(&kv, PQ_GGUF_STRING);
            b_u64(&kv, UINT64_MAX - 3);
            break;
        case 2:
            b_str(&kv, "k");
            b_u32(&kv, 13);
            b_u32(&kv, 0);
            break;
        case 3:
            b_str(&kv, "k");
            b_u32(&kv, PQ_GGUF_ARRAY);
            b_u32(&kv, 77);
            b_u64(&kv, 1);
            break;
        case 4:
            b_str(&kv, "k");
            b_u32(&kv, PQ_GGUF_ARRAY);
            b_u32(&kv, PQ_GGUF_U64);
            b_u64(&kv, 1ull << 61);
            break;
        case 5:
            b_str(&kv, "k");
            b_u32(&kv, PQ_GGUF_ARRAY);
            b_u32(&kv, PQ_GGUF_STRING);
            b_u64(&kv, 1ull << 40);
            break;
        case 6:
            b_str(&kv, "k");
            b_u32(&kv, PQ_GGUF_ARRAY);
            for (int d = 0; d < 12; d++) {
                b_u32(&kv, PQ_GGUF_ARRAY);
                b_u64(&kv, 1);
            }
            b_u32(&kv, PQ_GGUF_U8);
            b_u64(&kv, 0);
            break;
        case 7:
            b_str(&kv, "k");
            b_u32(&kv, PQ_GGUF_BOOL);
            b_le(&kv, 2, 1);
            break;
        case 8:
            b_str(&kv, "general.architecture");
            b_u32(&kv, PQ_GGUF_U8);
            b_le(&kv, 1, 1);
            break;
        case 9:
            b_u64(&kv, 3);
            b_bytes(&kv, "a\0b", 3);
            b_u32(&kv, PQ_GGUF_U8);
            b_le(&kv, 1, 1);
            break;
        case 10:
            b_u64(&kv, 0);
            b_u32(&kv, PQ_GGUF_U8);
            b_le(&kv, 1, 1);
            break;
        case 11:
            b_str(&kv, "k");
            b_u32(&kv, PQ_GGUF_ARRAY);
            b_u32(&kv, PQ_GGUF_STRING);
            b_u64(&kv, 2);
            b_str(&kv, "ok");
            b_u64(&kv, 1ull << 50);
            break;
        }
        m = mini_default();
        m.extra_kv = &kv;
        m.n_extra = 1;
        mini_expect(&m, kcases[c].want, kcases[c].needle, kcases[c].what);
        free(kv.p);
    }

    /* nested arrays and every scalar type parse, and getters convert */
    bbuf kv = {0};
    b_str(&kv, "nest");
    b_u32(&kv, PQ_GGUF_ARRAY);
    b_u32(&kv, PQ_GGUF_ARRAY);
    b_u64(&kv, 2);
    b_u32(&kv, PQ_GGUF_U16);
    b_u64(&kv, 2);
    b_le(&kv, 7, 2);
    b_le(&kv, 9, 2);
    b_u32(&kv, PQ_GGUF_STRING);
    b_u64(&kv, 1);
    b_str(&kv, "x");
    b_str(&kv, "i8");
    b_u32(&kv, PQ_GGUF_I8);
    b_le(&kv, 0xfe, 1);
    b_str(&kv, "i16");
    b_u32(&kv, PQ_GGUF_I16);
    b_le(&kv, 0xfffd, 2);
    b_str(&kv, "u64big");
    b_u32(&kv, PQ_GGUF_U64);
    b_u64(&kv, UINT64_MAX);
    b_str(&kv, "i64");
    b_u32(&kv, PQ_GGUF_I64);
    b_u64(&kv, (uint64_t)-5);
    b_str(&kv, "f64");
    b_u32(&kv, PQ_GGUF_F64);
    double dv = 2.5;
    uint64_t dbits;
    memcpy(&dbits, &dv, 8);
    b_u64(&kv, dbits);
    b_str(&kv, "yes");
    b_u32(&kv, PQ_GGUF_BOOL);
    b_le(&kv, 1, 1);
    b_str(&kv, "bools");
    b_u32(&kv, PQ_GGUF_ARRAY);
    b_u32(&kv, PQ_GGUF_BOOL);
    b_u64(&kv, 3);
    b_le(&kv, 0x010001, 3);
    b_str(&kv, "i64s");
    b_u32(&kv, PQ_GGUF_ARRAY);
    b_u32(&kv, PQ_GGUF_I64);
    b_u64(&kv, 2);
    b_u64(&kv, 3);
    b_u64(&kv, 1ull << 40);
    b_str(&kv, "f64big");
    b_u32(&kv, PQ_GGUF_ARRAY);
    b_u32(&kv, PQ_GGUF_F64);
    b_u64(&kv, 1);
    dv = 1e300;
    memcpy(&dbits, &dv, 8);
    b_u64(&kv, dbits);
    m = mini_default();
    m.extra_kv = &kv;
    m.n_extra = 10;
    b = mini_build(&m);
    ctx = pq_ctx_new();
    CHECK_MSG(pq__gguf_parse(ctx, "mem.gguf", b.p, b.n, &g) == PQ_OK, "scalars: %s", pq_ctx_error(ctx));
    if (g) {
        const pq__gguf_kv *a;
        int64_t iv = 0;
        double fv = 0;
        int yes = 0;
        CHECK(pq__gguf_get_array(g, "nest", &a) == PQ_GGUF_FOUND && a->arr_type == PQ_GGUF_ARRAY && a->arr_n == 2);
        CHECK(pq__gguf_get_int(g, "i8", &iv) == PQ_GGUF_FOUND && iv == -2);
        CHECK(pq__gguf_get_int(g, "i16", &iv) == PQ_GGUF_FOUND && iv == -3);
        CHECK(pq__gguf_get_int(g, "u64big", &iv) == PQ_GGUF_BADTYPE);
        CHECK(pq__gguf_get_int(g, "i64", &iv) == PQ_GGUF_FOUND && iv == -5);
        CHECK(pq__gguf_get_float(g, "f64", &fv) == PQ_GGUF_FOUND && fv == 2.5);
        CHECK(pq__gguf_get_float(g, "i8", &fv) == PQ_GGUF_FOUND && fv == -2.0);
        CHECK(pq__gguf_get_int(g, "f64", &iv) == PQ_GGUF_BADTYPE);
        CHECK(pq__gguf_get_bool(g, "yes", &yes) == PQ_GGUF_FOUND && yes == 1);
        CHECK(pq__gguf_get_bool(g, "absent", &yes) == PQ_GGUF_MISSING);
        CHECK(pq__gguf_get_array(g, "bools", &a) == PQ_GGUF_FOUND && a->arr_n == 3);
        int32_t i32[2];
        float f32[2];
        CHECK(pq__gguf_get_array(g, "i64s", &a) == PQ_GGUF_FOUND);
        CHECK(pq__gguf_array_f32(a, f32) && f32[0] == 3.0f && f32[1] == (float)(1ull << 40));
        CHECK(!pq__gguf_array_i32(a, i32)); /* 2^40 does not fit */
        CHECK(pq__gguf_get_array(g, "nest", &a) == PQ_GGUF_FOUND && !pq__gguf_array_f32(a, f32));
        CHECK(pq__gguf_get_array(g, "f64big", &a) == PQ_GGUF_FOUND && !pq__gguf_array_f32(a, f32));
    }
    pq__gguf_free(g);
    pq_ctx_free(ctx);
    free(b.p);
    /* every truncation of this KV-rich file fails cleanly */
    m.n_tensors = 1;
    b = mini_build(&m);
    for (size_t n = 0; n < b.n - 32; n++)
        expect_fail(b.p, n, PQ_OK, NULL, "truncated mini");
    free(b.p);
    free(kv.p);

    /* duplicate tensor names */
    bbuf d = {0};
    b_bytes(&d, "GGUF", 4);
    b_u32(&d, 3);
    b_u64(&d, 2);
    b_u64(&d, 0);
    for (int i = 0; i < 2; i++) {
        b_str(&d, "t");
        b_u32(&d, 1);
        b_u64(&d, 8);
        b_u32(&d, PQ_GGML_F32);
        b_u64(&d, 32 * (uint64_t)i);
    }
    b_pad(&d, 32);
    for (int i = 0; i < 64; i++)
        b_le(&d, 0, 1);
    expect_fail(d.p, d.n, PQ_ERR_FORMAT, "duplicate", "duplicate tensor");
    free(d.p);
}

/* ---------------------------------------------------------------- synthetic model */

enum { M_DIM = 32, M_HEADS = 4, M_KV = 2, M_HID = 64, M_LAYERS = 2, M_VOCAB = 8 };

typedef struct model_opts {
    const char *arch;
    int tied, bias, extra_tensor, bad_layer, rope_dims, linear_rope, no_dim, no_tok, gpt2_tok;
    int scores_len;
} model_opts;

static float wbuf[M_VOCAB * M_DIM + 64]; /* shared weights: contents do not matter */

/* Writes a small llama-like model through the writer; returns its save status. */
static pq_status write_model(pq_ctx *ctx, const char *path, const model_opts *o) {
    pq__gguf_writer *w;
    pq_status st = pq__gguf_writer_new(ctx, &w);
    if (st != PQ_OK) return st;
    const char *arch = o->arch ? o->arch : "llama";
    char key[128];
    pq__gguf_writer_add_str(w, "general.architecture", arch);
    pq__gguf_writer_add_u32(w, "general.alignment", 32); /* ignored: the writer owns it */
#define ARCH_KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    if (!o->no_dim) pq__gguf_writer_add_u32(w, ARCH_KEY("embedding_length"), M_DIM);
    pq__gguf_writer_add_u32(w, ARCH_KEY("feed_forward_length"), M_HID);
    pq__gguf_writer_add_u32(w, ARCH_KEY("block_count"), M_LAYERS);
    pq__gguf_writer_add_u32(w, ARCH_KEY("attention.head_count"), M_HEADS);
    pq__gguf_writer_add_u32(w, ARCH_KEY("attention.head_count_kv"), M_KV);
    pq__gguf_writer_add_u32(w, ARCH_KEY("context_length"), 128);
    pq__gguf_writer_add_f32(w, ARCH_KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    pq__gguf_writer_add_f32(w, ARCH_KEY("rope.freq_base"), 500000.0f);
    pq__gguf_writer_add_u32(w, ARCH_KEY("rope.dimension_count"), o->rope_dims ? (uint32_t)o->rope_dims : 8);
    if (o->linear_rope) {
        pq__gguf_writer_add_str(w, ARCH_KEY("rope.scaling.type"), "linear");
        pq__gguf_writer_add_f32(w, ARCH_KEY("rope.scaling.factor"), 4.0f);
    }
#undef ARCH_KEY
    if (!o->no_tok) {
        static const char *const toks[M_VOCAB] = {
            "<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "\xe2\x96\x81\x61\x62", "<0x0A>"};
        const float scores[M_VOCAB] = {0, 0, 0, -1, -2, -3, -0.5f, 0};
        const int32_t types[M_VOCAB] = {2, 3, 3, 1, 1, 1, 1, 6};
        pq__gguf_writer_add_str(w, "tokenizer.ggml.model", o->gpt2_tok ? "gpt2" : "llama");
        pq__gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, M_VOCAB);
        pq__gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, o->scores_len ? o->scores_len : M_VOCAB);
        pq__gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, M_VOCAB);
        pq__gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
        pq__gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
        pq__gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
        pq__gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", UINT32_MAX);
        pq__gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", 1);
        if (o->gpt2_tok == 2) {
            /* no pair of this vocabulary merges into another of its pieces: an empty list */
            static const char *const merges[1] = {""};
            pq__gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 0);
            pq__gguf_writer_add_str(w, "tokenizer.ggml.pre", "gpt2");
        }
    }
    const int64_t s_embd[2] = {M_VOCAB, M_DIM}, s_norm[1] = {M_DIM};
    pq__gguf_writer_add_tensor(w, "token_embd.weight", PQ_DTYPE_F32, 2, s_embd, wbuf,
                               sizeof(float) * M_VOCAB * M_DIM);
    pq__gguf_writer_add_tensor(w, "output_norm.weight", PQ_DTYPE_F32, 1, s_norm, wbuf, sizeof(float) * M_DIM);
    if (!o->tied) pq__gguf_writer_add_tensor(w, "output.weight", PQ_DTYPE_F16, 2, s_embd, wbuf, 2 * M_VOCAB * M_DIM);
    if (o->extra_tensor) {
        const int64_t s_rf[1] = {4};
        pq__gguf_writer_add_tensor(w, "rope_freqs.weight", PQ_DTYPE_F32, 1, s_rf, wbuf, 16);
    }
    /* per layer: small fake matrices in every dtype (Q8_0/Q4_0 need rows of 32) */
    const int64_t s_q[2] = {M_HEADS * 8, M_DIM}, s_k[2] = {M_KV * 8, M_DIM};
    const int64_t s_up[2] = {M_HID, M_DIM}, s_down[2] = {M_DIM, M_HID};
    const int64_t s_qb[1] = {M_HEADS * 8}, s_kb[1] = {M_KV * 8};
    static uint8_t big[M_HID * M_DIM * 4];
    for (int l = 0; l < M_LAYERS + (o->bad_layer != 0); l++) {
        char n[64];
#define T(suffix, dt, nd, shape, bytes)                                                                              \
    do {                                                                                                             \
        snprintf(n, sizeof n, "blk.%d.%s", l, suffix);                                                               \
        pq__gguf_writer_add_tensor(w, n, dt, nd, shape, big, bytes);                                                 \
    } while (0)
        T("attn_norm.weight", PQ_DTYPE_F32, 1, s_norm, 4 * M_DIM);
        T("attn_q.weight", PQ_DTYPE_Q8_0, 2, s_q, (size_t)M_HEADS * 8 * M_DIM / 32 * 34);
        T("attn_k.weight", PQ_DTYPE_Q4_0, 2, s_k, (size_t)M_KV * 8 * M_DIM / 32 * 18);
        T("attn_v.weight", PQ_DTYPE_BF16, 2, s_k, (size_t)M_KV * 8 * M_DIM * 2);
        T("attn_output.weight", PQ_DTYPE_F16, 2, s_q, (size_t)M_HEADS * 8 * M_DIM * 2);
        if (o->bias) {
            T("attn_q.bias", PQ_DTYPE_F32, 1, s_qb, 4 * M_HEADS * 8);
            T("attn_k.bias", PQ_DTYPE_F32, 1, s_kb, 4 * M_KV * 8);
            T("attn_v.bias", PQ_DTYPE_F32, 1, s_kb, 4 * M_KV * 8);
        }
        T("ffn_norm.weight", PQ_DTYPE_F32, 1, s_norm, 4 * M_DIM);
        T("ffn_gate.weight", PQ_DTYPE_F32, 2, s_up, 4 * M_HID * M_DIM);
        T("ffn_up.weight", PQ_DTYPE_F32, 2, s_up, 4 * M_HID * M_DIM);
        T("ffn_down.weight", PQ_DTYPE_F32, 2, s_down, 4 * M_HID * M_DIM);
#undef T
    }
    st = pq__gguf_writer_save(ctx, w, path);
    pq__gguf_writer_free(w);
    return st;
}

/* Parses path and converts it into src (the buffer is returned for freeing). */
static pq_status model_to_source(pq_ctx *ctx, const char *path, uint8_t **bytes, pq__source *src) {
    size_t n;
    *bytes = NULL;
    pq__source_init(src);
    if (!read_file(path, bytes, &n)) return PQ_ERR_IO;
    pq__gguf *g;
    pq_status st = pq__gguf_parse(ctx, path, *bytes, n, &g);
    if (st != PQ_OK) return st;
    st = pq__gguf_to_source(ctx, g, src);
    pq__gguf_free(g);
    return st;
}

static void test_model_source(void) {
    char path[512];
    tmp_path(path, sizeof path, "model.gguf");
    pq_ctx *ctx = pq_ctx_new();
    model_opts o = {0};
    o.extra_tensor = 1;
    CHECK_MSG(write_model(ctx, path, &o) == PQ_OK, "%s", pq_ctx_error(ctx));
    uint8_t *bytes;
    pq__source src;
    pq_status st = model_to_source(ctx, path, &bytes, &src);
    CHECK_MSG(st == PQ_OK, "%s", pq_ctx_error(ctx));
    if (st == PQ_OK) {
        const pq__config *c = &src.cfg;
        CHECK(!strcmp(src.format, "gguf"));
        CHECK(c->arch == PQ_ARCH_LLAMA && c->rope_halfsplit == 0);
        CHECK(c->dim == M_DIM && c->hidden_dim == M_HID && c->n_layers == M_LAYERS);
        CHECK(c->n_heads == M_HEADS && c->n_kv_heads == M_KV && c->head_dim == 8);
        CHECK(c->vocab_size == M_VOCAB && c->max_seq_len == 128);
        CHECK_NEAR(c->norm_eps, 1e-6, 1e-12);
        CHECK_NEAR(c->rope_theta, 500000.0, 1e-3);
        CHECK(c->tied == 0 && c->qkv_bias == 0 && c->rope_scaling == 0);
        CHECK(c->bos_id == 1 && c->eos_id == 2);
        CHECK(src.n_tensors == 3 + 9 * M_LAYERS); /* rope_freqs skipped */
        const pq__tensor *t = pq__source_find(&src, "model.layers.1.self_attn.q_proj.weight");
        CHECK(t && t->dtype == PQ_DTYPE_Q8_0 && t->n_dims == 2 && t->shape[0] == 32 && t->shape[1] == M_DIM);
        t = pq__source_find(&src, "model.layers.0.self_attn.k_proj.weight");
        CHECK(t && t->dtype == PQ_DTYPE_Q4_0 && t->shape[0] == 16 && t->nbytes == 16 * 32 / 32 * 18);
        t = pq__source_find(&src, "model.layers.0.self_attn.v_proj.weight");
        CHECK(t && t->dtype == PQ_DTYPE_BF16);
        t = pq__source_find(&src, "model.layers.0.mlp.down_proj.weight");
        CHECK(t && t->shape[0] == M_DIM && t->shape[1] == M_HID);
        t = pq__source_find(&src, "model.embed_tokens.weight");
        CHECK(t && t->shape[0] == M_VOCAB && t->shape[1] == M_DIM && t->data >= (const void *)bytes);
        CHECK(pq__source_find(&src, "lm_head.weight") != NULL);
        CHECK(pq__source_find(&src, "model.norm.weight") != NULL);
        CHECK(src.tok != NULL);
        if (src.tok) {
            CHECK(pq_tokenizer_n_vocab(src.tok) == M_VOCAB);
            CHECK(pq_tokenizer_bos(src.tok) == 1 && pq_tokenizer_eos(src.tok) == 2);
        }
    }
    pq__source_free(&src);
    free(bytes);

    /* qwen2 with biases, tied output, linear RoPE scaling */
    memset(&o, 0, sizeof o);
    o.arch = "qwen2";
    o.bias = 1;
    o.tied = 1;
    o.linear_rope = 1;
    CHECK_MSG(write_model(ctx, path, &o) == PQ_OK, "%s", pq_ctx_error(ctx));
    st = model_to_source(ctx, path, &bytes, &src);
    CHECK_MSG(st == PQ_OK, "qwen2: %s", pq_ctx_error(ctx));
    if (st == PQ_OK) {
        CHECK(src.cfg.arch == PQ_ARCH_QWEN2 && src.cfg.rope_halfsplit == 1);
        CHECK(src.cfg.tied == 1 && src.cfg.qkv_bias == 1);
        CHECK(src.cfg.rope_scaling == 2 && src.cfg.rope_factor == 4.0f);
        CHECK(pq__source_find(&src, "model.layers.1.self_attn.v_proj.bias") != NULL);
        CHECK(pq__source_find(&src, "lm_head.weight") == NULL);
    }
    pq__source_free(&src);
    free(bytes);

    /* a gpt2 (byte-level BPE) vocabulary needs its merges */
    memset(&o, 0, sizeof o);
    o.gpt2_tok = 1;
    CHECK_MSG(write_model(ctx, path, &o) == PQ_OK, "%s", pq_ctx_error(ctx));
    st = model_to_source(ctx, path, &bytes, &src);
    CHECK_MSG(st == PQ_ERR_FORMAT && strstr(pq_ctx_error(ctx), "tokenizer.ggml.merges"), "gpt2 without merges: %s",
              pq_ctx_error(ctx));
    pq__source_free(&src);
    free(bytes);
    o.gpt2_tok = 2;
    CHECK_MSG(write_model(ctx, path, &o) == PQ_OK, "%s", pq_ctx_error(ctx));
    st = model_to_source(ctx, path, &bytes, &src);
    CHECK_MSG(st == PQ_OK && src.tok && pq__tokenizer_kind(src.tok) == PQ_TOK_BPE, "gpt2 tokenizer: %s",
              pq_ctx_error(ctx));
    pq__source_free(&src);
    free(bytes);

    /* no tokenizer at all: vocab from the embedding rows */
    memset(&o, 0, sizeof o);
    o.no_tok = 1;
    CHECK_MSG(write_model(ctx, path, &o) == PQ_OK, "%s", pq_ctx_error(ctx));
    st = model_to_source(ctx, path, &bytes, &src);
    CHECK_MSG(st == PQ_OK && src.tok == NULL && src.cfg.vocab_size == M_VOCAB && src.cfg.bos_id == -1,
              "no tokenizer: %s", pq_ctx_error(ctx));
    pq__source_free(&src);
    free(bytes);

    /* conversion failures: status, one-line message naming the file and the field */
    struct {
        model_opts o;
        pq_status want;
        const char *needle;
    } bad[] = {
        {{.arch = "gpt2"}, PQ_ERR_UNSUPPORTED, "'gpt2'"},
        {{.no_dim = 1}, PQ_ERR_FORMAT, "llama.embedding_length: missing"},
        {{.rope_dims = 4}, PQ_ERR_UNSUPPORTED, "rope.dimension_count"},
        {{.bad_layer = 1}, PQ_ERR_FORMAT, "blk.2"},
        {{.scores_len = 3}, PQ_ERR_FORMAT, "tokenizer.ggml.scores"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(write_model(ctx, path, &bad[i].o) == PQ_OK, "%s", pq_ctx_error(ctx));
        st = model_to_source(ctx, path, &bytes, &src);
        CHECK_MSG(st == bad[i].want, "case %zu: status %d: %s", i, st, pq_ctx_error(ctx));
        check_msg(ctx, path);
        if (getenv("PQ_TEST_VERBOSE")) printf("model case %zu -> %s\n", i, pq_ctx_error(ctx));
        CHECK_MSG(strstr(pq_ctx_error(ctx), bad[i].needle) != NULL, "case %zu: %s", i, pq_ctx_error(ctx));
        pq__source_free(&src);
        free(bytes);
    }

    /* through the public-ish loader (mmap and read paths) */
    memset(&o, 0, sizeof o);
    CHECK_MSG(write_model(ctx, path, &o) == PQ_OK, "%s", pq_ctx_error(ctx));
    for (int mm = 0; mm < 2; mm++) {
        pq__source_init(&src);
        st = pq__gguf_load(ctx, path, mm, &src);
        CHECK_MSG(st == PQ_OK && src.n_files == 1 && src.n_tensors == 3 + 9 * M_LAYERS, "load mmap=%d: %s", mm,
                  pq_ctx_error(ctx));
        pq__source_free(&src);
    }
    unlink(path);
    pq_ctx_free(ctx);
}

/* Every prefix shorter than the tensor data fails; random byte flips never crash. */
static void test_truncation_and_mutation(void) {
    char path[512];
    tmp_path(path, sizeof path, "trunc.gguf");
    pq_ctx *ctx = pq_ctx_new();
    model_opts o = {0};
    o.bias = 1;
    CHECK_MSG(write_model(ctx, path, &o) == PQ_OK, "%s", pq_ctx_error(ctx));
    uint8_t *bytes;
    size_t n;
    if (!read_file(path, &bytes, &n) || n < 64) {
        CHECK_MSG(0, "cannot read %s", path);
        free(bytes);
        pq_ctx_free(ctx);
        return;
    }
    pq__gguf *g;
    CHECK_MSG(pq__gguf_parse(ctx, "mem.gguf", bytes, n, &g) == PQ_OK, "%s", pq_ctx_error(ctx));
    size_t end = 0;
    for (int64_t i = 0; g && i < g->n_tensors; i++) {
        size_t e = g->data_offset + g->tensors[i].offset + g->tensors[i].nbytes;
        if (e > end) end = e;
    }
    pq__gguf_free(g);
    int bad = 0;
    for (size_t len = 0; len < end; len++) {
        pq__gguf *t = NULL;
        pq_ctx *c = pq_ctx_new();
        pq_status st = pq__gguf_parse(c, "mem.gguf", bytes, len, &t);
        if (st == PQ_OK || !pq_ctx_error(c)[0] || strchr(pq_ctx_error(c), '\n')) bad++;
        pq__gguf_free(t);
        pq_ctx_free(c);
    }
    CHECK_MSG(bad == 0, "%d of %zu truncations misbehaved", bad, end);

    /* header counts set to 2^63 and 2^64-1 */
    for (int field = 0; field < 2; field++)
        for (int v = 0; v < 2; v++) {
            uint8_t *cp = malloc(n);
            memcpy(cp, bytes, n);
            uint64_t x = v ? UINT64_MAX : 1ull << 63;
            for (int i = 0; i < 8; i++)
                cp[8 + 8 * field + i] = (uint8_t)(x >> (8 * i));
            expect_fail(cp, n, PQ_ERR_FORMAT, field ? "kv_count" : "tensor_count", "huge header count");
            free(cp);
        }

    /* deterministic random mutations through parse + conversion */
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    uint8_t *cp = malloc(n);
    for (int iter = 0; iter < 1500; iter++) {
        memcpy(cp, bytes, n);
        int flips = 1 + iter % 4;
        for (int f = 0; f < flips; f++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            /* mostly the metadata region, where the structure is */
            size_t at = (size_t)(rng >> 8) % (iter % 3 ? (end < 2048 ? end : 2048) : n);
            cp[at] = (uint8_t)(rng >> 56);
        }
        pq_ctx *c = pq_ctx_new();
        pq__gguf *t = NULL;
        if (pq__gguf_parse(c, "mem.gguf", cp, n, &t) == PQ_OK) {
            pq__source s;
            pq__source_init(&s);
            pq_status st = pq__gguf_to_source(c, t, &s);
            if (st != PQ_OK) CHECK_MSG(pq_ctx_error(c)[0] != 0, "mutation %d: no message", iter);
            pq__source_free(&s);
        } else {
            CHECK_MSG(pq_ctx_error(c)[0] != 0, "mutation %d: no message", iter);
        }
        pq__gguf_free(t);
        pq_ctx_free(c);
    }
    free(cp);
    free(bytes);
    unlink(path);
    pq_ctx_free(ctx);
}

/* write -> read -> copy through a second writer -> identical bytes; values survive. */
static void test_roundtrip(void) {
    char p1[512], p2[512];
    tmp_path(p1, sizeof p1, "rt1.gguf");
    tmp_path(p2, sizeof p2, "rt2.gguf");
    pq_ctx *ctx = pq_ctx_new();
    pq__gguf_writer *w;
    CHECK(pq__gguf_writer_new(ctx, &w) == PQ_OK);
    const char *strs[3] = {"zero", "", "two\xe2\x96\x81"};
    const size_t lens[3] = {4, 0, 6};
    const float fa[3] = {1.5f, -0.0f, 1e-30f};
    const int32_t ia[4] = {INT32_MIN, -1, 0, INT32_MAX};
    pq__gguf_writer_add_str(w, "s", "hello");
    pq__gguf_writer_add_u32(w, "u32", 4000000000u);
    pq__gguf_writer_add_i32(w, "i32", -7);
    pq__gguf_writer_add_u64(w, "u64", 1ull << 40);
    pq__gguf_writer_add_f32(w, "f32", 0.25f);
    pq__gguf_writer_add_bool(w, "b", 1);
    pq__gguf_writer_add_arr_str(w, "as", strs, lens, 3);
    pq__gguf_writer_add_arr_f32(w, "af", fa, 3);
    pq__gguf_writer_add_arr_i32(w, "ai", ia, 4);
    pq__gguf_writer_add_arr_i32(w, "empty", ia, 0);
    /* tensors of every dtype; odd sizes exercise the padding */
    uint8_t data[5][600];
    for (int t = 0; t < 5; t++)
        for (int i = 0; i < 600; i++)
            data[t][i] = (uint8_t)(i * 7 + t * 13);
    const int64_t s3[3] = {3, 1, 5}, s2[2] = {2, 64}, s1[1] = {7};
    pq__gguf_writer_add_tensor(w, "f32", PQ_DTYPE_F32, 3, s3, data[0], 60);
    pq__gguf_writer_add_tensor(w, "f16", PQ_DTYPE_F16, 1, s1, data[1], 14);
    pq__gguf_writer_add_tensor(w, "bf16", PQ_DTYPE_BF16, 2, s2, data[2], 256);
    pq__gguf_writer_add_tensor(w, "q8", PQ_DTYPE_Q8_0, 2, s2, data[3], 4 * 34);
    pq__gguf_writer_add_tensor(w, "q4", PQ_DTYPE_Q4_0, 2, s2, data[4], 4 * 18);
    CHECK_MSG(pq__gguf_writer_save(ctx, w, p1) == PQ_OK, "%s", pq_ctx_error(ctx));
    pq__gguf_writer_free(w);

    pq__gguf *g = NULL;
    CHECK_MSG(pq__gguf_open(ctx, p1, 1, &g) == PQ_OK, "%s", pq_ctx_error(ctx));
    if (!g) {
        pq_ctx_free(ctx);
        return;
    }
    CHECK(g->version == 3 && g->alignment == 32 && g->n_kv == 11 && g->n_tensors == 5);
    CHECK(!strcmp(g->kv[0].key, "general.alignment") && g->kv[0].type == PQ_GGUF_U32);
    const char *s;
    size_t sl;
    int64_t iv;
    double dv;
    int bv;
    CHECK(pq__gguf_get_str(g, "s", &s, &sl) == PQ_GGUF_FOUND && sl == 5 && !memcmp(s, "hello", 5));
    CHECK(pq__gguf_get_str(g, "u32", &s, &sl) == PQ_GGUF_BADTYPE);
    CHECK(pq__gguf_get_int(g, "u32", &iv) == PQ_GGUF_FOUND && iv == 4000000000LL);
    CHECK(pq__gguf_get_int(g, "i32", &iv) == PQ_GGUF_FOUND && iv == -7);
    CHECK(pq__gguf_get_int(g, "u64", &iv) == PQ_GGUF_FOUND && iv == 1LL << 40);
    CHECK(pq__gguf_get_float(g, "f32", &dv) == PQ_GGUF_FOUND && dv == 0.25);
    CHECK(pq__gguf_get_bool(g, "b", &bv) == PQ_GGUF_FOUND && bv == 1);
    CHECK(pq__gguf_get_int(g, "nope", &iv) == PQ_GGUF_MISSING);
    const pq__gguf_kv *a;
    CHECK(pq__gguf_get_array(g, "as", &a) == PQ_GGUF_FOUND && a->arr_type == PQ_GGUF_STRING && a->arr_n == 3);
    const char **ptrs;
    size_t *pl;
    if (pq__gguf_array_strings(ctx, g, a, &ptrs, &pl) == PQ_OK) {
        for (int i = 0; i < 3; i++)
            CHECK(pl[i] == lens[i] && !memcmp(ptrs[i], strs[i], lens[i]));
        free(ptrs);
        free(pl);
    }
    float fo[3];
    int32_t io[4];
    CHECK(pq__gguf_get_array(g, "af", &a) == PQ_GGUF_FOUND && pq__gguf_array_f32(a, fo) && !memcmp(fo, fa, 12));
    CHECK(pq__gguf_get_array(g, "ai", &a) == PQ_GGUF_FOUND && pq__gguf_array_i32(a, io) && !memcmp(io, ia, 16));
    CHECK(pq__gguf_get_array(g, "empty", &a) == PQ_GGUF_FOUND && a->arr_n == 0);
    CHECK(pq__gguf_get_array(g, "s", &a) == PQ_GGUF_BADTYPE);
    static const struct {
        const char *name;
        uint32_t type;
        int nd;
        int64_t ne0, ne1;
        size_t nbytes;
    } want[5] = {{"f32", PQ_GGML_F32, 3, 5, 1, 60},
                 {"f16", PQ_GGML_F16, 1, 7, 1, 14},
                 {"bf16", PQ_GGML_BF16, 2, 64, 2, 256},
                 {"q8", PQ_GGML_Q8_0, 2, 64, 2, 136},
                 {"q4", PQ_GGML_Q4_0, 2, 64, 2, 72}};
    for (int i = 0; i < 5; i++) {
        const pq__gguf_tensor *t = &g->tensors[i];
        CHECK_MSG(!strcmp(t->name, want[i].name) && t->ggml_type == want[i].type && t->n_dims == want[i].nd &&
                      t->ne[0] == want[i].ne0 && t->ne[1] == want[i].ne1 && t->nbytes == want[i].nbytes,
                  "tensor %d", i);
        CHECK(t->offset % 32 == 0);
        CHECK(!memcmp(t->data, data[i], t->nbytes));
        CHECK(pq__gguf_find_tensor(g, want[i].name) == i);
    }
    CHECK(g->tensors[0].ne[2] == 3);
    CHECK(pq__gguf_find_tensor(g, "missing") == -1);

    /* copy everything into a second writer: the file must come out identical */
    CHECK(pq__gguf_writer_new(ctx, &w) == PQ_OK);
    for (int64_t i = 0; i < g->n_kv; i++)
        pq__gguf_writer_add_kv(w, &g->kv[i]);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const pq__gguf_tensor *t = &g->tensors[i];
        int64_t shape[4];
        for (int d = 0; d < t->n_dims; d++)
            shape[d] = t->ne[t->n_dims - 1 - d];
        pq__gguf_writer_add_tensor(w, t->name, t->dtype, t->n_dims, shape, t->data, t->nbytes);
    }
    CHECK_MSG(pq__gguf_writer_save(ctx, w, p2) == PQ_OK, "%s", pq_ctx_error(ctx));
    pq__gguf_writer_free(w);
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 1;
    CHECK(read_file(p1, &b1, &n1) && read_file(p2, &b2, &n2));
    CHECK_MSG(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1), "copy differs: %zu vs %zu bytes", n1, n2);
    CHECK(n1 % 32 == 0);
    free(b1);
    free(b2);
    pq__gguf_free(g);
    unlink(p1);
    unlink(p2);
    pq_ctx_free(ctx);
}

static void test_writer_errors(void) {
    char path[512];
    tmp_path(path, sizeof path, "werr.gguf");
    pq_ctx *ctx = pq_ctx_new();
    float x[64] = {0};
    const int64_t s[2] = {2, 32}, s_bad[2] = {2, 48};
    for (int c = 0; c < 7; c++) {
        pq__gguf_writer *w;
        CHECK(pq__gguf_writer_new(ctx, &w) == PQ_OK);
        pq__gguf_writer_add_str(w, "a", "x");
        switch (c) {
        case 0: pq__gguf_writer_add_tensor(w, "t", PQ_DTYPE_F32, 2, s, x, 100); break;      /* wrong nbytes */
        case 1: pq__gguf_writer_add_u32(w, "a", 1); break;                                  /* duplicate key */
        case 2: pq__gguf_writer_add_tensor(w, "t", PQ_DTYPE_I32, 2, s, x, 256); break;      /* dtype */
        case 3: pq__gguf_writer_add_tensor(w, "t", PQ_DTYPE_Q8_0, 2, s_bad, x, 204); break; /* row of 48 */
        case 4:
            pq__gguf_writer_add_tensor(w, "t", PQ_DTYPE_F32, 2, s, x, 256);
            pq__gguf_writer_add_tensor(w, "t", PQ_DTYPE_F32, 2, s, x, 256); /* duplicate tensor */
            break;
        case 5: pq__gguf_writer_add_tensor(w, "t", PQ_DTYPE_F32, 0, s, x, 4); break; /* 0 dims */
        case 6:
            pq__gguf_writer_add_tensor(w, "a_name_that_is_much_too_long_for_llama_cpp_to_accept_as_a_tensor_0",
                                       PQ_DTYPE_F32, 2, s, x, 256);
            break;
        }
        pq_status st = pq__gguf_writer_save(ctx, w, path);
        CHECK_MSG(st != PQ_OK, "writer case %d saved", c);
        check_msg(ctx, path);
        if (getenv("PQ_TEST_VERBOSE")) printf("writer case %d -> %s\n", c, pq_ctx_error(ctx));
        CHECK_MSG(!pq__file_exists(path), "writer case %d left a file", c);
        pq__gguf_writer_free(w);
    }
    /* unwritable destination: I/O error, nothing left */
    pq__gguf_writer *w;
    CHECK(pq__gguf_writer_new(ctx, &w) == PQ_OK);
    CHECK(pq__gguf_writer_save(ctx, w, "/nonexistent-dir/x.gguf") == PQ_ERR_IO);
    check_msg(ctx, "/nonexistent-dir/x.gguf");
    pq__gguf_writer_free(w);
    pq__gguf_writer_free(NULL);
    pq__gguf_free(NULL);

    /* an empty file (no KVs, no tensors) is valid */
    CHECK(pq__gguf_writer_new(ctx, &w) == PQ_OK);
    CHECK(pq__gguf_writer_save(ctx, w, path) == PQ_OK);
    pq__gguf_writer_free(w);
    pq__gguf *g = NULL;
    CHECK_MSG(pq__gguf_open(ctx, path, 0, &g) == PQ_OK && g->n_tensors == 0 && g->n_kv == 1, "%s", pq_ctx_error(ctx));
    pq__gguf_free(g);
    unlink(path);
    CHECK(pq__gguf_open(ctx, path, 1, &g) == PQ_ERR_IO && g == NULL);
    pq_ctx_free(ctx);
}

static void test_names(void) {
    static const char *const pairs[][2] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
        {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
        {"blk.12.attn_q.weight", "model.layers.12.self_attn.q_proj.weight"},
        {"blk.3.attn_k.bias", "model.layers.3.self_attn.k_proj.bias"},
        {"blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"},
        {"blk.79.attn_output.weight", "model.layers.79.self_attn.o_proj.weight"},
        {"blk.1.ffn_norm.weight", "model.layers.1.post_attention_layernorm.weight"},
        {"blk.1.ffn_gate.weight", "model.layers.1.mlp.gate_proj.weight"},
        {"blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"},
        {"blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj.weight"},
    };
    char buf[128];
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        CHECK_MSG(pq__gguf_name_to_hf(pairs[i][0], buf, sizeof buf) && !strcmp(buf, pairs[i][1]), "%s", pairs[i][0]);
        CHECK_MSG(pq__gguf_name_from_hf(pairs[i][1], buf, sizeof buf) && !strcmp(buf, pairs[i][0]), "%s",
                  pairs[i][1]);
    }
    static const char *const unknown[] = {"rope_freqs.weight",
                                          "blk.x.attn_q.weight",
                                          "blk.01.attn_q.weight",
                                          "blk..attn_q.weight",
                                          "blk.1.attn_qkv.weight",
                                          "blk.-1.attn_q.weight",
                                          "blk.1234567890.attn_q.weight",
                                          "",
                                          "blk.1",
                                          "model.layers.1.mlp"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK_MSG(!pq__gguf_name_to_hf(unknown[i], buf, sizeof buf), "%s", unknown[i]);
        CHECK_MSG(!pq__gguf_name_from_hf(unknown[i], buf, sizeof buf), "%s", unknown[i]);
    }
    CHECK(!pq__gguf_name_to_hf("blk.1.ffn_up.weight", buf, 10)); /* buffer too small */
    CHECK(!pq__gguf_name_from_hf("lm_head.weight", buf, 5));
}

static void test_stories(void) {
    const char *dir = test_data_dir();
    if (!dir) {
        printf("test_gguf: PQ_DATA unset, skipping stories260K.gguf\n");
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", dir);
    pq_ctx *ctx = pq_ctx_new();
    pq__source src;
    pq__source_init(&src);
    pq_status st = pq__gguf_load(ctx, path, 1, &src);
    CHECK_MSG(st == PQ_OK, "%s", pq_ctx_error(ctx));
    if (st == PQ_OK) {
        const pq__config *c = &src.cfg;
        CHECK(c->arch == PQ_ARCH_LLAMA && c->rope_halfsplit == 0);
        CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5);
        CHECK(c->n_heads == 8 && c->n_kv_heads == 4 && c->head_dim == 8);
        CHECK(c->vocab_size == 512 && c->max_seq_len == 2048);
        CHECK(c->tied == 0 && c->qkv_bias == 0 && c->bos_id == 1 && c->eos_id == 2);
        CHECK_NEAR(c->norm_eps, 1e-5, 1e-9);
        CHECK_NEAR(c->rope_theta, 10000.0, 1e-3);
        CHECK(src.n_tensors == 48);
        CHECK(src.tok != NULL);
        if (src.tok) CHECK(pq_tokenizer_n_vocab(src.tok) == 512);
        const pq__tensor *t = pq__source_find(&src, "model.layers.4.mlp.gate_proj.weight");
        CHECK(t && t->dtype == PQ_DTYPE_F32 && t->shape[0] == 172 && t->shape[1] == 64 && t->nbytes == 172 * 64 * 4);
        t = pq__source_find(&src, "model.layers.0.self_attn.k_proj.weight");
        CHECK(t && t->shape[0] == 32 && t->shape[1] == 64);
        t = pq__source_find(&src, "lm_head.weight");
        CHECK(t && t->shape[0] == 512 && t->shape[1] == 64);
    }
    pq__source_free(&src);
    pq_ctx_free(ctx);
}

/* ---------------------------------------------------------------- allocation failures */

/* Every allocation of the GGUF reader, its conversion to a source, pq_model_load on a GGUF
 * file and the writer fails in turn (tests/failalloc.h). */
typedef struct gguf_case {
    const char *path;
    int what;             /* 0: parse + to_source, 1: pq_model_load, 2: write */
    const uint8_t *bytes; /* the file at path (what 0), the expected output (what 2) */
    size_t n;
    int64_t n_tensors; /* expected of the source */
} gguf_case;

static pq_status gguf_body(pq_ctx *ctx, void *user) {
    const gguf_case *c = user;
    if (c->what == 2) {
        const pq_status st = write_model(ctx, c->path, &(model_opts){.extra_tensor = 1});
        failalloc_stop();
        uint8_t *got = NULL;
        size_t n = 0;
        if (st == PQ_OK)
            CHECK_MSG(read_file(c->path, &got, &n) && n == c->n && !memcmp(got, c->bytes, n),
                      "writer output differs");
        free(got);
        return st;
    }
    if (c->what == 1) {
        pq_model *m = NULL;
        const pq_load_params lp = pq_load_params_default();
        const pq_status st = pq_model_load(ctx, c->path, &lp, &m);
        CHECK((st == PQ_OK) == (m != NULL));
        pq_model_free(m);
        return st;
    }
    pq__source src;
    pq__source_init(&src);
    pq__gguf *g = NULL;
    pq_status st = pq__gguf_parse(ctx, c->path, c->bytes, c->n, &g);
    if (st == PQ_OK) st = pq__gguf_to_source(ctx, g, &src);
    if (st == PQ_OK) CHECK(src.n_tensors == c->n_tensors && src.tok != NULL);
    pq__gguf_free(g);
    pq__source_free(&src);
    return st;
}

static void test_alloc_failures(void) {
    char path[512], out[512];
    tmp_path(path, sizeof path, "fa.gguf");
    tmp_path(out, sizeof out, "fa_out.gguf");
    pq_ctx *ctx = pq_ctx_new();
    CHECK_MSG(write_model(ctx, path, &(model_opts){.extra_tensor = 1}) == PQ_OK, "%s", pq_ctx_error(ctx));
    pq_ctx_free(ctx);
    gguf_case c = {.path = path};
    uint8_t *bytes = NULL;
    CHECK(read_file(path, &bytes, &c.n));
    c.bytes = bytes;
    pq__source src;
    uint8_t *b2 = NULL;
    ctx = pq_ctx_new();
    CHECK(model_to_source(ctx, path, &b2, &src) == PQ_OK);
    c.n_tensors = src.n_tensors;
    pq__source_free(&src);
    free(b2);
    pq_ctx_free(ctx);
    failalloc_run("gguf parse + to_source", gguf_body, &c, 1, 20000);
    c.what = 1;
    failalloc_run("pq_model_load (gguf)", gguf_body, &c, 1, 20000);
    c = (gguf_case){.path = out, .what = 2, .bytes = bytes, .n = c.n};
    failalloc_run("gguf writer", gguf_body, &c, 1, 20000);
    free(bytes);
    unlink(path);
    unlink(out);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pq_test_gguf.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    for (size_t i = 0; i < sizeof wbuf / sizeof wbuf[0]; i++)
        wbuf[i] = (float)i * 0.01f;
    test_names();
    test_mini();
    test_roundtrip();
    test_writer_errors();
    test_model_source();
    test_truncation_and_mutation();
    test_stories();
    test_alloc_failures();
    rmdir(tmpdir);
    return test_end("test_gguf");
}
