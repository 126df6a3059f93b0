/* SentencePiece ModelProto (tokenizer.model) reader and writer. Only what the SPM encoder needs
 * is read: ModelProto.pieces (1) {piece 1, score 2, type 3}, trainer_spec (2) {model_type 3,
 * unk_id 40, bos_id 41, eos_id 42} and normalizer_spec (3) {add_dummy_prefix 3}; every other
 * field of any wire type is skipped. Every length is checked against its enclosing message. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };
#define PB_MAX_DEPTH 32

typedef struct pb {
    const uint8_t *p;
    size_t pos, end; /* end of the current message */
} pb;

typedef struct spm_parse {
    pq_ctx *ctx;
    const char *name;
    const char **pieces;
    size_t *lens;
    float *scores;
    int32_t *types;
    int64_t n, cap;
    int64_t unk_id, bos_id, eos_id; /* INT64_MIN: absent */
    int32_t model_type;
    int add_dummy_prefix;
} spm_parse;

static pq_status bad(spm_parse *s, const pb *b, const char *what) {
    return pq__fail(s->ctx, PQ_ERR_FORMAT, "%s: SentencePiece model: %s at byte %zu", s->name, what, b->pos);
}

static int rd_varint(pb *b, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (b->pos >= b->end) return 0;
        const uint8_t c = b->p[b->pos++];
        if (i == 9 && c > 1) return 0; /* more than 64 bits */
        x |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* Reads a tag; field numbers are 29 bits, wire types 0..5. */
static int rd_tag(pb *b, uint32_t *field, int *wire) {
    uint64_t t;
    if (!rd_varint(b, &t) || (t >> 3) == 0 || (t >> 3) > 0x1fffffff || (t & 7) > 5) return 0;
    *field = (uint32_t)(t >> 3);
    *wire = (int)(t & 7);
    return 1;
}

/* Bounds of a length-delimited payload; advances past it. */
static int rd_len(pb *b, pb *sub) {
    uint64_t n;
    if (!rd_varint(b, &n) || n > b->end - b->pos) return 0;
    sub->p = b->p;
    sub->pos = b->pos;
    sub->end = b->pos + (size_t)n;
    b->pos = sub->end;
    return 1;
}

static int rd_fixed32(pb *b, uint32_t *v) {
    if (b->end - b->pos < 4) return 0;
    const uint8_t *q = b->p + b->pos;
    *v = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    b->pos += 4;
    return 1;
}

/* Skips one field of the given wire type (groups recursively, up to PB_MAX_DEPTH). */
static int skip_field(pb *b, uint32_t field, int wire, int depth) {
    uint64_t v;
    pb sub;
    switch (wire) {
    case WT_VARINT: return rd_varint(b, &v);
    case WT_I64:
        if (b->end - b->pos < 8) return 0;
        b->pos += 8;
        return 1;
    case WT_LEN: return rd_len(b, &sub);
    case WT_I32:
        if (b->end - b->pos < 4) return 0;
        b->pos += 4;
        return 1;
    case WT_SGROUP:
        if (depth >= PB_MAX_DEPTH) return 0;
        for (;;) {
            uint32_t f;
            int w;
            if (!rd_tag(b, &f, &w)) return 0;
            if (w == WT_EGROUP) return f == field;
            if (!skip_field(b, f, w, depth + 1)) return 0;
        }
    default: return 0; /* a stray end-group */
    }
}

static pq_status add_piece(spm_parse *s) {
    if (s->n == s->cap) {
        int64_t nc = s->cap ? s->cap * 2 : 256;
        if (nc > INT32_MAX / 4)
            return pq__fail(s->ctx, PQ_ERR_FORMAT, "%s: SentencePiece model: too many pieces", s->name);
        const char **np = realloc(s->pieces, (size_t)nc * sizeof *np);
        if (np) s->pieces = np;
        size_t *nl = np ? realloc(s->lens, (size_t)nc * sizeof *nl) : NULL;
        if (nl) s->lens = nl;
        float *ns = nl ? realloc(s->scores, (size_t)nc * sizeof *ns) : NULL;
        if (ns) s->scores = ns;
        int32_t *nt = ns ? realloc(s->types, (size_t)nc * sizeof *nt) : NULL;
        if (!nt)
            return pq__fail(s->ctx, PQ_ERR_NOMEM, "%s: out of memory allocating %zu bytes for %lld pieces", s->name,
                            (size_t)nc * (sizeof(char *) + sizeof(size_t) + sizeof(float) + sizeof(int32_t)),
                            (long long)nc);
        s->types = nt;
        s->cap = nc;
    }
    /* proto defaults: empty piece, score 0, type NORMAL */
    s->pieces[s->n] = "";
    s->lens[s->n] = 0;
    s->scores[s->n] = 0.0f;
    s->types[s->n] = PQ_PIECE_NORMAL;
    s->n++;
    return PQ_OK;
}

static pq_status parse_piece(spm_parse *s, pb *b) {
    pq_status st = add_piece(s);
    if (st != PQ_OK) return st;
    const int64_t i = s->n - 1;
    char what[96];
    while (b->pos < b->end) {
        uint32_t f;
        int w;
        if (!rd_tag(b, &f, &w)) {
            snprintf(what, sizeof what, "pieces[%lld]: bad field tag", (long long)i);
            return bad(s, b, what);
        }
        if (f == 1) {
            pb sub;
            if (w != WT_LEN || !rd_len(b, &sub)) {
                snprintf(what, sizeof what, "pieces[%lld].piece: bad wire type or length", (long long)i);
                return bad(s, b, what);
            }
            s->pieces[i] = (const char *)sub.p + sub.pos;
            s->lens[i] = sub.end - sub.pos;
        } else if (f == 2) {
            uint32_t u;
            if (w != WT_I32 || !rd_fixed32(b, &u)) {
                snprintf(what, sizeof what, "pieces[%lld].score: bad wire type or truncated float", (long long)i);
                return bad(s, b, what);
            }
            memcpy(&s->scores[i], &u, 4);
        } else if (f == 3) {
            uint64_t v;
            if (w != WT_VARINT || !rd_varint(b, &v)) {
                snprintf(what, sizeof what, "pieces[%lld].type: bad wire type or varint", (long long)i);
                return bad(s, b, what);
            }
            s->types[i] = (int32_t)(uint32_t)v;
        } else if (!skip_field(b, f, w, 0)) {
            snprintf(what, sizeof what, "pieces[%lld]: bad field %u (wire type %d)", (long long)i, f, w);
            return bad(s, b, what);
        }
    }
    return PQ_OK;
}

static pq_status parse_trainer_spec(spm_parse *s, pb *b) {
    while (b->pos < b->end) {
        uint32_t f;
        int w;
        if (!rd_tag(b, &f, &w)) return bad(s, b, "trainer_spec: bad field tag");
        if (f == 3 || f == 40 || f == 41 || f == 42) {
            uint64_t v;
            const char *fname = f == 3 ? "model_type" : f == 40 ? "unk_id" : f == 41 ? "bos_id" : "eos_id";
            if (w != WT_VARINT || !rd_varint(b, &v)) {
                char what[96];
                snprintf(what, sizeof what, "trainer_spec.%s: bad wire type or varint", fname);
                return bad(s, b, what);
            }
            /* int32 fields: negative values are sign-extended 64-bit varints */
            const int32_t x = (int32_t)(uint32_t)v;
            if (f == 3) s->model_type = x;
            if (f == 40) s->unk_id = x;
            if (f == 41) s->bos_id = x;
            if (f == 42) s->eos_id = x;
        } else if (!skip_field(b, f, w, 0)) {
            char what[96];
            snprintf(what, sizeof what, "trainer_spec: bad field %u (wire type %d)", f, w);
            return bad(s, b, what);
        }
    }
    return PQ_OK;
}

static pq_status parse_normalizer_spec(spm_parse *s, pb *b) {
    while (b->pos < b->end) {
        uint32_t f;
        int w;
        if (!rd_tag(b, &f, &w)) return bad(s, b, "normalizer_spec: bad field tag");
        if (f == 3) {
            uint64_t v;
            if (w != WT_VARINT || !rd_varint(b, &v))
                return bad(s, b, "normalizer_spec.add_dummy_prefix: bad wire type or varint");
            s->add_dummy_prefix = v != 0;
        } else if (!skip_field(b, f, w, 0)) {
            char what[96];
            snprintf(what, sizeof what, "normalizer_spec: bad field %u (wire type %d)", f, w);
            return bad(s, b, what);
        }
    }
    return PQ_OK;
}

/* First piece of the given type (and spelling, if text is not NULL), or -1. */
static int64_t find_piece(const spm_parse *s, int32_t type, const char *text) {
    for (int64_t i = 0; i < s->n; i++)
        if (s->types[i] == type &&
            (!text || (s->lens[i] == strlen(text) && memcmp(s->pieces[i], text, s->lens[i]) == 0)))
            return i;
    return -1;
}

static pq_status resolve_id(spm_parse *s, int64_t given, int64_t by_type, int64_t def, const char *field,
                            int32_t *out) {
    if (given != INT64_MIN) {
        /* SentencePiece uses -1 for "no such token" */
        if (given < -1 || given >= s->n)
            return pq__fail(s->ctx, PQ_ERR_FORMAT,
                            "%s: SentencePiece model: trainer_spec.%s %lld outside the %lld pieces", s->name, field,
                            (long long)given, (long long)s->n);
        *out = (int32_t)given;
    } else if (by_type >= 0) {
        *out = (int32_t)by_type;
    } else {
        *out = def < s->n ? (int32_t)def : -1;
    }
    return PQ_OK;
}

pq_status pq__tokenizer_parse_spm_model(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                                        pq_tokenizer **out) {
    *out = NULL;
    spm_parse s = {ctx, name, NULL, NULL, NULL, NULL, 0, 0, INT64_MIN, INT64_MIN, INT64_MIN, 0, 1};
    pb b = {data, 0, size};
    pq_status st = PQ_OK;
    while (st == PQ_OK && b.pos < b.end) {
        uint32_t f;
        int w;
        if (!rd_tag(&b, &f, &w)) {
            st = bad(&s, &b, "bad field tag");
            break;
        }
        if (f == 1 || f == 2 || f == 3) {
            static const char *const names[4] = {"", "pieces", "trainer_spec", "normalizer_spec"};
            pb sub;
            if (w != WT_LEN || !rd_len(&b, &sub)) {
                char what[96];
                snprintf(what, sizeof what, "%s: bad wire type or length", names[f]);
                st = bad(&s, &b, what);
                break;
            }
            st = f == 1   ? parse_piece(&s, &sub)
                 : f == 2 ? parse_trainer_spec(&s, &sub)
                          : parse_normalizer_spec(&s, &sub);
        } else if (!skip_field(&b, f, w, 0)) {
            char what[96];
            snprintf(what, sizeof what, "bad field %u (wire type %d)", f, w);
            st = bad(&s, &b, what);
        }
    }
    if (st == PQ_OK && s.n == 0) st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: SentencePiece model: no pieces", name);
    int32_t bos = -1, eos = -1, unk = -1;
    if (st == PQ_OK) st = resolve_id(&s, s.unk_id, find_piece(&s, PQ_PIECE_UNKNOWN, NULL), 0, "unk_id", &unk);
    if (st == PQ_OK) st = resolve_id(&s, s.bos_id, find_piece(&s, PQ_PIECE_CONTROL, "<s>"), 1, "bos_id", &bos);
    if (st == PQ_OK) st = resolve_id(&s, s.eos_id, find_piece(&s, PQ_PIECE_CONTROL, "</s>"), 2, "eos_id", &eos);
    if (st == PQ_OK && s.model_type == 1)
        pq__log(ctx, PQ_LOG_WARN, "%s: unigram SentencePiece model; encoding with score-ordered merges like llama2.c",
                name);
    if (st == PQ_OK) {
        st = pq__tokenizer_new_spm(ctx, s.n, s.pieces, s.lens, s.scores, s.types, bos, eos, unk, s.add_dummy_prefix,
                                   out);
        if (st != PQ_OK && st != PQ_ERR_NOMEM) st = pq__fail_prefix(ctx, st, "%s: SentencePiece model", name);
    }
    free(s.pieces);
    free(s.lens);
    free(s.scores);
    free(s.types);
    return st;
}

pq_status pq__tokenizer_load_spm_model(pq_ctx *ctx, const char *path, pq_tokenizer **out) {
    return pq__tokenizer_load_with(ctx, path, pq__tokenizer_parse_spm_model, out);
}

/* ---------------------------------------------------------------- writer */

typedef struct pbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} pbuf;

