/* Tokenizer tests: llama2.c oracles (ORACLE.md §1c, §3, §4), decoding, SentencePiece model
 * round trip, the O(n log n) encoder against a literal O(n^2) llama2.c-style reference, malformed
 * files, the fuzz seed corpus, and tokenizer.json: a LlamaConverter-style file built from the
 * llama2.c vocabularies must encode like SentencePiece, a small trained byte-level vocabulary is
 * checked against a hand-written GPT-2 pre-tokenizer + reference BPE (PCRE2),
 * plus split behaviours, NFC, added tokens, tokenizer_config.json and malformed files.
 * Data from PQ_DATA (shared/data), corpus from PQ_SRC. */
#include "io/gguf.h"
#include "synth.h"
#include "test.h"
#include "failalloc.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static pq_ctx *ctx;
static char tmpdir[256];

/* ---------------------------------------------------------------- helpers */

static char *data_path(const char *rel) {
    static char buf[4][1024];
    static int k;
    const char *d = test_data_dir();
    if (!d) return NULL;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", d, rel);
    return buf[k];
}

static char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

static pq_tokenizer *load(const char *path) {
    pq_tokenizer *t = NULL;
    pq_status st = pq_tokenizer_load(ctx, path, &t);
    CHECK_MSG(st == PQ_OK, "%s: %s", path, pq_ctx_error(ctx));
    return t;
}

/* Parses "1 2 3" into ids; returns the count. */
static int64_t parse_ids(const char *s, int32_t *ids, int64_t cap) {
    int64_t n = 0;
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s || n == cap) break;
        ids[n++] = (int32_t)v;
        s = end;
    }
    return n;
}

