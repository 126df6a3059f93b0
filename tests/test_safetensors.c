/* safetensors tests: writer -> reader round trips (every dtype, scalars, empty tensors,
 * metadata, files with and without mmap), sharded output, writer argument checks, and
 * malformed input (every truncation, huge header length, bad JSON, bad offsets, dtypes,
 * shapes, duplicate names): each must fail with a one-line message naming the file. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/dtype.h"
#include "io/safetensors.h"
#include "failalloc.h"
#include "test.h"

static char tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static void clear_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
}

/* A failure must come with a one-line, non-empty message naming the input. */
static void check_msg(const pq_ctx *ctx, const char *name) {
    const char *m = pq_ctx_error(ctx);
    CHECK_MSG(m[0] != 0, "empty message");
    CHECK_MSG(!strchr(m, '\n'), "multi-line message: %s", m);
    CHECK_MSG(strstr(m, name) != NULL, "message does not name %s: %s", name, m);
}

/* Parses a heap copy of exactly size bytes (so ASan sees any over-read); expects failure
 * with status want (any non-OK if want == PQ_OK) and a message containing needle. */
static void expect_fail(const uint8_t *data, size_t size, pq_status want, const char *needle, const char *what) {
    pq_ctx *ctx = pq_ctx_new();
    pq__source src;
    pq__source_init(&src);
    uint8_t *copy = malloc(size ? size : 1);
    if (size) memcpy(copy, data, size);
    pq_status st = pq__safetensors_parse(ctx, "bad.safetensors", copy, size, &src);
    CHECK_MSG(st != PQ_OK, "%s: accepted", what);
    if (want != PQ_OK) CHECK_MSG(st == want, "%s: status %d, want %d (%s)", what, st, want, pq_ctx_error(ctx));
    if (st != PQ_OK) {
        check_msg(ctx, "bad.safetensors");
        if (needle)
            CHECK_MSG(strstr(pq_ctx_error(ctx), needle) != NULL, "%s: '%s' lacks '%s'", what, pq_ctx_error(ctx),
                      needle);
    }
    CHECK_MSG(src.n_tensors == 0, "%s: %lld tensors left after failure", what, (long long)src.n_tensors);
    pq__source_free(&src);
    free(copy);
    pq_ctx_free(ctx);
}

/* A raw file: u64 length of header, header, then data_len zero bytes. */
static uint8_t *raw_file(const char *header, uint64_t hlen_field, size_t data_len, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_len;
    uint8_t *b = calloc(1, *size);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen_field >> (8 * i));
    memcpy(b + 8, header, h);
    return b;
}

static void expect_header_fail(const char *header, size_t data_len, pq_status want, const char *needle) {
    size_t size;
    uint8_t *b = raw_file(header, strlen(header), data_len, &size);
    expect_fail(b, size, want, needle, header);
    free(b);
}

static uint8_t pattern(size_t i, int salt) {
    return (uint8_t)(i * 131u + (unsigned)salt * 17u + 7u);
}

/* ---------------------------------------------------------------- round trips */

static const pq_dtype all_dtypes[] = {PQ_DTYPE_F32, PQ_DTYPE_F16, PQ_DTYPE_BF16, PQ_DTYPE_F64, PQ_DTYPE_I8,
                                      PQ_DTYPE_U8,  PQ_DTYPE_I16, PQ_DTYPE_I32,  PQ_DTYPE_I64, PQ_DTYPE_BOOL};
#define N_DT ((int)(sizeof all_dtypes / sizeof all_dtypes[0]))

typedef struct entries {
    pq__st_entry e[32];
    char names[32][32];
    uint8_t *bufs[32];
    int n;
} entries;

static void add_entry(entries *s, const char *name, pq_dtype dt, int nd, int64_t d0, int64_t d1, int64_t d2) {
    pq__st_entry *e = &s->e[s->n];
    snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
    e->name = s->names[s->n];
    e->dtype = dt;
    e->n_dims = nd;
    int64_t d[3] = {d0, d1, d2};
    int64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        e->shape[i] = d[i];
        numel *= d[i];
    }
    e->nbytes = pq__dtype_nbytes(dt, numel);
    s->bufs[s->n] = malloc(e->nbytes ? e->nbytes : 1);
    for (size_t i = 0; i < e->nbytes; i++)
        s->bufs[s->n][i] = pattern(i, s->n);
    e->data = e->nbytes ? s->bufs[s->n] : NULL;
    s->n++;
}

static void entries_free(entries *s) {
    for (int i = 0; i < s->n; i++)
        free(s->bufs[i]);
    s->n = 0;
}

