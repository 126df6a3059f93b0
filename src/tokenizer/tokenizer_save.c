/* Hugging Face tokenizer files for BPE tokenizers: tokenizer.json (the text it was loaded from,
 * or generated for a GGUF gpt2 vocabulary: BPE vocab + merges, Split regex + ByteLevel,
 * ByteLevel decoder, control / user-defined tokens as added tokens) and tokenizer_config.json
 * (bos/eos token strings, add_bos_token). */
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* NUL-terminated copy of piece id (cJSON strings are C strings); NULL if it holds a NUL byte. */
static char *piece_str(const pq_tokenizer *t, int32_t id) {
    size_t len;
    const char *p = pq__tokenizer_piece(t, id, &len);
    if (memchr(p, 0, len)) return NULL;
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = 0;
    }
    return s;
}

static int is_added(int32_t type) {
    return type == PQ_PIECE_CONTROL || type == PQ_PIECE_USER;
}

static cJSON *byte_level(int add_prefix_space, int trim_offsets, int use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

/* {"type": "TemplateProcessing", ...} putting bos (text, id) before each sequence. */
static cJSON *bos_template(const char *bos, int32_t id) {
    cJSON *o = cJSON_CreateObject(), *single = cJSON_CreateArray(), *pair = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "type", "TemplateProcessing");
    for (int k = 0; k < 4; k++) {
        cJSON *item = cJSON_CreateObject(), *in = cJSON_CreateObject();
        const int special = k % 2 == 0;
        cJSON_AddStringToObject(in, "id", special ? bos : k == 1 ? "A" : "B");
        cJSON_AddNumberToObject(in, "type_id", k / 2);
        cJSON_AddItemToObject(item, special ? "SpecialToken" : "Sequence", in);
        if (k < 2) cJSON_AddItemToArray(single, cJSON_Duplicate(item, 1));
        cJSON_AddItemToArray(pair, item);
    }
    cJSON_AddItemToObject(o, "single", single);
    cJSON_AddItemToObject(o, "pair", pair);
    cJSON *sp = cJSON_CreateObject(), *entry = cJSON_CreateObject(), *ids = cJSON_CreateArray(),
          *toks = cJSON_CreateArray();
    cJSON_AddStringToObject(entry, "id", bos);
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(id));
    cJSON_AddItemToArray(toks, cJSON_CreateString(bos));
    cJSON_AddItemToObject(entry, "ids", ids);
    cJSON_AddItemToObject(entry, "tokens", toks);
    cJSON_AddItemToObject(sp, bos, entry);
    cJSON_AddItemToObject(o, "special_tokens", sp);
    return o;
}

/* The added tokens (control / user-defined pieces) and the vocabulary; *unk_text: a copy of
 * the unknown token's text. Returns 0 on allocation failure. */
static int add_vocab(const pq_tokenizer *t, cJSON *added, cJSON *vocab, char **unk_text) {
    const int64_t n = pq_tokenizer_n_vocab(t);
    const int32_t unk = pq__tokenizer_unk(t);
    int oom = 0;
    for (int32_t id = 0; id < n && !oom; id++) {
        const int32_t ty = pq__tokenizer_type(t, id);
        size_t len;
        pq__tokenizer_piece(t, id, &len);
        if (ty == PQ_PIECE_UNUSED && len == 0) continue;
        char *s = piece_str(t, id);
        if (!s) {
            if (len && memchr(pq__tokenizer_piece(t, id, &len), 0, len)) continue; /* not representable */
            oom = 1;
            break;
        }
        if (is_added(ty)) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", id);
            cJSON_AddStringToObject(a, "content", s);
            cJSON_AddBoolToObject(a, "single_word", 0);
            cJSON_AddBoolToObject(a, "lstrip", 0);
            cJSON_AddBoolToObject(a, "rstrip", 0);
            cJSON_AddBoolToObject(a, "normalized", 0);
            cJSON_AddBoolToObject(a, "special", ty == PQ_PIECE_CONTROL);
            if (!cJSON_AddItemToArray(added, a)) oom = 1;
        } else if (pq__tokenizer_lookup(t, s, len) == id) {
            if (!cJSON_AddNumberToObject(vocab, s, id)) oom = 1;
        }
        if (id == unk && !*unk_text) {
            *unk_text = s;
            s = NULL;
        }
        free(s);
    }
    return !oom;
}