static void put(pbuf *w, const void *data, size_t n) {
    if (w->oom || n == 0) return;
    if (w->cap - w->n < n) {
        size_t nc = w->cap ? w->cap : 4096;
        while (nc - w->n < n)
            nc *= 2;
        uint8_t *np = realloc(w->p, nc);
        if (!np) {
            w->oom = 1;
            return;
        }
        w->p = np;
        w->cap = nc;
    }
    memcpy(w->p + w->n, data, n);
    w->n += n;
}

static void put_varint(pbuf *w, uint64_t v) {
    uint8_t b[10];
    size_t k = 0;
    do {
        b[k] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) b[k] |= 0x80;
        k++;
    } while (v);
    put(w, b, k);
}

static void put_tag(pbuf *w, uint32_t field, int wire) {
    put_varint(w, (uint64_t)field << 3 | (uint64_t)wire);
}

/* int32 fields are encoded as sign-extended 64-bit varints */
static void put_int32(pbuf *w, uint32_t field, int32_t v) {
    put_tag(w, field, WT_VARINT);
    put_varint(w, (uint64_t)(int64_t)v);
}

static void put_bytes(pbuf *w, uint32_t field, const void *data, size_t n) {
    put_tag(w, field, WT_LEN);
    put_varint(w, n);
    put(w, data, n);
}