static void make_all(entries *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < N_DT; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", pq__st_dtype_name(all_dtypes[i]));
        add_entry(s, name, all_dtypes[i], 2, 3, 5, 0); /* odd sizes: later tensors start unaligned */
    }
    add_entry(s, "scalar", PQ_DTYPE_F32, 0, 0, 0, 0);
    add_entry(s, "empty", PQ_DTYPE_F16, 2, 0, 7, 0);
    add_entry(s, "empty3", PQ_DTYPE_I64, 3, 4, 0, 2);
    add_entry(s, "cube", PQ_DTYPE_BF16, 3, 2, 3, 4);
    add_entry(s, "quote\"back\\slash\x01", PQ_DTYPE_U8, 1, 5, 0, 0);
}

/* src must hold exactly the entries of s, in order, with identical bytes. */
static void check_same(const pq__source *src, const entries *s, int64_t first) {
    CHECK(src->n_tensors - first == s->n);
    for (int i = 0; i < s->n && first + i < src->n_tensors; i++) {
        const pq__tensor *t = &src->tensors[first + i];
        const pq__st_entry *e = &s->e[i];
        CHECK_MSG(!strcmp(t->name, e->name), "%s vs %s", t->name, e->name);
        CHECK(t->dtype == e->dtype);
        CHECK(t->n_dims == e->n_dims);
        for (int d = 0; d < e->n_dims; d++)
            CHECK(t->shape[d] == e->shape[d]);
        CHECK(t->nbytes == e->nbytes);
        CHECK(t->owned == NULL);
        if (t->nbytes == e->nbytes && e->nbytes) CHECK_MSG(!memcmp(t->data, e->data, e->nbytes), "%s bytes", e->name);
    }
}

static void test_round_trip_memory(void) {
    entries s;
    make_all(&s);
    const char *meta[] = {"k1", "v1", "quote\"d", "line\nbreak", NULL};
    pq_ctx *ctx = pq_ctx_new();
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(pq__safetensors_serialize(ctx, s.e, s.n, meta, &img, &len) == PQ_OK);

    /* header: length field, padded to 8, JSON with our metadata plus format=pt */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | img[i];
    CHECK(hlen % 8 == 0);
    CHECK(8 + hlen <= len);
    char *h = malloc(hlen + 1);
    memcpy(h, img + 8, hlen);
    h[hlen] = 0;
    cJSON *root = cJSON_Parse(h);
    CHECK(root != NULL);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    CHECK(cJSON_IsObject(m));
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(m, "format");
    CHECK(cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "pt"));
    const cJSON *k1 = cJSON_GetObjectItemCaseSensitive(m, "k1");
    CHECK(cJSON_IsString(k1) && !strcmp(k1->valuestring, "v1"));
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(m, "quote\"d");
    CHECK(cJSON_IsString(q) && !strcmp(q->valuestring, "line\nbreak"));
    const cJSON *t0 = cJSON_GetObjectItemCaseSensitive(root, "t.F32");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t0, "data_offsets");
    CHECK(cJSON_IsArray(off) && cJSON_GetArraySize(off) == 2 && off->child->valuedouble == 0 &&
          off->child->next->valuedouble == 60);
    cJSON_Delete(root);
    free(h);

    pq__source src;
    pq__source_init(&src);
    CHECK(pq__safetensors_parse(ctx, "mem", img, len, &src) == PQ_OK);
    check_same(&src, &s, 0);
    /* appending the same file again: every name is a duplicate, src is left as it was */
    CHECK(pq__safetensors_parse(ctx, "again.safetensors", img, len, &src) == PQ_ERR_FORMAT);
    check_msg(ctx, "again.safetensors");
    CHECK(strstr(pq_ctx_error(ctx), "duplicate") != NULL);
    CHECK(src.n_tensors == s.n);
    pq__source_free(&src);

    /* a caller-given format wins over the default */
    const char *meta2[] = {"format", "np", NULL};
    free(img);
    CHECK(pq__safetensors_serialize(ctx, s.e, 1, meta2, &img, &len) == PQ_OK);
    CHECK(memmem(img, len, "\"format\":\"np\"", 13) != NULL);
    CHECK(memmem(img, len, "\"pt\"", 4) == NULL);

    /* no tensors at all */
    free(img);
    CHECK(pq__safetensors_serialize(ctx, NULL, 0, NULL, &img, &len) == PQ_OK);
    pq__source_init(&src);
    CHECK(pq__safetensors_parse(ctx, "none", img, len, &src) == PQ_OK);
    CHECK(src.n_tensors == 0);
    pq__source_free(&src);
    free(img);
    entries_free(&s);
    pq_ctx_free(ctx);
}

