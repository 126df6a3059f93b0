/* Writing a loaded model as a Hugging Face folder (config.json, safetensors, tokenizer.model or
 * tokenizer.json)
 * or a GGUF file (llama.cpp names and metadata, embedded tokenizer). q/k rows are permuted
 * between the interleaved RoPE layout (llama2.c, GGUF llama) and HF's rotate_half layout
 * when the target's convention differs from the model's. Output is atomic. */
#include <stdlib.h>
#include <string.h>

#include "kernels/dtype.h"
#include "io/gguf.h"
#include "io/hf.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/packed.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    char name[128]; /* canonical HF name */
    int n_dims;
    int64_t shape[2];
    const float *f32;  /* borrowed model weights (vectors), or */
    const pq__qmat *q; /* a borrowed matrix as stored, decoded into dec when not float32 */
    float *dec;
    int rope_heads;   /* > 0: q/k weight or bias to permute (number of heads) */
    pq_dtype dtype;   /* output dtype */
    const void *data; /* output bytes (f32 or buffers below) */
    void *owned;
    size_t nbytes;
} out_tensor;

typedef struct {
    out_tensor *t;
    int64_t n, cap;
} out_list;

/* Vector or matrix w, or a matrix as stored q (kernels/qmat.h); absent ones are skipped. */
static pq_status add(pq_ctx *ctx, out_list *l, const char *name, const float *w, const pq__qmat *q, int64_t rows,
                     int64_t cols, int rope_heads) {
    if (!w && !(q && (q->data || q->codes))) return PQ_OK;
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        out_tensor *n = realloc(l->t, (size_t)cap * sizeof *n);
        if (!n) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        l->t = n;
        l->cap = cap;
    }
    out_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->f32 = w;
    t->q = q;
    t->rope_heads = rope_heads;
    return PQ_OK;
}

static pq_status collect(pq_ctx *ctx, const pq_model *m, out_list *l) {
    const pq__config *c = &m->cfg;
    pq_status st = add(ctx, l, "model.embed_tokens.weight", NULL, &m->embed, c->vocab_size, c->dim, 0);
    for (int64_t i = 0; i < c->n_layers && st == PQ_OK; i++) {
        const pq__block *b = &m->blocks[i];
        char n[128];
        snprintf(n, sizeof n, "model.layers.%lld.input_layernorm.weight", (long long)i);
        if ((st = add(ctx, l, n, b->attn_norm, NULL, c->dim, 0, 0))) break;
        for (int k = 0; k < PQ_BLOCK_LINEARS && st == PQ_OK; k++) {
            const pq__linear *lin = pq__block_linear_get(b, k);
            const int heads = (int)pq__linear_rope_heads(c, k);
            snprintf(n, sizeof n, "model.layers.%lld.%s.weight", (long long)i, pq__block_linear[k].name);
            st = add(ctx, l, n, NULL, &lin->w, lin->rows, lin->cols, heads);
            snprintf(n, sizeof n, "model.layers.%lld.%s.bias", (long long)i, pq__block_linear[k].name);
            if (st == PQ_OK) st = add(ctx, l, n, lin->b, NULL, lin->rows, 0, heads);
        }
        snprintf(n, sizeof n, "model.layers.%lld.post_attention_layernorm.weight", (long long)i);
        if (st == PQ_OK) st = add(ctx, l, n, b->ffn_norm, NULL, c->dim, 0, 0);
    }
    if (st == PQ_OK) st = add(ctx, l, "model.norm.weight", m->out_norm, NULL, c->dim, 0, 0);
    if (st == PQ_OK && !c->tied) st = add(ctx, l, "lm_head.weight", NULL, &m->lm_head.w, c->vocab_size, c->dim, 0);
    return st;
}

/* Fills data/nbytes of every tensor in the target dtype and RoPE layout. 1-D tensors stay
 * F32 for GGUF (llama.cpp keeps norms and biases in F32). */
