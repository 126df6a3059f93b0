/* GGUF -> pq__source: architecture config, tensors under canonical HF names, tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

/* Reads "<arch>.<suffix>" as an integer in [lo, hi]; def is used when absent and not required. */
static pq_status cfg_int(pq_ctx *ctx, const pq__gguf *g, const char *arch, const char *suffix, int required,
                         int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int r = pq__gguf_get_int(g, key, out);
    if (r == PQ_GGUF_MISSING) {
        if (required) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s: missing", g->name, key);
        *out = def;
        return PQ_OK;
    }
    if (r != PQ_GGUF_FOUND) {
        const pq__gguf_kv *kv = pq__gguf_find_kv(g, key);
        if (kv->type == PQ_GGUF_ARRAY)
            return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: %s: per-layer arrays are not supported", g->name, key);
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s: expected an integer, got %s", g->name, key,
                        pq__gguf_type_name(kv->type));
    }
    if (*out < lo || *out > hi)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s: %lld is out of range %lld..%lld", g->name, key, (long long)*out,
                        (long long)lo, (long long)hi);
    return PQ_OK;
}

/* Reads a float KV (full key) that must be in (0, max]; def when absent. */
static pq_status cfg_pos_float(pq_ctx *ctx, const pq__gguf *g, const char *key, double def, double max, double *out) {
    int r = pq__gguf_get_float(g, key, out);
    if (r == PQ_GGUF_MISSING) {
        *out = def;
        return PQ_OK;
    }
    if (r != PQ_GGUF_FOUND)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s: expected a number, got %s", g->name, key,
                        pq__gguf_type_name(pq__gguf_find_kv(g, key)->type));
    if (!(*out > 0 && *out <= max))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s: %g is out of range (0, %g]", g->name, key, *out, max);
    return PQ_OK;
}

/* Token id KV, or -1 when absent; ids outside [0, n_vocab) (converters write 2^32-1 for
 * "none") also become -1, with a warning. */
static pq_status token_id(pq_ctx *ctx, const pq__gguf *g, const char *key, int64_t n_vocab, int32_t *out) {
    int64_t v;
    int r = pq__gguf_get_int(g, key, &v);
    *out = -1;
    if (r == PQ_GGUF_MISSING) return PQ_OK;
    if (r != PQ_GGUF_FOUND)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s: expected an integer, got %s", g->name, key,
                        pq__gguf_type_name(pq__gguf_find_kv(g, key)->type));
    if (v < 0 || v >= n_vocab) {
        pq__log(ctx, PQ_LOG_WARN, "%s: %s: %lld is outside the vocabulary (%lld tokens); ignored", g->name, key,
                (long long)v, (long long)n_vocab);
        return PQ_OK;
    }
    *out = (int32_t)v;
    return PQ_OK;
}

