/* The pq_tokenizer object, its accessors, the public tokenizer API and the SentencePiece-style
 * encoder/decoder (llama2.c run.c encode()/decode() semantics, in O(n log n)). */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* One slot of the piece -> id hash table (open addressing, linear probing). The 32-bit tag
 * (low bits of the FNV hash) avoids most memcmp calls on collisions. */
typedef struct tok_slot {
    uint32_t tag;
    int32_t id; /* -1: empty */
} tok_slot;

struct pq_tokenizer {
    pq__tok_kind kind;
    int32_t n;
    char *blob;    /* every piece, NUL-terminated, back to back */
    size_t *off;   /* [n] offset of piece i in blob */
    uint32_t *len; /* [n] piece length in bytes (without the NUL) */
    float *score;  /* [n] */
    int32_t *type; /* [n] PQ_PIECE_* */
    int32_t bos, eos, unk;
    int add_dummy_prefix;
    uint32_t max_len;     /* longest piece: merges producing longer strings need no lookup */
    int32_t byte_id[256]; /* <0xXX> piece per byte value, -1 if none */
    /* bit (a << 8 | b) set if some piece contains byte a followed by byte b: a merge across a
     * boundary whose bigram is absent can never happen, which splits encoding into segments */
    uint64_t bigram[1024];
    tok_slot *slots;
    uint32_t mask;       /* slot count - 1 (power of two) */
    int add_bos_default; /* the tokenizer's own preference (tokenizer_config.json add_bos_token) */
    pq__bpe *bpe;        /* PQ_TOK_BPE: the tokenizer.json pipeline (bpe.c) */
};

/* SentencePiece's whitespace marker U+2581 in UTF-8. */
static const char spm_space[3] = {'\xe2', '\x96', '\x81'};

/* ---------------------------------------------------------------- hash table */

static uint64_t hash2(const char *a, size_t la, const char *b, size_t lb) {
    return pq__fnv1a(b, lb, pq__fnv1a(a, la, PQ_FNV_INIT));
}

/* Id of the piece equal to a||b, or -1. Lowest id wins on duplicate pieces (see insert). */
static int32_t lookup2(const pq_tokenizer *t, const char *a, size_t la, const char *b, size_t lb) {
    uint64_t h = hash2(a, la, b, lb);
    uint32_t tag = (uint32_t)h;
    for (uint64_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const tok_slot *s = &t->slots[i];
        if (s->id < 0) return -1;
        if (s->tag != tag || t->len[s->id] != la + lb) continue;
        const char *p = t->blob + t->off[s->id];
        if (memcmp(p, a, la) == 0 && memcmp(p + la, b, lb) == 0) return s->id;
    }
}

int32_t pq__tokenizer_lookup(const pq_tokenizer *t, const char *s, size_t len) {
    if (!t || !t->slots || (len > t->max_len)) return -1;
    return lookup2(t, s, len, "", 0);
}

static void hash_insert(pq_tokenizer *t, int32_t id) {
    const char *p = t->blob + t->off[id];
    uint64_t h = hash2(p, t->len[id], "", 0);
    for (uint64_t i = h & t->mask;; i = (i + 1) & t->mask) {
        tok_slot *s = &t->slots[i];
        if (s->id < 0) {
            s->id = id;
            s->tag = (uint32_t)h;
            return;
        }
        /* duplicate piece: keep the first (lowest) id, deterministic unlike llama2.c's bsearch */
        if (s->tag == (uint32_t)h && t->len[s->id] == t->len[id] &&
            memcmp(t->blob + t->off[s->id], p, t->len[id]) == 0)
            return;
    }
}