static pq_status materialise(pq_ctx *ctx, const pq_model *m, out_list *l, pq_dtype dtype, int halfsplit,
                             int vectors_f32) {
    const int permute = halfsplit != m->cfg.rope_halfsplit;
    for (int64_t i = 0; i < l->n; i++) {
        /* a cancel point per tensor; the writers check once more before they commit */
        pq_status pst = pq__progress(ctx, "convert", i, l->n);
        if (pst) return pst;
        out_tensor *t = &l->t[i];
        const int64_t cols = t->n_dims == 2 ? t->shape[1] : 1, numel = t->shape[0] * cols;
        t->dtype = (t->n_dims == 1 && vectors_f32) ? PQ_DTYPE_F32 : dtype;
        if (t->q && t->q->kind == PQ_QMAT_F32) {
            t->f32 = t->q->data;
        } else if (t->q) { /* float16 / bfloat16 rows, packed codes: their float32 values */
            if (!(t->dec = pq__malloc(ctx, (size_t)numel * sizeof(float), t->name))) return ctx->status;
            pq__qmat_rows_f32(t->q, 0, t->shape[0], t->dec);
            t->f32 = t->dec;
        }
        const float *src = t->f32;
        float *perm = NULL;
        if (permute && t->rope_heads) {
            perm = pq__malloc(ctx, (size_t)numel * sizeof(float), t->name);
            if (!perm) return ctx->status;
            pq__permute_rope_rows(t->f32, perm, t->rope_heads, m->cfg.head_dim, (size_t)cols * sizeof(float),
                                  halfsplit);
            src = perm;
        }
        t->nbytes = pq__dtype_nbytes(t->dtype, numel);
        if (t->dtype == PQ_DTYPE_F32) {
            t->owned = perm;
            t->data = src;
            continue;
        }
        t->owned = pq__malloc(ctx, t->nbytes, t->name);
        if (!t->owned) {
            free(perm);
            return ctx->status;
        }
        pq__from_f32(t->dtype, src, t->owned, numel);
        t->data = t->owned;
        free(perm);
    }
    return PQ_OK;
}

static void out_free(out_list *l) {
    for (int64_t i = 0; i < l->n; i++) {
        free(l->t[i].owned);
        free(l->t[i].dec);
    }
    free(l->t);
}

static const char *torch_dtype(pq_dtype t) {
    return t == PQ_DTYPE_F16 ? "float16" : t == PQ_DTYPE_BF16 ? "bfloat16" : "float32";
}

static pq_status save_hf(pq_ctx *ctx, const pq_model *m, const char *path, pq_dtype dtype, out_list *l) {
    pq_status st = materialise(ctx, m, l, dtype, 1, 0);
    if (st) return st;
    pq__st_entry *e = pq__calloc(ctx, (size_t)l->n, sizeof *e, "tensor list");
    if (!e) return ctx->status;
    for (int64_t i = 0; i < l->n; i++) {
        e[i].name = l->t[i].name;
        e[i].dtype = l->t[i].dtype;
        e[i].n_dims = l->t[i].n_dims;
        e[i].shape[0] = l->t[i].shape[0];
        e[i].shape[1] = l->t[i].shape[1];
        e[i].data = l->t[i].data;
        e[i].nbytes = l->t[i].nbytes;
    }
    char *tmp = NULL, *p = NULL;
    if ((st = pq__tmpdir_create(ctx, path, &tmp))) goto done;
    const char *meta[] = {"format", "pt", NULL};
    if ((st = pq__safetensors_write_sharded(ctx, tmp, e, l->n, (size_t)2 << 30, meta))) goto done;
    pq__config cfg = m->cfg;
    cfg.rope_halfsplit = 1;
    if (m->tok) {
        cfg.bos_id = pq_tokenizer_bos(m->tok);
        cfg.eos_id = pq_tokenizer_eos(m->tok);
    }
    if (!(p = pq__path_join(tmp, "config.json"))) {
        st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = pq__hf_write_config(ctx, &cfg, p, torch_dtype(dtype)))) goto done;
    free(p);
    p = NULL;
    if (m->tok) {
        if ((st = pq__tokenizer_save_dir(ctx, m->tok, tmp))) goto done;
    } else {
        pq__log(ctx, PQ_LOG_WARN, "%s: the model has no tokenizer; none written", path);
    }
    st = pq__tmpdir_commit(ctx, tmp, path);
done:
    if (st && tmp) pq__rmtree(tmp);
    free(tmp);
    free(p);
    free(e);
    return st;
}