/* The merges, as "left right" strings (or [left, right] pairs). Returns 0 on allocation failure. */
static int add_merges(const pq_tokenizer *t, cJSON *merges) {
    const int64_t nm = pq__tokenizer_n_merges(t);
    int oom = 0;
    for (int64_t r = 0; r < nm && !oom; r++) {
        int32_t l, rr;
        if (!pq__tokenizer_merge(t, r, &l, &rr)) break;
        char *ls = piece_str(t, l), *rs = piece_str(t, rr);
        if (!ls || !rs) {
            oom = 1;
        } else if (strchr(ls, ' ') || strchr(rs, ' ')) {
            /* "left right" would be ambiguous: the pair form of tokenizers >= 0.20 */
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateString(ls));
            cJSON_AddItemToArray(pair, cJSON_CreateString(rs));
            if (!cJSON_AddItemToArray(merges, pair)) oom = 1;
        } else {
            const size_t ll = strlen(ls), rl = strlen(rs);
            char *m = malloc(ll + rl + 2);
            if (m) {
                memcpy(m, ls, ll);
                m[ll] = ' ';
                memcpy(m + ll + 1, rs, rl + 1);
                if (!cJSON_AddItemToArray(merges, cJSON_CreateString(m))) oom = 1;
            } else {
                oom = 1;
            }
            free(m);
        }
        free(ls);
        free(rs);
    }
    return !oom;
}

/* ByteLevel alone for the GPT-2 regex, else Split(regex) + ByteLevel without its own regex. */
static cJSON *pre_tokenizer(const char *regex) {
    if (!strcmp(regex, PQ_REGEX_GPT2)) return byte_level(0, 1, 1);
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray(), *split = cJSON_CreateObject(),
          *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(pat, "Regex", regex);
    cJSON_AddItemToObject(split, "pattern", pat);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", 0);
    cJSON_AddItemToArray(list, split);
    cJSON_AddItemToArray(list, byte_level(0, 1, 0));
    cJSON_AddItemToObject(seq, "pretokenizers", list);
    return seq;
}

/* ByteLevel, plus a template adding bos when the tokenizer adds it by default. */
static cJSON *post_processor(const pq_tokenizer *t) {
    const int32_t bos = pq_tokenizer_bos(t);
    char *bos_text = bos >= 0 ? piece_str(t, bos) : NULL;
    cJSON *o;
    if (pq__tokenizer_add_bos_default(t) && bos_text) {
        cJSON *list = cJSON_CreateArray();
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "Sequence");
        cJSON_AddItemToArray(list, byte_level(1, 0, 1));
        cJSON_AddItemToArray(list, bos_template(bos_text, bos));
        cJSON_AddItemToObject(o, "processors", list);
    } else {
        o = byte_level(1, 0, 1);
    }
    free(bos_text);
    return o;
}

static cJSON *bpe_model(const pq_tokenizer *t, const char *unk_text, cJSON *vocab, cJSON *merges) {
    cJSON *model = cJSON_CreateObject();
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    if (unk_text)
        cJSON_AddStringToObject(model, "unk_token", unk_text);
    else
        cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", pq__tokenizer_ignore_merges(t));
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    return model;
}

/* tokenizer.json of a byte-level BPE vocabulary (one pq__tokenizer_gguf_pre names). Pieces that
 * repeat an earlier piece, and empty unused ids, are left out of the vocabulary (ids may have
 * gaps, as in real files). */
