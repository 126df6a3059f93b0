/* Hugging Face tokenizer.json: BPE with merge ranks, as the `tokenizers` library runs it:
 *   added tokens (leftmost-longest in the raw text) -> normalizer (Prepend, Replace, NFC, Sequence)
 *   -> pre-tokenizer (ByteLevel, Metaspace, Split, Sequence) -> BPE per word -> ids,
 * and decoders (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip) precomputed per token.
 * Regexes use PCRE2 (UTF + UCP). */
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Unicode NFC of s (unicode_nfc.c); returns a malloc'ed string or NULL on OOM. */
char *pq__utf8_nfc(const char *s, size_t n, size_t *out_len);

#define MAX_VOCAB (1 << 24) /* ids beyond this in a tokenizer.json are treated as hostile */
#define MAX_ID_GAP 65536    /* unused ids allowed beyond the listed tokens */

/* ---------------------------------------------------------------- byte buffers, UTF-8 */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static int sb_reserve(sbuf *b, size_t extra) {
    if (b->oom) return 0;
    if (b->cap - b->n >= extra) return 1;
    size_t nc = b->cap ? b->cap : 256;
    while (nc - b->n < extra) {
        if (nc > SIZE_MAX / 2) {
            b->oom = 1;
            return 0;
        }
        nc *= 2;
    }
    char *np = realloc(b->p, nc);
    if (!np) {
        b->oom = 1;
        return 0;
    }
    b->p = np;
    b->cap = nc;
    return 1;
}

static void sb_put(sbuf *b, const void *d, size_t n) {
    if (n && sb_reserve(b, n)) {
        memcpy(b->p + b->n, d, n);
        b->n += n;
    }
}

static void sb_put_cp(sbuf *b, uint32_t cp) {
    char u[4];
    size_t k;
    if (cp < 0x80) {
        u[0] = (char)cp;
        k = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    sb_put(b, u, k);
}

/* Length of the UTF-8 character at s; 1 for an invalid byte, so every byte belongs to one unit. */
static size_t u8_len(const uint8_t *s, size_t n) {
    const uint8_t c = s[0];
    size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (l > n) return 1;
    for (size_t i = 1; i < l; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    return l;
}

static uint32_t u8_cp(const uint8_t *s, size_t l) {
    switch (l) {
    case 2: return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    case 3: return (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    case 4:
        return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 |
               (s[3] & 0x3f);
    default: return s[0];
    }
}

/* GPT-2 bytes_to_unicode: printable bytes stand for themselves, the other 68 map to U+0100.. */
static uint32_t bl_byte_to_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    if (b <= 32) return 256u + b;
    if (b <= 160) return 256u + 33u + (b - 127u);
    return 256u + 67u; /* 173 */
}

static int bl_cp_to_byte(uint32_t cp) {
    if (cp < 256) return bl_byte_to_cp((uint8_t)cp) == cp ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(cp - 256 - 33 + 127);
    if (cp == 256 + 67) return 173;
    return -1;
}

/* ---------------------------------------------------------------- regex */

typedef struct rx {
    void *code; /* pcre2_code_8 */
} rx;

static pq_status rx_compile(pq_ctx *ctx, const char *name, const char *pat, rx *out) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
    if (!c) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: regex /%.80s/ at offset %zu: %s", name, pat, (size_t)off,
                        (const char *)msg);
    }
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* best effort: the interpreter is the fallback */
    out->code = c;
    return PQ_OK;
}

static void rx_free(rx *r) {
    if (!r) return;
    if (r->code) pcre2_code_free((pcre2_code *)r->code);
    r->code = NULL;
}

/* A matcher: literal string or regex. */
typedef struct pattern {
    char *str;
    size_t len;
    rx re;
    int is_regex;
    char *src; /* regex source text (writers name the pre-tokenizer from it) */
} pattern;

typedef struct span {
    size_t s, e;
    int match;
} span;

typedef struct spans {
    span *a;
    size_t n, cap;
} spans;

static int spans_push(spans *v, size_t s, size_t e, int match) {
    if (s == e) return 1; /* empty pieces never become words */
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        span *na = realloc(v->a, nc * sizeof *na);
        if (!na) return 0;
        v->a = na;
        v->cap = nc;
    }
    v->a[v->n++] = (span){s, e, match};
    return 1;
}

/* Partitions s into matched / unmatched spans (like tokenizers' find_matches). Returns 0 on OOM
 * or a regex failure. */
static int find_matches(const pattern *p, const char *s, size_t n, spans *out) {
    out->n = 0;
    size_t prev = 0;
    if (!p->is_regex) {
        if (p->len == 0) return spans_push(out, 0, n, 0);
        for (size_t i = 0; i + p->len <= n;) {
            if (memcmp(s + i, p->str, p->len) == 0) {
                if (!spans_push(out, prev, i, 0) || !spans_push(out, i, i + p->len, 1)) return 0;
                i += p->len;
                prev = i;
            } else {
                i++;
            }
        }
        return spans_push(out, prev, n, 0);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern((pcre2_code *)p->re.code, NULL);
    if (!md) return 0;
    size_t pos = 0;
    int ok = 1;
    while (pos <= n && ok) {
        int rc = pcre2_match((pcre2_code *)p->re.code, (PCRE2_SPTR)s, n, pos, 0, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            ok = 0;
            break;
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        const size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match (or \K oddity): step over one character */
            if (ms >= n) break;
            pos = ms + u8_len((const uint8_t *)s + ms, n - ms);
            continue;
        }
        ok = spans_push(out, prev, ms, 0) && spans_push(out, ms, me, 1);
        prev = pos = me;
    }
    pcre2_match_data_free(md);
    return ok && spans_push(out, prev, n, 0);
}

/* ---------------------------------------------------------------- pipeline description */

enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC };
typedef struct norm {
    int type;
    char *str; /* Prepend text / Replace content */
    size_t len;
    pattern pat; /* Replace pattern */
} norm;

enum { PRE_BYTELEVEL, PRE_METASPACE, PRE_SPLIT };
enum { BEH_REMOVED, BEH_ISOLATED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };
enum { SCHEME_NEVER, SCHEME_FIRST, SCHEME_ALWAYS };
typedef struct pretok {
    int type;
    int add_prefix_space, use_regex; /* ByteLevel */
    char *repl;                      /* Metaspace replacement */
    size_t repl_len;
    int scheme, split;    /* Metaspace */
    pattern pat;          /* Split pattern; ByteLevel regex; Metaspace split string */
    int behavior, invert; /* Split */
} pretok;

enum { DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP };

typedef struct added_tok {
    char *s;
    size_t len;
    int32_t id;
    int lstrip, rstrip, special;
} added_tok;

typedef struct mslot {
    uint64_t key;     /* left << 32 | right */
    int32_t rank, id; /* rank -1: empty */
} mslot;

struct pq__bpe {
    norm *norms;
    int n_norms;
    pretok *pres;
    int n_pres;
    added_tok *added; /* sorted by first byte, then longest first */
    int n_added;
    int32_t added_first[257];
    mslot *ms;
    uint64_t mmask;
    int32_t *merge_l, *merge_r; /* by rank, for writers */
    int64_t n_merges;
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk;
    char *dec; /* decoded text of every token */
    size_t *dec_off;
    uint32_t *dec_len;
    int strip_lead;       /* spaces dropped from the first token's text (Strip / Metaspace decoders) */
    int dec_bytelevel;    /* the decoder is exactly ByteLevel */
    const char *gguf_pre; /* GGUF tokenizer.ggml.pre that reproduces this pipeline, or NULL */
    char *json;           /* tokenizer.json text this was parsed from (NUL-terminated), or NULL */
    size_t json_len;
};

static void pattern_free(pattern *p) {
    if (!p) return;
    free(p->str);
    free(p->src);
    rx_free(&p->re);
}

void pq__bpe_free(pq__bpe *b) {
    if (!b) return;
    for (int i = 0; i < b->n_norms; i++) {
        free(b->norms[i].str);
        pattern_free(&b->norms[i].pat);
    }
    free(b->norms);
    for (int i = 0; i < b->n_pres; i++) {
        free(b->pres[i].repl);
        pattern_free(&b->pres[i].pat);
    }
    free(b->pres);
    for (int i = 0; i < b->n_added; i++)
        free(b->added[i].s);
    free(b->added);
    free(b->ms);
    free(b->merge_l);
    free(b->merge_r);
    free(b->dec);
    free(b->dec_off);
    free(b->dec_len);
    free(b->json);
    free(b);
}

/* ---------------------------------------------------------------- merges table */