static pq_status load_config(pq_ctx *ctx, const pq__gguf *g, const char *arch, pq__config *c) {
    int64_t dim, hidden, layers, heads, kv_heads, ctxlen, head_dim, rope_dims;
    pq_status st;
    if ((st = cfg_int(ctx, g, arch, "embedding_length", 1, 0, 1, 1 << 20, &dim)) != PQ_OK) return st;
    if ((st = cfg_int(ctx, g, arch, "feed_forward_length", 1, 0, 1, 1 << 24, &hidden)) != PQ_OK) return st;
    if ((st = cfg_int(ctx, g, arch, "block_count", 1, 0, 1, 4096, &layers)) != PQ_OK) return st;
    if ((st = cfg_int(ctx, g, arch, "attention.head_count", 1, 0, 1, dim, &heads)) != PQ_OK) return st;
    if ((st = cfg_int(ctx, g, arch, "attention.head_count_kv", 0, heads, 1, heads, &kv_heads)) != PQ_OK) return st;
    if ((st = cfg_int(ctx, g, arch, "context_length", 1, 0, 1, 1 << 30, &ctxlen)) != PQ_OK) return st;
    if (heads % kv_heads)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s.attention.head_count_kv: %lld does not divide head_count %lld",
                        g->name, arch, (long long)kv_heads, (long long)heads);
    /* head size: attention.key_length when given, else embedding_length / head_count */
    if ((st = cfg_int(ctx, g, arch, "attention.key_length", 0, dim / heads, 1, 1 << 16, &head_dim)) != PQ_OK)
        return st;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.key_length", arch);
    if (!pq__gguf_find_kv(g, key) && dim % heads)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s.attention.head_count: %lld does not divide embedding_length %lld",
                        g->name, arch, (long long)heads, (long long)dim);
    if ((st = cfg_int(ctx, g, arch, "rope.dimension_count", 0, head_dim, 1, 1 << 16, &rope_dims)) != PQ_OK) return st;
    if (rope_dims != head_dim)
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED,
                        "%s: %s.rope.dimension_count: %lld differs from the head size %lld (partial RoPE)", g->name,
                        arch, (long long)rope_dims, (long long)head_dim);
    double eps, theta;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    if ((st = cfg_pos_float(ctx, g, key, 1e-5, 1.0, &eps)) != PQ_OK) return st;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    if ((st = cfg_pos_float(ctx, g, key, 10000.0, 1e12, &theta)) != PQ_OK) return st;

    c->dim = dim;
    c->hidden_dim = hidden;
    c->n_layers = layers;
    c->n_heads = heads;
    c->n_kv_heads = kv_heads;
    c->head_dim = head_dim;
    c->max_seq_len = ctxlen;
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;

    /* RoPE scaling: only linear is applied; newer files use rope.scaling.type/factor,
     * older ones rope.scale_linear. */
    double factor = 1.0;
    const char *type;
    size_t type_len;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    int r = pq__gguf_get_str(g, key, &type, &type_len);
    if (r == PQ_GGUF_BADTYPE) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s: expected a string", g->name, key);
    if (r == PQ_GGUF_FOUND && type_len == 6 && !memcmp(type, "linear", 6)) {
        snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
        if ((st = cfg_pos_float(ctx, g, key, 1.0, 1e6, &factor)) != PQ_OK) return st;
    } else if (r == PQ_GGUF_FOUND && !(type_len == 4 && !memcmp(type, "none", 4))) {
        pq__log(ctx, PQ_LOG_WARN, "%s: %s: RoPE scaling '%.*s' is not supported; ignored", g->name, key,
                (int)(type_len < 32 ? type_len : 32), type);
    } else if (r == PQ_GGUF_MISSING) {
        snprintf(key, sizeof key, "%s.rope.scale_linear", arch);
        if ((st = cfg_pos_float(ctx, g, key, 1.0, 1e6, &factor)) != PQ_OK) return st;
    }
    if (factor != 1.0) {
        c->rope_scaling = 2;
        c->rope_factor = (float)factor;
    }
    return PQ_OK;
}

/* Byte-level BPE ("gpt2" vocabularies: GPT-2, Llama-3, Qwen2): merges in rank order and the
 * pre-tokenizer named by tokenizer.ggml.pre. */