static pq_status generate_json(pq_ctx *ctx, const pq_tokenizer *t, const char *dir, char **out) {
    const char *pre = pq__tokenizer_gguf_pre(t);
    const char *regex = pre ? pq__bpe_pre_regex(pre, strlen(pre)) : NULL;
    if (!regex)
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED,
                        "%s: tokenizer.json: this BPE tokenizer has no byte-level pipeline to describe", dir);
    cJSON *root = cJSON_CreateObject();
    cJSON *added = cJSON_CreateArray(), *vocab = cJSON_CreateObject(), *merges = cJSON_CreateArray();
    char *unk_text = NULL;
    const int ok = add_vocab(t, added, vocab, &unk_text) && add_merges(t, merges);
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pre_tokenizer(regex));
    cJSON_AddItemToObject(root, "post_processor", post_processor(t));
    cJSON_AddItemToObject(root, "decoder", byte_level(1, 1, 1));
    cJSON_AddItemToObject(root, "model", bpe_model(t, unk_text, vocab, merges));
    free(unk_text);
    *out = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!*out) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory writing tokenizer.json", dir);
    return PQ_OK;
}

static pq_status write_file(pq_ctx *ctx, const char *dir, const char *name, const char *text, size_t len) {
    char *path = pq__path_join_ctx(ctx, dir, name);
    if (!path) return PQ_ERR_NOMEM;
    pq__atomic a;
    pq_status st = pq__atomic_open(ctx, path, &a);
    if (st == PQ_OK) st = pq__atomic_write(ctx, &a, text, len);
    if (st == PQ_OK)
        st = pq__atomic_commit(ctx, &a);
    else
        pq__atomic_abort(&a);
    free(path);
    return st;
}

static void add_token_field(cJSON *o, const pq_tokenizer *t, const char *key, int32_t id, int *oom) {
    char *s = id >= 0 ? piece_str(t, id) : NULL;
    if (id >= 0 && !s) *oom = 1;
    if (s)
        cJSON_AddStringToObject(o, key, s);
    else
        cJSON_AddNullToObject(o, key);
    free(s);
}

pq_status pq__tokenizer_save_hf(pq_ctx *ctx, const pq_tokenizer *t, const char *dir) {
    if (pq__tokenizer_kind(t) != PQ_TOK_BPE)
        return pq__fail(ctx, PQ_ERR_INTERNAL, "%s: tokenizer.json is written for BPE tokenizers only", dir);
    size_t len = 0;
    const char *orig = pq__tokenizer_hf_json(t, &len);
    char *gen = NULL;
    pq_status st = PQ_OK;
    if (!orig) {
        st = generate_json(ctx, t, dir, &gen);
        if (st != PQ_OK) return st;
        orig = gen;
        len = strlen(gen);
    }
    st = write_file(ctx, dir, "tokenizer.json", orig, len);
    free(gen);
    if (st != PQ_OK) return st;
    /* the loader takes bos/eos/add_bos_token from here before the post-processor template */
    int oom = 0;
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddBoolToObject(cfg, "add_bos_token", pq__tokenizer_add_bos_default(t));
    cJSON_AddBoolToObject(cfg, "add_eos_token", 0);
    add_token_field(cfg, t, "bos_token", pq_tokenizer_bos(t), &oom);
    add_token_field(cfg, t, "eos_token", pq_tokenizer_eos(t), &oom);
    if (pq__tokenizer_unk(t) >= 0) add_token_field(cfg, t, "unk_token", pq__tokenizer_unk(t), &oom);
    cJSON_AddBoolToObject(cfg, "clean_up_tokenization_spaces", 0);
    cJSON_AddStringToObject(cfg, "tokenizer_class", "PreTrainedTokenizerFast");
    char *text = oom ? NULL : cJSON_Print(cfg);
    cJSON_Delete(cfg);
    if (!text) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory writing tokenizer_config.json", dir);
    st = write_file(ctx, dir, "tokenizer_config.json", text, strlen(text));
    free(text);
    return st;
}

pq_status pq__tokenizer_save_dir(pq_ctx *ctx, const pq_tokenizer *t, const char *dir) {
    if (pq__tokenizer_kind(t) == PQ_TOK_BPE) return pq__tokenizer_save_hf(ctx, t, dir);
    char *p = pq__path_join_ctx(ctx, dir, "tokenizer.model");
    pq_status st = p ? pq__tokenizer_save_spm_model(ctx, t, p) : PQ_ERR_NOMEM;
    free(p);
    return st;
}