static uint64_t mhash(uint64_t key) {
    key ^= key >> 31;
    key *= 0x9E3779B97F4A7C15ULL;
    return key ^ (key >> 29);
}

static const mslot *merge_find(const pq__bpe *b, int32_t l, int32_t r) {
    if (!b->ms) return NULL;
    const uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint64_t i = mhash(key) & b->mmask;; i = (i + 1) & b->mmask) {
        const mslot *s = &b->ms[i];
        if (s->rank < 0) return NULL;
        if (s->key == key) return s;
    }
}

/* tokenizers builds its merge map with collect(), so a repeated pair keeps its last rank */
static void merge_put(pq__bpe *b, int32_t l, int32_t r, int32_t rank, int32_t id) {
    const uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint64_t i = mhash(key) & b->mmask;; i = (i + 1) & b->mmask) {
        mslot *s = &b->ms[i];
        if (s->rank < 0 || s->key == key) {
            s->key = key;
            s->rank = rank;
            s->id = id;
            return;
        }
    }
}

int64_t pq__tokenizer_n_merges(const pq_tokenizer *t) {
    const pq__bpe *b = pq__tokenizer_bpe(t);
    return b ? b->n_merges : 0;
}

int pq__tokenizer_merge(const pq_tokenizer *t, int64_t rank, int32_t *left, int32_t *right) {
    const pq__bpe *b = pq__tokenizer_bpe(t);
    if (!b || rank < 0 || rank >= b->n_merges) return 0;
    *left = b->merge_l[rank];
    *right = b->merge_r[rank];
    return 1;
}

/* Resolves and records merge number rank; pieces must exist, as tokenizers requires. */
static pq_status add_merge(pq_ctx *ctx, const char *name, pq_tokenizer *t, pq__bpe *b, int64_t rank, const char *l,
                           size_t ll, const char *r, size_t rl) {
    const int32_t li = pq__tokenizer_lookup(t, l, ll), ri = pq__tokenizer_lookup(t, r, rl);
    int32_t id = -1;
    if (li >= 0 && ri >= 0) {
        char *cat = pq__malloc(ctx, ll + rl + 1, "a merged piece");
        if (!cat) return pq__fail_prefix(ctx, PQ_ERR_NOMEM, "%s", name);
        memcpy(cat, l, ll);
        memcpy(cat + ll, r, rl);
        id = pq__tokenizer_lookup(t, cat, ll + rl);
        free(cat);
    }
    if (id < 0)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: merges[%lld] \"%.*s\" + \"%.*s\": piece not in the vocabulary", name,
                        (long long)rank, (int)(ll > 40 ? 40 : ll), l, (int)(rl > 40 ? 40 : rl), r);
    merge_put(b, li, ri, (int32_t)rank, id);
    b->merge_l[rank] = li;
    b->merge_r[rank] = ri;
    if (pq__tokenizer_score(t, id) == 0.0f) pq__tokenizer_set_score(t, id, -(float)(rank + 1));
    return PQ_OK;
}

static pq_status alloc_merges(pq_ctx *ctx, const char *name, pq__bpe *b, int64_t n) {
    if (n < 0 || n > INT32_MAX / 4) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %lld merges", name, (long long)n);
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    b->ms = pq__malloc(ctx, cap * sizeof *b->ms, "merge table");
    b->merge_l = b->ms ? pq__calloc(ctx, (size_t)n + 1, sizeof *b->merge_l, "merges") : NULL;
    b->merge_r = b->merge_l ? pq__calloc(ctx, (size_t)n + 1, sizeof *b->merge_r, "merges") : NULL;
    if (!b->merge_r) return PQ_ERR_NOMEM;
    for (uint64_t i = 0; i < cap; i++)
        b->ms[i].rank = -1;
    b->mmask = cap - 1;
    b->n_merges = n;
    return PQ_OK;
}

/* ---------------------------------------------------------------- encoding */

typedef struct word {
    size_t off, len; /* in the arena */
    int first;       /* starts at offset 0 of the original text (Metaspace prepend_scheme "first") */
} word;

typedef struct words {
    word *a;
    size_t n, cap;
} words;

static int words_push(words *w, size_t off, size_t len, int first) {
    if (len == 0) return 1;
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        word *na = realloc(w->a, nc * sizeof *na);
        if (!na) return 0;
        w->a = na;
        w->cap = nc;
    }
    w->a[w->n++] = (word){off, len, first};
    return 1;
}

typedef struct sym {
    int32_t id, prev, next;
    uint32_t len; /* 0: merged away */
} sym;

typedef struct mq {
    int32_t rank, pos, id;
} mq;

typedef struct enc {
    pq_ctx *ctx;
    const pq_tokenizer *t;
    const pq__bpe *b;
    sbuf arena;
    words w0, w1;
    spans sp;
    sym *syms;
    size_t syms_cap;
    mq *heap;
    size_t heap_n, heap_cap;
    int32_t *ids;
    size_t n_ids, ids_cap;
    int bad_regex, oom;
} enc;

static void emit(enc *e, int32_t id) {
    if (e->n_ids == e->ids_cap) {
        size_t nc = e->ids_cap ? e->ids_cap * 2 : 1024;
        int32_t *na = realloc(e->ids, nc * sizeof *na);
        if (!na) {
            e->oom = 1;
            return;
        }
        e->ids = na;
        e->ids_cap = nc;
    }
    e->ids[e->n_ids++] = id;
}