static pq_status load_bpe(pq_ctx *ctx, const pq__gguf *g, int64_t n, const char **pieces, const size_t *lens,
                          const int32_t *types, int32_t bos, int32_t eos, int32_t unk, pq_tokenizer **out) {
    const pq__gguf_kv *merges_kv;
    int r = pq__gguf_get_array(g, "tokenizer.ggml.merges", &merges_kv);
    if (r != PQ_GGUF_FOUND || merges_kv->arr_type != PQ_GGUF_STRING)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.merges: %s", g->name,
                        r == PQ_GGUF_MISSING ? "missing (needed by a gpt2 vocabulary)"
                                             : "expected an array of strings");
    const char *regex = PQ_REGEX_GPT2, *pre;
    size_t pre_len;
    if (pq__gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pre_len) == PQ_GGUF_FOUND) {
        regex = pq__bpe_pre_regex(pre, pre_len);
        if (!regex)
            return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre: pre-tokenizer '%.*s' not supported",
                            g->name, (int)(pre_len < 32 ? pre_len : 32), pre);
    }
    int add_bos = 0;
    if (pq__gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos) == PQ_GGUF_BADTYPE)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.add_bos_token: expected a bool", g->name);
    const char **merges = NULL;
    size_t *mlens = NULL;
    pq_status st = pq__gguf_array_strings(ctx, g, merges_kv, &merges, &mlens);
    char **mz = NULL; /* the tokenizer wants NUL-terminated "left right" strings */
    if (st == PQ_OK) {
        mz = pq__calloc(ctx, (size_t)merges_kv->arr_n + 1, sizeof *mz, "merges");
        if (!mz) st = PQ_ERR_NOMEM;
    }
    for (uint64_t i = 0; st == PQ_OK && i < merges_kv->arr_n; i++) {
        if (!(mz[i] = malloc(mlens[i] + 1))) {
            st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(mz[i], merges[i], mlens[i]);
        mz[i][mlens[i]] = 0;
    }
    if (st == PQ_OK)
        st = pq__tokenizer_new_bpe(ctx, n, pieces, lens, types, (const char *const *)mz, (int64_t)merges_kv->arr_n,
                                   regex, bos, eos, unk, add_bos, out);
    /* llama.cpp looks whole words up before merging for the Llama-3 pre-tokenizer, as its tokenizer.json does */
    if (st == PQ_OK && !strcmp(regex, PQ_REGEX_LLAMA3)) pq__tokenizer_set_ignore_merges(*out, 1);
    if (mz)
        for (uint64_t i = 0; i < merges_kv->arr_n; i++)
            free(mz[i]);
    free(mz);
    free(merges);
    free(mlens);
    return st;
}

/* The whole tokenizer.json embedded under tokenizer.huggingface.json (GGUF spec; convert writes it
 * when the tokens, scores and merges alone cannot reproduce the tokenizer, e.g. SentencePiece-like
 * BPE): it wins over the vocabulary arrays, whose size it must match; bos/eos/add_bos from GGUF. */
static pq_status load_hf_json(pq_ctx *ctx, const pq__gguf *g, const char *json, size_t len, int64_t n, int32_t bos,
                              int32_t eos, pq_tokenizer **out) {
    char name[300];
    snprintf(name, sizeof name, "%s: tokenizer.huggingface.json", g->name);
    pq_tokenizer *t = NULL;
    pq_status st = pq__tokenizer_parse_hf_json(ctx, name, json, len, NULL, 0, &t);
    if (st != PQ_OK) return st;
    if (pq_tokenizer_n_vocab(t) != n) {
        st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: %lld tokens but tokenizer.ggml.tokens has %lld", name,
                      (long long)pq_tokenizer_n_vocab(t), (long long)n);
        pq_tokenizer_free(t);
        return st;
    }
    int add_bos = pq__tokenizer_add_bos_default(t);
    if (pq__gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos) == PQ_GGUF_BADTYPE) {
        pq_tokenizer_free(t);
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.add_bos_token: expected a bool", g->name);
    }
    pq__tokenizer_set_special(t, bos, eos, pq__tokenizer_unk(t), add_bos);
    *out = t;
    return PQ_OK;
}

/* What tokenizer.ggml.* says of the embedded tokenizer, checked. */
typedef struct tok_meta {
    const pq__gguf_kv *tokens, *scores, *types; /* scores and types may be NULL */
    int64_t n;
    int32_t bos, eos, unk;
    int prefix, is_bpe;
} tok_meta;

