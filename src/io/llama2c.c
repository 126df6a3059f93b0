/* llama2.c checkpoints: the legacy format (7 int32 header, then float32 weights stacked
 * over layers) and the version-1 export (magic "ak42", 256-byte header, float32).
 * Weights are referenced in place in the mapping; RoPE is interleaved pairs. */
#include <stdlib.h>
#include <string.h>

#include "io/source.h"

#define L2C_MAGIC 0x616b3432u

typedef struct {
    const char *name;   /* canonical name template; %d is the layer */
    int64_t rows, cols; /* cols == 0: a vector of rows elements */
    int per_layer;
} l2c_entry;

static pq_status add_stack(pq_ctx *ctx, pq__source *src, const char *path, pq__reader *r, const l2c_entry *e,
                           int64_t n_layers) {
    int64_t count = e->per_layer ? n_layers : 1;
    int64_t numel = e->rows * (e->cols ? e->cols : 1);
    for (int64_t l = 0; l < count; l++) {
        size_t nbytes = (size_t)numel * 4;
        const uint8_t *p;
        if (!pq__rd_bytes(r, nbytes, &p))
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: truncated: weights of '%s' end past the file size %zu", path,
                            e->name, r->size);
        char name[128];
        snprintf(name, sizeof name, e->name, (int)l);
        int64_t shape[2] = {e->rows, e->cols};
        if (!pq__source_add(ctx, src, name, PQ_DTYPE_F32, e->cols ? 2 : 1, shape, p, nbytes)) return ctx->status;
    }
    return PQ_OK;
}

static int bad_dim(int32_t v, int32_t max) {
    return v <= 0 || v > max;
}

/* The 7 header fields (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len) of either version; leaves r at the first weight. */
typedef struct l2c_header {
    int32_t h[7];
    int version; /* 0 legacy, 1 "ak42" export */
    int shared;  /* classifier shares the embedding */
} l2c_header;

static pq_status read_header_v1(pq_ctx *ctx, const char *path, const pq__file *f, pq__reader *r, l2c_header *hd) {
    int32_t ver;
    r->pos = 4;
    if (!pq__rd_i32(r, &ver)) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header: truncated", path);
    if (ver != 1)
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: header: llama2.c export version %d (only 0 and 1)", path, ver);
    hd->version = 1;
    for (int i = 0; i < 7; i++)
        if (!pq__rd_i32(r, &hd->h[i])) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header: truncated", path);
    uint8_t sc;
    if (!pq__rd_u8(r, &sc) || f->size < 256)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header: truncated (256 bytes expected)", path);
    hd->shared = sc != 0;
    r->pos = 256;
    if (hd->h[5] <= 0) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header: vocab_size %d", path, hd->h[5]);
    return PQ_OK;
}

static pq_status read_header(pq_ctx *ctx, const char *path, const pq__file *f, pq__reader *r, l2c_header *hd) {
    uint32_t magic = 0;
    memset(hd, 0, sizeof *hd);
    if (f->size >= 4) memcpy(&magic, f->data, 4);
    if (magic == L2C_MAGIC) {
        pq_status st = read_header_v1(ctx, path, f, r, hd);
        if (st != PQ_OK) return st;
    } else {
        for (int i = 0; i < 7; i++)
            if (!pq__rd_i32(r, &hd->h[i]))
                return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header: truncated (28 bytes expected, file has %zu)", path,
                                f->size);
        /* legacy: a negative vocab_size means an unshared classifier */
        hd->shared = hd->h[5] > 0;
        if (hd->h[5] < 0) hd->h[5] = -hd->h[5];
    }
    static const char *const field[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    static const int32_t maxv[7] = {1 << 16, 1 << 18, 1024, 1024, 1024, 1 << 22, 1 << 22};
    const int32_t *h = hd->h;
    for (int i = 0; i < 7; i++)
        if (bad_dim(h[i], maxv[i]))
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header: %s = %d out of range (not a llama2.c checkpoint?)", path,
                            field[i], h[i]);
    if (h[0] % h[3] || h[3] % h[4] || (h[0] / h[3]) % 2)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: header: dim %d, n_heads %d, n_kv_heads %d are inconsistent", path,
                        h[0], h[3], h[4]);
    return PQ_OK;
}

static void fill_config(const l2c_header *hd, pq__config *c) {
    memset(c, 0, sizeof *c);
    c->arch = PQ_ARCH_LLAMA;
    c->dim = hd->h[0];
    c->hidden_dim = hd->h[1];
    c->n_layers = hd->h[2];
    c->n_heads = hd->h[3];
    c->n_kv_heads = hd->h[4];
    c->vocab_size = hd->h[5];
    c->max_seq_len = hd->h[6];
    c->head_dim = c->dim / c->n_heads;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_halfsplit = 0;
    c->tied = hd->shared;
    c->bos_id = 1;
    c->eos_id = 2;
}