/* ---------------------------------------------------------------- construction */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Byte value of a "<0xXX>" piece, or -1. */
static int byte_piece_value(const char *p, size_t len) {
    if (len != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int hi = hexval(p[3]), lo = hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Length of piece after replacing every U+2581 by one space. */
static size_t unescaped_len(const char *p, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; n++)
        i += (i + 3 <= len && memcmp(p + i, spm_space, 3) == 0) ? 3 : 1;
    return n;
}

static void unescape_into(char *dst, const char *p, size_t len) {
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(p + i, spm_space, 3) == 0) {
            *dst++ = ' ';
            i += 3;
        } else {
            *dst++ = p[i++];
        }
    }
    *dst = 0;
}

pq_status pq__tokenizer_new_spm(pq_ctx *ctx, int64_t n, const char *const *pieces, const size_t *lens,
                                const float *scores, const int32_t *types, int32_t bos, int32_t eos, int32_t unk,
                                int add_dummy_prefix, pq_tokenizer **out) {
    return pq__tokenizer_new_vocab(ctx, PQ_TOK_SPM, n, pieces, lens, scores, types, bos, eos, unk, add_dummy_prefix,
                                   out);
}

/* Length of piece i as given (lens, else strlen; NULL pieces are empty). */
static size_t given_len(const char *const *pieces, const size_t *lens, int64_t i) {
    return lens ? lens[i] : (pieces[i] ? strlen(pieces[i]) : 0);
}

static pq_status check_vocab_args(pq_ctx *ctx, int64_t n, const char *const *pieces, int32_t bos, int32_t eos,
                                  int32_t unk) {
    if (n <= 0 || n > INT32_MAX / 4)
        return pq__fail(ctx, PQ_ERR_FORMAT, "tokenizer: vocabulary size %lld out of range", (long long)n);
    if (!pieces) return pq__fail(ctx, PQ_ERR_INVALID, "tokenizer: no pieces given");
    const int32_t special[3] = {bos, eos, unk};
    const char *special_name[3] = {"bos", "eos", "unk"};
    for (int k = 0; k < 3; k++)
        if (special[k] < -1 || special[k] >= n)
            return pq__fail(ctx, PQ_ERR_FORMAT, "tokenizer: %s id %d outside the %lld-piece vocabulary",
                            special_name[k], special[k], (long long)n);
    return PQ_OK;
}

/* Sets off, len and max_len from the stored (unescaped) piece lengths; *total: blob bytes. */
static pq_status layout_pieces(pq_ctx *ctx, pq_tokenizer *t, const char *const *pieces, const size_t *lens,
                               int unescape, size_t *total_out) {
    size_t total = 0;
    for (int64_t i = 0; i < t->n; i++) {
        size_t l = given_len(pieces, lens, i);
        if (l && !pieces[i]) return pq__fail(ctx, PQ_ERR_INVALID, "tokenizer: piece %lld is NULL", (long long)i);
        size_t u = l ? (unescape ? unescaped_len(pieces[i], l) : l) : 0;
        if (u > UINT32_MAX / 4 || total > SIZE_MAX - u - 1)
            return pq__fail(ctx, PQ_ERR_FORMAT, "tokenizer: piece %lld too long (%zu bytes)", (long long)i, l);
        t->off[i] = total;
        t->len[i] = (uint32_t)u;
        total += u + 1;
        if (u > t->max_len) t->max_len = (uint32_t)u;
    }
    *total_out = total;
    return PQ_OK;
}