/* tokenizer.ggml.model: *supported 0 (logged) when absent or of a kind not read yet. */
static pq_status tok_model(pq_ctx *ctx, const pq__gguf *g, tok_meta *m, int *supported) {
    const char *model;
    size_t model_len;
    *supported = 0;
    int r = pq__gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len);
    if (r == PQ_GGUF_MISSING) {
        pq__log(ctx, PQ_LOG_DEBUG, "%s: no tokenizer.ggml.model: no embedded tokenizer", g->name);
        return PQ_OK;
    }
    if (r != PQ_GGUF_FOUND)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.model: expected a string", g->name);
    m->is_bpe = model_len == 4 && !memcmp(model, "gpt2", 4);
    /* "t5" (llama.cpp's unigram vocabulary): convert writes SentencePiece vocabularies without
     * byte pieces so, as llama.cpp's "llama" tokenizer aborts on characters they lack. The arrays
     * are the same; they are encoded with score-ordered merges like "llama" (for a
     * character-level vocabulary the unigram segmentation is the same) */
    const int is_ugm = model_len == 2 && !memcmp(model, "t5", 2);
    if (!m->is_bpe && !is_ugm && !(model_len == 5 && !memcmp(model, "llama", 5))) {
        pq__log(ctx, PQ_LOG_WARN,
                "%s: tokenizer.ggml.model: '%.*s' tokenizers are not supported yet; "
                "no tokenizer loaded",
                g->name, (int)(model_len < 32 ? model_len : 32), model);
        return PQ_OK;
    }
    *supported = 1;
    return PQ_OK;
}

/* The arrays (present, of the vocabulary's length), the special ids and the space prefix. */
static pq_status tok_meta_read(pq_ctx *ctx, const pq__gguf *g, tok_meta *m) {
    int r = pq__gguf_get_array(g, "tokenizer.ggml.tokens", &m->tokens);
    if (r != PQ_GGUF_FOUND || m->tokens->arr_type != PQ_GGUF_STRING)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.tokens: %s", g->name,
                        r == PQ_GGUF_MISSING ? "missing" : "expected an array of strings");
    const int64_t n = m->n = (int64_t)m->tokens->arr_n; /* arr_n is bounded by the file size */
    if (n < 1 || n > INT32_MAX)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.tokens: %lld tokens", g->name, (long long)n);
    r = pq__gguf_get_array(g, "tokenizer.ggml.scores", &m->scores);
    if (r == PQ_GGUF_BADTYPE || (r == PQ_GGUF_FOUND && m->scores->arr_n != (uint64_t)n))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.scores: expected an array of %lld numbers", g->name,
                        (long long)n);
    r = pq__gguf_get_array(g, "tokenizer.ggml.token_type", &m->types);
    if (r == PQ_GGUF_BADTYPE || (r == PQ_GGUF_FOUND && m->types->arr_n != (uint64_t)n))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.token_type: expected an array of %lld integers",
                        g->name, (long long)n);
    pq_status st = token_id(ctx, g, "tokenizer.ggml.bos_token_id", n, &m->bos);
    if (st == PQ_OK) st = token_id(ctx, g, "tokenizer.ggml.eos_token_id", n, &m->eos);
    if (st == PQ_OK) st = token_id(ctx, g, "tokenizer.ggml.unknown_token_id", n, &m->unk);
    if (st != PQ_OK) return st;
    m->prefix = 1;
    if (pq__gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &m->prefix) == PQ_GGUF_BADTYPE)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.add_space_prefix: expected a bool", g->name);
    return PQ_OK;
}

/* The tokenizer from tokenizer.huggingface.json when present and readable, else from the
 * arrays (pieces [n], lens [n], scores [n], types [n] or NULL). */