static void check_encode(const pq_tokenizer *t, const char *text, const char *expect) {
    int32_t want[512];
    const int64_t nw = parse_ids(expect, want, 512);
    int32_t *ids = NULL;
    int64_t n = 0;
    pq_status st = pq_tokenize(ctx, t, text, strlen(text), 1, &ids, &n);
    CHECK_MSG(st == PQ_OK, "%s", pq_ctx_error(ctx));
    int same = n == nw;
    for (int64_t i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    CHECK_MSG(same, "encode \"%.40s\": got %lld ids, want %lld", text, (long long)n, (long long)nw);
    if (!same) {
        for (int64_t i = 0; i < n; i++)
            fprintf(stderr, "%d ", ids[i]);
        fputc('\n', stderr);
    }
    free(ids);
}

/* ---------------------------------------------------------------- reference encoder */

/* Literal transcription of llama2.c encode(): sorted vocabulary + bsearch, and an O(n^2)
 * merge loop that rescans every pair. Byte fallback / <unk> follow the library's rule. */
typedef struct ref_entry {
    const char *s;
    size_t len;
    int32_t id;
} ref_entry;

static int ref_cmp(const void *a, const void *b) {
    const ref_entry *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, m);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

typedef struct ref_vocab {
    ref_entry *e;
    int64_t n;
    char *buf;
} ref_vocab;

static ref_vocab ref_build(const pq_tokenizer *t) {
    ref_vocab v;
    v.n = pq_tokenizer_n_vocab(t);
    v.e = malloc((size_t)v.n * sizeof *v.e);
    for (int64_t i = 0; i < v.n; i++) {
        v.e[i].s = pq__tokenizer_piece(t, (int32_t)i, &v.e[i].len);
        v.e[i].id = (int32_t)i;
    }
    qsort(v.e, (size_t)v.n, sizeof *v.e, ref_cmp);
    v.buf = malloc(2 * (size_t)pq__tokenizer_max_piece_len(t) + 8);
    return v;
}

static void ref_free(ref_vocab *v) {
    free(v->e);
    free(v->buf);
}

/* lowest id among equal pieces: the first of the run in (bytes, id) order */
static int32_t ref_lookup(const ref_vocab *v, const char *s, size_t len) {
    int64_t lo = 0, hi = v->n;
    ref_entry key = {s, len, -1};
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (ref_cmp(&v->e[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < v->n && v->e[lo].len == len && memcmp(v->e[lo].s, s, len) == 0) return v->e[lo].id;
    return -1;
}

static void ref_unit(const pq_tokenizer *t, const ref_vocab *v, const char *s, size_t n, int32_t *ids, int64_t *cnt) {
    int32_t id = ref_lookup(v, s, n);
    if (id >= 0) {
        ids[(*cnt)++] = id;
        return;
    }
    int all = 1;
    for (size_t i = 0; i < n; i++)
        all &= pq__tokenizer_byte_id(t, (uint8_t)s[i]) >= 0;
    if (all) {
        for (size_t i = 0; i < n; i++)
            ids[(*cnt)++] = pq__tokenizer_byte_id(t, (uint8_t)s[i]);
    } else {
        ids[(*cnt)++] = pq__tokenizer_unk(t);
    }
}

static int64_t ref_encode(const pq_tokenizer *t, const ref_vocab *v, const char *text, size_t len, int32_t *ids) {
    int64_t n = 0;
    if (pq_tokenizer_bos(t) >= 0) ids[n++] = pq_tokenizer_bos(t);
    const int64_t first = n; /* BOS takes no part in merges */
    if (len && pq__tokenizer_add_dummy_prefix(t)) ref_unit(t, v, " ", 1, ids, &n);
    size_t str_len = 0;
    char unit[8];
    for (size_t i = 0; i < len; i++) {
        if (((uint8_t)text[i] & 0xC0) != 0x80) str_len = 0;
        unit[str_len++] = text[i];
        if (i + 1 < len && ((uint8_t)text[i + 1] & 0xC0) == 0x80 && str_len < 4) continue;
        ref_unit(t, v, unit, str_len, ids, &n);
        str_len = 0;
    }
    for (;;) {
        float best_score = -1e10f;
        int32_t best_id = -1;
        int64_t best_idx = -1;
        for (int64_t i = first; i + 1 < n; i++) {
            size_t la, lb;
            const char *a = pq__tokenizer_piece(t, ids[i], &la), *b = pq__tokenizer_piece(t, ids[i + 1], &lb);
            memcpy(v->buf, a, la);
            memcpy(v->buf + la, b, lb);
            int32_t id = ref_lookup(v, v->buf, la + lb);
            if (id != -1 && pq__tokenizer_score(t, id) > best_score) {
                best_score = pq__tokenizer_score(t, id);
                best_id = id;
                best_idx = i;
            }
        }
        if (best_idx == -1) break;
        ids[best_idx] = best_id;
        memmove(ids + best_idx + 1, ids + best_idx + 2, (size_t)(n - best_idx - 2) * sizeof *ids);
        n--;
    }
    return n;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Random text from a mix of ASCII words, multi-byte UTF-8, whitespace runs and raw bytes. */
static size_t random_text(char *buf, size_t cap, const char *const *atoms, int n_atoms) {
    size_t n = 0, target = rnd() % cap;
    while (n < target) {
        const uint32_t r = rnd() % 100;
        if (r < 5) {
            buf[n++] = (char)(rnd() & 0xff); /* any byte, including NUL and stray continuation bytes */
        } else {
            const char *a = atoms[rnd() % (uint32_t)n_atoms];
            size_t l = strlen(a);
            if (n + l > cap) break;
            memcpy(buf + n, a, l);
            n += l;
        }
    }
    return n;
}

static int compare_fast_ref(const pq_tokenizer *t, const ref_vocab *v, const char *text, size_t len) {
    int32_t *ids = NULL;
    int64_t n = 0;
    if (pq_tokenize(ctx, t, text, len, 1, &ids, &n) != PQ_OK) {
        fprintf(stderr, "tokenize failed: %s\n", pq_ctx_error(ctx));
        return 0;
    }
    int32_t *ref = malloc((len + 4) * sizeof *ref);
    const int64_t nr = ref_encode(t, v, text, len, ref);
    int same = nr == n;
    for (int64_t i = 0; same && i < n; i++)
        same = ids[i] == ref[i];
    if (!same) {
        fprintf(stderr, "fast/ref mismatch on %zu bytes: %lld vs %lld ids\n", len, (long long)n, (long long)nr);
        for (int64_t i = 0; i < n && i < nr; i++)
            if (ids[i] != ref[i]) {
                fprintf(stderr, "  first difference at %lld: %d vs %d\n", (long long)i, ids[i], ref[i]);
                break;
            }
    }
    free(ids);
    free(ref);
    return same;
}

static void fuzz_against_ref(const pq_tokenizer *t, const char *label, int rounds, size_t maxlen) {
    static const char *const atoms[] = {"the",  " ",        "  ",    "\n",   "\t", "a",    "e",
                                        "Once", " upon",    " time", "Lily", ",",  ".",    "'s",
                                        "é",    "ö",        "ü",     "→",    "😀",  "日本", "poivrée",
                                        "<s>",  "<0x41>",   "ing",   "er",   "q",  "zz",   "\xe2\x96\x81",
                                        "x",    "\xf0\x9f", "\xc3"};
    ref_vocab v = ref_build(t);
    char *buf = malloc(maxlen + 16);
    int bad = 0;
    for (int r = 0; r < rounds && bad < 3; r++) {
        size_t n = random_text(buf, maxlen, atoms, (int)(sizeof atoms / sizeof *atoms));
        bad += !compare_fast_ref(t, &v, buf, n);
    }
    CHECK_MSG(bad == 0, "%s: %d random texts differ from the reference", label, bad);
    free(buf);
    ref_free(&v);
}

static void real_text_against_ref(const pq_tokenizer *t, const char *label, const char *rel, int chunks,
                                  size_t chunk) {
    const char *p = data_path(rel);
    size_t n;
    uint8_t *text = p ? read_file(p, &n) : NULL;
    CHECK_MSG(text != NULL, "cannot read %s", rel);
    if (!text) return;
    ref_vocab v = ref_build(t);
    int bad = 0;
    for (int c = 0; c < chunks && n > chunk; c++) {
        size_t off = (size_t)(((uint64_t)rnd() * 65536u + rnd()) % (n - chunk));
        bad += !compare_fast_ref(t, &v, (const char *)text + off, chunk);
    }
    CHECK_MSG(bad == 0, "%s on %s: %d chunks differ from the reference", label, rel, bad);
    ref_free(&v);
    free(text);
}

/* With byte fallback, decoding (prev-aware, after BOS) gives back the exact text. */
static void check_lossless(const pq_tokenizer *t, const char *label, const char *text, size_t len) {
    int32_t *ids = NULL;
    int64_t n = 0;
    CHECK(pq_tokenize(ctx, t, text, len, 1, &ids, &n) == PQ_OK);
    char *out = malloc(len + 64), buf[16];
    size_t pos = 0;
    int ok = 1;
    const int64_t first = n > 0 && pq_tokenizer_bos(t) >= 0 && ids[0] == pq_tokenizer_bos(t);
    for (int64_t i = first; i < n && ok; i++) {
        size_t l;
        const char *p = pq_token_to_piece(t, i ? ids[i - 1] : -1, ids[i], buf, &l);
        ok = pos + l <= len;
        if (ok) memcpy(out + pos, p, l);
        pos += l;
    }
    CHECK_MSG(ok && pos == len && memcmp(out, text, len) == 0, "%s: decode(encode(text)) differs (%zu bytes)", label,
              len);
    free(out);
    free(ids);
}

static void lossless_file(const pq_tokenizer *t, const char *label, const char *rel) {
    size_t n;
    const char *p = data_path(rel);
    uint8_t *text = p ? read_file(p, &n) : NULL;
    CHECK_MSG(text != NULL, "cannot read %s", rel);
    if (!text) return;
    check_lossless(t, label, (const char *)text, n);
    free(text);
}

/* ---------------------------------------------------------------- tests */

static void test_oracle_llama2(void) {
    pq_tokenizer *t = load(data_path("models/llama2-tokenizer/tokenizer.bin"));
    if (!t) return;
    CHECK(pq_tokenizer_n_vocab(t) == 32000);
    CHECK(pq_tokenizer_bos(t) == 1 && pq_tokenizer_eos(t) == 2 && pq__tokenizer_unk(t) == 0);
    CHECK(pq__tokenizer_kind(t) == PQ_TOK_SPM);
    size_t l;
    CHECK(strcmp(pq__tokenizer_piece(t, 1, &l), "<s>") == 0 && l == 3);
    CHECK(strcmp(pq__tokenizer_piece(t, 2, &l), "</s>") == 0 && l == 4);
    CHECK(pq__tokenizer_type(t, 0) == PQ_PIECE_UNKNOWN && pq__tokenizer_type(t, 1) == PQ_PIECE_CONTROL);
    CHECK(pq__tokenizer_type(t, 3 + 0x41) == PQ_PIECE_BYTE && pq__tokenizer_byte_id(t, 0x41) == 3 + 0x41);
    CHECK(pq__tokenizer_type(t, 306) == PQ_PIECE_NORMAL);
    CHECK(pq__tokenizer_lookup(t, " believe", 8) == 4658);
    check_encode(t, "", "1");
    check_encode(t, "I believe the meaning of life is", "1 306 4658 278 6593 310 2834 338");
    check_encode(t, "Simply put, the theory of relativity states that ",
                 "1 3439 17632 1925 29892 278 6368 310 14215 537 5922 393 29871");
    check_encode(
        t, "A brief message congratulating the team on the launch:\n\n        Hi everyone,\n\n        I just ",
        "1 319 11473 2643 378 629 271 18099 278 3815 373 278 6826 29901 13 13 4706 6324 14332 29892 13 13 4706 "
        "306 925 29871");
    check_encode(
        t,
        "Translate English to French:\n\n        sea otter => loutre de mer\n        peppermint => menthe "
        "poivrée\n        plush girafe => girafe peluche\n        cheese =>",
        "1 4103 9632 4223 304 5176 29901 13 13 4706 7205 4932 357 1149 301 449 276 316 2778 13 4706 1236 407 "
        "837 524 1149 6042 354 772 440 29878 1318 13 4706 715 1878 330 3055 1725 1149 330 3055 1725 4639 28754 "
        "13 4706 923 968 1149");
    /* without BOS, and byte fallback for a character outside the vocabulary (U+10FFFF) */
    int32_t *ids = NULL;
    int64_t n = 0;
    CHECK(pq_tokenize(ctx, t, "\xf4\x8f\xbf\xbf", 4, 0, &ids, &n) == PQ_OK);
    CHECK(n == 5 && ids[0] == 29871 && ids[1] == 3 + 0xf4 && ids[4] == 3 + 0xbf);
    free(ids);
    fuzz_against_ref(t, "llama2 random", 150, 300);
    real_text_against_ref(t, "llama2", "text/tinystories/tinystories_val.txt", 4, 1500);
    real_text_against_ref(t, "llama2", "text/wikitext-2-raw/wiki.test.raw", 4, 1500);
    lossless_file(t, "llama2", "text/tinystories/tinystories_val.txt");
    lossless_file(t, "llama2", "text/wikitext-2-raw/wiki.test.raw");
    check_lossless(t, "llama2 bytes", "\x80\xff\0 x\xc3\xa9\xc3 \xf0\x9f\x98\x80\x80\x80\x80\x80 ", 19);
    pq_tokenizer_free(t);
}

static const char *oracle_1a =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
    "big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the "
    "park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find "
    "it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\nLily "
    "didn't want to help her mom, so she";

static const char *oracle_1c =
    "403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 "
    "322 265 282 295 433 426 385 328 432 358 394 261 370 432 352 266 268 388 426 338 391 266 267 337 335 "
    "312 432 398 312 286 267 414 270 333 415 426 13 438 310 439 419 357 336 432 313 438 310 432 278 316 "
    "439 419 298 414 267 265 282 295 433 426 436 317 286 296 418 269 279 292 416 439 413 409 416 327 263 "
    "415 294 267 400 426 338 336 432 313 442 391 267 337 335 364 420 268 388 432 398 359 280 303 439 413 "
    "272 417 264 312 426 436 13 438 310 286 296 418 269 279 292 416 439 413 409 416 327 263 415 294 267 "
    "400 426 338 336 432 313 442 439 423 262 304 420 422 432 317 426 359 279 292 416 439 413 409 416 327 "
    "263 415 294 267 400 426 436 13 438 310 279 292 416 439 413 391 267 281 421 427 311 357 432 384 358";

static void test_oracle_tok512(void) {
    pq_tokenizer *t = load(data_path("models/stories260K/tok512.bin"));
    if (!t) return;
    CHECK(pq_tokenizer_n_vocab(t) == 512);
    check_encode(t, "Once upon a time", "1 403 407 261 378");
    check_encode(t, "Lily and Tom", "1 317 269 274 287");

    /* decoding §1c with prev = previous id, starting after BOS, gives §1a */
    int32_t ids[256];
    const int64_t n = parse_ids(oracle_1c, ids, 256);
    CHECK(n == 200);
    char out[4096], buf[16];
    size_t pos = 0;
    int32_t prev = 1;
    for (int64_t i = 0; i < n; i++) {
        size_t l;
        const char *p = pq_token_to_piece(t, prev, ids[i], buf, &l);
        if (pos + l < sizeof out) memcpy(out + pos, p, l);
        pos += l;
        prev = ids[i];
    }
    out[pos < sizeof out ? pos : sizeof out - 1] = 0;
    CHECK_MSG(pos == strlen(oracle_1a) && strcmp(out, oracle_1a) == 0, "decoded text differs:\n%s", out);

    /* re-encoding the decoded text gives back BOS + the ids (tok512 round-trips this text) */
    int32_t *re = NULL;
    int64_t nr = 0;
    CHECK(pq_tokenize(ctx, t, oracle_1a, strlen(oracle_1a), 1, &re, &nr) == PQ_OK);
    int same = nr == n + 1 && re[0] == 1;
    for (int64_t i = 0; same && i < n; i++)
        same = re[i + 1] == ids[i];
    CHECK_MSG(same, "re-encoding 1a: %lld ids", (long long)nr);
    free(re);

    /* decoding details */
    size_t l = 99;
    CHECK(strcmp(pq_token_to_piece(t, 1, 13, buf, &l), "\n") == 0 && l == 1); /* <0x0A> */
    CHECK(strcmp(pq_token_to_piece(t, -1, 512, buf, &l), "") == 0 && l == 0); /* invalid id */
    CHECK(strcmp(pq_token_to_piece(t, -1, -5, buf, &l), "") == 0 && l == 0);
    const char *p = pq_token_to_piece(t, 1, 259, buf, &l); /* " t" after BOS loses the space */
    CHECK(l == 1 && p[0] == 't');
    p = pq_token_to_piece(t, 5, 259, buf, &l);
    CHECK(l == 2 && memcmp(p, " t", 2) == 0);
    p = pq_token_to_piece(t, -1, 259, buf, &l);
    CHECK(l == 2);
    p = pq_token_to_piece(t, 1, 3, buf, &l); /* <0x00>: one NUL byte */
    CHECK(l == 1 && p[0] == 0);
    CHECK(pq_token_to_piece(NULL, -1, 0, buf, &l)[0] == 0 && l == 0);

    /* NUL bytes in the text are ordinary bytes */
    int32_t *ids2 = NULL;
    int64_t n2 = 0;
    CHECK(pq_tokenize(ctx, t, "a\0b", 3, 0, &ids2, &n2) == PQ_OK);
    int has_nul = 0;
    for (int64_t i = 0; i < n2; i++)
        has_nul |= ids2[i] == 3;
    CHECK(has_nul);
    free(ids2);
    /* empty text: BOS only, or nothing */
    CHECK(pq_tokenize(ctx, t, NULL, 0, 0, &ids2, &n2) == PQ_OK && n2 == 0);
    free(ids2);
    CHECK(pq_tokenize(ctx, t, NULL, 5, 0, &ids2, &n2) == PQ_ERR_INVALID && ids2 == NULL);

    fuzz_against_ref(t, "tok512 random", 300, 400);
    real_text_against_ref(t, "tok512", "text/tinystories/tinystories_val.txt", 6, 2000);
    real_text_against_ref(t, "tok512", "text/tinyshakespeare/input.txt", 3, 2000);
    lossless_file(t, "tok512", "text/tinystories/tinystories_val.txt");
    lossless_file(t, "tok512", "text/tinyshakespeare/input.txt");
    pq_tokenizer_free(t);
}

static void test_oracle_tok105(void) {
    pq_tokenizer *t = load(data_path("models/babyllama-tok105/tok105.model"));
    if (!t) return;
    CHECK(pq_tokenizer_n_vocab(t) == 105);
    CHECK(pq_tokenizer_bos(t) == 1 && pq_tokenizer_eos(t) == 2 && pq__tokenizer_unk(t) == 0);
    CHECK(pq__tokenizer_add_dummy_prefix(t) == 1);
    size_t l;
    CHECK(strcmp(pq__tokenizer_piece(t, 3, &l), " ") == 0 && l == 1);
    check_encode(t, "Once upon a time", "1 3 34 9 22 4 3 18 20 7 9 3 5 3 6 10 16 4");
    /* no byte pieces: an unknown character is one <unk> */
    int32_t *ids = NULL;
    int64_t n = 0;
    CHECK(pq_tokenize(ctx, t, "a\xe4\xb8\x80", 4, 0, &ids, &n) == PQ_OK);
    CHECK(n == 3 && ids[0] == 3 && ids[2] == 0);
    free(ids);
    fuzz_against_ref(t, "tok105 random", 200, 300);
    pq_tokenizer_free(t);
}

/* Vocabulary with many equal scores (and -0.0 vs 0.0), duplicate pieces, pieces below the
 * -1e10 merge floor and an empty piece, to pin down tie-breaking against the reference. */
static void test_ties(void) {
    const char *pieces[] = {"<unk>", "<s>", "</s>", "a",  "b",  "c",  "▁",      "ab",  "bc",  "ca", "aa", "abc",
                            "bca",   "▁a",  "▁▁",   "cc", "ab", "bb", "<0x41>", "ccc", "▁ab", "",   "aaa"};
    const float scores[] = {0,  0,     0,    -1, -1,    -1,     -1, -2,     -2, -2, -2, -2,
                            -3, -0.0f, 0.0f, -2, -0.5f, -1e11f, 0,  -1e10f, -2, 5,  -1};
    const int64_t n = (int64_t)(sizeof pieces / sizeof *pieces);
    pq_tokenizer *t = NULL;
    CHECK(pq__tokenizer_new_spm(ctx, n, pieces, NULL, scores, NULL, 1, 2, 0, 1, &t) == PQ_OK);
    if (!t) return;
    CHECK(pq__tokenizer_lookup(t, "ab", 2) == 7); /* duplicate: lowest id */
    CHECK(pq__tokenizer_lookup(t, " a", 2) == 13);
    CHECK(pq__tokenizer_byte_id(t, 0x41) == 18 && pq__tokenizer_byte_id(t, 0x42) == -1);
    static const char *const atoms[] = {"a", "b", "c", " ", "A", "é"};
    ref_vocab v = ref_build(t);
    char buf[256];
    int bad = 0;
    for (int r = 0; r < 3000 && bad < 3; r++) {
        size_t len = random_text(buf, 64, atoms, 6);
        bad += !compare_fast_ref(t, &v, buf, len);
    }
    CHECK_MSG(bad == 0, "tie vocabulary: %d texts differ", bad);
    ref_free(&v);
    /* no dummy prefix, no unk, no bytes: unknown characters fail cleanly */
    pq_tokenizer *t2 = NULL;
    CHECK(pq__tokenizer_new_spm(ctx, 3, pieces + 3, NULL, NULL, NULL, -1, -1, -1, 0, &t2) == PQ_OK);
    int32_t *ids = NULL;
    int64_t k = 0;
    CHECK(pq_tokenize(ctx, t2, "abc", 3, 1, &ids, &k) == PQ_OK && k == 3 && ids[0] == 0);
    free(ids);
    CHECK(pq_tokenize(ctx, t2, "abz", 3, 1, &ids, &k) == PQ_ERR_INVALID && ids == NULL);
    CHECK(strstr(pq_ctx_error(ctx), "vocabulary") != NULL);
    pq_tokenizer_free(t2);
    /* bad arguments */
    CHECK(pq__tokenizer_new_spm(ctx, n, pieces, NULL, scores, NULL, 1, 2, (int32_t)n, 1, &t2) == PQ_ERR_FORMAT);
    CHECK(t2 == NULL);
    CHECK(pq__tokenizer_new_spm(ctx, 0, pieces, NULL, scores, NULL, -1, -1, -1, 1, &t2) == PQ_ERR_FORMAT);
    pq_tokenizer_free(t);
    pq_tokenizer_free(NULL);
}

static int same_tokenizer(const pq_tokenizer *a, const pq_tokenizer *b) {
    if (pq_tokenizer_n_vocab(a) != pq_tokenizer_n_vocab(b) || pq_tokenizer_bos(a) != pq_tokenizer_bos(b) ||
        pq_tokenizer_eos(a) != pq_tokenizer_eos(b) || pq__tokenizer_unk(a) != pq__tokenizer_unk(b) ||
        pq__tokenizer_add_dummy_prefix(a) != pq__tokenizer_add_dummy_prefix(b))
        return 0;
    for (int32_t i = 0; i < pq_tokenizer_n_vocab(a); i++) {
        size_t la, lb;
        const char *pa = pq__tokenizer_piece(a, i, &la), *pb = pq__tokenizer_piece(b, i, &lb);
        float sa = pq__tokenizer_score(a, i), sb = pq__tokenizer_score(b, i);
        if (la != lb || memcmp(pa, pb, la) != 0 || memcmp(&sa, &sb, 4) != 0 ||
            pq__tokenizer_type(a, i) != pq__tokenizer_type(b, i)) {
            fprintf(stderr, "piece %d differs\n", i);
            return 0;
        }
    }
    return 1;
}

static void roundtrip(const char *rel, const char *name) {
    pq_tokenizer *t = load(data_path(rel)), *u = NULL, *w = NULL;
    if (!t) return;
    const char *out = tmp_path(name);
    CHECK_MSG(pq__tokenizer_save_spm_model(ctx, t, out) == PQ_OK, "%s", pq_ctx_error(ctx));
    CHECK_MSG(pq__tokenizer_load_spm_model(ctx, out, &u) == PQ_OK, "%s", pq_ctx_error(ctx));
    CHECK(pq_tokenizer_load(ctx, out, &w) == PQ_OK);
    if (u && w) {
        CHECK_MSG(same_tokenizer(t, u), "%s: SentencePiece round trip differs", rel);
        CHECK(same_tokenizer(t, w));
        /* the written file is a real ModelProto: spaces as U+2581, no temporary left behind */
        size_t n;
        uint8_t *b = read_file(out, &n);
        CHECK(b && n > 100 && b[0] == 0x0a);
        int has_marker = 0;
        for (size_t i = 0; b && i + 3 <= n; i++)
            has_marker |= memcmp(b + i, "\xe2\x96\x81", 3) == 0;
        CHECK(has_marker);
        free(b);
        const char *s = "Once upon a time, Lily's dog ran \xe2\x86\x92 home.";
        int32_t *i1 = NULL, *i2 = NULL;
        int64_t n1 = 0, n2 = 0;
        CHECK(pq_tokenize(ctx, t, s, strlen(s), 1, &i1, &n1) == PQ_OK);
        CHECK(pq_tokenize(ctx, u, s, strlen(s), 1, &i2, &n2) == PQ_OK);
        CHECK(n1 == n2 && n1 > 0 && memcmp(i1, i2, (size_t)n1 * 4) == 0);
        free(i1);
        free(i2);
    }
    pq_tokenizer_free(t);
    pq_tokenizer_free(u);
    pq_tokenizer_free(w);
}

static void test_roundtrip(void) {
    roundtrip("models/babyllama-tok105/tok105.model", "tok105.model");
    roundtrip("models/stories260K/tok512.bin", "tok512.model");
    roundtrip("models/llama2-tokenizer/tokenizer.bin", "llama2.model");
    /* add_dummy_prefix off, unusual ids (no bos/eos) survive too */
    const char *pieces[] = {"<unk>", "a", "▁b", "<0x0A>"};
    const int32_t types[] = {PQ_PIECE_UNKNOWN, PQ_PIECE_NORMAL, PQ_PIECE_USER, PQ_PIECE_BYTE};
    pq_tokenizer *t = NULL, *u = NULL;
    CHECK(pq__tokenizer_new_spm(ctx, 4, pieces, NULL, NULL, types, -1, -1, 0, 0, &t) == PQ_OK);
    CHECK(pq__tokenizer_save_spm_model(ctx, t, tmp_path("small.model")) == PQ_OK);
    CHECK(pq__tokenizer_load_spm_model(ctx, tmp_path("small.model"), &u) == PQ_OK);
    CHECK(u && same_tokenizer(t, u));
    CHECK(u && pq_tokenizer_bos(u) == -1 && pq__tokenizer_add_dummy_prefix(u) == 0);
    pq_tokenizer_free(t);
    pq_tokenizer_free(u);
    /* unwritable destination fails with a message */
    CHECK(pq__tokenizer_save_spm_model(ctx, NULL, tmp_path("x.model")) == PQ_ERR_INVALID);
}

/* ---------------------------------------------------------------- malformed input */

typedef struct bytes {
    uint8_t b[4096];
    size_t n;
} bytes;

static void b_put(bytes *w, const void *p, size_t n) {
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void b_varint(bytes *w, uint64_t v) {
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) c |= 0x80;
        b_put(w, &c, 1);
    } while (v);
}
static void b_i32(bytes *w, int32_t v) {
    b_put(w, &v, 4);
}
static void b_f32(bytes *w, float v) {
    b_put(w, &v, 4);
}

static void b_piece(bytes *w, const char *s, float score, int type) {
    bytes p = {{0}, 0};
    b_varint(&p, 0x0a);
    b_varint(&p, strlen(s));
    b_put(&p, s, strlen(s));
    b_varint(&p, 0x15);
    b_f32(&p, score);
    if (type) {
        b_varint(&p, 0x18);
        b_varint(&p, (uint64_t)type);
    }
    b_varint(w, 0x0a);
    b_varint(w, p.n);
    b_put(w, p.b, p.n);
}

static pq_status parse_spm(const bytes *w) {
    pq_tokenizer *t = NULL;
    pq_status st = pq__tokenizer_parse_spm_model(ctx, "mem.model", w->b, w->n, &t);
    CHECK((st == PQ_OK) == (t != NULL));
    pq_tokenizer_free(t);
    return st;
}

static pq_status load_bytes(const char *name, const bytes *w) {
    const char *p = tmp_path(name);
    write_file(p, w->b, w->n);
    pq_tokenizer *t = NULL;
    pq_status st = pq_tokenizer_load(ctx, p, &t);
    CHECK((st == PQ_OK) == (t != NULL));
    if (st != PQ_OK) {
        /* one line naming the file */
        CHECK_MSG(strstr(pq_ctx_error(ctx), name) != NULL && !strchr(pq_ctx_error(ctx), '\n'), "%s",
                  pq_ctx_error(ctx));
    }
    pq_tokenizer_free(t);
    return st;
}

static void test_malformed(void) {
    /* llama2.c .bin */
    bytes w = {{0}, 0};
    b_i32(&w, 5);
    b_f32(&w, 0);
    b_i32(&w, 5);
    b_put(&w, "<unk>", 5);
    b_f32(&w, 0);
    b_i32(&w, 3);
    b_put(&w, "<s>", 3);
    b_f32(&w, -1);
    b_i32(&w, 1);
    b_put(&w, "a", 1);
    CHECK(load_bytes("good.bin", &w) == PQ_OK);
    bytes cut = w;
    cut.n -= 1; /* last token's bytes cut */
    CHECK(load_bytes("trunc1.bin", &cut) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "token 2") != NULL);
    cut.n = w.n - 3; /* inside the last record header */
    CHECK(load_bytes("trunc2.bin", &cut) == PQ_ERR_FORMAT);
    cut.n = 2;
    CHECK(load_bytes("trunc3.bin", &cut) == PQ_ERR_FORMAT);
    cut.n = 4; /* header only: no tokens */
    CHECK(load_bytes("trunc4.bin", &cut) == PQ_ERR_FORMAT);
    bytes neg = w;
    int32_t m1 = -1;
    memcpy(neg.b + 8, &m1, 4);
    CHECK(load_bytes("neglen.bin", &neg) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "negative") != NULL);
    bytes big = w;
    int32_t huge = 0x7fffffff;
    memcpy(big.b + 4 + 8 + 5 + 4, &huge, 4);
    CHECK(load_bytes("biglen.bin", &big) == PQ_ERR_FORMAT);
    const int32_t four = 4;
    bytes maxl = w;
    int32_t two = 2;
    memcpy(maxl.b, &two, 4);
    CHECK(load_bytes("maxlen.bin", &maxl) == PQ_ERR_FORMAT);
    bytes past = w;
    memcpy(past.b + past.n - 5, &four, 4); /* "a" record claims 4 bytes, 1 left */
    CHECK(load_bytes("past.bin", &past) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "past the end") != NULL);
    bytes zero = {{0}, 0};
    CHECK(load_bytes("empty.bin", &zero) == PQ_ERR_FORMAT);
    pq_tokenizer *t = NULL;
    CHECK(pq_tokenizer_load(ctx, tmp_path("does-not-exist"), &t) == PQ_ERR_IO && t == NULL);
    CHECK(pq__tokenizer_parse_llama2c(ctx, "mem", w.b, w.n, &t) == PQ_OK);
    CHECK(t && pq_tokenizer_n_vocab(t) == 3 && pq_tokenizer_eos(t) == 2 &&
          pq__tokenizer_type(t, 1) == PQ_PIECE_CONTROL);
    pq_tokenizer_free(t);
    t = NULL;
    /* tokenizer.json is detected by its leading '{' and parsed as such */
    bytes js = {{0}, 0};
    b_put(&js, "  {\"model\": {}}", 15);
    CHECK(load_bytes("tokenizer.json", &js) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "model.vocab") != NULL);

    /* protobuf: a valid model with unknown fields of every wire type at every level */
    bytes m = {{0}, 0};
    b_piece(&m, "<unk>", 0, PQ_PIECE_UNKNOWN);
    b_piece(&m, "<s>", 0, PQ_PIECE_CONTROL);
    b_piece(&m, "</s>", 0, PQ_PIECE_CONTROL);
    b_piece(&m, "▁", -1, 0);
    b_piece(&m, "x", -2, 0);
    b_varint(&m, (7 << 3) | 0); /* unknown varint */
    b_varint(&m, 300);
    b_varint(&m, (8 << 3) | 1); /* unknown fixed64 */
    b_put(&m, "12345678", 8);
    b_varint(&m, (9 << 3) | 5); /* unknown fixed32 */
    b_put(&m, "1234", 4);
    b_varint(&m, (10 << 3) | 3); /* group containing a varint and a nested group */
    b_varint(&m, (1 << 3) | 0);
    b_varint(&m, 1);
    b_varint(&m, (2 << 3) | 3);
    b_varint(&m, (2 << 3) | 4);
    b_varint(&m, (10 << 3) | 4);
    bytes spec = {{0}, 0};
    b_varint(&spec, (40 << 3) | 0);
    b_varint(&spec, 0);
    b_varint(&spec, (41 << 3) | 0);
    b_varint(&spec, 1);
    b_varint(&spec, (42 << 3) | 0); /* eos_id = -1 as a 10-byte varint */
    b_varint(&spec, UINT64_MAX);
    b_varint(&spec, (5 << 3) | 2);
    b_varint(&spec, 2);
    b_put(&spec, "zz", 2);
    b_varint(&m, 0x12);
    b_varint(&m, spec.n);
    b_put(&m, spec.b, spec.n);
    bytes norm = {{0}, 0};
    b_varint(&norm, 0x0a);
    b_varint(&norm, 3);
    b_put(&norm, "nmt", 3);
    b_varint(&norm, (3 << 3) | 0);
    b_varint(&norm, 0);
    b_varint(&m, 0x1a);
    b_varint(&m, norm.n);
    b_put(&m, norm.b, norm.n);
    CHECK(parse_spm(&m) == PQ_OK);
    CHECK(load_bytes("good.model", &m) == PQ_OK);
    CHECK(pq__tokenizer_parse_spm_model(ctx, "mem.model", m.b, m.n, &t) == PQ_OK);
    if (t) {
        CHECK(pq_tokenizer_eos(t) == -1 && pq_tokenizer_bos(t) == 1 && pq__tokenizer_add_dummy_prefix(t) == 0);
        size_t l;
        CHECK(strcmp(pq__tokenizer_piece(t, 3, &l), " ") == 0);
    }
    pq_tokenizer_free(t);
    t = NULL;
    /* every truncation of the valid model fails cleanly or parses (prefix ending on a field) */
    for (size_t k = 0; k < m.n; k++) {
        bytes c = m;
        c.n = k;
        pq_status st = pq__tokenizer_parse_spm_model(ctx, "cut.model", c.b, c.n, &t);
        CHECK(st == PQ_OK || st == PQ_ERR_FORMAT);
        CHECK((st == PQ_OK) == (t != NULL));
        pq_tokenizer_free(t);
        t = NULL;
    }
    /* and every single-byte corruption */
    for (size_t k = 0; k < m.n; k++)
        for (int v = 0; v < 256; v += 51) {
            bytes c = m;
            c.b[k] = (uint8_t)v;
            pq_status st = pq__tokenizer_parse_spm_model(ctx, "bad.model", c.b, c.n, &t);
            CHECK(st == PQ_OK || st == PQ_ERR_FORMAT);
            pq_tokenizer_free(t);
            t = NULL;
        }

    bytes bv = {{0}, 0}; /* varint longer than 10 bytes */
    b_piece(&bv, "a", 0, 0);
    for (int i = 0; i < 11; i++)
        b_put(&bv, "\xff", 1);
    CHECK(parse_spm(&bv) == PQ_ERR_FORMAT);
    CHECK(load_bytes("badvarint.model", &bv) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "SentencePiece") != NULL);
    bytes bl = {{0}, 0}; /* length beyond the buffer */
    b_varint(&bl, 0x0a);
    b_varint(&bl, 1000);
    b_put(&bl,
          "\x0a\x01"
          "a",
          3);
    CHECK(load_bytes("badlen.model", &bl) == PQ_ERR_FORMAT);
    bytes bi = {{0}, 0}; /* inner length beyond the enclosing piece */
    b_varint(&bi, 0x0a);
    b_varint(&bi, 3);
    b_put(&bi,
          "\x0a\x05"
          "a",
          3);
    b_put(&bi, "bcdef", 5);
    CHECK(parse_spm(&bi) == PQ_ERR_FORMAT);
    bytes bw = {{0}, 0}; /* score with the wrong wire type */
    b_varint(&bw, 0x0a);
    b_varint(&bw, 5);
    b_put(&bw,
          "\x0a\x01"
          "a\x10\x01",
          5);
    CHECK(parse_spm(&bw) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "score") != NULL);
    bytes be = {{0}, 0}; /* stray end-group, then wire types 6 and 7 */
    b_piece(&be, "a", 0, 0);
    b_varint(&be, (5 << 3) | 4);
    CHECK(parse_spm(&be) == PQ_ERR_FORMAT);
    be.n -= 1;
    b_varint(&be, (5 << 3) | 6);
    CHECK(parse_spm(&be) == PQ_ERR_FORMAT);
    bytes bg = {{0}, 0}; /* unterminated and too deeply nested groups */
    b_piece(&bg, "a", 0, 0);
    for (int i = 0; i < 100; i++)
        b_varint(&bg, (3 << 3) | 3);
    CHECK(parse_spm(&bg) == PQ_ERR_FORMAT);
    bytes bz = {{0}, 0}; /* field number 0 */
    b_piece(&bz, "a", 0, 0);
    b_put(&bz, "\x00\x00", 2);
    CHECK(parse_spm(&bz) == PQ_ERR_FORMAT);
    bytes bo = {{0}, 0}; /* bos_id out of range */
    b_piece(&bo, "a", 0, 0);
    b_put(&bo, "\x12\x03\xc8\x02\x07", 5);
    CHECK(parse_spm(&bo) == PQ_ERR_FORMAT);
    CHECK(strstr(pq_ctx_error(ctx), "bos_id") != NULL);
    bytes bn = {{0}, 0}; /* no pieces at all */
    b_put(&bn, "\x1a\x00", 2);
    CHECK(parse_spm(&bn) == PQ_ERR_FORMAT);
    /* garbage that is neither format */
    bytes gb = {{0}, 0};
    b_put(&gb, "\x07\x00\x00\x00garbage!", 12);
    CHECK(load_bytes("garbage.bin", &gb) == PQ_ERR_FORMAT);
}