static void test_round_trip_file(void) {
    entries s;
    make_all(&s);
    pq_ctx *ctx = pq_ctx_new();
    char path[512];
    tmp_path(path, sizeof path, "rt.safetensors");
    CHECK(pq__safetensors_write(ctx, path, s.e, s.n, NULL) == PQ_OK);
    CHECK(count_files(tmpdir) == 1); /* no temp file left */
    for (int use_mmap = 0; use_mmap <= 1; use_mmap++) {
        pq__source src;
        pq__source_init(&src);
        CHECK_MSG(pq__safetensors_load_file(ctx, path, use_mmap, &src) == PQ_OK, "%s", pq_ctx_error(ctx));
        CHECK(src.n_files == 1);
        check_same(&src, &s, 0);
        pq__source_free(&src);
    }
    /* file and memory images are the same bytes */
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(pq__safetensors_serialize(ctx, s.e, s.n, NULL, &img, &len) == PQ_OK);
    FILE *f = fopen(path, "rb");
    uint8_t *fb = malloc(len + 1);
    size_t got = f ? fread(fb, 1, len + 1, f) : 0;
    if (f) fclose(f);
    CHECK(got == len && !memcmp(fb, img, len));
    free(fb);
    free(img);

    /* overwriting an existing file replaces it */
    CHECK(pq__safetensors_write(ctx, path, s.e, 2, NULL) == PQ_OK);
    pq__source src;
    pq__source_init(&src);
    CHECK(pq__safetensors_load_file(ctx, path, 1, &src) == PQ_OK);
    CHECK(src.n_tensors == 2);
    pq__source_free(&src);

    /* a failed load leaves no file open in the source */
    char bad[512];
    tmp_path(bad, sizeof bad, "bad.safetensors");
    f = fopen(bad, "wb");
    fwrite("\x04\0\0\0\0\0\0\0[1] ", 1, 12, f);
    fclose(f);
    pq__source_init(&src);
    CHECK(pq__safetensors_load_file(ctx, bad, 1, &src) == PQ_ERR_FORMAT);
    check_msg(ctx, bad);
    CHECK(src.n_files == 0 && src.n_tensors == 0);
    char missing[512];
    tmp_path(missing, sizeof missing, "missing.safetensors");
    CHECK(pq__safetensors_load_file(ctx, missing, 1, &src) == PQ_ERR_IO);
    check_msg(ctx, missing);
    CHECK(src.n_files == 0);
    pq__source_free(&src);
    clear_dir(tmpdir);
    entries_free(&s);
    pq_ctx_free(ctx);
}

static void test_writer_errors(void) {
    pq_ctx *ctx = pq_ctx_new();
    char path[512];
    tmp_path(path, sizeof path, "w.safetensors");
    entries s;
    memset(&s, 0, sizeof s);
    add_entry(&s, "a", PQ_DTYPE_F32, 2, 2, 2, 0);
    add_entry(&s, "b", PQ_DTYPE_F32, 1, 3, 0, 0);

    pq__st_entry e[2] = {s.e[0], s.e[1]};
    e[1].dtype = PQ_DTYPE_Q8_0;
    CHECK(pq__safetensors_write(ctx, path, e, 2, NULL) == PQ_ERR_UNSUPPORTED);
    check_msg(ctx, "'b'");
    e[1] = s.e[1];
    e[1].nbytes = 8;
    CHECK(pq__safetensors_write(ctx, path, e, 2, NULL) == PQ_ERR_INVALID);
    check_msg(ctx, "nbytes");
    e[1] = s.e[1];
    e[1].name = "a";
    CHECK(pq__safetensors_write(ctx, path, e, 2, NULL) == PQ_ERR_INVALID);
    check_msg(ctx, "'a'");
    e[1] = s.e[1];
    e[1].shape[0] = -3;
    CHECK(pq__safetensors_write(ctx, path, e, 2, NULL) == PQ_ERR_INVALID);
    e[1] = s.e[1];
    e[1].n_dims = 5;
    CHECK(pq__safetensors_write(ctx, path, e, 2, NULL) == PQ_ERR_INVALID);
    e[1] = s.e[1];
    e[1].name = "__metadata__";
    CHECK(pq__safetensors_write(ctx, path, e, 2, NULL) == PQ_ERR_INVALID);
    const char *bad_meta[] = {"k", NULL};
    CHECK(pq__safetensors_write(ctx, path, s.e, 2, bad_meta) == PQ_ERR_INVALID);
    const char *dup_meta[] = {"k", "1", "k", "2", NULL};
    CHECK(pq__safetensors_write(ctx, path, s.e, 2, dup_meta) == PQ_ERR_INVALID);
    CHECK(count_files(tmpdir) == 0); /* nothing written by any failure */

    char nodir[512];
    tmp_path(nodir, sizeof nodir, "no/such/dir/x.safetensors");
    CHECK(pq__safetensors_write(ctx, nodir, s.e, 2, NULL) == PQ_ERR_IO);
    check_msg(ctx, "x.safetensors");
    CHECK(count_files(tmpdir) == 0);
    entries_free(&s);
    pq_ctx_free(ctx);
}