static pq_status tok_build(pq_ctx *ctx, const pq__gguf *g, const tok_meta *m, const char **pieces, const size_t *lens,
                           const float *scores, const int32_t *types, pq__source *src) {
    const char *hf_json;
    size_t hf_len;
    int r = pq__gguf_get_str(g, "tokenizer.huggingface.json", &hf_json, &hf_len);
    if (r == PQ_GGUF_BADTYPE)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.huggingface.json: expected a string", g->name);
    if (r == PQ_GGUF_FOUND) {
        pq_status st = load_hf_json(ctx, g, hf_json, hf_len, m->n, m->bos, m->eos, &src->tok);
        if (st == PQ_OK || st == PQ_ERR_NOMEM) return st;
        /* other writers' files: the arrays still describe a tokenizer */
        pq__log(ctx, PQ_LOG_WARN, "%s; using tokenizer.ggml.tokens instead", pq_ctx_error(ctx));
    }
    return m->is_bpe ? load_bpe(ctx, g, m->n, pieces, lens, types, m->bos, m->eos, m->unk, &src->tok)
                     : pq__tokenizer_new_spm(ctx, m->n, pieces, lens, scores, types, m->bos, m->eos, m->unk,
                                             m->prefix, &src->tok);
}

static pq_status load_tokenizer(pq_ctx *ctx, const pq__gguf *g, pq__source *src) {
    tok_meta m = {0};
    int supported;
    pq_status st = tok_model(ctx, g, &m, &supported);
    if (st != PQ_OK || !supported || (st = tok_meta_read(ctx, g, &m)) != PQ_OK) return st;
    const int64_t n = m.n;
    const char **pieces = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    st = pq__gguf_array_strings(ctx, g, m.tokens, &pieces, &lens);
    if (st == PQ_OK) {
        scores = pq__calloc(ctx, (size_t)n, sizeof *scores, "tokenizer scores");
        if (!scores) st = PQ_ERR_NOMEM;
    }
    if (st == PQ_OK && m.scores && !pq__gguf_array_f32(m.scores, scores))
        st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.scores: expected numbers, got %s", g->name,
                      pq__gguf_type_name(m.scores->arr_type));
    if (st == PQ_OK && m.types) {
        types = pq__calloc(ctx, (size_t)n, sizeof *types, "tokenizer token types");
        if (!types)
            st = PQ_ERR_NOMEM;
        else if (!pq__gguf_array_i32(m.types, types))
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.token_type: expected int32 values (%s array)",
                          g->name, pq__gguf_type_name(m.types->arr_type));
    }
    if (st == PQ_OK) st = tok_build(ctx, g, &m, pieces, lens, scores, types, src);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return st;
}

/* Adds the tensors under their HF names; shapes reversed to outermost first. */
static pq_status load_tensors(pq_ctx *ctx, const pq__gguf *g, pq__source *src) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const pq__gguf_tensor *t = &g->tensors[i];
        char hf[160];
        if (!pq__gguf_name_to_hf(t->name, hf, sizeof hf)) {
            pq__log(ctx, PQ_LOG_DEBUG, "%s: tensor '%s' is not used; skipped", g->name, t->name);
            continue;
        }
        long layer;
        if (sscanf(hf, "model.layers.%ld.", &layer) == 1 && layer >= src->cfg.n_layers)
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%s': layer %ld >= block_count %lld", g->name, t->name,
                            layer, (long long)src->cfg.n_layers);
        int64_t shape[4]; /* outermost first */
        for (int d = 0; d < t->n_dims; d++)
            shape[d] = t->ne[t->n_dims - 1 - d];
        if (!pq__source_add(ctx, src, hf, t->dtype, t->n_dims, shape, t->data, t->nbytes)) return ctx->status;
    }
    return PQ_OK;
}