/* BPE vocabularies: byte-level ones that a gpt2 vocabulary reproduces are written as llama.cpp
 * does (tokens, token types, "left right" merges, tokenizer.ggml.pre). Others (SentencePiece-like
 * BPE with byte fallback, normalizers) get llama.cpp's "llama" (scores, types, <0xXX> bytes) or
 * "gpt2" arrays for other readers, plus their tokenizer.json under tokenizer.huggingface.json,
 * which our reader prefers, so that the round trip tokenizes identically. */
/* tokenizer.ggml.{bos,eos,unknown}_token_id, each where the tokenizer has one */
static void gguf_special_ids(const pq_tokenizer *t, pq__gguf_writer *w) {
    if (pq_tokenizer_bos(t) >= 0)
        pq__gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)pq_tokenizer_bos(t));
    if (pq_tokenizer_eos(t) >= 0)
        pq__gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)pq_tokenizer_eos(t));
    if (pq__tokenizer_unk(t) >= 0)
        pq__gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)pq__tokenizer_unk(t));
}

static pq_status gguf_tokenizer_bpe(pq_ctx *ctx, const pq_tokenizer *t, pq__gguf_writer *w, const char *path) {
    const int64_t n = pq_tokenizer_n_vocab(t), nm = pq__tokenizer_n_merges(t);
    const char *pre = pq__tokenizer_gguf_pre(t);
    size_t json_len = 0;
    const char *json = pq__tokenizer_hf_json(t, &json_len);
    if (!pre && !json)
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: this BPE tokenizer cannot be written to GGUF", path);
    const int spm_like = !pre && pq__tokenizer_byte_fallback(t);
    const char **pieces = pq__calloc(ctx, (size_t)n, sizeof *pieces, "vocabulary");
    size_t *lens = pq__calloc(ctx, (size_t)n, sizeof *lens, "vocabulary");
    float *scores = pq__calloc(ctx, (size_t)n, sizeof *scores, "vocabulary");
    int32_t *types = pq__calloc(ctx, (size_t)n, sizeof *types, "vocabulary");
    char **merges = pq__calloc(ctx, (size_t)nm + 1, sizeof *merges, "merges");
    pq_status st = PQ_OK;
    if (!pieces || !lens || !scores || !types || !merges) {
        st = ctx->status;
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        pieces[i] = pq__tokenizer_piece(t, (int32_t)i, &lens[i]);
        scores[i] = pq__tokenizer_score(t, (int32_t)i);
        types[i] = pq__tokenizer_type(t, (int32_t)i);
    }
    for (int64_t r = 0; r < nm && !spm_like; r++) {
        int32_t a, b;
        size_t la, lb;
        if (!pq__tokenizer_merge(t, r, &a, &b)) break;
        const char *pa = pq__tokenizer_piece(t, a, &la), *pb = pq__tokenizer_piece(t, b, &lb);
        if (!(merges[r] = malloc(la + lb + 2))) {
            st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(merges[r], pa, la);
        merges[r][la] = ' ';
        memcpy(merges[r] + la + 1, pb, lb);
        merges[r][la + 1 + lb] = 0;
    }
    pq__gguf_writer_add_str(w, "tokenizer.ggml.model", spm_like ? "llama" : "gpt2");
    if (!spm_like) pq__gguf_writer_add_str(w, "tokenizer.ggml.pre", pre ? pre : "default");
    pq__gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", pieces, lens, n);
    if (spm_like) pq__gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, n);
    pq__gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, n);
    if (!spm_like) pq__gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, NULL, nm);
    gguf_special_ids(t, w);
    if (spm_like) pq__gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", 1);
    pq__gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", pq__tokenizer_add_bos_default(t));
    if (!pre) pq__gguf_writer_add_str(w, "tokenizer.huggingface.json", json);
done:
    if (merges)
        for (int64_t r = 0; r < nm; r++)
            free(merges[r]);
    free(merges);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return st;
}

/* llama.cpp's SentencePiece tokenizer ("llama") has no unknown-token path: a character outside
 * the vocabulary goes to its <0xXX> byte pieces (or a one-byte piece) and llama.cpp throws
 * std::out_of_range (SIGABRT) when one is missing. 1 if every byte value resolves. */