/* ---------------------------------------------------------------- tokenizer.json (phase 2) */

static const char *const META = "\xe2\x96\x81"; /* U+2581 */

static char *to_meta(const char *p, size_t l) { /* spaces -> U+2581 */
    char *o = malloc(3 * l + 1);
    size_t k = 0;
    for (size_t i = 0; i < l; i++) {
        if (p[i] == ' ') {
            memcpy(o + k, META, 3);
            k += 3;
        } else {
            o[k++] = p[i];
        }
    }
    o[k] = 0;
    return o;
}

static pq_tokenizer *parse_json_tok(const char *json, const char *config) {
    pq_tokenizer *t = NULL;
    pq_status st =
        pq__tokenizer_parse_hf_json(ctx, "mem.json", json, strlen(json), config, config ? strlen(config) : 0, &t);
    CHECK_MSG(st == PQ_OK, "%s", pq_ctx_error(ctx));
    return t;
}

static cJSON *special_token(const char *content, int id) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddBoolToObject(o, "single_word", 0);
    cJSON_AddBoolToObject(o, "lstrip", 0);
    cJSON_AddBoolToObject(o, "rstrip", 0);
    cJSON_AddBoolToObject(o, "normalized", 0);
    cJSON_AddBoolToObject(o, "special", 1);
    return o;
}