pq_status pq__gguf_to_source(pq_ctx *ctx, const pq__gguf *g, pq__source *src) {
    const char *arch_s;
    size_t arch_len;
    int r = pq__gguf_get_str(g, "general.architecture", &arch_s, &arch_len);
    if (r != PQ_GGUF_FOUND)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: general.architecture: %s", g->name,
                        r == PQ_GGUF_MISSING ? "missing" : "expected a string");
    const char *arch;
    if (arch_len == 5 && !memcmp(arch_s, "llama", 5)) {
        arch = "llama";
        src->cfg.arch = PQ_ARCH_LLAMA;
        src->cfg.rope_halfsplit = 0; /* llama.cpp converters permute q/k to interleaved pairs */
    } else if (arch_len == 5 && !memcmp(arch_s, "qwen2", 5)) {
        arch = "qwen2";
        src->cfg.arch = PQ_ARCH_QWEN2;
        src->cfg.rope_halfsplit = 1; /* NEOX RoPE, weights not permuted */
    } else {
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: general.architecture: '%.*s' is not supported (llama, qwen2)",
                        g->name, (int)(arch_len < 64 ? arch_len : 64), arch_s);
    }
    snprintf(src->format, sizeof src->format, "gguf");
    int64_t ftype;
    if (pq__gguf_get_int(g, "general.file_type", &ftype) == PQ_GGUF_FOUND) {
        const char *fn = pq__gguf_ftype_name(ftype);
        if (fn)
            snprintf(src->file_type, sizeof src->file_type, "%s", fn);
        else
            snprintf(src->file_type, sizeof src->file_type, "file type %lld", (long long)ftype);
    }
    pq_status st = load_config(ctx, g, arch, &src->cfg);
    if (st != PQ_OK) return st;

    /* vocabulary: <arch>.vocab_size, else the token list, else the embedding rows */
    const int64_t i_embd = pq__gguf_find_tensor(g, "token_embd.weight");
    const pq__gguf_tensor *embd = i_embd >= 0 ? &g->tensors[i_embd] : NULL;
    const pq__gguf_kv *tokens = NULL;
    int64_t vocab = 0;
    if (embd && (embd->n_dims != 2 || embd->ne[0] != src->cfg.dim))
        return pq__fail(ctx, PQ_ERR_FORMAT,
                        "%s: tensor 'token_embd.weight': shape does not match embedding_length %lld", g->name,
                        (long long)src->cfg.dim);
    if ((st = cfg_int(ctx, g, arch, "vocab_size", 0, 0, 1, INT32_MAX, &vocab)) != PQ_OK) return st;
    if (pq__gguf_get_array(g, "tokenizer.ggml.tokens", &tokens) == PQ_GGUF_FOUND && vocab == 0)
        vocab = (int64_t)tokens->arr_n;
    if (vocab == 0 && embd) vocab = embd->ne[1];
    if (vocab <= 0 || vocab > INT32_MAX)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %s.vocab_size: unknown (no vocab_size, tokens or token_embd.weight)",
                        g->name, arch);
    if (embd && embd->ne[1] != vocab)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor 'token_embd.weight': %lld rows but the vocabulary has %lld",
                        g->name, (long long)embd->ne[1], (long long)vocab);
    if (tokens && tokens->arr_n > (uint64_t)vocab)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: tokenizer.ggml.tokens: %llu tokens but the vocabulary has %lld",
                        g->name, (unsigned long long)tokens->arr_n, (long long)vocab);
    src->cfg.vocab_size = vocab;
    src->cfg.tied = pq__gguf_find_tensor(g, "output.weight") < 0;
    src->cfg.qkv_bias = pq__gguf_find_tensor(g, "blk.0.attn_q.bias") >= 0;
    if ((st = token_id(ctx, g, "tokenizer.ggml.bos_token_id", vocab, &src->cfg.bos_id)) != PQ_OK) return st;
    if ((st = token_id(ctx, g, "tokenizer.ggml.eos_token_id", vocab, &src->cfg.eos_id)) != PQ_OK) return st;

    if ((st = load_tensors(ctx, g, src)) != PQ_OK) return st;
    return load_tokenizer(ctx, g, src);
}

pq_status pq__gguf_load(pq_ctx *ctx, const char *path, int use_mmap, pq__source *src) {
    if (!src->path && !(src->path = strdup(path))) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    pq__file *f;
    pq_status st = pq__source_add_file(ctx, src, path, use_mmap, &f);
    if (st != PQ_OK) return st;
    pq__gguf *g;
    st = pq__gguf_parse(ctx, path, f->data, f->size, &g);
    if (st != PQ_OK) return st;
    st = pq__gguf_to_source(ctx, g, src);
    pq__gguf_free(g);
    return st;
}