/* tokenizers' Merge ordering: lowest rank first, then lowest position */
static int mq_before(const mq *x, const mq *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static void mq_push(enc *e, int32_t rank, int32_t pos, int32_t id) {
    if (e->heap_n == e->heap_cap) {
        size_t nc = e->heap_cap ? e->heap_cap * 2 : 256;
        mq *na = realloc(e->heap, nc * sizeof *na);
        if (!na) {
            e->oom = 1;
            return;
        }
        e->heap = na;
        e->heap_cap = nc;
    }
    const mq x = {rank, pos, id};
    size_t i = e->heap_n++;
    while (i > 0 && mq_before(&x, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = x;
}

static mq mq_pop(enc *e) {
    const mq top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->heap_n) break;
        if (c + 1 < e->heap_n && mq_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!mq_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (e->heap_n) e->heap[i] = last;
    return top;
}

static void push_sym(enc *e, size_t *n, int32_t id, uint32_t len) {
    e->syms[*n] = (sym){id, (int32_t)*n - 1, (int32_t)*n + 1, len};
    (*n)++;
}

/* Merges symbols [s0, s1) (already linked) like tokenizers' Word::merge_all, including its
 * validity test: a queued merge still applies if the current pair merges into the same new id. */
static void merge_run(enc *e, size_t s0, size_t s1) {
    const pq__bpe *b = e->b;
    e->heap_n = 0;
    for (size_t i = s0; i + 1 < s1; i++) {
        const mslot *m = merge_find(b, e->syms[i].id, e->syms[i + 1].id);
        if (m) mq_push(e, m->rank, (int32_t)i, m->id);
    }
    while (e->heap_n && !e->oom) {
        const mq top = mq_pop(e);
        sym *cur = &e->syms[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym *right = &e->syms[cur->next];
        const mslot *m = merge_find(b, cur->id, right->id);
        if (!m || m->id != top.id) continue;
        cur->id = top.id;
        cur->len += right->len;
        right->len = 0;
        cur->next = right->next;
        if (cur->next >= 0) e->syms[cur->next].prev = top.pos;
        if (cur->prev >= 0) {
            const mslot *pm = merge_find(b, e->syms[cur->prev].id, cur->id);
            if (pm) mq_push(e, pm->rank, cur->prev, pm->id);
        }
        if (cur->next >= 0) {
            const mslot *nm = merge_find(b, cur->id, e->syms[cur->next].id);
            if (nm) mq_push(e, nm->rank, top.pos, nm->id);
        }
    }
}

/* BPE of one word: ignore_merges shortcut, characters with byte fallback / fused <unk>, merges. */
static void bpe_word(enc *e, const char *s, size_t n) {
    const pq__bpe *b = e->b;
    if (b->ignore_merges) {
        const int32_t id = pq__tokenizer_lookup(e->t, s, n);
        if (id >= 0) {
            emit(e, id);
            return;
        }
    }
    if (n + 1 > e->syms_cap) {
        size_t nc = n + 64;
        sym *ns = realloc(e->syms, nc * sizeof *ns);
        if (!ns) {
            e->oom = 1;
            return;
        }
        e->syms = ns;
        e->syms_cap = nc;
    }
    size_t ns = 0;
    int32_t unk_pending = -1;
    uint32_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        const size_t l = u8_len((const uint8_t *)s + i, n - i);
        const int32_t id = pq__tokenizer_lookup(e->t, s + i, l);
        if (id >= 0) {
            if (unk_pending >= 0) push_sym(e, &ns, unk_pending, unk_len);
            unk_pending = -1;
            push_sym(e, &ns, id, (uint32_t)l);
        } else {
            int done = 0;
            if (b->byte_fallback) {
                int32_t bid[4];
                int all = 1;
                for (size_t k = 0; k < l; k++) {
                    char name[8];
                    snprintf(name, sizeof name, "<0x%02X>", (unsigned)(uint8_t)s[i + k]);
                    bid[k] = pq__tokenizer_lookup(e->t, name, 6);
                    all &= bid[k] >= 0;
                }
                if (all) {
                    /* like tokenizers, a pending <unk> is not flushed before byte pieces */
                    for (size_t k = 0; k < l; k++)
                        push_sym(e, &ns, bid[k], 1);
                    done = 1;
                }
            }
            if (!done && b->unk >= 0) {
                if (unk_pending >= 0 && b->fuse_unk) {
                    unk_len += (uint32_t)l;
                } else {
                    if (unk_pending >= 0) push_sym(e, &ns, unk_pending, unk_len);
                    unk_pending = b->unk;
                    unk_len = (uint32_t)l;
                }
            }
        }
        i += l;
    }
    if (unk_pending >= 0) push_sym(e, &ns, unk_pending, unk_len);
    /* merge each run between barriers on its own (see pq__tokenizer_barrier): identical result,
     * but a small heap even when a whole text is one word (no pre-tokenizer) */
    for (size_t s0 = 0; s0 < ns && !e->oom;) {
        size_t s1 = s0 + 1;
        while (s1 < ns && !pq__tokenizer_barrier(e->t, e->syms[s1 - 1].id, e->syms[s1].id))
            s1++;
        for (size_t i = s0; i < s1; i++) {
            e->syms[i].prev = i > s0 ? (int32_t)i - 1 : -1;
            e->syms[i].next = i + 1 < s1 ? (int32_t)i + 1 : -1;
        }
        merge_run(e, s0, s1);
        for (int32_t i = (int32_t)s0; i >= 0; i = e->syms[i].next)
            emit(e, e->syms[i].id);
        s0 = s1;
    }
}

/* Appends a copy of s (outside the arena) and returns its offset. */
static size_t arena_copy(enc *e, const char *s, size_t n) {
    const size_t off = e->arena.n;
    sb_put(&e->arena, s, n);
    return off;
}

/* Appends a copy of arena bytes [from, from + n): reserve first, since that may move the arena. */
static void arena_dup(enc *e, size_t from, size_t n) {
    if (!sb_reserve(&e->arena, n)) return;
    memcpy(e->arena.p + e->arena.n, e->arena.p + from, n);
    e->arena.n += n;
}

static void replace_all(enc *e, size_t off, size_t len, const pattern *p, const char *with, size_t wl, word *out) {
    if (!find_matches(p, e->arena.p + off, len, &e->sp)) {
        e->bad_regex = 1;
        return;
    }
    const size_t start = e->arena.n;
    for (size_t i = 0; i < e->sp.n; i++) {
        const span sp = e->sp.a[i];
        if (sp.match) {
            sb_put(&e->arena, with, wl);
        } else {
            if (!sb_reserve(&e->arena, sp.e - sp.s)) break;
            memcpy(e->arena.p + e->arena.n, e->arena.p + off + sp.s, sp.e - sp.s);
            e->arena.n += sp.e - sp.s;
        }
    }
    out->off = start;
    out->len = e->arena.n - start;
}

/* Splits word w with the pattern and behaviour (tokenizers' NormalizedString::split). */
static void split_word(enc *e, const word *w, const pattern *p, int behavior, int invert, words *out) {
    if (!find_matches(p, e->arena.p + w->off, w->len, &e->sp)) {
        e->bad_regex = 1;
        return;
    }
    span *a = e->sp.a;
    size_t n = e->sp.n;
    if (invert)
        for (size_t i = 0; i < n; i++)
            a[i].match = !a[i].match;
    /* merge spans in place according to the behaviour, then emit */
    size_t k = 0;
    if (behavior == BEH_MERGED_NEXT) {
        /* right to left: a match joins the piece after it unless that piece is a match too */
        int prev_match = 0;
        size_t m = n;
        for (size_t i = n; i-- > 0;) {
            if (a[i].match && !prev_match && m < n) {
                a[m].s = a[i].s;
            } else {
                a[--m] = a[i];
            }
            prev_match = a[i].match;
        }
        for (size_t i = m; i < n; i++)
            a[k++] = a[i];
    } else {
        int prev_match = 0;
        for (size_t i = 0; i < n; i++) {
            const span cur = a[i];
            if (behavior == BEH_REMOVED) {
                if (!cur.match) a[k++] = cur;
            } else if (behavior == BEH_MERGED_PREV && cur.match && !prev_match && k > 0) {
                a[k - 1].e = cur.e;
            } else if (behavior == BEH_CONTIGUOUS && cur.match == prev_match && k > 0) {
                a[k - 1].e = cur.e;
            } else {
                a[k++] = cur;
            }
            prev_match = cur.match;
        }
    }
    for (size_t i = 0; i < k; i++)
        if (!words_push(out, w->off + a[i].s, a[i].e - a[i].s, w->first && a[i].s == 0)) e->oom = 1;
}

static void pretokenize(enc *e, const pretok *p, const words *in, words *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n && !e->oom && !e->bad_regex; i++) {
        word w = in->a[i];
        if (p->type == PRE_SPLIT) {
            split_word(e, &w, &p->pat, p->behavior, p->invert, out);
        } else if (p->type == PRE_BYTELEVEL) {
            if (p->add_prefix_space && e->arena.p[w.off] != ' ') {
                const size_t off = e->arena.n;
                sb_put(&e->arena, " ", 1);
                arena_dup(e, w.off, w.len);
                w.off = off;
                w.len += 1;
            }
            words tmp = {0};
            if (p->use_regex) {
                split_word(e, &w, &p->pat, BEH_ISOLATED, 0, &tmp);
            } else if (!words_push(&tmp, w.off, w.len, w.first)) {
                e->oom = 1;
            }
            for (size_t k = 0; k < tmp.n && !e->arena.oom; k++) {
                const size_t off = e->arena.n;
                for (size_t j = 0; j < tmp.a[k].len; j++)
                    sb_put_cp(&e->arena, bl_byte_to_cp((uint8_t)e->arena.p[tmp.a[k].off + j]));
                if (!words_push(out, off, e->arena.n - off, tmp.a[k].first)) e->oom = 1;
            }
            free(tmp.a);
        } else { /* PRE_METASPACE */
            const size_t off = e->arena.n;
            const int starts = w.len >= p->repl_len && memcmp(e->arena.p + w.off, p->repl, p->repl_len) == 0;
            const int rep_first = w.len > 0 && e->arena.p[w.off] == ' ';
            if ((p->scheme == SCHEME_ALWAYS || (p->scheme == SCHEME_FIRST && w.first)) && !starts && !rep_first)
                sb_put(&e->arena, p->repl, p->repl_len);
            for (size_t j = 0; j < w.len && sb_reserve(&e->arena, p->repl_len); j++) {
                const char c = e->arena.p[w.off + j];
                if (c == ' ')
                    sb_put(&e->arena, p->repl, p->repl_len);
                else
                    sb_put(&e->arena, &c, 1);
            }
            word nw = {off, e->arena.n - off, w.first};
            if (p->split) {
                split_word(e, &nw, &p->pat, BEH_MERGED_NEXT, 0, out);
            } else if (!words_push(out, nw.off, nw.len, nw.first)) {
                e->oom = 1;
            }
        }
    }
    if (e->arena.oom) e->oom = 1;
}

/* Normalizes, pre-tokenizes and encodes text[0..n) (a piece between added tokens). */
static void encode_segment(enc *e, const char *text, size_t n, int first) {
    const pq__bpe *b = e->b;
    e->arena.n = 0;
    word cur = {arena_copy(e, text, n), n, first};
    for (int i = 0; i < b->n_norms && !e->oom && !e->bad_regex && cur.len; i++) {
        const norm *nm = &b->norms[i];
        if (nm->type == NORM_PREPEND) {
            const size_t off = e->arena.n;
            sb_put(&e->arena, nm->str, nm->len);
            arena_dup(e, cur.off, cur.len);
            cur.off = off;
            cur.len += nm->len;
        } else if (nm->type == NORM_REPLACE) {
            replace_all(e, cur.off, cur.len, &nm->pat, nm->str, nm->len, &cur);
        } else { /* NFC */
            size_t l = 0;
            char *s = pq__utf8_nfc(e->arena.p + cur.off, cur.len, &l);
            if (!s) {
                e->oom = 1;
                break;
            }
            cur.off = arena_copy(e, s, l);
            cur.len = l;
            free(s);
        }
        if (e->arena.oom) e->oom = 1;
    }
    if (e->oom || e->bad_regex || cur.len == 0) return;
    e->w0.n = 0;
    if (!words_push(&e->w0, cur.off, cur.len, cur.first)) e->oom = 1;
    for (int i = 0; i < b->n_pres && !e->oom && !e->bad_regex; i++) {
        pretokenize(e, &b->pres[i], &e->w0, &e->w1);
        const words tmp = e->w0;
        e->w0 = e->w1;
        e->w1 = tmp;
    }
    for (size_t i = 0; i < e->w0.n && !e->oom && !e->bad_regex; i++)
        bpe_word(e, e->arena.p + e->w0.a[i].off, e->w0.a[i].len);
}

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Longest added token at text[pos..), or -1. */
static int added_at(const pq__bpe *b, const char *text, size_t len, size_t pos) {
    const uint8_t c = (uint8_t)text[pos];
    for (int32_t i = b->added_first[c]; i < b->added_first[c + 1]; i++)
        if (b->added[i].len <= len - pos && memcmp(text + pos, b->added[i].s, b->added[i].len) == 0) return i;
    return -1;
}

pq_status pq__bpe_encode(pq_ctx *ctx, const pq_tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                         int64_t *n_ids) {
    const pq__bpe *b = pq__tokenizer_bpe(t);
    if (!b) return pq__fail(ctx, PQ_ERR_INTERNAL, "tokenize: BPE tokenizer without its pipeline");
    enc e = {0};
    e.ctx = ctx;
    e.t = t;
    e.b = b;
    if (add_bos && pq_tokenizer_bos(t) >= 0) emit(&e, pq_tokenizer_bos(t));
    size_t seg = 0, pos = 0;
    while (pos < len && !e.oom && !e.bad_regex) {
        const int a = b->n_added ? added_at(b, text, len, pos) : -1;
        if (a < 0) {
            pos++;
            continue;
        }
        const added_tok *at = &b->added[a];
        size_t seg_end = pos, next = pos + at->len;
        if (at->lstrip)
            while (seg_end > seg && is_ws(text[seg_end - 1]))
                seg_end--;
        if (at->rstrip)
            while (next < len && is_ws(text[next]))
                next++;
        if (seg_end > seg) encode_segment(&e, text + seg, seg_end - seg, seg == 0);
        emit(&e, at->id);
        seg = pos = next;
    }
    if (seg < len && !e.oom && !e.bad_regex) encode_segment(&e, text + seg, len - seg, seg == 0);
    free(e.arena.p);
    free(e.w0.a);
    free(e.w1.a);
    free(e.sp.a);
    free(e.syms);
    free(e.heap);
    if (e.oom || e.bad_regex) {
        free(e.ids);
        return e.oom ? pq__fail(ctx, PQ_ERR_NOMEM, "tokenize: out of memory")
                     : pq__fail(ctx, PQ_ERR_INTERNAL, "tokenize: regex matching failed");
    }
    *ids = e.ids ? e.ids : pq__malloc(ctx, 1, "an empty token list");
    if (!*ids) return PQ_ERR_NOMEM;
    *n_ids = (int64_t)e.n_ids;
    return PQ_OK;
}

/* ---------------------------------------------------------------- decoding */

const char *pq__bpe_piece_text(const pq_tokenizer *t, int32_t prev, int32_t id, size_t *len) {
    const pq__bpe *b = pq__tokenizer_bpe(t);
    if (!b || !b->dec) {
        return pq__tokenizer_piece(t, id, len);
    }
    const char *p = b->dec + b->dec_off[id];
    size_t l = b->dec_len[id];
    if (b->strip_lead && (prev < 0 || prev == pq_tokenizer_bos(t)))
        for (int k = 0; k < b->strip_lead && l > 0 && p[0] == ' '; k++) {
            p++;
            l--;
        }
    *len = l;
    return p;
}

typedef struct decoder {
    int type;
    char *a, *b; /* Replace: pattern -> content; Metaspace: replacement */
    size_t la, lb;
} decoder;

static int hexv(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

static void str_replace(sbuf *out, const char *s, size_t n, const char *a, size_t la, const char *with, size_t lw) {
    for (size_t i = 0; i < n;) {
        if (la && i + la <= n && memcmp(s + i, a, la) == 0) {
            sb_put(out, with, lw);
            i += la;
        } else {
            sb_put(out, s + i++, 1);
        }
    }
}

/* Runs the decoder chain on one token's text. */
static void decode_token(const decoder *d, int nd, const char *s, size_t n, sbuf *x, sbuf *y) {
    x->n = 0;
    sb_put(x, s, n);
    for (int k = 0; k < nd; k++) {
        y->n = 0;
        switch (d[k].type) {
        case DEC_BYTELEVEL:
            for (size_t i = 0; i < x->n;) {
                const size_t l = u8_len((const uint8_t *)x->p + i, x->n - i);
                const int byte = bl_cp_to_byte(u8_cp((const uint8_t *)x->p + i, l));
                if (byte >= 0) {
                    const char c = (char)byte;
                    sb_put(y, &c, 1);
                } else {
                    sb_put(y, x->p + i, l);
                }
                i += l;
            }
            break;
        case DEC_BYTEFALLBACK:
            if (x->n == 6 && memcmp(x->p, "<0x", 3) == 0 && x->p[5] == '>' && hexv(x->p[3]) >= 0 &&
                hexv(x->p[4]) >= 0) {
                const char c = (char)(hexv(x->p[3]) * 16 + hexv(x->p[4]));
                sb_put(y, &c, 1);
            } else {
                sb_put(y, x->p, x->n);
            }
            break;
        case DEC_REPLACE: str_replace(y, x->p, x->n, d[k].a, d[k].la, d[k].b, d[k].lb); break;
        case DEC_METASPACE: str_replace(y, x->p, x->n, d[k].a, d[k].la, " ", 1); break;
        default: sb_put(y, x->p, x->n); break; /* Fuse, Strip: sequence-level */
        }
        const sbuf tmp = *x;
        *x = *y;
        *y = tmp;
    }
}

static pq_status build_decoded(pq_ctx *ctx, const char *name, const pq_tokenizer *t, pq__bpe *b, const decoder *d,
                               int nd) {
    const int64_t n = pq_tokenizer_n_vocab(t);
    b->dec_off = pq__calloc(ctx, (size_t)n, sizeof *b->dec_off, "decoded pieces");
    b->dec_len = b->dec_off ? pq__calloc(ctx, (size_t)n, sizeof *b->dec_len, "decoded pieces") : NULL;
    if (!b->dec_len) return PQ_ERR_NOMEM;
    sbuf all = {0}, x = {0}, y = {0};
    for (int32_t id = 0; id < n; id++) {
        size_t l;
        const char *p = pq__tokenizer_piece(t, id, &l);
        const int32_t type = pq__tokenizer_type(t, id);
        b->dec_off[id] = all.n;
        if (type == PQ_PIECE_CONTROL || type == PQ_PIECE_USER) {
            sb_put(&all, p, l); /* added tokens read as their content */
        } else {
            decode_token(d, nd, p, l, &x, &y);
            sb_put(&all, x.p, x.n);
        }
        b->dec_len[id] = (uint32_t)(all.n - b->dec_off[id]);
        sb_put(&all, "", 1);
    }
    free(x.p);
    free(y.p);
    if (all.oom || x.oom || y.oom) {
        free(all.p);
        return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory decoding pieces", name);
    }
    b->dec = all.p;
    return PQ_OK;
}

/* ---------------------------------------------------------------- construction */

static int cmp_added(const void *x, const void *y) {
    const added_tok *a = x, *b = y;
    const uint8_t ca = (uint8_t)a->s[0], cb = (uint8_t)b->s[0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
    return a->id < b->id ? -1 : a->id > b->id;
}

static void index_added(pq__bpe *b) {
    if (b->n_added) qsort(b->added, (size_t)b->n_added, sizeof *b->added, cmp_added);
    int32_t i = 0;
    for (int c = 0; c <= 256; c++) {
        while (i < b->n_added && (uint8_t)b->added[i].s[0] < c)
            i++;
        b->added_first[c] = i;
    }
    b->added_first[256] = b->n_added;
}

/* A NUL-terminated heap copy of s[0..n); on failure records "<name>: out of memory
 * allocating N bytes for <what>" on ctx. */
static char *dup_named(pq_ctx *ctx, const char *name, const char *s, size_t n, const char *what) {
    char *p = pq__malloc(ctx, n + 1, what);
    if (!p) {
        pq__fail_prefix(ctx, PQ_ERR_NOMEM, "%s", name);
        return NULL;
    }
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* realloc of an array to count elements of size bytes, recording a failure like dup_named
 * (p is left as it was then). */
static void *grow_named(pq_ctx *ctx, const char *name, void *p, size_t count, size_t size, const char *what) {
    size_t bytes;
    if (!pq__mul_ok(count, size, &bytes)) {
        pq__fail(ctx, PQ_ERR_NOMEM, "%s: size overflow growing %s", name, what);
        return NULL;
    }
    void *np = realloc(p, bytes);
    if (!np) pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory allocating %zu bytes for %s", name, bytes, what);
    return np;
}

/* Appends an added token (matched in the raw text before pre-tokenization); s is copied. */
static pq_status push_added(pq_ctx *ctx, const char *name, pq__bpe *b, const char *s, size_t l, int32_t id,
                            int lstrip, int rstrip, int special) {
    added_tok *na = grow_named(ctx, name, b->added, (size_t)b->n_added + 1, sizeof *na, "the added tokens");
    if (!na) return PQ_ERR_NOMEM;
    b->added = na;
    char *c = dup_named(ctx, name, s, l, "an added token");
    if (!c) return PQ_ERR_NOMEM;
    b->added[b->n_added++] = (added_tok){c, l, id, lstrip, rstrip, special};
    return PQ_OK;
}

static const char *native_pre(const pq_tokenizer *t, const pq__bpe *b);

pq_status pq__tokenizer_new_bpe(pq_ctx *ctx, int64_t n, const char *const *pieces, const size_t *lens,
                                const int32_t *types, const char *const *merges, int64_t n_merges, const char *regex,
                                int32_t bos, int32_t eos, int32_t unk, int add_bos, pq_tokenizer **out) {
    *out = NULL;
    const char *name = "byte-level BPE";
    pq_tokenizer *t = NULL;
    pq_status st = pq__tokenizer_new_vocab(ctx, PQ_TOK_BPE, n, pieces, lens, NULL, types, bos, eos, unk, 0, &t);
    if (st != PQ_OK) return st;
    pq__tokenizer_set_special(t, bos, eos, unk, add_bos);
    pq__bpe *b = pq__calloc(ctx, 1, sizeof *b, "the BPE tables");
    if (!b) {
        pq_tokenizer_free(t);
        return pq__fail_prefix(ctx, PQ_ERR_NOMEM, "%s", name);
    }
    pq__tokenizer_attach_bpe(t, b);
    b->unk = pq__tokenizer_unk(t);
    b->pres = pq__calloc(ctx, 2, sizeof *b->pres, "the pre-tokenizers");
    if (!b->pres) st = pq__fail_prefix(ctx, PQ_ERR_NOMEM, "%s", name);
    if (st == PQ_OK) {
        b->n_pres = 2;
        b->pres[0].type = PRE_SPLIT;
        b->pres[0].behavior = BEH_ISOLATED;
        b->pres[0].pat.is_regex = 1;
        const char *rx_src = regex ? regex : PQ_REGEX_GPT2;
        b->pres[0].pat.src = dup_named(ctx, name, rx_src, strlen(rx_src), "the pre-tokenizer regex");
        st = b->pres[0].pat.src ? rx_compile(ctx, name, b->pres[0].pat.src, &b->pres[0].pat.re) : PQ_ERR_NOMEM;
        b->pres[1].type = PRE_BYTELEVEL;
    }
    if (st == PQ_OK) st = alloc_merges(ctx, name, b, n_merges);
    for (int64_t i = 0; i < n_merges && st == PQ_OK; i++) {
        const char *m = merges[i] ? merges[i] : "";
        const char *sp = strchr(m, ' ');
        if (!sp || strchr(sp + 1, ' ')) {
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: merges[%lld] \"%.40s\" is not \"left right\"", name, (long long)i,
                          m);
            break;
        }
        st = add_merge(ctx, name, t, b, i, m, (size_t)(sp - m), sp + 1, strlen(sp + 1));
    }
    /* tokens of type control / user-defined are matched in the raw text, as llama.cpp does */
    for (int32_t id = 0; id < n && st == PQ_OK; id++) {
        const int32_t ty = pq__tokenizer_type(t, id);
        size_t l;
        const char *p = pq__tokenizer_piece(t, id, &l);
        if ((ty != PQ_PIECE_CONTROL && ty != PQ_PIECE_USER) || l == 0) continue;
        st = push_added(ctx, name, b, p, l, id, 0, 0, ty == PQ_PIECE_CONTROL);
    }
    if (st == PQ_OK) {
        index_added(b);
        const decoder d = {DEC_BYTELEVEL, NULL, NULL, 0, 0};
        b->dec_bytelevel = 1;
        st = build_decoded(ctx, name, t, b, &d, 1);
    }
    if (st == PQ_OK) b->gguf_pre = native_pre(t, b);
    if (st != PQ_OK) {
        pq_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PQ_OK;
}

/* ---------------------------------------------------------------- writer support */

/* Pre-tokenizer names of GGUF tokenizer.ggml.pre (llama.cpp) and their regexes. */
static const struct {
    const char *name, *regex;
} gguf_pres[3] = {{"gpt-2", PQ_REGEX_GPT2}, {"llama-bpe", PQ_REGEX_LLAMA3}, {"qwen2", PQ_REGEX_QWEN2}};

const char *pq__bpe_pre_regex(const char *name, size_t len) {
    static const struct {
        const char *alias, *regex;
    } alias[3] = {{"gpt2", PQ_REGEX_GPT2}, {"default", PQ_REGEX_GPT2}, {"llama3", PQ_REGEX_LLAMA3}};
    for (int i = 0; i < 3; i++)
        if (strlen(gguf_pres[i].name) == len && !memcmp(name, gguf_pres[i].name, len)) return gguf_pres[i].regex;
    for (int i = 0; i < 3; i++)
        if (strlen(alias[i].alias) == len && !memcmp(name, alias[i].alias, len)) return alias[i].regex;
    return NULL;
}

/* The GGUF pre-tokenizer name under which a gpt2 vocabulary (pq__tokenizer_new_bpe, with
 * ignore_merges for llama-bpe as llama.cpp does) encodes and decodes exactly like this pipeline;
 * NULL if there is none (normalizers, byte fallback, other decoders, stripping added tokens). */
static const char *native_pre(const pq_tokenizer *t, const pq__bpe *b) {
    if (b->n_norms || b->byte_fallback || b->fuse_unk || !b->dec_bytelevel || b->strip_lead) return NULL;
    for (int i = 0; i < b->n_added; i++) {
        const int32_t ty = pq__tokenizer_type(t, b->added[i].id);
        if (b->added[i].lstrip || b->added[i].rstrip || (ty != PQ_PIECE_CONTROL && ty != PQ_PIECE_USER) ||
            (ty == PQ_PIECE_CONTROL) != (b->added[i].special != 0))
            return NULL;
    }
    const char *src = NULL;
    if (b->n_pres == 1 && b->pres[0].type == PRE_BYTELEVEL && !b->pres[0].add_prefix_space && b->pres[0].use_regex)
        src = PQ_REGEX_GPT2;
    else if (b->n_pres == 2 && b->pres[0].type == PRE_SPLIT && b->pres[0].pat.is_regex && b->pres[0].pat.src &&
             b->pres[0].behavior == BEH_ISOLATED && !b->pres[0].invert && b->pres[1].type == PRE_BYTELEVEL &&
             !b->pres[1].add_prefix_space && !b->pres[1].use_regex)
        src = b->pres[0].pat.src;
    for (int i = 0; src && i < 3; i++)
        if (!strcmp(src, gguf_pres[i].regex)) return (b->ignore_merges != 0) == (i == 1) ? gguf_pres[i].name : NULL;
    return NULL;
}

const char *pq__tokenizer_gguf_pre(const pq_tokenizer *t) {
    const pq__bpe *b = pq__tokenizer_bpe(t);
    return b ? b->gguf_pre : NULL;
}

const char *pq__tokenizer_hf_json(const pq_tokenizer *t, size_t *len) {
    const pq__bpe *b = pq__tokenizer_bpe(t);
    if (!b || !b->json) return NULL;
    *len = b->json_len;
    return b->json;
}

int pq__tokenizer_ignore_merges(const pq_tokenizer *t) {
    const pq__bpe *b = pq__tokenizer_bpe(t);
    return b ? b->ignore_merges : 0;
}

int pq__tokenizer_byte_fallback(const pq_tokenizer *t) {
    const pq__bpe *b = pq__tokenizer_bpe(t);
    return b ? b->byte_fallback : 0;
}

void pq__tokenizer_set_ignore_merges(pq_tokenizer *t, int on) {
    pq__bpe *b = (pq__bpe *)pq__tokenizer_bpe(t); /* t owns it; the accessor is const for readers */
    if (!b) return;
    b->ignore_merges = on != 0;
    b->gguf_pre = native_pre(t, b);
}

/* ---------------------------------------------------------------- tokenizer.json */

typedef struct jctx {
    pq_ctx *ctx;
    const char *name;
} jctx;

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static pq_status parse_pattern(jctx *j, const cJSON *o, const char *where, pattern *p) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s = jstr(pat, "String"), *r = jstr(pat, "Regex");
    if (s) {
        p->str = dup_named(j->ctx, j->name, s, strlen(s), "a pattern");
        p->len = strlen(s);
        return p->str ? PQ_OK : PQ_ERR_NOMEM;
    }
    if (r) {
        p->is_regex = 1;
        p->src = dup_named(j->ctx, j->name, r, strlen(r), "a pattern");
        if (!p->src) return PQ_ERR_NOMEM;
        return rx_compile(j->ctx, j->name, r, &p->re);
    }
    return pq__fail(j->ctx, PQ_ERR_FORMAT, "%s: %s.pattern needs \"String\" or \"Regex\"", j->name, where);
}

/* One step of a tokenizer.json pipeline (a normalizer, pre_tokenizer or decoder) of a type
 * other than Sequence. */
typedef pq_status (*step_fn)(jctx *j, void *user, const cJSON *o, const char *type);

/* Walks a pipeline node: null (nothing), {"type": "Sequence", <list_key>: [...]} (each member
 * in order, nested at most 8 deep), or one step handed to step. kind names it in messages. */
static pq_status walk_steps(jctx *j, const cJSON *o, const char *kind, const char *list_key, int depth, step_fn step,
                            void *user) {
    if (!o || cJSON_IsNull(o)) return PQ_OK;
    const char *type = jstr(o, "type");
    if (!type || depth > 8) return pq__fail(j->ctx, PQ_ERR_FORMAT, "%s: %s without a type", j->name, kind);
    if (strcmp(type, "Sequence")) return step(j, user, o, type);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, list_key), *it;
    if (!cJSON_IsArray(list)) return pq__fail(j->ctx, PQ_ERR_FORMAT, "%s: %s Sequence without a list", j->name, kind);
    cJSON_ArrayForEach(it, list) {
        pq_status st = walk_steps(j, it, kind, list_key, depth + 1, step, user);
        if (st != PQ_OK) return st;
    }
    return PQ_OK;
}

static pq_status normalizer_step(jctx *j, void *user, const cJSON *o, const char *type) {
    pq__bpe *b = user;
    norm nm = {0};
    pq_status st = PQ_OK;
    if (!strcmp(type, "Prepend")) {
        const char *s = jstr(o, "prepend");
        if (!s) return pq__fail(j->ctx, PQ_ERR_FORMAT, "%s: normalizer Prepend without \"prepend\"", j->name);
        nm.type = NORM_PREPEND;
        nm.len = strlen(s);
        nm.str = dup_named(j->ctx, j->name, s, nm.len, "a normalizer string");
    } else if (!strcmp(type, "Replace")) {
        const char *s = jstr(o, "content");
        if (!s) return pq__fail(j->ctx, PQ_ERR_FORMAT, "%s: normalizer Replace without \"content\"", j->name);
        nm.type = NORM_REPLACE;
        nm.len = strlen(s);
        nm.str = dup_named(j->ctx, j->name, s, nm.len, "a normalizer string");
        if (nm.str) st = parse_pattern(j, o, "normalizer Replace", &nm.pat);
    } else if (!strcmp(type, "NFC")) {
        nm.type = NORM_NFC;
        nm.str = dup_named(j->ctx, j->name, "", 0, "a normalizer string");
    } else {
        return pq__fail(j->ctx, PQ_ERR_UNSUPPORTED, "%s: normalizer \"%.40s\" is not supported", j->name, type);
    }
    if (st == PQ_OK && !nm.str) st = PQ_ERR_NOMEM;
    norm *nn = st == PQ_OK
                   ? grow_named(j->ctx, j->name, b->norms, (size_t)b->n_norms + 1, sizeof *nn, "the normalizers")
                   : NULL;
    if (!nn) {
        free(nm.str);
        pattern_free(&nm.pat);
        return st != PQ_OK ? st : PQ_ERR_NOMEM;
    }
    b->norms = nn;
    b->norms[b->n_norms++] = nm;
    return PQ_OK;
}

static pq_status parse_scheme(jctx *j, const cJSON *o, int *scheme) {
    const char *s = jstr(o, "prepend_scheme");
    if (!s) {
        *scheme = jbool(o, "add_prefix_space", 1) ? SCHEME_ALWAYS : SCHEME_NEVER; /* before tokenizers 0.14 */
        return PQ_OK;
    }
    if (!strcmp(s, "always"))
        *scheme = SCHEME_ALWAYS;
    else if (!strcmp(s, "first"))
        *scheme = SCHEME_FIRST;
    else if (!strcmp(s, "never"))
        *scheme = SCHEME_NEVER;
    else
        return pq__fail(j->ctx, PQ_ERR_FORMAT, "%s: Metaspace prepend_scheme \"%.20s\"", j->name, s);
    return PQ_OK;
}

static pq_status pretok_step(jctx *j, void *user, const cJSON *o, const char *type) {
    pq__bpe *b = user;
    pretok p = {0};
    pq_status st = PQ_OK;
    if (!strcmp(type, "ByteLevel")) {
        p.type = PRE_BYTELEVEL;
        p.add_prefix_space = jbool(o, "add_prefix_space", 1);
        p.use_regex = jbool(o, "use_regex", 1);
        if (p.use_regex) {
            p.pat.is_regex = 1;
            st = rx_compile(j->ctx, j->name, PQ_REGEX_GPT2, &p.pat.re);
        }
    } else if (!strcmp(type, "Metaspace")) {
        const char *r = jstr(o, "replacement");
        if (!r) r = "\xe2\x96\x81";
        p.type = PRE_METASPACE;
        p.repl_len = strlen(r);
        p.repl = dup_named(j->ctx, j->name, r, p.repl_len, "the Metaspace replacement");
        p.pat.len = p.repl_len;
        p.pat.str = p.repl ? dup_named(j->ctx, j->name, r, p.repl_len, "the Metaspace replacement") : NULL;
        p.split = jbool(o, "split", 1);
        if (!p.repl || !p.pat.str) st = PQ_ERR_NOMEM;
        if (st == PQ_OK && p.repl_len == 0)
            st = pq__fail(j->ctx, PQ_ERR_FORMAT, "%s: Metaspace with an empty replacement", j->name);
        if (st == PQ_OK) st = parse_scheme(j, o, &p.scheme);
    } else if (!strcmp(type, "Split")) {
        static const char *const behs[5] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                            "Contiguous"};
        const char *beh = jstr(o, "behavior");
        p.type = PRE_SPLIT;
        p.behavior = -1;
        for (int k = 0; k < 5 && beh; k++)
            if (!strcmp(beh, behs[k])) p.behavior = k;
        if (p.behavior < 0)
            return pq__fail(j->ctx, PQ_ERR_FORMAT, "%s: Split behavior \"%.30s\"", j->name, beh ? beh : "(missing)");
        p.invert = jbool(o, "invert", 0);
        st = parse_pattern(j, o, "pre_tokenizer Split", &p.pat);
    } else {
        return pq__fail(j->ctx, PQ_ERR_UNSUPPORTED, "%s: pre_tokenizer \"%.40s\" is not supported", j->name, type);
    }
    pretok *np = st == PQ_OK
                     ? grow_named(j->ctx, j->name, b->pres, (size_t)b->n_pres + 1, sizeof *np, "the pre-tokenizers")
                     : NULL;
    if (!np) {
        free(p.repl);
        pattern_free(&p.pat);
        return st != PQ_OK ? st : PQ_ERR_NOMEM;
    }
    b->pres = np;
    b->pres[b->n_pres++] = p;
    return PQ_OK;
}

typedef struct decoders {
    decoder d[16];
    int n;
} decoders;

typedef struct decoder_user {
    pq__bpe *b;
    decoders *ds;
} decoder_user;

static pq_status decoder_step(jctx *j, void *user, const cJSON *o, const char *type) {
    pq__bpe *b = ((decoder_user *)user)->b;
    decoders *ds = ((decoder_user *)user)->ds;
    if (ds->n == 16) return pq__fail(j->ctx, PQ_ERR_UNSUPPORTED, "%s: more than 16 decoders", j->name);
    decoder d = {0};
    if (!strcmp(type, "ByteLevel")) {
        d.type = DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        d.type = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d.type = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        const char *c = jstr(o, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(o, "start");
        d.type = DEC_STRIP;
        if (c && !strcmp(c, " ") && cJSON_IsNumber(start) && start->valuedouble >= 0 && start->valuedouble <= 64)
            b->strip_lead = (int)start->valuedouble;
    } else if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
        const char *s = jstr(pat, "String"), *c = jstr(o, "content");
        if (!s || !c)
            return pq__fail(j->ctx, PQ_ERR_UNSUPPORTED, "%s: decoder Replace needs a String pattern and content",
                            j->name);
        d.type = DEC_REPLACE;
        d.a = (char *)s;
        d.la = strlen(s);
        d.b = (char *)c;
        d.lb = strlen(c);
    } else if (!strcmp(type, "Metaspace")) {
        const char *r = jstr(o, "replacement");
        int scheme;
        pq_status st = parse_scheme(j, o, &scheme);
        if (st != PQ_OK) return st;
        d.type = DEC_METASPACE;
        d.a = (char *)(r ? r : "\xe2\x96\x81");
        d.la = strlen(d.a);
        if (scheme != SCHEME_NEVER && b->strip_lead < 1) b->strip_lead = 1;
    } else {
        return pq__fail(j->ctx, PQ_ERR_UNSUPPORTED, "%s: decoder \"%.40s\" is not supported", j->name, type);
    }
    ds->d[ds->n++] = d;
    return PQ_OK;
}

/* Text of a special-token field: "<s>" or {"content": "<s>", ...}; NULL if absent or null. */
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) return jstr(v, "content");
    return NULL;
}