typedef struct mrg {
    int32_t l, r, id;
    float score;
} mrg;

static int cmp_mrg(const void *a, const void *b) {
    const mrg *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1; /* score descending, stable by index */
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return x->r < y->r ? -1 : x->r > y->r;
}

/* A Llama-2-style tokenizer.json made from an SPM vocabulary the way transformers' LlamaConverter
 * does it: merges = every split of every piece into two pieces, ordered by the merged piece's score.
 * metaspace != 0 uses the newer Metaspace pre-tokenizer instead of Prepend/Replace. */
static char *spm_to_json(const pq_tokenizer *spm, int metaspace) {
    const int64_t n = pq_tokenizer_n_vocab(spm);
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    cJSON *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddItemToArray(added, special_token("<unk>", 0));
    cJSON_AddItemToArray(added, special_token("<s>", 1));
    cJSON_AddItemToArray(added, special_token("</s>", 2));
    cJSON_AddItemToObject(root, "added_tokens", added);
    if (metaspace) {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON *pre = cJSON_CreateObject();
        cJSON_AddStringToObject(pre, "type", "Metaspace");
        cJSON_AddStringToObject(pre, "replacement", META);
        cJSON_AddStringToObject(pre, "prepend_scheme", "first");
        cJSON_AddBoolToObject(pre, "split", 0);
        cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    } else {
        cJSON *norm = cJSON_CreateObject(), *list = cJSON_CreateArray(), *a = cJSON_CreateObject(),
              *b = cJSON_CreateObject();
        cJSON_AddStringToObject(norm, "type", "Sequence");
        cJSON_AddStringToObject(a, "type", "Prepend");
        cJSON_AddStringToObject(a, "prepend", META);
        cJSON_AddStringToObject(b, "type", "Replace");
        cJSON *pat = cJSON_CreateObject();
        cJSON_AddStringToObject(pat, "String", " ");
        cJSON_AddItemToObject(b, "pattern", pat);
        cJSON_AddStringToObject(b, "content", META);
        cJSON_AddItemToArray(list, a);
        cJSON_AddItemToArray(list, b);
        cJSON_AddItemToObject(norm, "normalizers", list);
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON_AddNullToObject(root, "pre_tokenizer");
    }
    cJSON *pp =
        cJSON_Parse("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}}");
    cJSON_AddItemToObject(root, "post_processor", pp);
    cJSON *dec =
        metaspace
            ? cJSON_Parse("{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":"
                          "\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\","
                          "\"split\":false}]}")
            : cJSON_Parse("{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":"
                          "\"\xe2\x96\x81\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
                          "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}");
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 1);
    cJSON_AddBoolToObject(model, "byte_fallback", 1);
    mrg *m = NULL;
    size_t nm = 0, cap = 0;
    for (int32_t id = 0; id < n; id++) {
        size_t l;
        const char *p = pq__tokenizer_piece(spm, id, &l);
        char *mp = to_meta(p, l);
        cJSON_AddNumberToObject(vocab, mp, id);
        free(mp);
        size_t first = nm;
        for (size_t k = 1; k < l; k++) {
            if (((uint8_t)p[k] & 0xC0) == 0x80) continue; /* Python splits at characters */
            const int32_t a = pq__tokenizer_lookup(spm, p, k), b = pq__tokenizer_lookup(spm, p + k, l - k);
            if (a < 0 || b < 0) continue;
            if (nm == cap) {
                cap = cap ? 2 * cap : 4096;
                m = realloc(m, cap * sizeof *m);
            }
            m[nm++] = (mrg){a, b, id, pq__tokenizer_score(spm, id)};
        }
        (void)first;
    }
    qsort(m, nm, sizeof *m, cmp_mrg); /* score desc; within a piece (id) by (left id, right id) */
    for (size_t i = 0; i < nm; i++) {
        size_t la, lb;
        const char *a = pq__tokenizer_piece(spm, m[i].l, &la), *b = pq__tokenizer_piece(spm, m[i].r, &lb);
        char *ma = to_meta(a, la), *mb = to_meta(b, lb);
        char *both = malloc(strlen(ma) + strlen(mb) + 2);
        sprintf(both, "%s %s", ma, mb);
        cJSON_AddItemToArray(merges, cJSON_CreateString(both));
        free(both);
        free(ma);
        free(mb);
    }
    free(m);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static int same_ids(const pq_tokenizer *a, const pq_tokenizer *b, const char *text, size_t len) {
    int32_t *x = NULL, *y = NULL;
    int64_t nx = 0, ny = 0;
    int ok =
        pq_tokenize(ctx, a, text, len, 1, &x, &nx) == PQ_OK && pq_tokenize(ctx, b, text, len, 1, &y, &ny) == PQ_OK;
    ok = ok && nx == ny && memcmp(x, y, (size_t)nx * sizeof *x) == 0;
    free(x);
    free(y);
    return ok;
}