/* Copies the pieces into the blob and sets scores, types, byte pieces and bigrams. */
static void fill_pieces(pq_tokenizer *t, const char *const *pieces, const size_t *lens, const float *scores,
                        const int32_t *types, int unescape) {
    for (int i = 0; i < 256; i++)
        t->byte_id[i] = -1;
    for (int32_t i = 0; i < t->n; i++) {
        size_t l = given_len(pieces, lens, i);
        if (l && unescape) {
            unescape_into(t->blob + t->off[i], pieces[i], l);
        } else {
            if (l) memcpy(t->blob + t->off[i], pieces[i], l);
            t->blob[t->off[i] + l] = 0;
        }
        t->score[i] = scores ? scores[i] : 0.0f;
        const int bv = byte_piece_value(t->blob + t->off[i], t->len[i]);
        if (types) {
            t->type[i] = types[i];
        } else if (i == t->unk) {
            t->type[i] = PQ_PIECE_UNKNOWN;
        } else if (i == t->bos || i == t->eos) {
            t->type[i] = PQ_PIECE_CONTROL;
        } else {
            t->type[i] = bv >= 0 ? PQ_PIECE_BYTE : PQ_PIECE_NORMAL;
        }
        if (t->type[i] == PQ_PIECE_BYTE && bv >= 0 && t->byte_id[bv] < 0) t->byte_id[bv] = i;
        const uint8_t *p = (const uint8_t *)t->blob + t->off[i];
        for (uint32_t k = 0; k + 1 < t->len[i]; k++) {
            const unsigned bg = (unsigned)p[k] << 8 | p[k + 1];
            t->bigram[bg >> 6] |= 1ull << (bg & 63);
        }
    }
}

static pq_status build_hash(pq_ctx *ctx, pq_tokenizer *t) {
    uint32_t cap = 16;
    while (cap < (uint32_t)t->n * 2u)
        cap *= 2;
    t->slots = pq__malloc(ctx, (size_t)cap * sizeof *t->slots, "tokenizer hash table");
    if (!t->slots) return PQ_ERR_NOMEM;
    for (uint32_t i = 0; i < cap; i++)
        t->slots[i].id = -1;
    t->mask = cap - 1;
    for (int32_t i = 0; i < t->n; i++)
        hash_insert(t, i);
    return PQ_OK;
}

pq_status pq__tokenizer_new_vocab(pq_ctx *ctx, pq__tok_kind kind, int64_t n, const char *const *pieces,
                                  const size_t *lens, const float *scores, const int32_t *types, int32_t bos,
                                  int32_t eos, int32_t unk, int add_dummy_prefix, pq_tokenizer **out) {
    *out = NULL;
    /* SPM pieces spell spaces as U+2581; BPE vocabularies are kept exactly as written */
    const int unescape = kind == PQ_TOK_SPM;
    pq_status st = check_vocab_args(ctx, n, pieces, bos, eos, unk);
    if (st != PQ_OK) return st;
    pq_tokenizer *t = pq__calloc(ctx, 1, sizeof *t, "the tokenizer");
    if (!t) return PQ_ERR_NOMEM;
    t->kind = kind;
    t->add_bos_default = 1;
    t->n = (int32_t)n;
    t->bos = bos;
    t->eos = eos;
    t->unk = unk;
    t->add_dummy_prefix = add_dummy_prefix != 0;
    t->off = pq__calloc(ctx, (size_t)n, sizeof *t->off, "tokenizer offsets");
    t->len = t->off ? pq__calloc(ctx, (size_t)n, sizeof *t->len, "tokenizer lengths") : NULL;
    t->score = t->len ? pq__calloc(ctx, (size_t)n, sizeof *t->score, "tokenizer scores") : NULL;
    t->type = t->score ? pq__calloc(ctx, (size_t)n, sizeof *t->type, "tokenizer types") : NULL;
    size_t total = 0;
    if (!t->type)
        st = PQ_ERR_NOMEM;
    else
        st = layout_pieces(ctx, t, pieces, lens, unescape, &total);
    if (st == PQ_OK && !(t->blob = pq__malloc(ctx, total, "tokenizer pieces"))) st = PQ_ERR_NOMEM;
    if (st == PQ_OK) {
        fill_pieces(t, pieces, lens, scores, types, unescape);
        st = build_hash(ctx, t);
    }
    if (st != PQ_OK) {
        pq_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PQ_OK;
}

void pq_tokenizer_free(pq_tokenizer *tok) {
    if (!tok) return;
    free(tok->blob);
    free(tok->off);
    free(tok->len);
    free(tok->score);
    free(tok->type);
    free(tok->slots);
    pq__bpe_free(tok->bpe);
    free(tok);
}

/* ---------------------------------------------------------------- accessors */

int64_t pq_tokenizer_n_vocab(const pq_tokenizer *tok) {
    return tok ? tok->n : 0;
}
int32_t pq_tokenizer_bos(const pq_tokenizer *tok) {
    return tok ? tok->bos : -1;
}
int32_t pq_tokenizer_eos(const pq_tokenizer *tok) {
    return tok ? tok->eos : -1;
}
int32_t pq__tokenizer_unk(const pq_tokenizer *t) {
    return t ? t->unk : -1;
}
pq__tok_kind pq__tokenizer_kind(const pq_tokenizer *t) {
    return t->kind;
}
int pq__tokenizer_add_dummy_prefix(const pq_tokenizer *t) {
    return t->add_dummy_prefix;
}
uint32_t pq__tokenizer_max_piece_len(const pq_tokenizer *t) {
    return t->max_len;
}
int pq__tokenizer_add_bos_default(const pq_tokenizer *t) {
    return t ? t->add_bos_default : 0;
}
const pq__bpe *pq__tokenizer_bpe(const pq_tokenizer *t) {
    return t ? t->bpe : NULL;
}

void pq__tokenizer_set_special(pq_tokenizer *t, int32_t bos, int32_t eos, int32_t unk, int add_bos_default) {
    t->bos = bos >= 0 && bos < t->n ? bos : -1;
    t->eos = eos >= 0 && eos < t->n ? eos : -1;
    t->unk = unk >= 0 && unk < t->n ? unk : -1;
    t->add_bos_default = add_bos_default != 0;
}

void pq__tokenizer_set_score(pq_tokenizer *t, int32_t id, float score) {
    if (id >= 0 && id < t->n) t->score[id] = score;
}

void pq__tokenizer_attach_bpe(pq_tokenizer *t, pq__bpe *bpe) {
    pq__bpe_free(t->bpe);
    t->bpe = bpe;
}

const char *pq__tokenizer_piece(const pq_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n) {
        if (len) *len = 0;
        return "";
    }
    if (len) *len = t->len[id];
    return t->blob + t->off[id];
}