/* First special token of the post-processor's single-sequence template (TemplateProcessing,
 * possibly inside a Sequence), if it comes before $A. */
static const char *template_bos(const cJSON *pp, int depth) {
    const char *type = jstr(pp, "type");
    if (!type || depth > 8) return NULL;
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
            const char *s = template_bos(it, depth + 1);
            if (s) return s;
        }
        return NULL;
    }
    if (strcmp(type, "TemplateProcessing")) return NULL;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    const cJSON *first = cJSON_IsArray(single) ? cJSON_GetArrayItem(single, 0) : NULL;
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    return jstr(sp, "id");
}

static int32_t lookup_str(const pq_tokenizer *t, const char *s) {
    return s ? pq__tokenizer_lookup(t, s, strlen(s)) : -1;
}

typedef struct vent {
    const char *s;
    size_t len;
    int32_t type;
    int has;
} vent;

/* The parts of tokenizer.json the vocabulary is built from. */
typedef struct hf_model {
    const cJSON *model, *vocab, *merges, *added;
} hf_model;

static pq_status check_model(pq_ctx *ctx, const char *name, const hf_model *m) {
    const char *mtype = jstr(m->model, "type");
    if (!cJSON_IsObject(m->model)) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: no \"model\" object", name);
    if (mtype && strcmp(mtype, "BPE"))
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: model type \"%.30s\" is not supported (only BPE)", name, mtype);
    if (!cJSON_IsObject(m->vocab) || !cJSON_IsArray(m->merges))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: model.vocab must be an object and model.merges an array", name);
    if (m->added && !cJSON_IsArray(m->added))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: added_tokens must be an array", name);
    const char *cs = jstr(m->model, "continuing_subword_prefix"), *es = jstr(m->model, "end_of_word_suffix");
    if ((cs && *cs) || (es && *es))
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: continuing_subword_prefix / end_of_word_suffix not supported",
                        name);
    return PQ_OK;
}