static void spm_json_equivalence(const char *rel, int metaspace) {
    pq_tokenizer *spm = load(data_path(rel));
    if (!spm) return;
    char *json = spm_to_json(spm, metaspace);
    pq_tokenizer *t = parse_json_tok(json, NULL);
    free(json);
    if (!t) {
        pq_tokenizer_free(spm);
        return;
    }
    CHECK(pq__tokenizer_kind(t) == PQ_TOK_BPE && pq_tokenizer_n_vocab(t) == pq_tokenizer_n_vocab(spm));
    CHECK(pq_tokenizer_bos(t) == 1 && pq_tokenizer_eos(t) == 2 && pq__tokenizer_unk(t) == 0);
    CHECK(pq__tokenizer_add_bos_default(t) == 1);
    CHECK(pq__tokenizer_type(t, 1) == PQ_PIECE_CONTROL && pq__tokenizer_type(t, 0) == PQ_PIECE_UNKNOWN);
    CHECK(pq__tokenizer_type(t, 3 + 10) == PQ_PIECE_BYTE);
    CHECK(pq__tokenizer_n_merges(t) > 0);
    static const char *const texts[] = {
        "",
        "I believe the meaning of life is",
        "Simply put, the theory of relativity states that ",
        "A brief message congratulating the team on the launch:\n\n        Hi everyone,\n\n        I just ",
        ("Translate English to French:\n\n        sea otter => loutre de mer\n        peppermint => "
         "menthe poivrée\n        plush girafe => girafe peluche\n        cheese =>"),
        "Once upon a time",
        "Lily and Tom",
        "  two leading spaces",
        "tab\there \xf0\x9f\x98\x80 emoji"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        /* HF Metaspace does not prepend to text that already starts with a space (SentencePiece does) */
        if (metaspace && texts[i][0] == ' ') continue;
        CHECK_MSG(same_ids(spm, t, texts[i], strlen(texts[i])), "%s (%s): \"%.40s\" differs from SentencePiece", rel,
                  metaspace ? "Metaspace" : "Prepend/Replace", texts[i]);
    }
    size_t n;
    const char *p = data_path("text/tinystories/tinystories_val.txt");
    uint8_t *text = read_file(p, &n);
    if (text) {
        /* paragraph by paragraph: the HF and SentencePiece merge orders agree on this text */
        int bad = 0, paras = 0;
        for (size_t a = 0; a < n && paras < 400;) {
            size_t b = a;
            while (b < n && text[b] != '\n')
                b++;
            if (b > a) {
                bad += !same_ids(spm, t, (const char *)text + a, b - a);
                paras++;
            }
            a = b + 1;
        }
        CHECK_MSG(bad == 0, "%s: %d of %d paragraphs differ between tokenizer.json and SentencePiece", rel, bad,
                  paras);
        check_lossless(t, "tokenizer.json spm", (const char *)text, 20000);
        free(text);
    }
    /* decoding: byte fallback pieces give raw bytes, the first piece loses its space */
    char buf[16];
    size_t l;
    const char *d = pq_token_to_piece(t, 1, 13, buf, &l);
    CHECK(l == 1 && d[0] == '\n');
    const int32_t the = pq__tokenizer_lookup(t, "\xe2\x96\x81the", 6);
    if (the >= 0) {
        d = pq_token_to_piece(t, 1, the, buf, &l);
        CHECK(l == 3 && !memcmp(d, "the", 3));
        d = pq_token_to_piece(t, 5, the, buf, &l);
        CHECK(l == 4 && !memcmp(d, " the", 4));
    }
    /* special tokens in the text are matched as such (unlike llama2.c) */
    int32_t *ids = NULL;
    int64_t k = 0;
    CHECK(pq_tokenize(ctx, t, "a</s>b", 6, 0, &ids, &k) == PQ_OK);
    int has_eos = 0;
    for (int64_t i = 0; i < k; i++)
        has_eos |= ids[i] == 2;
    CHECK(has_eos);
    free(ids);
    pq_tokenizer_free(t);
    pq_tokenizer_free(spm);
}

/* --- byte-level: a tiny trained GPT-2-style vocabulary and an independent reference */

static uint32_t b2u(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    uint32_t k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) k++;
    return 256 + k;
}

static size_t put_u8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

/* the GPT-2 regex on ASCII-only text, written out by hand */
static int is_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_digit(char c) {
    return c >= '0' && c <= '9';
}
static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static size_t gpt2_next(const char *s, size_t n, size_t i) {
    static const char *const contr[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (int k = 0; k < 7; k++) {
        size_t l = strlen(contr[k]);
        if (i + l <= n && !memcmp(s + i, contr[k], l)) return i + l;
    }
    size_t j = i + (s[i] == ' ' && i + 1 < n ? 1 : 0);
    if (is_letter(s[j])) {
        while (j < n && is_letter(s[j]))
            j++;
        return j;
    }
    if (is_digit(s[j])) {
        while (j < n && is_digit(s[j]))
            j++;
        return j;
    }
    if (!is_space(s[j])) {
        while (j < n && !is_space(s[j]) && !is_letter(s[j]) && !is_digit(s[j]))
            j++;
        return j;
    }
    /* whitespace: \s+(?!\S) takes the run except the last space before a non-space; else \s+ */
    j = i;
    while (j < n && is_space(s[j]))
        j++;
    if (j < n && j - i > 1) return j - 1;
    return j;
}

typedef struct bl_vocab {
    char **tok; /* byte-level spelled tokens */
    int n;
    int (*merge)[2];
    int n_merges;
} bl_vocab;

static int bl_find(const bl_vocab *v, const char *s, size_t l) {
    for (int i = 0; i < v->n; i++)
        if (strlen(v->tok[i]) == l && !memcmp(v->tok[i], s, l)) return i;
    return -1;
}

/* maps bytes to the byte-level alphabet */
static size_t bl_map(const char *s, size_t n, char *o) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += put_u8(o + k, b2u((uint8_t)s[i]));
    return k;
}

/* reference BPE of one mapped word: repeatedly the lowest-rank pair, leftmost */
static int ref_bl_word(const bl_vocab *v, const char *w, size_t l, int *out) {
    int ids[512], n = 0;
    for (size_t i = 0; i < l;) {
        size_t cl = ((uint8_t)w[i] & 0xE0) == 0xC0 ? 2 : 1;
        ids[n++] = bl_find(v, w + i, cl);
        i += cl;
    }
    for (;;) {
        int best = -1, bi = -1;
        for (int i = 0; i + 1 < n; i++)
            for (int r = 0; r < v->n_merges && (best < 0 || r < best); r++)
                if (v->merge[r][0] == ids[i] && v->merge[r][1] == ids[i + 1]) {
                    best = r;
                    bi = i;
                }
        if (bi < 0) break;
        char cat[256];
        snprintf(cat, sizeof cat, "%s%s", v->tok[ids[bi]], v->tok[ids[bi + 1]]);
        ids[bi] = bl_find(v, cat, strlen(cat));
        memmove(ids + bi + 1, ids + bi + 2, (size_t)(n - bi - 2) * sizeof *ids);
        n--;
    }
    memcpy(out, ids, (size_t)n * sizeof *ids);
    return n;
}

static int ref_bl_encode(const bl_vocab *v, const char *s, size_t n, int *out) {
    int k = 0;
    char mapped[1024];
    for (size_t i = 0; i < n;) {
        size_t j = gpt2_next(s, n, i);
        size_t ml = bl_map(s + i, j - i, mapped);
        k += ref_bl_word(v, mapped, ml, out + k);
        i = j;
    }
    return k;
}

/* trains n_merges byte-level merges on text (most frequent pair, ties by smaller ids) */
static bl_vocab bl_train(const char *text, size_t n, int n_merges) {
    bl_vocab v = {0};
    v.tok = malloc((256 + (size_t)n_merges) * sizeof *v.tok);
    v.merge = malloc((size_t)n_merges * sizeof *v.merge);
    for (int b = 0; b < 256; b++) { /* GPT-2 order: printable bytes first */
        v.tok[b] = NULL;
    }
    int id = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            const int self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
            if (self != (pass == 0)) continue;
            v.tok[id] = malloc(4);
            v.tok[id][put_u8(v.tok[id], b2u((uint8_t)b))] = 0;
            id++;
        }
    v.n = 256;
    /* words as id sequences */
    int *seq = malloc(2 * n * sizeof *seq), nseq = 0; /* -1 separates words */
    char mapped[1024];
    for (size_t i = 0; i < n;) {
        size_t j = gpt2_next(text, n, i);
        if (j - i > 200) {
            i = j;
            continue;
        }
        size_t ml = bl_map(text + i, j - i, mapped);
        for (size_t a = 0; a < ml;) {
            size_t cl = ((uint8_t)mapped[a] & 0xE0) == 0xC0 ? 2 : 1;
            seq[nseq++] = bl_find(&v, mapped + a, cl);
            a += cl;
        }
        seq[nseq++] = -1;
        i = j;
    }
    int *cnt = calloc((size_t)(256 + n_merges) * (size_t)(256 + n_merges), sizeof *cnt);
    const int W = 256 + n_merges;
    for (int m = 0; m < n_merges; m++) {
        memset(cnt, 0, (size_t)W * (size_t)W * sizeof *cnt);
        int ba = -1, bb = -1, bc = 0;
        for (int i = 0; i + 1 < nseq; i++)
            if (seq[i] >= 0 && seq[i + 1] >= 0) {
                int c = ++cnt[seq[i] * W + seq[i + 1]];
                if (c > bc || (c == bc && (seq[i] < ba || (seq[i] == ba && seq[i + 1] < bb)))) {
                    bc = c;
                    ba = seq[i];
                    bb = seq[i + 1];
                }
            }
        if (bc < 2) break;
        char cat[256];
        snprintf(cat, sizeof cat, "%s%s", v.tok[ba], v.tok[bb]);
        v.tok[v.n] = strdup(cat);
        v.merge[v.n_merges][0] = ba;
        v.merge[v.n_merges][1] = bb;
        v.n_merges++;
        int k = 0;
        for (int i = 0; i < nseq; i++) {
            if (i + 1 < nseq && seq[i] == ba && seq[i + 1] == bb) {
                seq[k++] = v.n;
                i++;
            } else {
                seq[k++] = seq[i];
            }
        }
        nseq = k;
        v.n++;
    }
    free(cnt);
    free(seq);
    return v;
}

static void bl_free(bl_vocab *v) {
    for (int i = 0; i < v->n; i++)
        free(v->tok[i]);
    free(v->tok);
    free(v->merge);
}

/* tokenizer.json for the trained vocabulary: GPT-2 layout (ByteLevel with its regex) or
 * Llama-3 layout (Split regex + ByteLevel without regex, ignore_merges). */
static char *bl_json(const bl_vocab *v, int llama3) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject(),
          *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
    cJSON_AddItemToArray(added, special_token("<|endoftext|>", v->n));
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddNullToObject(root, "normalizer");
    if (llama3) {
        cJSON *pre = cJSON_CreateObject(), *list = cJSON_CreateArray(), *sp = cJSON_CreateObject(),
              *pat = cJSON_CreateObject(), *bl = cJSON_CreateObject();
        cJSON_AddStringToObject(pre, "type", "Sequence");
        cJSON_AddStringToObject(sp, "type", "Split");
        cJSON_AddStringToObject(pat, "Regex", PQ_REGEX_GPT2);
        cJSON_AddItemToObject(sp, "pattern", pat);
        cJSON_AddStringToObject(sp, "behavior", "Isolated");
        cJSON_AddBoolToObject(sp, "invert", 0);
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
        cJSON_AddBoolToObject(bl, "trim_offsets", 1);
        cJSON_AddBoolToObject(bl, "use_regex", 0);
        cJSON_AddItemToArray(list, sp);
        cJSON_AddItemToArray(list, bl);
        cJSON_AddItemToObject(pre, "pretokenizers", list);
        cJSON_AddItemToObject(root, "pre_tokenizer", pre);
        cJSON_AddBoolToObject(model, "ignore_merges", 1);
    } else {
        cJSON_AddItemToObject(
            root, "pre_tokenizer",
            cJSON_Parse("{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true}"));
    }
    cJSON_AddItemToObject(root, "decoder", cJSON_Parse("{\"type\":\"ByteLevel\"}"));
    cJSON_AddStringToObject(model, "type", "BPE");
    for (int i = 0; i < v->n; i++)
        cJSON_AddNumberToObject(vocab, v->tok[i], i);
    for (int r = 0; r < v->n_merges; r++) {
        if (llama3) { /* the newer [left, right] spelling */
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateString(v->tok[v->merge[r][0]]));
            cJSON_AddItemToArray(pair, cJSON_CreateString(v->tok[v->merge[r][1]]));
            cJSON_AddItemToArray(merges, pair);
        } else {
            char m[256];
            snprintf(m, sizeof m, "%s %s", v->tok[v->merge[r][0]], v->tok[v->merge[r][1]]);
            cJSON_AddItemToArray(merges, cJSON_CreateString(m));
        }
    }
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static int bl_compare(const pq_tokenizer *t, const bl_vocab *v, const char *s, size_t n) {
    int32_t *ids = NULL;
    int64_t k = 0;
    int *ref = malloc((n + 1) * sizeof *ref);
    int ok = pq_tokenize(ctx, t, s, n, 0, &ids, &k) == PQ_OK;
    const int nr = ref_bl_encode(v, s, n, ref);
    ok = ok && k == nr;
    for (int64_t i = 0; ok && i < k; i++)
        ok = ids[i] == ref[i];
    free(ids);
    free(ref);
    return ok;
}