/* A streamed tensor: byte j is (j * 31) % 251; fills must come in order, piece after piece;
 * fail_at > 0 fails the fill of the piece at that offset. */
typedef struct pattern_src {
    size_t next, fail_at;
    int calls;
} pattern_src;

static pq_status pattern_fill(pq_ctx *ctx, void *user, size_t off, void *dst, size_t n) {
    pattern_src *p = user;
    CHECK(off == p->next);
    p->next = off + n;
    p->calls++;
    if (p->fail_at && off == p->fail_at) return pq__fail(ctx, PQ_ERR_INVALID, "pattern: no bytes at %zu", off);
    for (size_t j = 0; j < n; j++)
        ((uint8_t *)dst)[j] = (uint8_t)((off + j) * 31 % 251);
    return PQ_OK;
}

/* Streamed tensors are written piece by piece, double-buffered on two threads: the same bytes
 * on one and on two threads (and as serialize gives them), pieces filled in order, and a fill
 * that fails leaves no file. */
static void test_streamed(void) {
    const size_t chunk = 4096, nbytes = 5 * chunk + 40; /* f32: 10250 elements */
    char path[512];
    tmp_path(path, sizeof path, "stream.safetensors");
    uint8_t *img = NULL, *fb = malloc(nbytes + 1024);
    size_t len = 0;
    for (int threads = 1; threads <= 2; threads++) {
        pq_ctx *ctx = pq_ctx_new();
        pq_ctx_set_threads(ctx, threads);
        pattern_src src = {0, 0, 0};
        pq__st_entry e = {"s", PQ_DTYPE_F32, 1, {(int64_t)(nbytes / 4)}, NULL, nbytes, pattern_fill, &src, chunk};
        CHECK_MSG(pq__safetensors_write(ctx, path, &e, 1, NULL) == PQ_OK, "%s", pq_ctx_error(ctx));
        CHECK(src.calls == 6 && src.next == nbytes);
        if (!img) {
            src.next = 0;
            CHECK(pq__safetensors_serialize(ctx, &e, 1, NULL, &img, &len) == PQ_OK);
        }
        FILE *f = fopen(path, "rb");
        const size_t got = f ? fread(fb, 1, nbytes + 1024, f) : 0;
        if (f) fclose(f);
        CHECK_MSG(img && got == len && !memcmp(fb, img, len), "threads %d: streamed bytes differ", threads);
        unlink(path);

        pattern_src bad = {0, 3 * chunk, 0};
        e.user = &bad;
        CHECK(pq__safetensors_write(ctx, path, &e, 1, NULL) == PQ_ERR_INVALID);
        check_msg(ctx, "no bytes at");
        CHECK(bad.calls == 4);
        CHECK(count_files(tmpdir) == 0);
        pq_ctx_free(ctx);
    }
    free(img);
    free(fb);
}

/* Files larger than the direct writer's 8 MiB pieces (pq__atomic_open_large), in pieces that
 * are not a multiple of any block size, come out byte for byte as serialized, in the test's
 * folder (direct writes where the file system takes them) and on tmpfs (which may refuse them:
 * ordinary writes); a failing fill after whole pieces went to the disk leaves no file. */
static void test_streamed_large(void) {
    const size_t chunk = ((size_t)1 << 20) + 12, nbytes = ((size_t)17 << 20) + 3 * 4096 + 44;
    const char *dirs[2] = {tmpdir, "/dev/shm"};
    uint8_t *img = NULL, *fb = malloc(nbytes + 4096);
    size_t len = 0;
    for (int d = 0; d < 2; d++) {
        char path[512];
        snprintf(path, sizeof path, "%s/pq_test_st_large_%d.safetensors", dirs[d], (int)getpid());
        if (d == 1 && access(dirs[d], W_OK) != 0) continue;
        for (int threads = 1; threads <= 2; threads++) {
            pq_ctx *ctx = pq_ctx_new();
            pq_ctx_set_threads(ctx, threads);
            pattern_src src = {0, 0, 0};
            pq__st_entry e = {"s", PQ_DTYPE_F32, 1, {(int64_t)(nbytes / 4)}, NULL, nbytes, pattern_fill, &src, chunk};
            if (!img) {
                CHECK(pq__safetensors_serialize(ctx, &e, 1, NULL, &img, &len) == PQ_OK);
                src.next = 0;
            }
            CHECK_MSG(pq__safetensors_write(ctx, path, &e, 1, NULL) == PQ_OK, "%s", pq_ctx_error(ctx));
            FILE *f = fopen(path, "rb");
            const size_t got = f ? fread(fb, 1, nbytes + 4096, f) : 0;
            if (f) fclose(f);
            CHECK_MSG(img && got == len && !memcmp(fb, img, len), "%s, threads %d: bytes differ", dirs[d], threads);
            unlink(path);

            pattern_src bad = {0, 12 * chunk, 0};
            e.user = &bad;
            CHECK(pq__safetensors_write(ctx, path, &e, 1, NULL) == PQ_ERR_INVALID);
            check_msg(ctx, "no bytes at");
            CHECK(access(path, F_OK) != 0);
            char tmp[600];
            snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
            CHECK_MSG(access(tmp, F_OK) != 0, "%s left behind", tmp);
            pq_ctx_free(ctx);
        }
    }
    free(img);
    free(fb);
}