/* References every weight in file order (which differs between the versions). */
static pq_status add_tensors(pq_ctx *ctx, pq__source *src, const char *path, pq__reader *r, int version) {
    const pq__config *c = &src->cfg;
    const int64_t D = c->dim, F = c->hidden_dim, L = c->n_layers, V = c->vocab_size, HD = c->head_dim;
    const int64_t QD = c->n_heads * HD, KD = c->n_kv_heads * HD;
    const l2c_entry emb = {"model.embed_tokens.weight", V, D, 0};
    const l2c_entry att_norm = {"model.layers.%d.input_layernorm.weight", D, 0, 1};
    const l2c_entry ffn_norm = {"model.layers.%d.post_attention_layernorm.weight", D, 0, 1};
    const l2c_entry fin_norm = {"model.norm.weight", D, 0, 0};
    const l2c_entry mats[7] = {
        {"model.layers.%d.self_attn.q_proj.weight", QD, D, 1}, {"model.layers.%d.self_attn.k_proj.weight", KD, D, 1},
        {"model.layers.%d.self_attn.v_proj.weight", KD, D, 1}, {"model.layers.%d.self_attn.o_proj.weight", D, QD, 1},
        {"model.layers.%d.mlp.gate_proj.weight", F, D, 1},     {"model.layers.%d.mlp.down_proj.weight", D, F, 1},
        {"model.layers.%d.mlp.up_proj.weight", F, D, 1},
    };
    const l2c_entry cls = {"lm_head.weight", V, D, 0};
    pq_status st;
    if (version == 0) {
        if ((st = add_stack(ctx, src, path, r, &emb, L)) || (st = add_stack(ctx, src, path, r, &att_norm, L)))
            return st;
        for (int i = 0; i < 4; i++)
            if ((st = add_stack(ctx, src, path, r, &mats[i], L))) return st;
        if ((st = add_stack(ctx, src, path, r, &ffn_norm, L))) return st;
        for (int i = 4; i < 7; i++)
            if ((st = add_stack(ctx, src, path, r, &mats[i], L))) return st;
        if ((st = add_stack(ctx, src, path, r, &fin_norm, L))) return st;
        r->pos += (size_t)(c->max_seq_len * HD) * 4; /* skip freq_cis: RoPE is recomputed */
    } else {
        if ((st = add_stack(ctx, src, path, r, &att_norm, L)) || (st = add_stack(ctx, src, path, r, &ffn_norm, L)) ||
            (st = add_stack(ctx, src, path, r, &fin_norm, L)) || (st = add_stack(ctx, src, path, r, &emb, L)))
            return st;
        for (int i = 0; i < 7; i++)
            if ((st = add_stack(ctx, src, path, r, &mats[i], L))) return st;
    }
    if (!c->tied && (st = add_stack(ctx, src, path, r, &cls, L))) return st;
    return PQ_OK;
}

pq_status pq__llama2c_load(pq_ctx *ctx, const char *path, int use_mmap, pq__source *src) {
    pq__file *f;
    pq_status st = pq__source_add_file(ctx, src, path, use_mmap, &f);
    if (st != PQ_OK) return st;
    snprintf(src->format, sizeof src->format, "llama2c");
    pq__reader r = {f->data, f->size, 0};
    l2c_header hd;
    if ((st = read_header(ctx, path, f, &r, &hd)) != PQ_OK) return st;
    pq__config *c = &src->cfg;
    fill_config(&hd, c);

    /* the total size must fit before any tensor is referenced (overflow-safe in 64 bits:
     * every factor is bounded above) */
    const int64_t D = c->dim, F = c->hidden_dim, L = c->n_layers, V = c->vocab_size, HD = c->head_dim;
    const int64_t QD = c->n_heads * HD, KD = c->n_kv_heads * HD;
    int64_t floats = V * D + L * (2 * D + D * QD + 2 * D * KD + QD * D + 3 * D * F) + D + (hd.shared ? 0 : V * D);
    if (hd.version == 0) floats += c->max_seq_len * HD; /* legacy freq_cis_real + freq_cis_imag */
    if ((uint64_t)floats > (f->size - r.pos) / 4)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: truncated: header needs %lld weight bytes, file has %zu", path,
                        (long long)floats * 4, f->size - r.pos);

    if ((st = add_tensors(ctx, src, path, &r, hd.version)) != PQ_OK) return st;
    if (r.pos != r.size)
        pq__log(ctx, PQ_LOG_WARN, "%s: %zu trailing bytes after the weights ignored", path, r.size - r.pos);
    return PQ_OK;
}