static void test_byte_level(void) {
    const char *p = data_path("text/tinystories/tinystories_val.txt");
    size_t n;
    uint8_t *text = p ? read_file(p, &n) : NULL;
    if (!text) return;
    bl_vocab v = bl_train((const char *)text, 60000, 300);
    CHECK(v.n_merges == 300);
    for (int layout = 0; layout < 2; layout++) {
        char *json = bl_json(&v, layout);
        pq_tokenizer *t = NULL;
        pq_status st = pq__tokenizer_parse_hf_json(ctx, "bl.json", json, strlen(json), NULL, 0, &t);
        free(json);
        CHECK_MSG(st == PQ_OK, "%s", pq_ctx_error(ctx));
        if (!t) break;
        CHECK(pq_tokenizer_n_vocab(t) == v.n + 1 && pq_tokenizer_bos(t) == -1 && pq_tokenizer_eos(t) == v.n);
        CHECK(pq__tokenizer_add_bos_default(t) == 0);
        /* ASCII texts against the hand-written GPT-2 pre-tokenizer + reference BPE */
        static const char *const atoms[] = {"the", " ",    "  ",    "\n",    "\n\n", "\t", "a", "'s",
                                            "'ll", "'",    "Once",  " upon", "123",  "4",  ",", ".",
                                            "!?",  "Lily", " time", "   x",  "ing",  "--"};
        char buf[512];
        int bad = 0;
        for (int r = 0; r < 400 && bad < 3; r++) {
            size_t len = 0, target = rnd() % 200;
            while (len < target) {
                const char *a = atoms[rnd() % (sizeof atoms / sizeof *atoms)];
                memcpy(buf + len, a, strlen(a));
                len += strlen(a);
            }
            bad += !bl_compare(t, &v, buf, len);
        }
        CHECK_MSG(bad == 0, "byte-level layout %d: %d random texts differ from the reference", layout, bad);
        bad = 0;
        for (int c = 0; c < 20; c++) {
            size_t off = 60000 + (size_t)c * 30011;
            size_t len = 400;
            int ascii = 1;
            for (size_t i = 0; i < len; i++)
                ascii &= text[off + i] < 0x80;
            if (ascii) bad += !bl_compare(t, &v, (const char *)text + off, len);
        }
        CHECK_MSG(bad == 0, "byte-level layout %d: %d text chunks differ from the reference", layout, bad);
        /* byte-level is lossless on any bytes, UTF-8 or not */
        check_lossless(t, "byte-level", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xff\xfe\x00 x", 18);
        check_lossless(t, "byte-level text", (const char *)text, 50000);
        /* the special token is matched in the text */
        int32_t *ids = NULL;
        int64_t k = 0;
        CHECK(pq_tokenize(ctx, t, "Hi<|endoftext|>Hi", 17, 1, &ids, &k) == PQ_OK);
        CHECK(k >= 3 && k % 2 == 1 && ids[k / 2] == v.n &&
              !memcmp(ids, ids + k / 2 + 1, (size_t)(k / 2) * sizeof *ids));
        char b16[16];
        size_t l;
        const char *d = pq_token_to_piece(t, -1, v.n, b16, &l);
        CHECK(l == 13 && !memcmp(d, "<|endoftext|>", 13));
        free(ids);
        /* the GGUF-style constructor builds the same tokenizer */
        if (layout == 0) {
            char **merges = malloc((size_t)v.n_merges * sizeof *merges);
            const char **pieces = malloc(((size_t)v.n + 1) * sizeof *pieces);
            int32_t *types = malloc(((size_t)v.n + 1) * sizeof *types);
            for (int i = 0; i < v.n; i++) {
                pieces[i] = v.tok[i];
                types[i] = PQ_PIECE_NORMAL;
            }
            pieces[v.n] = "<|endoftext|>";
            types[v.n] = PQ_PIECE_CONTROL;
            for (int r = 0; r < v.n_merges; r++) {
                merges[r] = malloc(256);
                snprintf(merges[r], 256, "%s %s", v.tok[v.merge[r][0]], v.tok[v.merge[r][1]]);
            }
            pq_tokenizer *g = NULL;
            CHECK(pq__tokenizer_new_bpe(ctx, v.n + 1, pieces, NULL, types, (const char *const *)merges, v.n_merges,
                                        NULL, -1, v.n, -1, 0, &g) == PQ_OK);
            if (g) {
                const char *s = "Once upon a time, Lily's 3 cats<|endoftext|>  ran\n\nhome. \xc3\xa9";
                CHECK(same_ids(t, g, s, strlen(s)));
                CHECK(pq__tokenizer_n_merges(g) == v.n_merges);
                int32_t ml, mr;
                CHECK(pq__tokenizer_merge(g, 0, &ml, &mr) && ml == v.merge[0][0] && mr == v.merge[0][1]);
            }
            pq_tokenizer_free(g);
            for (int r = 0; r < v.n_merges; r++)
                free(merges[r]);
            free(merges);
            free(pieces);
            free(types);
        }
        pq_tokenizer_free(t);
    }
    bl_free(&v);
    free(text);
}

/* Split behaviours, NFC, added-token stripping, configs, malformed files: small hand-made files. */
static const char *tiny_json_fmt =
    "{\"added_tokens\":[{\"id\":9,\"content\":\"<m>\",\"lstrip\":%s,\"rstrip\":%s,\"special\":true}],"
    "\"normalizer\":%s,\"pre_tokenizer\":%s,\"decoder\":null,"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"-\":1,\"b\":2,\"a-\":3,\"-b\":4,\"a-b\":5,\"--\":6,\" \":7,"
    "\"\xc3\xa9\":8},\"merges\":[\"a -\",\"a- b\",\"- b\",\"- -\"]}}";

static void check_tiny(const char *lstrip, const char *rstrip, const char *norm, const char *pre, const char *text,
                       const char *want) {
    char json[2048];
    snprintf(json, sizeof json, tiny_json_fmt, lstrip, rstrip, norm, pre);
    pq_tokenizer *t = parse_json_tok(json, NULL);
    if (!t) return;
    int32_t *ids = NULL;
    int64_t n = 0;
    CHECK(pq_tokenize(ctx, t, text, strlen(text), 1, &ids, &n) == PQ_OK);
    char got[256] = "";
    for (int64_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? " " : "", ids[i]);
    CHECK_MSG(!strcmp(got, want), "pre %s on \"%s\": got \"%s\", want \"%s\"", pre, text, got, want);
    free(ids);
    pq_tokenizer_free(t);
}

static void test_json_pipeline(void) {
    const char *split = "{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"%s\",\"invert\":%s}";
    char pre[256];
    check_tiny("false", "false", "null", "null", "a-b", "5");
    snprintf(pre, sizeof pre, split, "Isolated", "false");
    check_tiny("false", "false", "null", pre, "a-b", "0 1 2");
    check_tiny("false", "false", "null", pre, "a--b", "0 1 1 2");
    snprintf(pre, sizeof pre, split, "Removed", "false");
    check_tiny("false", "false", "null", pre, "a-b", "0 2");
    snprintf(pre, sizeof pre, split, "MergedWithPrevious", "false");
    check_tiny("false", "false", "null", pre, "a-b", "3 2");
    snprintf(pre, sizeof pre, split, "MergedWithNext", "false");
    check_tiny("false", "false", "null", pre, "a-b", "0 4");
    check_tiny("false", "false", "null", pre, "a--b", "0 1 4");
    snprintf(pre, sizeof pre, split, "Contiguous", "false");
    check_tiny("false", "false", "null", pre, "a--b", "0 6 2");
    snprintf(pre, sizeof pre, split, "Removed", "true");
    check_tiny("false", "false", "null", pre, "a-b", "1");
    /* Sequence of pre-tokenizers; NFC composes e + U+0301 into the vocabulary's precomposed piece */
    snprintf(pre, sizeof pre, "{\"type\":\"Sequence\",\"pretokenizers\":[%s]}",
             "{\"type\":\"Split\",\"pattern\":"
             "{\"String\":\"b\"},\"behavior\":\"Isolated\",\"invert\":false}");
    check_tiny("false", "false", "null", pre, "a-b", "3 2");
    check_tiny("false", "false", "{\"type\":\"NFC\"}", "null", "e\xcc\x81", "8");
    check_tiny("false", "false",
               "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Replace\","
               "\"pattern\":{\"String\":\"--\"},\"content\":\"-b\"}]}",
               "null", "a--", "5");
    /* no unk token: unknown characters vanish, as in tokenizers */
    check_tiny("false", "false", "null", "null", "axb", "0 2");
    /* added tokens, with and without stripping the spaces around them */
    check_tiny("false", "false", "null", "null", "a <m> b", "0 7 9 7 2");
    check_tiny("true", "false", "null", "null", "a <m> b", "0 9 7 2");
    check_tiny("true", "true", "null", "null", "a  <m>  b", "0 9 2");
    /* Metaspace with split: every word starts with the replacement */
    const char *ms = "{\"type\":\"Metaspace\",\"replacement\":\"-\",\"prepend_scheme\":\"always\",\"split\":true}";
    check_tiny("false", "false", "null", ms, "a b", "1 0 4");
    const char *ms2 = "{\"type\":\"Metaspace\",\"replacement\":\"-\",\"prepend_scheme\":\"first\",\"split\":false}";
    check_tiny("false", "false", "null", ms2, "a b", "1 5");    /* "-a-b": no split, so a- b merge */
    check_tiny("false", "false", "null", ms2, "<m>a b", "9 5"); /* not at the start: no prefix */
    check_tiny("false", "false", "null", ms2, " a", "1 0");     /* already starts with one: none added */
    const char *ms3 = "{\"type\":\"Metaspace\",\"replacement\":\"-\",\"add_prefix_space\":false}";
    check_tiny("false", "false", "null", ms3, "a b", "0 4"); /* legacy field; split defaults to true */

    /* tokenizer_config.json: bos/eos/add_bos_token, read from the folder */
    char json[2048];
    snprintf(json, sizeof json, tiny_json_fmt, "false", "false", "null", "null");
    mkdir(tmp_path("hf"), 0755);
    write_file(tmp_path("hf/tokenizer.json"), json, strlen(json));
    pq_tokenizer *t = load(tmp_path("hf"));
    CHECK(t && pq_tokenizer_bos(t) == -1 && pq_tokenizer_eos(t) == -1 && pq__tokenizer_add_bos_default(t) == 0);
    pq_tokenizer_free(t);
    const char *cfg = "{\"add_bos_token\": true, \"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<m>\"},"
                      " \"eos_token\": \"b\"}";
    write_file(tmp_path("hf/tokenizer_config.json"), cfg, strlen(cfg));
    t = load(tmp_path("hf/tokenizer.json"));
    CHECK(t && pq_tokenizer_bos(t) == 9 && pq_tokenizer_eos(t) == 2 && pq__tokenizer_add_bos_default(t) == 1);
    pq_tokenizer_free(t);
    t = load(tmp_path("hf"));
    CHECK(t && pq_tokenizer_bos(t) == 9);
    pq_tokenizer_free(t);
    write_file(tmp_path("hf/tokenizer_config.json"), "{oops", 5);
    CHECK(pq_tokenizer_load(ctx, tmp_path("hf"), &t) == PQ_ERR_FORMAT && t == NULL);

    /* malformed and unsupported files */
    static const struct {
        const char *json;
        pq_status want;
        const char *msg;
    } bad[] = {
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}", PQ_ERR_FORMAT, "JSON"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", PQ_ERR_UNSUPPORTED, "Unigram"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", PQ_ERR_FORMAT,
         "merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", PQ_ERR_FORMAT, "twice"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", PQ_ERR_FORMAT, "id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e12},\"merges\":[]}}", PQ_ERR_FORMAT, "id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0.5},\"merges\":[]}}", PQ_ERR_FORMAT, "id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}", PQ_ERR_FORMAT, "merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}", PQ_ERR_FORMAT, "merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", PQ_ERR_FORMAT, "empty"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"unk_token\":\"<unk>\"}}", PQ_ERR_FORMAT,
         "unk_token"},
        {"{\"normalizer\":{\"type\":\"Lowercase\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
         PQ_ERR_UNSUPPORTED, "Lowercase"},
        {"{\"pre_tokenizer\":{\"type\":\"Whitespace\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
         PQ_ERR_UNSUPPORTED, "Whitespace"},
        {"{\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", PQ_ERR_UNSUPPORTED,
         "WordPiece"},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"behavior\":\"Isolated\"},\"model\":{\"vocab\":{\"a\":0},"
         "\"merges\":[]}}",
         PQ_ERR_FORMAT, "pattern"},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"a\"},\"behavior\":\"Sideways\"},"
         "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
         PQ_ERR_FORMAT, "Sideways"},
        {"{\"added_tokens\":[{\"id\":3}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", PQ_ERR_FORMAT, "content"},
        {"{\"model\":{\"vocab\":{\"a\":0},\"merges\":[],\"continuing_subword_prefix\":\"##\"}}", PQ_ERR_UNSUPPORTED,
         "continuing"},
        {"[1,2]", PQ_ERR_FORMAT, "JSON"},
        {"{\"model\":{\"vocab\":{\"a\":16000000},\"merges\":[]}}", PQ_ERR_FORMAT, "far beyond"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pq_tokenizer *x = NULL;
        pq_status st = pq__tokenizer_parse_hf_json(ctx, "bad.json", bad[i].json, strlen(bad[i].json), NULL, 0, &x);
        CHECK_MSG(st == bad[i].want && x == NULL && strstr(pq_ctx_error(ctx), bad[i].msg) &&
                      strstr(pq_ctx_error(ctx), "bad.json"),
                  "bad json %zu: status %d: %s", i, (int)st, pq_ctx_error(ctx));
        pq_tokenizer_free(x);
    }
    /* gaps in the ids are unused, empty pieces */
    t = parse_json_tok("{\"model\":{\"vocab\":{\"a\":0,\"b\":3},\"merges\":[]}}", NULL);
    if (t) {
        size_t l;
        CHECK(pq_tokenizer_n_vocab(t) == 4 && pq__tokenizer_type(t, 1) == PQ_PIECE_UNUSED);
        CHECK(pq__tokenizer_piece(t, 2, &l)[0] == 0 && l == 0);
        char b16[16];
        CHECK(pq_token_to_piece(t, -1, 2, b16, &l)[0] == 0 && l == 0);
        check_encode(t, "ab", "0 3");
    }
    pq_tokenizer_free(t);
}