/* The direct writer when the file system refuses a direct write (EINVAL, here forced by a
 * staging buffer one byte off its alignment): the same bytes as ordinary writes, whole pieces
 * and tail. */
static void test_direct_fallback(void) {
    char path[512];
    tmp_path(path, sizeof path, "fallback.bin");
    const size_t n = ((size_t)8 << 20) * 2 + 1234;
    uint8_t *data = malloc(n), *back = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 7 % 253);
    pq_ctx *ctx = pq_ctx_new();
    pq__atomic a;
    CHECK(pq__atomic_open_large(ctx, path, &a) == PQ_OK);
    uint8_t *aligned = a.buf, *off = a.direct ? malloc(((size_t)8 << 20) + 1) : NULL;
    if (off) a.buf = off + 1; /* misaligned: the kernel refuses O_DIRECT */
    CHECK(pq__atomic_write(ctx, &a, data, n) == PQ_OK);
    CHECK_MSG(!off || a.direct == 2, "direct mode %d after a refused write", a.direct);
    if (off) {
        memcpy(aligned, a.buf, a.fill);
        a.buf = aligned;
        free(off);
    }
    CHECK_MSG(pq__atomic_commit(ctx, &a) == PQ_OK, "%s", pq_ctx_error(ctx));
    FILE *f = fopen(path, "rb");
    const size_t got = f ? fread(back, 1, n + 1, f) : 0;
    if (f) fclose(f);
    CHECK(got == n && !memcmp(back, data, n));
    unlink(path);
    pq_ctx_free(ctx);
    free(data);
    free(back);
}

/* Loads every shard named by dir's index into src, returning the parsed index. */
static cJSON *load_index(pq_ctx *ctx, pq__source *src) {
    char path[512];
    tmp_path(path, sizeof path, "model.safetensors.index.json");
    char *text = NULL;
    if (pq__read_text(ctx, path, 1 << 20, &text, NULL) != PQ_OK) return NULL;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    const char *loaded[16];
    int n_loaded = 0;
    for (const cJSON *e = wm ? wm->child : NULL; e; e = e->next) {
        int k = 0;
        while (k < n_loaded && strcmp(loaded[k], e->valuestring))
            k++;
        if (k < n_loaded || n_loaded == 16) continue;
        loaded[n_loaded++] = e->valuestring;
        char p[512];
        tmp_path(p, sizeof p, e->valuestring);
        CHECK_MSG(pq__safetensors_load_file(ctx, p, 1, src) == PQ_OK, "%s", pq_ctx_error(ctx));
    }
    return root;
}

static void test_sharded(void) {
    pq_ctx *ctx = pq_ctx_new();
    entries s;
    memset(&s, 0, sizeof s);
    add_entry(&s, "w0", PQ_DTYPE_F32, 2, 10, 25, 0);  /* 1000 bytes */
    add_entry(&s, "w1", PQ_DTYPE_F32, 2, 10, 25, 0);  /* 1000 */
    add_entry(&s, "w2", PQ_DTYPE_F16, 1, 500, 0, 0);  /* 1000 */
    add_entry(&s, "big", PQ_DTYPE_U8, 1, 4000, 0, 0); /* larger than a shard: alone */
    add_entry(&s, "w4", PQ_DTYPE_F32, 1, 250, 0, 0);  /* 1000 */
    add_entry(&s, "e5", PQ_DTYPE_F32, 1, 0, 0, 0);    /* empty */
    const size_t total = 8000;

    /* fits: one file */
    CHECK(pq__safetensors_write_sharded(ctx, tmpdir, s.e, s.n, 0, NULL) == PQ_OK);
    CHECK(count_files(tmpdir) == 1);
    char p[512];
    tmp_path(p, sizeof p, "model.safetensors");
    pq__source src;
    pq__source_init(&src);
    CHECK(pq__safetensors_load_file(ctx, p, 1, &src) == PQ_OK);
    check_same(&src, &s, 0);
    pq__source_free(&src);
    clear_dir(tmpdir);
    CHECK(pq__safetensors_write_sharded(ctx, tmpdir, s.e, s.n, total, NULL) == PQ_OK);
    CHECK(count_files(tmpdir) == 1);
    clear_dir(tmpdir);

    /* 2500-byte shards: [w0 w1] [w2] [big] [w4 e5] */
    CHECK_MSG(pq__safetensors_write_sharded(ctx, tmpdir, s.e, s.n, 2500, NULL) == PQ_OK, "%s", pq_ctx_error(ctx));
    CHECK(count_files(tmpdir) == 5);
    tmp_path(p, sizeof p, "model-00004-of-00004.safetensors");
    CHECK(pq__file_exists(p));
    tmp_path(p, sizeof p, "model.safetensors");
    CHECK(!pq__file_exists(p));
    pq__source_init(&src);
    cJSON *root = load_index(ctx, &src);
    CHECK(root != NULL);
    const cJSON *ts =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "metadata"), "total_size");
    CHECK(cJSON_IsNumber(ts) && ts->valuedouble == (double)total);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    CHECK(cJSON_GetArraySize(wm) == s.n);
    const char *want[] = {"model-00001-of-00004.safetensors", "model-00001-of-00004.safetensors",
                          "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors",
                          "model-00004-of-00004.safetensors", "model-00004-of-00004.safetensors"};
    for (int i = 0; i < s.n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(wm, s.e[i].name);
        CHECK_MSG(cJSON_IsString(v) && !strcmp(v->valuestring, want[i]), "%s", s.e[i].name);
    }
    cJSON_Delete(root);
    check_same(&src, &s, 0); /* shards loaded in order give the tensors in order */
    pq__source_free(&src);
    clear_dir(tmpdir);

    /* duplicate names across shards are caught before anything is written */
    snprintf(s.names[4], sizeof s.names[4], "w0");
    CHECK(pq__safetensors_write_sharded(ctx, tmpdir, s.e, s.n, 2500, NULL) == PQ_ERR_INVALID);
    CHECK(count_files(tmpdir) == 0);
    entries_free(&s);
    pq_ctx_free(ctx);
}