pq_status pq__tokenizer_save_spm_model(pq_ctx *ctx, const pq_tokenizer *t, const char *path) {
    if (!t || !path) return pq__fail(ctx, PQ_ERR_INVALID, "save tokenizer.model: NULL argument");
    if (pq__tokenizer_kind(t) != PQ_TOK_SPM)
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED,
                        "%s: only SentencePiece-style tokenizers can be written as a "
                        "SentencePiece model",
                        path);
    pbuf w = {0}, piece = {0}, text = {0};
    const int64_t n = pq_tokenizer_n_vocab(t);
    int n_bytes = 0;
    for (int i = 0; i < 256; i++)
        n_bytes += pq__tokenizer_byte_id(t, (uint8_t)i) >= 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len;
        const char *p = pq__tokenizer_piece(t, i, &len);
        text.n = 0;
        for (size_t k = 0; k < len; k++) {
            if (p[k] == ' ')
                put(&text, "\xe2\x96\x81", 3);
            else
                put(&text, p + k, 1);
        }
        piece.n = 0;
        put_bytes(&piece, 1, text.p ? text.p : (const uint8_t *)"", text.n);
        const float sc = pq__tokenizer_score(t, i);
        uint8_t f4[4];
        uint32_t u;
        memcpy(&u, &sc, 4);
        for (int k = 0; k < 4; k++)
            f4[k] = (uint8_t)(u >> (8 * k));
        put_tag(&piece, 2, WT_I32);
        put(&piece, f4, 4);
        const int32_t type = pq__tokenizer_type(t, i);
        if (type != PQ_PIECE_NORMAL) put_int32(&piece, 3, type); /* NORMAL is the proto default */
        put_bytes(&w, 1, piece.p, piece.n);
    }
    pbuf spec = {0};
    put_int32(&spec, 3, 2); /* model_type BPE: the encoder merges by score like SentencePiece BPE */
    put_int32(&spec, 4, (int32_t)n);
    put_tag(&spec, 35, WT_VARINT);
    put_varint(&spec, n_bytes == 256); /* byte_fallback */
    put_int32(&spec, 40, pq__tokenizer_unk(t));
    put_int32(&spec, 41, pq_tokenizer_bos(t));
    put_int32(&spec, 42, pq_tokenizer_eos(t));
    put_int32(&spec, 43, -1); /* pad_id */
    put_bytes(&w, 2, spec.p, spec.n);
    spec.n = 0;
    put_bytes(&spec, 1, "identity", 8);
    put_tag(&spec, 3, WT_VARINT);
    put_varint(&spec, pq__tokenizer_add_dummy_prefix(t) != 0);
    put_tag(&spec, 4, WT_VARINT); /* remove_extra_whitespaces: off, the encoder keeps whitespace as is */
    put_varint(&spec, 0);
    put_tag(&spec, 5, WT_VARINT); /* escape_whitespaces */
    put_varint(&spec, 1);
    put_bytes(&w, 3, spec.p, spec.n);
    const int oom = w.oom || piece.oom || text.oom || spec.oom;
    free(piece.p);
    free(text.p);
    free(spec.p);
    if (oom) {
        free(w.p);
        return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory building the SentencePiece model", path);
    }
    pq__atomic a;
    pq_status st = pq__atomic_open(ctx, path, &a);
    if (st == PQ_OK) st = pq__atomic_write(ctx, &a, w.p, w.n);
    if (st == PQ_OK)
        st = pq__atomic_commit(ctx, &a);
    else
        pq__atomic_abort(&a);
    free(w.p);
    return st;
}