float pq__tokenizer_score(const pq_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n ? t->score[id] : 0.0f;
}

int32_t pq__tokenizer_type(const pq_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n ? t->type[id] : 0;
}

int32_t pq__tokenizer_byte_id(const pq_tokenizer *t, uint8_t byte) {
    return t ? t->byte_id[byte] : -1;
}

/* ---------------------------------------------------------------- decoding */

const char *pq_token_to_piece(const pq_tokenizer *tok, int32_t prev, int32_t id, char *buf, size_t *len) {
    size_t dummy;
    if (!len) len = &dummy;
    *len = 0;
    if (!tok || id < 0 || id >= tok->n) return "";
    if (tok->kind == PQ_TOK_BPE) return pq__bpe_piece_text(tok, prev, id, len);
    const char *p = tok->blob + tok->off[id];
    size_t l = tok->len[id];
    if (tok->type[id] == PQ_PIECE_BYTE) {
        const int bv = byte_piece_value(p, l);
        if (bv >= 0 && buf) {
            buf[0] = (char)bv;
            buf[1] = 0;
            *len = 1;
            return buf;
        }
    }
    /* SentencePiece drops the dummy-prefix space of the first piece after BOS */
    if (prev >= 0 && prev == tok->bos && l > 0 && p[0] == ' ') {
        p++;
        l--;
    }
    *len = l;
    return p;
}

/* ---------------------------------------------------------------- encoding */

/* A symbol of the sequence being merged; nodes form a doubly linked list in text order.
 * ver changes whenever the node's token changes or the node dies, which invalidates every
 * heap entry that refers to it (lazy deletion). */
typedef struct enc_node {
    int32_t id, prev, next;
    uint32_t ver;
} enc_node;