/* ---------------------------------------------------------------- malformed input */

static void test_truncation(void) {
    entries s;
    memset(&s, 0, sizeof s);
    add_entry(&s, "a", PQ_DTYPE_F32, 2, 2, 3, 0);
    add_entry(&s, "b", PQ_DTYPE_BF16, 1, 3, 0, 0);
    pq_ctx *ctx = pq_ctx_new();
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(pq__safetensors_serialize(ctx, s.e, s.n, NULL, &img, &len) == PQ_OK);
    for (size_t k = 0; k < len; k++) {
        char what[64];
        snprintf(what, sizeof what, "prefix of %zu bytes", k);
        expect_fail(img, k, PQ_ERR_FORMAT, NULL, what);
    }
    /* trailing bytes after the data are tolerated (holes are not an error either) */
    uint8_t *longer = calloc(1, len + 5);
    memcpy(longer, img, len);
    pq__source src;
    pq__source_init(&src);
    CHECK(pq__safetensors_parse(ctx, "longer", longer, len + 5, &src) == PQ_OK);
    CHECK(src.n_tensors == 2);
    pq__source_free(&src);
    free(longer);
    free(img);
    entries_free(&s);
    pq_ctx_free(ctx);
}

static void test_malformed(void) {
    size_t size;
    uint8_t *b;
    /* header length fields */
    b = raw_file("{}      ", (uint64_t)1 << 63, 0, &size);
    expect_fail(b, size, PQ_ERR_FORMAT, "header", "length 2^63");
    free(b);
    b = raw_file("{}      ", UINT64_MAX, 0, &size);
    expect_fail(b, size, PQ_ERR_FORMAT, "header", "length 2^64-1");
    free(b);
    b = raw_file("{}      ", 9, 0, &size);
    expect_fail(b, size, PQ_ERR_FORMAT, "header", "length one past the file");
    free(b);
    /* a 100 MB + 1 header inside a file that is large enough */
    size_t big = (size_t)PQ_ST_MAX_HEADER + 1;
    uint8_t *huge = calloc(1, 8 + big);
    if (huge) {
        for (int i = 0; i < 8; i++)
            huge[i] = (uint8_t)((uint64_t)big >> (8 * i));
        huge[8] = '{';
        memset(huge + 9, ' ', big - 2);
        huge[8 + big - 1] = '}';
        expect_fail(huge, 8 + big, PQ_ERR_FORMAT, "limit", "header over 100 MB");
        free(huge);
    }

    /* the header itself */
    expect_header_fail("", 0, PQ_ERR_FORMAT, "JSON");
    expect_header_fail("{abc    ", 0, PQ_ERR_FORMAT, "JSON");
    expect_header_fail("not json", 0, PQ_ERR_FORMAT, "JSON");
    expect_header_fail("[1,2,3] ", 0, PQ_ERR_FORMAT, "object");
    expect_header_fail("\"str\"   ", 0, PQ_ERR_FORMAT, "object");
    expect_header_fail("{}  x   ", 0, PQ_ERR_FORMAT, "after the JSON");
    {
        size_t sz;
        uint8_t *nul = raw_file("{}  x   ", 8, 0, &sz);
        nul[8 + 3] = 0; /* embedded NUL after the object */
        expect_fail(nul, sz, PQ_ERR_FORMAT, "after the JSON", "embedded NUL");
        free(nul);
    }
    expect_header_fail("{\"__metadata__\":[1]}", 0, PQ_ERR_FORMAT, "__metadata__");
    expect_header_fail("{\"__metadata__\":{\"a\":1}}", 0, PQ_ERR_FORMAT, "__metadata__");
    expect_header_fail("{\"a\":5}", 0, PQ_ERR_FORMAT, "tensor 'a'");

    /* dtype */
    const char *t_ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_header_fail(t_ok, 7, PQ_ERR_FORMAT, "data_offsets");
    expect_header_fail("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, PQ_ERR_UNSUPPORTED,
                       "F8_E4M3");
    expect_header_fail("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 2, PQ_ERR_UNSUPPORTED,
                       "'Q4'");
    expect_header_fail("{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, PQ_ERR_UNSUPPORTED,
                       "dtype");
    expect_header_fail("{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, PQ_ERR_FORMAT, "dtype");
    expect_header_fail("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, PQ_ERR_FORMAT, "dtype: missing");

    /* shape */
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, PQ_ERR_FORMAT,
                       "shape");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 10, PQ_ERR_FORMAT,
                       "shape");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, PQ_ERR_FORMAT,
                       "shape");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, PQ_ERR_FORMAT, "shape");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
                       PQ_ERR_UNSUPPORTED, "shape");
    expect_header_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],"
                       "\"data_offsets\":[0,8]}}",
                       8, PQ_ERR_FORMAT, "overflow");
    expect_header_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, PQ_ERR_FORMAT,
                       "shape");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, PQ_ERR_FORMAT, "shape: missing");

    /* offsets */
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, PQ_ERR_FORMAT,
                       "data_offsets");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12, PQ_ERR_FORMAT,
                       "needs 8");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, PQ_ERR_FORMAT, "begin");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, PQ_ERR_FORMAT,
                       "data_offsets");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 9, PQ_ERR_FORMAT,
                       "data_offsets");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, PQ_ERR_FORMAT,
                       "data_offsets");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 8, PQ_ERR_FORMAT,
                       "data_offsets");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,"
                       "18446744073709551616]}}",
                       8, PQ_ERR_FORMAT, "data_offsets");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, PQ_ERR_FORMAT, "data_offsets: missing");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                       12, PQ_ERR_FORMAT, "overlaps");
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                       16, PQ_ERR_FORMAT, "overlaps");
    expect_header_fail("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                       8, PQ_ERR_FORMAT, "overlaps");

    /* duplicate names */
    expect_header_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                       16, PQ_ERR_FORMAT, "duplicate");

    /* accepted edge cases: empty tensors anywhere, scalars, padding, holes */
    const char *fine[] = {
        ("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]}}        "),
        "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]}}\n \t",
        "{\"__metadata__\":{},\"z\":{\"dtype\":\"BOOL\",\"shape\":[3,0,1e9],\"data_offsets\":[16,16]}}",
    };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        size_t sz;
        uint8_t *f = raw_file(fine[i], strlen(fine[i]), 16, &sz);
        pq_ctx *ctx = pq_ctx_new();
        pq__source src;
        pq__source_init(&src);
        CHECK_MSG(pq__safetensors_parse(ctx, "fine", f, sz, &src) == PQ_OK, "%s: %s", fine[i], pq_ctx_error(ctx));
        pq__source_free(&src);
        pq_ctx_free(ctx);
        free(f);
    }
}