/* ids: vocabulary and added tokens; the vocabulary size *n is the largest id + 1 */
static pq_status count_ids(pq_ctx *ctx, const char *name, const hf_model *m, int64_t *n_out) {
    int64_t n = 0;
    const cJSON *it;
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *list = pass == 0 ? m->vocab : m->added;
        cJSON_ArrayForEach(it, list) {
            const cJSON *idv = pass == 0 ? it : cJSON_GetObjectItemCaseSensitive(it, "id");
            if (!cJSON_IsNumber(idv) || idv->valuedouble < 0 || idv->valuedouble >= MAX_VOCAB ||
                idv->valuedouble != (double)(int64_t)idv->valuedouble)
                return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s: bad token id", name,
                                pass == 0 ? "model.vocab" : "added_tokens");
            if ((int64_t)idv->valuedouble + 1 > n) n = (int64_t)idv->valuedouble + 1;
            if (pass == 1 && !jstr(it, "content"))
                return pq__fail(ctx, PQ_ERR_FORMAT, "%s: added_tokens entry without \"content\"", name);
        }
    }
    if (n == 0) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: empty vocabulary", name);
    /* ids are dense in real files; a few bytes of JSON must not make us allocate gigabytes */
    const int64_t n_entries = (int64_t)cJSON_GetArraySize(m->vocab) + (m->added ? cJSON_GetArraySize(m->added) : 0);
    if (n > n_entries + MAX_ID_GAP)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: token id %lld is far beyond the %lld tokens listed", name,
                        (long long)(n - 1), (long long)n_entries);
    *n_out = n;
    return PQ_OK;
}