static void test_hf_json(void) {
    test_json_pipeline();
    if (!test_data_dir()) return;
    spm_json_equivalence("models/stories260K/tok512.bin", 0);
    spm_json_equivalence("models/stories260K/tok512.bin", 1);
    spm_json_equivalence("models/llama2-tokenizer/tokenizer.bin", 0);
    test_byte_level();
}

/* The fuzz seed corpus: the tiny valid files parse, the known-bad ones fail cleanly. */
static void test_corpus(void) {
    const char *src = getenv("PQ_SRC");
    if (!src || !*src) return;
    static const struct {
        const char *name;
        pq_status want;
    } files[] = {{"tiny.bin", PQ_OK},
                 {"tiny.model", PQ_OK},
                 {"negid.model", PQ_OK},
                 {"trunc.bin", PQ_ERR_FORMAT},
                 {"neglen.bin", PQ_ERR_FORMAT},
                 {"overmax.bin", PQ_ERR_FORMAT},
                 {"pastend.bin", PQ_ERR_FORMAT},
                 {"header_only.bin", PQ_ERR_FORMAT},
                 {"maxlen_zero.bin", PQ_ERR_FORMAT},
                 {"trunc.model", PQ_ERR_FORMAT},
                 {"badvarint.model", PQ_ERR_FORMAT},
                 {"badlen.model", PQ_ERR_FORMAT},
                 {"deepgroup.model", PQ_ERR_FORMAT},
                 {"strayend.model", PQ_ERR_FORMAT},
                 {"wrongwire.model", PQ_ERR_FORMAT},
                 {"badid.model", PQ_ERR_FORMAT},
                 {"empty", PQ_ERR_FORMAT},
                 {"spm_style.json", PQ_OK},
                 {"split_metaspace.json", PQ_OK},
                 {"bad_merge.json", PQ_ERR_FORMAT},
                 {"bad_json.json", PQ_ERR_FORMAT},
                 {"unigram.json", PQ_ERR_UNSUPPORTED},
                 {"bytelevel.json", PQ_OK}};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/fuzz/corpus/tokenizer/%s", src, files[i].name);
        pq_tokenizer *t = NULL;
        pq_status st = pq_tokenizer_load(ctx, path, &t);
        CHECK_MSG(st == files[i].want, "%s: status %d, want %d (%s)", files[i].name, (int)st, (int)files[i].want,
                  pq_ctx_error(ctx));
        if (t && !strcmp(files[i].name, "tiny.bin")) {
            check_encode(t, "Once ab", "1 8 19 15"); /* " " "Once" " ab": " O" is no piece */
            CHECK(pq_tokenizer_n_vocab(t) == 26 && pq__tokenizer_lookup(t, "ab", 2) == 13);
        }
        if (t && !strcmp(files[i].name, "tiny.model")) {
            check_encode(t, "ab\n", "1 10 3");
            CHECK(pq_tokenizer_n_vocab(t) == 16 && pq__tokenizer_type(t, 3) == PQ_PIECE_BYTE);
        }
        if (t && !strcmp(files[i].name, "spm_style.json")) check_encode(t, "ab\n", "1 11 3");
        if (t && !strcmp(files[i].name, "bytelevel.json")) check_encode(t, "ab a", "3 1 3");
        if (t && !strcmp(files[i].name, "split_metaspace.json"))
            check_encode(t, "a-b", "6 0 4"); /* "a" | "-b", then "_a" */
        if (t && !strcmp(files[i].name, "negid.model")) CHECK(pq_tokenizer_bos(t) == -1 && pq_tokenizer_eos(t) == -1);
        pq_tokenizer_free(t);
    }
}

/* ---------------------------------------------------------------- writers (convert) */

/* GPT-2 byte-to-unicode spelling of byte b (UTF-8, NUL-terminated). */
static void gpt2_byte(uint8_t b, char out[4]) {
    uint32_t cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174))
        cp = b <= 32 ? 256u + b : b <= 160 ? 256u + 33u + (b - 127u) : 256u + 67u;
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

/* A hand-made byte-level vocabulary: 256 byte symbols, merges for " the", "ing", " t", "he",
 * a control token and a user-defined token (ids 256.., merged pieces after them). */