static int spm_bytes_complete(const pq_tokenizer *t) {
    int ok[256] = {0};
    for (int64_t i = 0; i < pq_tokenizer_n_vocab(t); i++) {
        size_t len;
        const char *p = pq__tokenizer_piece(t, (int32_t)i, &len);
        if (len == 1 && (uint8_t)p[0] < 0x80) ok[(uint8_t)p[0]] = 1;
    }
    for (int b = 0; b < 256; b++)
        if (!ok[b] && pq__tokenizer_byte_id(t, (uint8_t)b) < 0) return 0;
    return 1;
}

static pq_status gguf_tokenizer(pq_ctx *ctx, const pq_tokenizer *t, pq__gguf_writer *w) {
    const int64_t n = pq_tokenizer_n_vocab(t);
    /* Vocabularies without byte pieces (character-level ones such as BabyLlama's tok105) are
     * written as llama.cpp's unigram vocabulary ("t5"), whose tokenizer maps a character outside
     * the vocabulary to <unk> as SentencePiece does; the vocabulary and the embedding rows stay as
     * they are. Our reader encodes both kinds with score-ordered merges. */
    const int ugm = !spm_bytes_complete(t);
    char **pieces = pq__calloc(ctx, (size_t)n, sizeof *pieces, "vocabulary");
    size_t *lens = pq__calloc(ctx, (size_t)n, sizeof *lens, "vocabulary");
    float *scores = pq__calloc(ctx, (size_t)n, sizeof *scores, "vocabulary");
    int32_t *types = pq__calloc(ctx, (size_t)n, sizeof *types, "vocabulary");
    pq_status st = PQ_OK;
    if (!pieces || !lens || !scores || !types) {
        st = ctx->status;
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        size_t len;
        const char *p = pq__tokenizer_piece(t, (int32_t)i, &len);
        /* SentencePiece vocabularies spell spaces as U+2581 (3 bytes) */
        size_t spaces = 0;
        for (size_t k = 0; k < len; k++)
            spaces += p[k] == ' ';
        char *q = malloc(len + 2 * spaces + 1);
        if (!q) {
            st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
            goto done;
        }
        size_t o = 0;
        for (size_t k = 0; k < len; k++) {
            if (p[k] == ' ') {
                memcpy(q + o, "\xe2\x96\x81", 3);
                o += 3;
            } else {
                q[o++] = p[k];
            }
        }
        q[o] = 0;
        pieces[i] = q;
        lens[i] = o;
        scores[i] = pq__tokenizer_score(t, (int32_t)i);
        types[i] = pq__tokenizer_type(t, (int32_t)i);
    }
    pq__gguf_writer_add_str(w, "tokenizer.ggml.model", ugm ? "t5" : "llama");
    pq__gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)pieces, lens, n);
    pq__gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, n);
    pq__gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, n);
    gguf_special_ids(t, w);
    pq__gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", pq__tokenizer_add_dummy_prefix(t));
    pq__gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1);
    if (ugm) pq__gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 0); /* llama.cpp's "t5" default is 1 */
done:
    if (pieces)
        for (int64_t i = 0; i < n; i++)
            free(pieces[i]);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return st;
}

pq_status pq__gguf_model_writer(pq_ctx *ctx, const pq_model *m, const char *path, uint32_t file_type,
                                pq__gguf_writer **out, int *halfsplit) {
    const pq__config *c = &m->cfg;
    *out = NULL;
    if (c->rope_scaling == 1)
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: GGUF export of llama3 rope scaling is not supported", path);
    const int qwen = c->arch == PQ_ARCH_QWEN2;
    const char *arch = qwen ? "qwen2" : "llama";
    /* llama.cpp's llama architecture uses interleaved RoPE, qwen2 uses NEOX (half-split) */
    *halfsplit = qwen;
    pq__gguf_writer *w;
    pq_status st = pq__gguf_writer_new(ctx, &w);
    if (st) return st;
    char key[96];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    pq__gguf_writer_add_str(w, "general.architecture", arch);
    pq__gguf_writer_add_str(w, "general.name", "prunequant export");
    const int quantized = file_type != 0 && file_type != 1 && file_type != 32;
    if (!quantized) pq__gguf_writer_add_u32(w, "general.file_type", file_type);
    pq__gguf_writer_add_u32(w, KEY("context_length"), (uint32_t)c->max_seq_len);
    pq__gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)c->dim);
    pq__gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)c->n_layers);
    pq__gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)c->hidden_dim);
    pq__gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
    pq__gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads);
    pq__gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    pq__gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
    pq__gguf_writer_add_f32(w, KEY("rope.freq_base"), c->rope_theta);
    pq__gguf_writer_add_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size);
    if (c->dim / c->n_heads != c->head_dim) {
        pq__gguf_writer_add_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
        pq__gguf_writer_add_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    }
    if (c->rope_scaling == 2) {
        pq__gguf_writer_add_str(w, KEY("rope.scaling.type"), "linear");
        pq__gguf_writer_add_f32(w, KEY("rope.scaling.factor"), c->rope_factor);
    }