typedef struct enc_pair {
    float score;
    int32_t left, right, id;
    uint32_t lver, rver;
} enc_pair;

typedef struct enc_heap {
    enc_pair *a;
    size_t n, cap;
} enc_heap;

/* llama2.c scans pairs left to right and takes a strictly greater score, so the leftmost
 * pair wins ties; node indices grow with text position, so the left index orders ties. */
static int pair_before(const enc_pair *x, const enc_pair *y) {
    if (x->score != y->score) return x->score > y->score;
    return x->left < y->left;
}

static int heap_push(enc_heap *h, const enc_pair *p) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 1024;
        enc_pair *na = realloc(h->a, nc * sizeof *na);
        if (!na) return 0;
        h->a = na;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(p, &h->a[parent])) break;
        h->a[i] = h->a[parent];
        i = parent;
    }
    h->a[i] = *p;
    return 1;
}

static enc_pair heap_pop(enc_heap *h) {
    enc_pair top = h->a[0];
    enc_pair last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&h->a[c + 1], &h->a[c])) c++;
        if (!pair_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n) h->a[i] = last;
    return top;
}

/* llama2.c initialises the best score to -1e10 and needs a strictly greater one, so merges
 * into pieces scored <= -1e10 (or NaN) never happen. */
#define MERGE_MIN_SCORE (-1e10f)

static int push_pair(const pq_tokenizer *t, enc_heap *h, const enc_node *nodes, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 1;
    const int32_t a = nodes[l].id, b = nodes[r].id;
    const size_t la = t->len[a], lb = t->len[b];
    if (la + lb > t->max_len) return 1;
    const int32_t id = lookup2(t, t->blob + t->off[a], la, t->blob + t->off[b], lb);
    if (id < 0 || !(t->score[id] > MERGE_MIN_SCORE)) return 1;
    const enc_pair p = {t->score[id], l, r, id, nodes[l].ver, nodes[r].ver};
    return heap_push(h, &p);
}

int pq__tokenizer_barrier(const pq_tokenizer *t, int32_t a, int32_t b) {
    const uint32_t la = t->len[a], lb = t->len[b];
    if (la == 0 || lb == 0) return 0; /* an empty piece has no boundary bytes: stay conservative */
    const unsigned bg = (unsigned)(uint8_t)t->blob[t->off[a] + la - 1] << 8 | (uint8_t)t->blob[t->off[b]];
    return !(t->bigram[bg >> 6] >> (bg & 63) & 1);
}

/* Appends the tokens of one text unit (a code point or stray byte group, at most 4 bytes). */
static int emit_unit(const pq_tokenizer *t, const char *s, size_t n, enc_node *nodes, int32_t *cnt) {
    int32_t id = lookup2(t, s, n, "", 0);
    if (id >= 0) {
        nodes[(*cnt)++].id = id;
        return 1;
    }
    int all_bytes = 1;
    for (size_t i = 0; i < n; i++)
        all_bytes &= t->byte_id[(uint8_t)s[i]] >= 0;
    if (all_bytes) {
        for (size_t i = 0; i < n; i++)
            nodes[(*cnt)++].id = t->byte_id[(uint8_t)s[i]];
        return 1;
    }
    /* character-level vocabularies without byte pieces (e.g. tok105): one <unk> per unit */
    if (t->unk < 0) return 0;
    nodes[(*cnt)++].id = t->unk;
    return 1;
}