/* Many tensors: the duplicate and overlap checks must stay fast. */
static void test_many(void) {
    enum { N = 20000 };
    pq__st_entry *e = calloc(N, sizeof *e);
    char(*names)[16] = calloc(N, 16);
    float one = 1.0f;
    for (int i = 0; i < N; i++) {
        snprintf(names[i], 16, "t%d", i);
        e[i] = (pq__st_entry){names[i], PQ_DTYPE_F32, 1, {1}, &one, 4, NULL, NULL, 0};
    }
    pq_ctx *ctx = pq_ctx_new();
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(pq__safetensors_serialize(ctx, e, N, NULL, &img, &len) == PQ_OK);
    pq__source src;
    pq__source_init(&src);
    CHECK(pq__safetensors_parse(ctx, "many", img, len, &src) == PQ_OK);
    CHECK(src.n_tensors == N);
    pq__name_index idx;
    CHECK(pq__name_index_build(ctx, &src, N, &idx) == PQ_OK);
    CHECK(pq__name_index_find(&idx, &src, "t12345") == 12345);
    CHECK(pq__name_index_find(&idx, &src, "t20000") == -1);
    pq__name_index_free(&idx);
    pq__name_index_free(NULL);
    pq__source_free(&src);
    free(img);
    free(e);
    free(names);
    pq_ctx_free(ctx);
}