#undef KEY
    if (m->tok) {
        if (pq__tokenizer_kind(m->tok) == PQ_TOK_BPE)
            st = gguf_tokenizer_bpe(ctx, m->tok, w, path);
        else
            st = gguf_tokenizer(ctx, m->tok, w);
    } else {
        pq__log(ctx, PQ_LOG_WARN, "%s: the model has no tokenizer; none written", path);
    }
    /* a quantized file ends its metadata as llama-quantize's does (same keys, same order, so
     * the same header size as llama-quantize's file of the same preset) */
    if (quantized) {
        pq__gguf_writer_add_u32(w, "general.quantization_version", 2);
        pq__gguf_writer_add_u32(w, "general.file_type", file_type);
    }
    if (st) {
        pq__gguf_writer_free(w);
        return st;
    }
    *out = w;
    return PQ_OK;
}

static pq_status save_gguf(pq_ctx *ctx, const pq_model *m, const char *path, pq_dtype dtype, out_list *l) {
    pq__gguf_writer *w;
    int halfsplit;
    pq_status st = pq__gguf_model_writer(ctx, m, path,
                                         dtype == PQ_DTYPE_F16    ? 1
                                         : dtype == PQ_DTYPE_BF16 ? 32
                                                                  : 0,
                                         &w, &halfsplit);
    if (st) return st;
    if ((st = materialise(ctx, m, l, dtype, halfsplit, 1))) {
        pq__gguf_writer_free(w);
        return st;
    }
    for (int64_t i = 0; i < l->n && st == PQ_OK; i++) {
        char gname[128];
        if (!pq__gguf_name_from_hf(l->t[i].name, gname, sizeof gname)) {
            st = pq__fail(ctx, PQ_ERR_INTERNAL, "%s: no GGUF name for tensor '%s'", path, l->t[i].name);
            break;
        }
        pq__gguf_writer_add_tensor(w, gname, l->t[i].dtype, l->t[i].n_dims, l->t[i].shape, l->t[i].data,
                                   l->t[i].nbytes);
    }
    if (st == PQ_OK) st = pq__gguf_writer_save(ctx, w, path);
    pq__gguf_writer_free(w);
    return st;
}

pq_status pq_model_save(pq_ctx *ctx, const pq_model *m, pq_format format, const char *path, pq_dtype dtype) {
    if (m->deferred) return pq__model_require_weights(ctx, m, "conversion");
    if (dtype != PQ_DTYPE_F32 && dtype != PQ_DTYPE_F16 && dtype != PQ_DTYPE_BF16)
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: output dtype %s not supported (f32, f16, bf16)", path,
                        pq_dtype_name(dtype));
    /* a bad output path fails before any tensor is converted, naming the path given */
    pq_status st = pq__check_output_path(ctx, path, format == PQ_FORMAT_HF);
    if (st) return st;
    out_list l = {0};
    st = collect(ctx, m, &l);
    if (st == PQ_OK)
        st = format == PQ_FORMAT_HF ? save_hf(ctx, m, path, dtype, &l) : save_gguf(ctx, m, path, dtype, &l);
    /* the bar ends at 100%; written is written, so a cancel asked now changes nothing */
    if (st == PQ_OK && ctx && ctx->progress_fn) ctx->progress_fn(ctx->progress_user, "convert", l.n, l.n);
    out_free(&l);
    return st;
}