static pq_status spm_encode(pq_ctx *ctx, const pq_tokenizer *t, const char *text, size_t len, int add_bos,
                            int32_t **ids, int64_t *n_ids) {
    if (len > (size_t)INT32_MAX - 8)
        return pq__fail(ctx, PQ_ERR_INVALID, "tokenize: text of %zu bytes is too long", len);
    const size_t cap = len + 2;
    enc_node *nodes = pq__calloc(ctx, cap, sizeof *nodes, "tokenizer symbols");
    if (!nodes) return PQ_ERR_NOMEM;
    int32_t cnt = 0;
    int ok = 1;
    if (len > 0 && t->add_dummy_prefix) ok = emit_unit(t, " ", 1, nodes, &cnt);
    /* split like llama2.c: a unit is any byte plus up to 3 following continuation bytes */
    for (size_t i = 0; i < len && ok;) {
        size_t j = i + 1;
        while (j < len && j - i < 4 && ((uint8_t)text[j] & 0xC0) == 0x80)
            j++;
        ok = emit_unit(t, text + i, j - i, nodes, &cnt);
        i = j;
    }
    if (!ok) {
        free(nodes);
        return pq__fail(ctx, PQ_ERR_INVALID,
                        "tokenize: text has a character that is not in the vocabulary and the tokenizer has "
                        "neither byte pieces nor an unknown token");
    }
    /* Merges never change the bytes on either side of a boundary, so a boundary whose bigram
     * (last byte of the left piece, first byte of the right piece) occurs in no piece is never
     * crossed. The segments between such barriers evolve independently: merging each on its own
     * gives exactly the global llama2.c order, with a small heap that stays in cache. */
    enc_heap h = {0};
    for (int32_t s = 0; s < cnt && ok;) {
        int32_t e = s + 1;
        while (e < cnt && !pq__tokenizer_barrier(t, nodes[e - 1].id, nodes[e].id))
            e++;
        for (int32_t i = s; i < e; i++) {
            nodes[i].prev = i - 1 >= s ? i - 1 : -1;
            nodes[i].next = i + 1 < e ? i + 1 : -1;
            nodes[i].ver = 0;
        }
        h.n = 0;
        for (int32_t i = s; i + 1 < e && ok; i++)
            ok = push_pair(t, &h, nodes, i, i + 1);
        while (ok && h.n) {
            const enc_pair p = heap_pop(&h);
            if (nodes[p.left].ver != p.lver || nodes[p.right].ver != p.rver) continue; /* stale */
            enc_node *l = &nodes[p.left], *r = &nodes[p.right];
            l->id = p.id;
            l->ver++;
            r->ver++;
            r->id = -1;
            l->next = r->next;
            if (r->next >= 0) nodes[r->next].prev = p.left;
            ok = push_pair(t, &h, nodes, l->prev, p.left) && push_pair(t, &h, nodes, p.left, l->next);
        }
        /* the first node of a segment always survives (merges keep the left node): chain the
         * segment's survivors onto the next segment for the final walk */
        int32_t last = s;
        while (nodes[last].next >= 0)
            last = nodes[last].next;
        nodes[last].next = e < cnt ? e : -1;
        s = e;
    }
    free(h.a);
    if (!ok) {
        free(nodes);
        return pq__fail(ctx, PQ_ERR_NOMEM, "tokenize: out of memory for the merge queue");
    }
    int64_t n = 0;
    int32_t *res = pq__malloc(ctx, ((size_t)cnt + 1) * sizeof *res, "token ids");
    if (!res) {
        free(nodes);
        return PQ_ERR_NOMEM;
    }
    if (add_bos && t->bos >= 0) res[n++] = t->bos;
    for (int32_t i = cnt ? 0 : -1; i >= 0; i = nodes[i].next)
        res[n++] = nodes[i].id;
    free(nodes);
    *ids = res;
    *n_ids = n;
    return PQ_OK;
}

pq_status pq_tokenize(pq_ctx *ctx, const pq_tokenizer *tok, const char *text, size_t len, int add_bos, int32_t **ids,
                      int64_t *n_ids) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!tok || !ids || !n_ids || (!text && len)) return pq__fail(ctx, PQ_ERR_INVALID, "tokenize: NULL argument");
    if (tok->kind == PQ_TOK_BPE) return pq__bpe_encode(ctx, tok, text ? text : "", len, add_bos, ids, n_ids);
    return spm_encode(ctx, tok, text ? text : "", len, add_bos, ids, n_ids);
}