/* Every free of an io/ type accepts NULL and a freed value; the JSON builder escapes and
 * grows past its stack buffer (pq__sb_printf over 256 bytes). */
static void test_free_null_and_builder(void) {
    pq__name_index_free(NULL);
    pq__sb_free(NULL);
    pq__source_free(NULL);
    pq__source src;
    pq__source_init(&src);
    pq__source_free(&src);
    pq__source_free(&src);
    CHECK(src.n_tensors == 0 && src.tensors == NULL && src.tok == NULL);
    pq__name_index idx = {0};
    pq__name_index_free(&idx);
    CHECK(pq__name_index_find(&idx, &src, "x") == -1);

    pq__strbuf b;
    pq__sb_init(&b, NULL, "test document");
    pq__sb_json_string(&b, "a\"b\\\n");
    CHECK(b.st == PQ_OK && b.b.data && !strcmp(b.b.data, "\"a\\\"b\\\\\\u000a\""));
    char longs[600];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = 0;
    pq__sb_printf(&b, "[%s]", longs);
    CHECK(b.st == PQ_OK && b.b.len == 14 + 601 && b.b.data[b.b.len] == 0 && b.b.data[b.b.len - 1] == ']');
    pq__sb_free(&b);
    pq__sb_free(&b);
    CHECK(b.b.data == NULL && b.b.len == 0);
}

/* ---------------------------------------------------------------- allocation failures */

/* Every allocation of the header parser (from memory and from a file, with and without
 * mmap), the serializer and the sharded writer fails in turn (tests/failalloc.h). */
typedef struct st_case {
    int what; /* 0: parse, 1: load_file (mmap), 2: load_file (read), 3: serialize, 4: write_sharded */
    const entries *s;
    const uint8_t *img; /* the serialized image of s */
    size_t len;
    const char *path; /* a file holding img (1, 2), an output folder (4) */
} st_case;

static pq_status st_body(pq_ctx *ctx, void *user) {
    const st_case *c = user;
    const char *meta[] = {"k1", "v1", NULL};
    pq_status st;
    if (c->what == 3) {
        uint8_t *img = NULL;
        size_t len = 0;
        st = pq__safetensors_serialize(ctx, c->s->e, c->s->n, meta, &img, &len);
        failalloc_stop();
        if (st == PQ_OK) CHECK(len == c->len && !memcmp(img, c->img, len));
        free(img);
        return st;
    }
    if (c->what == 4) {
        st = pq__safetensors_write_sharded(ctx, c->path, c->s->e, c->s->n, 200, meta);
        failalloc_stop();
        if (st == PQ_OK) CHECK(count_files(c->path) >= 3);
        clear_dir(c->path);
        return st;
    }
    pq__source src;
    pq__source_init(&src);
    st = c->what == 0 ? pq__safetensors_parse(ctx, "mem.safetensors", c->img, c->len, &src)
                      : pq__safetensors_load_file(ctx, c->path, c->what == 1, &src);
    failalloc_stop();
    if (st == PQ_OK) check_same(&src, c->s, 0);
    pq__source_free(&src);
    return st;
}

static void test_alloc_failures(void) {
    entries s;
    make_all(&s);
    const char *meta[] = {"k1", "v1", NULL};
    pq_ctx *ctx = pq_ctx_new();
    uint8_t *img = NULL;
    size_t len = 0;
    CHECK(pq__safetensors_serialize(ctx, s.e, s.n, meta, &img, &len) == PQ_OK);
    pq_ctx_free(ctx);
    char path[512], dir[512];
    tmp_path(path, sizeof path, "fa.safetensors");
    tmp_path(dir, sizeof dir, "fa_shards");
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(img, 1, len, f) == len);
    if (f) fclose(f);
    static const char *const names[] = {"safetensors parse", "safetensors load (mmap)", "safetensors load (read)",
                                        "safetensors serialize", "safetensors write_sharded"};
    for (int w = 0; w < 5; w++) {
        st_case c = {.what = w, .s = &s, .img = img, .len = len, .path = w == 4 ? dir : path};
        if (w == 4) mkdir(dir, 0755);
        failalloc_run(names[w], st_body, &c, 1, 20000);
    }
    rmdir(dir);
    unlink(path);
    free(img);
    entries_free(&s);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pq_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip_memory();
    test_round_trip_file();
    test_writer_errors();
    test_streamed();
    test_streamed_large();
    test_direct_fallback();
    test_sharded();
    test_truncation();
    test_malformed();
    test_many();
    test_free_null_and_builder();
    test_alloc_failures();
    clear_dir(tmpdir);
    rmdir(tmpdir);
    return test_end("test_safetensors");
}