static pq_tokenizer *tiny_byte_level(const char *regex, int ignore_merges) {
    static char byte_pieces[256][4];
    const char *pieces[270];
    int32_t types[270];
    int64_t n = 0;
    for (int b = 0; b < 256; b++) {
        gpt2_byte((uint8_t)b, byte_pieces[b]);
        pieces[n] = byte_pieces[b];
        types[n++] = PQ_PIECE_NORMAL;
    }
    static const char *const extra[] = {"<|bos|>",     "<tool>", "\xc4\xa0t", "he",
                                        "\xc4\xa0the", "in",     "ing",       "\xc4\xa0\xc4\xa0"};
    for (int i = 0; i < 8; i++) {
        pieces[n] = extra[i];
        types[n++] = i == 0 ? PQ_PIECE_CONTROL : i == 1 ? PQ_PIECE_USER : PQ_PIECE_NORMAL;
    }
    static const char *const merges[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he", "i n", "in g", "\xc4\xa0 \xc4\xa0"};
    pq_tokenizer *t = NULL;
    CHECK_MSG(pq__tokenizer_new_bpe(ctx, n, pieces, NULL, types, merges, 6, regex, 256, 256, -1, 1, &t) == PQ_OK,
              "%s", pq_ctx_error(ctx));
    if (t && ignore_merges) pq__tokenizer_set_ignore_merges(t, 1);
    return t;
}

static const char *const save_texts[] = {"the thing", " the theing  in   ing\n\nthe", "<|bos|>the<tool> x",
                                         "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac 123 it's", ""};

static void check_same(const pq_tokenizer *a, const pq_tokenizer *b, const char *what) {
    CHECK_MSG(pq_tokenizer_n_vocab(a) == pq_tokenizer_n_vocab(b), "%s: vocabulary %lld vs %lld", what,
              (long long)pq_tokenizer_n_vocab(a), (long long)pq_tokenizer_n_vocab(b));
    CHECK_MSG(pq_tokenizer_bos(a) == pq_tokenizer_bos(b) && pq_tokenizer_eos(a) == pq_tokenizer_eos(b) &&
                  pq__tokenizer_add_bos_default(a) == pq__tokenizer_add_bos_default(b),
              "%s: bos/eos/add_bos differ", what);
    for (size_t i = 0; i < sizeof save_texts / sizeof *save_texts; i++)
        CHECK_MSG(same_ids(a, b, save_texts[i], strlen(save_texts[i])), "%s: \"%s\" tokenizes differently", what,
                  save_texts[i]);
    for (int32_t id = 0; id < pq_tokenizer_n_vocab(a); id++) {
        char b1[16], b2[16];
        size_t l1, l2;
        const char *p1 = pq_token_to_piece(a, -1, id, b1, &l1), *p2 = pq_token_to_piece(b, -1, id, b2, &l2);
        if (l1 != l2 || memcmp(p1, p2, l1)) {
            CHECK_MSG(0, "%s: token %d decodes differently", what, id);
            break;
        }
    }
}

/* Saves t with a synthetic model in format fmt at path and loads it back (NULL on failure). */
static pq_tokenizer *model_round_trip(pq_tokenizer *t, pq_format fmt, const char *path) {
    const pq__config cfg = synth_config(PQ_ARCH_LLAMA, 8, 16, 1, 2, 2, pq_tokenizer_n_vocab(t));
    pq_model *m = synth_model(ctx, &cfg, 7);
    CHECK(m != NULL);
    if (!m) return NULL;
    m->tok = t;
    pq_status st = pq_model_save(ctx, m, fmt, path, PQ_DTYPE_F32);
    m->tok = NULL;
    pq_model_free(m);
    CHECK_MSG(st == PQ_OK, "save %s: %s", path, pq_ctx_error(ctx));
    pq_model *r = NULL;
    if (st == PQ_OK) CHECK_MSG(pq_model_load(ctx, path, NULL, &r) == PQ_OK, "load %s: %s", path, pq_ctx_error(ctx));
    if (!r) return NULL;
    pq_tokenizer *out = r->tok;
    r->tok = NULL;
    pq_model_free(r);
    CHECK_MSG(out != NULL, "%s: no tokenizer after the round trip", path);
    return out;
}

static void check_gguf_str(const char *path, const char *key, const char *want) {
    pq__gguf *g = NULL;
    CHECK_MSG(pq__gguf_open(ctx, path, 1, &g) == PQ_OK, "%s", pq_ctx_error(ctx));
    if (!g) return;
    const char *s;
    size_t l;
    const int r = pq__gguf_get_str(g, key, &s, &l);
    if (want)
        CHECK_MSG(r == PQ_GGUF_FOUND && l == strlen(want) && !memcmp(s, want, l), "%s: %s is not \"%s\"", path, key,
                  want);
    else
        CHECK_MSG(r == PQ_GGUF_MISSING, "%s: %s should be absent", path, key);
    pq__gguf_free(g);
}

static void test_save(void) {
    char dir[600], path[700];
    /* byte-level vocabularies: GGUF gpt2 natively, generated tokenizer.json */
    for (int v = 0; v < 2; v++) {
        pq_tokenizer *t = tiny_byte_level(v ? PQ_REGEX_LLAMA3 : NULL, v);
        if (!t) continue;
        const char *pre = v ? "llama-bpe" : "gpt-2";
        CHECK(pq__tokenizer_gguf_pre(t) && !strcmp(pq__tokenizer_gguf_pre(t), pre));
        snprintf(dir, sizeof dir, "%s", tmp_path(v ? "save_l3" : "save_g2"));
        CHECK(mkdir(dir, 0755) == 0);
        CHECK_MSG(pq__tokenizer_save_hf(ctx, t, dir) == PQ_OK, "%s", pq_ctx_error(ctx));
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        pq_tokenizer *r = NULL;
        CHECK_MSG(pq__tokenizer_load_hf_json(ctx, path, &r) == PQ_OK, "%s", pq_ctx_error(ctx));
        if (r) {
            check_same(t, r, pre);
            CHECK(pq__tokenizer_gguf_pre(r) && !strcmp(pq__tokenizer_gguf_pre(r), pre));
            CHECK(pq__tokenizer_type(r, 256) == PQ_PIECE_CONTROL && pq__tokenizer_type(r, 257) == PQ_PIECE_USER);
        }
        pq_tokenizer_free(r);
        snprintf(path, sizeof path, "%s/m.gguf", dir);
        r = model_round_trip(t, PQ_FORMAT_GGUF, path);
        if (r) check_same(t, r, "gguf");
        check_gguf_str(path, "tokenizer.ggml.model", "gpt2");
        check_gguf_str(path, "tokenizer.ggml.pre", pre);
        check_gguf_str(path, "tokenizer.huggingface.json", NULL);
        /* and on to a HF folder: tokenizer.json generated from the GGUF vocabulary */
        pq_tokenizer *h = r ? model_round_trip(r, PQ_FORMAT_HF, tmp_path(v ? "save_l3_hf" : "save_g2_hf")) : NULL;
        if (h) check_same(t, h, "gguf -> hf");
        pq_tokenizer_free(h);
        pq_tokenizer_free(r);
        pq_tokenizer_free(t);
    }
    /* SentencePiece-like BPE from tokenizer.json: written back verbatim, GGUF "llama" + embedded json */
    static const char *json =
        "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\","
        "\"special\":true},{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]},\"pre_tokenizer\":null,"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
        "{\"Sequence\":{\"id\":\"A\"}}]},"
        "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":"
        "\"\xe2\x96\x81\"},"
        "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \","
        "\"start\":1,\"stop\":0}]},"
        "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
        "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0xC3>\":3,\"<0xA9>\":4,\"\xe2\x96\x81\":5,\"t\":6,\"h\":7,"
        "\"e\":8,\"\xe2\x96\x81t\":9,\"he\":10,\"\xe2\x96\x81the\":11},"
        "\"merges\":[\"\xe2\x96\x81 t\",\"h e\",\"\xe2\x96\x81t he\"]}}";
    pq_tokenizer *t = parse_json_tok(json, NULL);
    if (!t) return;
    CHECK(pq__tokenizer_gguf_pre(t) == NULL && pq_tokenizer_bos(t) == 1 && pq__tokenizer_add_bos_default(t));
    snprintf(dir, sizeof dir, "%s", tmp_path("save_spm"));
    CHECK(mkdir(dir, 0755) == 0);
    CHECK_MSG(pq__tokenizer_save_hf(ctx, t, dir) == PQ_OK, "%s", pq_ctx_error(ctx));
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    size_t n = 0;
    uint8_t *back = read_file(path, &n);
    CHECK_MSG(back && n == strlen(json) && !memcmp(back, json, n), "tokenizer.json not written verbatim");
    free(back);
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    pq_tokenizer *r = model_round_trip(t, PQ_FORMAT_GGUF, path);
    if (r) {
        CHECK(same_ids(t, r, "the th\xc3\xa9<s>the", 14));
        CHECK(pq_tokenizer_bos(r) == 1 && pq_tokenizer_eos(r) == 2 && pq__tokenizer_add_bos_default(r));
    }
    check_gguf_str(path, "tokenizer.ggml.model", "llama");
    /* an embedded tokenizer.json we cannot read (other writers): the llama arrays are used instead */
    pq__gguf *g = NULL;
    CHECK_MSG(pq__gguf_open(ctx, path, 1, &g) == PQ_OK, "%s", pq_ctx_error(ctx));
    pq__gguf_writer *w = NULL;
    if (g && pq__gguf_writer_new(ctx, &w) == PQ_OK) {
        for (int64_t i = 0; i < g->n_kv; i++)
            if (strcmp(g->kv[i].key, "tokenizer.huggingface.json")) pq__gguf_writer_add_kv(w, &g->kv[i]);
        pq__gguf_writer_add_str(w, "tokenizer.huggingface.json", "{\"model\":{\"type\":\"Unigram\"}}");
        for (int64_t i = 0; i < g->n_tensors; i++) {
            const pq__gguf_tensor *gt = &g->tensors[i];
            int64_t shape[4];
            for (int d = 0; d < gt->n_dims; d++)
                shape[d] = gt->ne[gt->n_dims - 1 - d];
            pq__gguf_writer_add_tensor(w, gt->name, gt->dtype, gt->n_dims, shape, gt->data, gt->nbytes);
        }
        char p2[720];
        snprintf(p2, sizeof p2, "%s/other.gguf", dir);
        CHECK_MSG(pq__gguf_writer_save(ctx, w, p2) == PQ_OK, "%s", pq_ctx_error(ctx));
        pq_model *om = NULL;
        CHECK_MSG(pq_model_load(ctx, p2, NULL, &om) == PQ_OK, "%s", pq_ctx_error(ctx));
        CHECK(om && om->tok && pq__tokenizer_kind(om->tok) == PQ_TOK_SPM && pq_tokenizer_n_vocab(om->tok) == 12);
        pq_model_free(om);
    }
    pq__gguf_writer_free(w);
    pq__gguf_free(g);
    pq_tokenizer *h = r ? model_round_trip(r, PQ_FORMAT_HF, tmp_path("save_spm_hf")) : NULL;
    if (h) CHECK(same_ids(t, h, "the th\xc3\xa9<s>the", 14));
    pq_tokenizer_free(h);
    pq_tokenizer_free(r);
    pq_tokenizer_free(t);
}

/* Every free of a tokenizer type accepts NULL; the accessors give their "none" values. */
static void test_free_null(void) {
    pq_tokenizer_free(NULL);
    pq__bpe_free(NULL);
    CHECK(pq_tokenizer_n_vocab(NULL) == 0);
    CHECK(pq_tokenizer_bos(NULL) == -1 && pq_tokenizer_eos(NULL) == -1);
    CHECK(pq__tokenizer_lookup(NULL, "a", 1) == -1);
}

/* ---------------------------------------------------------------- allocation failures */

/* Every allocation of each tokenizer parser fails in turn (tests/failalloc.h): a clean error
 * with a message, nothing left allocated. */
typedef struct tok_case {
    const char *path;          /* pq_tokenizer_load */
    const char *json, *config; /* pq__tokenizer_parse_hf_json when path is NULL */
    const pq_tokenizer *tok;   /* pq_tokenize when path and json are NULL */
    const char *text;
} tok_case;

static pq_status tok_body(pq_ctx *c, void *user) {
    const tok_case *tc = user;
    pq_tokenizer *t = NULL;
    pq_status st;
    if (tc->path) {
        st = pq_tokenizer_load(c, tc->path, &t);
    } else if (tc->json) {
        st = pq__tokenizer_parse_hf_json(c, "mem.json", tc->json, strlen(tc->json), tc->config,
                                         tc->config ? strlen(tc->config) : 0, &t);
    } else {
        int32_t *ids = NULL;
        int64_t n = 0;
        st = pq_tokenize(c, tc->tok, tc->text, strlen(tc->text), 1, &ids, &n);
        CHECK((st == PQ_OK) == (ids != NULL) || n == 0);
        free(ids);
    }
    CHECK((st == PQ_OK) == (t != NULL) || (!tc->path && !tc->json));
    pq_tokenizer_free(t);
    return st;
}

static void test_alloc_failures(void) {
    /* a llama2.c .bin of 6 tokens, the same as a SentencePiece .model, a tokenizer.json with
     * added tokens, NFC, a Split pre-tokenizer and a tokenizer_config.json */
    bytes w = {{0}, 0};
    b_i32(&w, 5);
    static const char *const pieces[] = {"<unk>", "<s>", "</s>", "a", "b", "ab"};
    for (int i = 0; i < 6; i++) {
        b_f32(&w, (float)-i);
        b_i32(&w, (int32_t)strlen(pieces[i]));
        b_put(&w, pieces[i], strlen(pieces[i]));
    }
    const char *bin = tmp_path("fa.bin"), *model = tmp_path("fa.model");
    write_file(bin, w.b, w.n);
    tok_case tc = {.path = bin};
    failalloc_run("llama2.c tokenizer", tok_body, &tc, 1, 10000);
    pq_tokenizer *t = load(bin);
    CHECK(t && pq__tokenizer_save_spm_model(ctx, t, model) == PQ_OK);
    pq_tokenizer_free(t);
    tc.path = model;
    failalloc_run("SentencePiece .model", tok_body, &tc, 1, 10000);
    char json[2048];
    snprintf(json, sizeof json, tiny_json_fmt, "true", "false", "{\"type\":\"NFC\"}",
             "{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"Isolated\",\"invert\":false}");
    const char *config = "{\"bos_token\":\"<m>\",\"eos_token\":{\"content\":\"<m>\"},\"add_bos_token\":true}";
    tc = (tok_case){.json = json, .config = config};
    failalloc_run("tokenizer.json", tok_body, &tc, 1, 10000);
    /* the file route: a folder with tokenizer.json */
    char *dir = tmp_path("fa_hf");
    mkdir(dir, 0755);
    char jp[600];
    snprintf(jp, sizeof jp, "%s/tokenizer.json", dir);
    write_file(jp, json, strlen(json));
    tc = (tok_case){.path = dir};
    failalloc_run("tokenizer.json folder", tok_body, &tc, 1, 10000);
    /* encoding: SentencePiece-kind and byte-level BPE */
    pq_tokenizer *spm = load(model), *bl = tiny_byte_level(NULL, 0);
    tc = (tok_case){.tok = spm, .text = "ab a b abab\xc3\xa9 x"};
    if (spm) failalloc_run("encode (SentencePiece)", tok_body, &tc, 1, 10000);
    tc = (tok_case){.tok = bl, .text = "<|bos|>the thing  in ing\n<tool> caf\xc3\xa9"};
    if (bl) failalloc_run("encode (byte-level)", tok_body, &tc, 1, 10000);
    pq_tokenizer_free(spm);
    pq_tokenizer_free(bl);
}

int main(void) {
    ctx = pq_ctx_new();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pq_test_tokenizer.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    test_ties();
    test_free_null();
    test_malformed();
    test_corpus();
    test_hf_json();
    test_save();
    test_alloc_failures();
    if (test_data_dir()) {
        test_oracle_llama2();
        test_oracle_tok512();
        test_oracle_tok105();
        test_roundtrip();
    } else {
        fprintf(stderr, "PQ_DATA not set: skipping the data tests\n");
    }
    pq_ctx_free(ctx);
    pq__rmtree(tmpdir);
    return test_end("test_tokenizer");
}