/* Fills v[0..n) from model.vocab, then the added tokens (which set the piece types). */
static pq_status fill_entries(pq_ctx *ctx, const char *name, const hf_model *m, vent *v) {
    const int byte_fallback = jbool(m->model, "byte_fallback", 0);
    const char *unk_text = jstr(m->model, "unk_token");
    const cJSON *it;
    cJSON_ArrayForEach(it, m->vocab) {
        const int64_t id = (int64_t)it->valuedouble;
        if (v[id].has)
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: model.vocab: id %lld used twice", name, (long long)id);
        v[id] = (vent){it->string ? it->string : "", it->string ? strlen(it->string) : 0, PQ_PIECE_NORMAL, 1};
        if (unk_text && it->string && !strcmp(it->string, unk_text)) v[id].type = PQ_PIECE_UNKNOWN;
        if (byte_fallback && v[id].len == 6 && !memcmp(v[id].s, "<0x", 3) && v[id].s[5] == '>' &&
            hexv(v[id].s[3]) >= 0 && hexv(v[id].s[4]) >= 0)
            v[id].type = PQ_PIECE_BYTE;
    }
    cJSON_ArrayForEach(it, m->added) {
        const int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const char *c = jstr(it, "content");
        if (!v[id].has) v[id] = (vent){c, strlen(c), 0, 1};
        if (v[id].type != PQ_PIECE_UNKNOWN && !(unk_text && !strcmp(c, unk_text)))
            v[id].type = jbool(it, "special", 0) ? PQ_PIECE_CONTROL : PQ_PIECE_USER;
        else
            v[id].type = PQ_PIECE_UNKNOWN;
    }
    return PQ_OK;
}