/* ---------------------------------------------------------------- loading */

pq_status pq__tokenizer_load_with(pq_ctx *ctx, const char *path, pq__tok_parse_fn parse, pq_tokenizer **out) {
    *out = NULL;
    pq__file f;
    pq_status st = pq__file_open(ctx, path, 1, &f);
    if (st != PQ_OK) return st;
    st = parse(ctx, path, f.data, f.size, out);
    pq__file_close(&f);
    return st;
}

static int looks_like_json(const uint8_t *d, size_t n) {
    size_t i = 0;
    if (n >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF) i = 3; /* UTF-8 BOM */
    while (i < n && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r'))
        i++;
    if (i >= n || d[i] != '{') return 0;
    /* a llama2.c .bin whose max_token_length is 123 also starts with '{', followed by NULs */
    for (size_t k = i; k < n && k < i + 64; k++)
        if (d[k] == 0) return 0;
    return 1;
}

pq_status pq_tokenizer_load(pq_ctx *ctx, const char *path, pq_tokenizer **out) {
    if (!out) return pq__fail(ctx, PQ_ERR_INVALID, "tokenizer load: NULL output");
    *out = NULL;
    if (!path) return pq__fail(ctx, PQ_ERR_INVALID, "tokenizer load: NULL path");
    if (pq__is_dir(path)) {
        /* a Hugging Face folder: tokenizer.json first (it carries added tokens), else tokenizer.model */
        static const char *const names[2] = {"tokenizer.json", "tokenizer.model"};
        for (int k = 0; k < 2; k++) {
            char *p = pq__path_join_ctx(ctx, path, names[k]);
            if (!p) return PQ_ERR_NOMEM;
            if (pq__file_exists(p)) {
                pq_status st = pq_tokenizer_load(ctx, p, out);
                free(p);
                return st;
            }
            free(p);
        }
        return pq__fail(ctx, PQ_ERR_IO, "%s: folder has neither tokenizer.json nor tokenizer.model", path);
    }
    pq__file f;
    pq_status st = pq__file_open(ctx, path, 1, &f);
    if (st != PQ_OK) return st;
    if (f.size == 0) {
        pq__file_close(&f);
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: empty tokenizer file", path);
    }
    if (looks_like_json(f.data, f.size)) {
        pq__file_close(&f);
        return pq__tokenizer_load_hf_json(ctx, path, out);
    }
    /* A llama2.c .bin starts with a small positive int32 (max_token_length); a ModelProto
     * starts with tag 0x0a and a length, which read as an int32 is far larger. The llama2.c
     * parse also has to consume the file exactly, so a false positive is very unlikely. */
    int plausible_bin = 0;
    if (f.size >= 4) {
        int32_t m;
        memcpy(&m, f.data, 4);
        plausible_bin = m >= 1 && m <= PQ_LLAMA2C_MAX_TOKEN_LENGTH;
    }
    if (plausible_bin) {
        st = pq__tokenizer_parse_llama2c(ctx, path, f.data, f.size, out);
        if (st == PQ_OK || st == PQ_ERR_NOMEM) {
            pq__file_close(&f);
            return st;
        }
        /* keep the llama2.c message: the protobuf attempt is only a fallback */
        char saved[sizeof ctx->error];
        if (ctx) memcpy(saved, ctx->error, sizeof saved);
        pq_status st2 = pq__tokenizer_parse_spm_model(ctx, path, f.data, f.size, out);
        if (st2 != PQ_OK && st2 != PQ_ERR_NOMEM && ctx) {
            memcpy(ctx->error, saved, sizeof saved);
            ctx->status = st;
        } else {
            st = st2;
        }
        pq__file_close(&f);
        return st;
    }
    st = pq__tokenizer_parse_spm_model(ctx, path, f.data, f.size, out);
    pq__file_close(&f);
    return st;
}