/* The vocabulary of n ids as a tokenizer (no BPE tables yet). */
static pq_status build_vocab(pq_ctx *ctx, const char *name, const hf_model *m, int64_t n, pq_tokenizer **t) {
    vent *v = pq__calloc(ctx, (size_t)n, sizeof *v, "vocabulary");
    const char **pieces = v ? pq__calloc(ctx, (size_t)n, sizeof *pieces, "vocabulary") : NULL;
    size_t *lens = pieces ? pq__calloc(ctx, (size_t)n, sizeof *lens, "vocabulary") : NULL;
    int32_t *types = lens ? pq__calloc(ctx, (size_t)n, sizeof *types, "vocabulary") : NULL;
    pq_status st = types ? fill_entries(ctx, name, m, v) : PQ_ERR_NOMEM;
    if (st == PQ_OK) {
        for (int64_t i = 0; i < n; i++) {
            pieces[i] = v[i].has ? v[i].s : "";
            lens[i] = v[i].has ? v[i].len : 0;
            types[i] = v[i].has ? v[i].type : PQ_PIECE_UNUSED;
        }
        st = pq__tokenizer_new_vocab(ctx, PQ_TOK_BPE, n, pieces, lens, NULL, types, -1, -1, -1, 0, t);
    }
    free(v);
    free(pieces);
    free(lens);
    free(types);
    return st;
}

/* Attaches the BPE tables to t with the model's flags and unknown token. */
static pq_status attach_bpe(pq_ctx *ctx, const char *name, const cJSON *model, pq_tokenizer *t, pq__bpe **out) {
    pq__bpe *b = pq__calloc(ctx, 1, sizeof *b, "the BPE tables");
    if (!b) return pq__fail_prefix(ctx, PQ_ERR_NOMEM, "%s", name);
    pq__tokenizer_attach_bpe(t, b);
    *out = b;
    b->byte_fallback = jbool(model, "byte_fallback", 0);
    b->fuse_unk = jbool(model, "fuse_unk", 0);
    b->ignore_merges = jbool(model, "ignore_merges", 0);
    const char *unk = jstr(model, "unk_token");
    b->unk = lookup_str(t, unk);
    if (unk && b->unk < 0)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: model.unk_token \"%.40s\" not in the vocabulary", name, unk);
    return PQ_OK;
}

/* model.merges: "left right" strings or [left, right] pairs, in rank order. */
static pq_status parse_merges(pq_ctx *ctx, const char *name, pq_tokenizer *t, pq__bpe *b, const cJSON *merges) {
    pq_status st = alloc_merges(ctx, name, b, cJSON_GetArraySize(merges));
    int64_t rank = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, merges) {
        if (st != PQ_OK) break;
        if (cJSON_IsString(it)) {
            const char *m = it->valuestring, *sp = strchr(m, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return pq__fail(ctx, PQ_ERR_FORMAT, "%s: merges[%lld] \"%.40s\" is not \"left right\"", name,
                                (long long)rank, m);
            st = add_merge(ctx, name, t, b, rank, m, (size_t)(sp - m), sp + 1, strlen(sp + 1));
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            const char *l = cJSON_GetArrayItem(it, 0)->valuestring, *r = cJSON_GetArrayItem(it, 1)->valuestring;
            st = add_merge(ctx, name, t, b, rank, l, strlen(l), r, strlen(r));
        } else {
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: merges[%lld]: expected \"left right\" or [left, right]", name,
                          (long long)rank);
        }
        rank++;
    }
    return st;
}

static pq_status parse_added(pq_ctx *ctx, const char *name, pq__bpe *b, const cJSON *added) {
    const cJSON *it;
    cJSON_ArrayForEach(it, added) {
        const char *c = jstr(it, "content");
        if (!*c) continue;
        pq_status st =
            push_added(ctx, name, b, c, strlen(c), (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble,
                       jbool(it, "lstrip", 0), jbool(it, "rstrip", 0), jbool(it, "special", 0));
        if (st != PQ_OK) return st;
    }
    index_added(b);
    return PQ_OK;
}

/* special tokens: tokenizer_config.json wins, then the post-processor template */
static pq_status set_special(pq_ctx *ctx, const char *name, pq_tokenizer *t, const pq__bpe *b, const cJSON *root,
                             const char *config_json, size_t config_len) {
    cJSON *cfg = NULL;
    if (config_json) {
        cfg = cJSON_ParseWithLength(config_json, config_len);
        if (!cfg || !cJSON_IsObject(cfg)) {
            cJSON_Delete(cfg);
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer_config.json is not valid JSON", name);
        }
    }
    const cJSON *cb = cJSON_GetObjectItemCaseSensitive(cfg, "bos_token");
    const cJSON *ce = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token");
    const cJSON *cab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    const char *tb = template_bos(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0);
    int32_t bos = cb ? lookup_str(t, token_text(cb)) : lookup_str(t, tb);
    int32_t eos = -1;
    if (ce) {
        eos = lookup_str(t, token_text(ce));
    } else {
        static const char *const eos_names[] = {"</s>",       "<|endoftext|>", "<|end_of_text|>",
                                                "<|eot_id|>", "<|im_end|>",    "<eos>"};
        for (size_t k = 0; k < sizeof eos_names / sizeof *eos_names && eos < 0; k++)
            eos = lookup_str(t, eos_names[k]);
    }
    const int add_bos = cJSON_IsBool(cab) ? cJSON_IsTrue(cab) : (tb != NULL && bos >= 0);
    pq__tokenizer_set_special(t, bos, eos, b->unk, add_bos);
    cJSON_Delete(cfg);
    return PQ_OK;
}

/* The BPE pipeline of tokenizer.json: merges, normalizers, pre-tokenizers, decoders, added
 * tokens, the decoded pieces, and a copy of the text. */
static pq_status build_bpe(pq_ctx *ctx, const char *name, const char *json, size_t len, const cJSON *root,
                           const hf_model *m, pq_tokenizer *t, pq__bpe *b) {
    jctx j = {ctx, name};
    decoders ds = {0};
    pq_status st = parse_merges(ctx, name, t, b, m->merges);
    decoder_user du = {b, &ds};
    if (st == PQ_OK)
        st = walk_steps(&j, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer", "normalizers", 0,
                        normalizer_step, b);
    if (st == PQ_OK)
        st = walk_steps(&j, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer", "pretokenizers",
                        0, pretok_step, b);
    if (st == PQ_OK)
        st = walk_steps(&j, cJSON_GetObjectItemCaseSensitive(root, "decoder"), "decoder", "decoders", 0, decoder_step,
                        &du);
    if (st == PQ_OK) st = parse_added(ctx, name, b, m->added);
    if (st == PQ_OK) {
        b->dec_bytelevel = ds.n == 1 && ds.d[0].type == DEC_BYTELEVEL;
        st = build_decoded(ctx, name, t, b, ds.d, ds.n);
    }
    if (st == PQ_OK) {
        b->gguf_pre = native_pre(t, b);
        /* kept so that convert can write it back verbatim */
        b->json = dup_named(ctx, name, json, len, "a copy of tokenizer.json");
        b->json_len = len;
        if (!b->json) st = PQ_ERR_NOMEM;
    }
    return st;
}

pq_status pq__tokenizer_parse_hf_json(pq_ctx *ctx, const char *name, const char *json, size_t len,
                                      const char *config_json, size_t config_len, pq_tokenizer **out) {
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: not valid JSON (tokenizer.json)", name);
    }
    hf_model m = {.model = cJSON_GetObjectItemCaseSensitive(root, "model")};
    m.vocab = cJSON_GetObjectItemCaseSensitive(m.model, "vocab");
    m.merges = cJSON_GetObjectItemCaseSensitive(m.model, "merges");
    m.added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    pq_tokenizer *t = NULL;
    pq__bpe *b = NULL;
    int64_t n = 0;
    pq_status st = check_model(ctx, name, &m);
    if (st == PQ_OK) st = count_ids(ctx, name, &m, &n);
    if (st == PQ_OK) st = build_vocab(ctx, name, &m, n, &t);
    if (st == PQ_OK) st = attach_bpe(ctx, name, m.model, t, &b);
    if (st == PQ_OK) st = build_bpe(ctx, name, json, len, root, &m, t, b);
    if (st == PQ_OK) st = set_special(ctx, name, t, b, root, config_json, config_len);
    cJSON_Delete(root);
    if (st != PQ_OK) {
        pq_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PQ_OK;
}

pq_status pq__tokenizer_load_hf_json(pq_ctx *ctx, const char *path, pq_tokenizer **out) {
    *out = NULL;
    char *json = NULL, *cfg = NULL;
    size_t len = 0, cfg_len = 0;
    pq_status st = pq__read_text(ctx, path, (size_t)1 << 30, &json, &len);
    if (st != PQ_OK) return st;
    /* tokenizer_config.json next to the file carries bos/eos/add_bos_token */
    const char *slash = strrchr(path, '/');
    const char *d = !slash ? "." : slash == path ? "/" : path;
    char *dir = dup_named(ctx, path, d, !slash || slash == path ? 1 : (size_t)(slash - path), "the folder name");
    char *cpath = dir ? pq__path_join_ctx(ctx, dir, "tokenizer_config.json") : NULL;
    if (!cpath) {
        free(dir);
        free(json);
        return PQ_ERR_NOMEM;
    }
    if (pq__file_exists(cpath)) st = pq__read_text(ctx, cpath, (size_t)1 << 26, &cfg, &cfg_len);
    if (st == PQ_OK) st = pq__tokenizer_parse_hf_json(ctx, path, json, len, cfg, cfg_len, out);
    free(cpath);
    free(dir);
    free(json);
    free(cfg);
    return st;
}
