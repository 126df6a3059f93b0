/* GGUF output of the pipeline (pipeline.h): every tensor's type from the llama-quantize mixture
 * of the requested type or preset (quant/gguf_mix.h); the linears arrive as ggml blocks from
 * GPTQ (or RTN) on their types' grids, the embeddings and the output matrix are rounded to
 * nearest with llama.cpp's weighting (no Hessian reaches them). Tensor bytes are spooled to a
 * temporary file as the blocks finish (memory holds one block), mapped at the end and written
 * as one GGUF file, atomically. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/imatrix.h"
#include "kernels/dtype.h"
#include "kernels/ggml_types.h"
#include "model/packed.h"
#include "pipeline/pipeline.h"
#include "quant/gguf_mix.h"

typedef struct rec {
    char name[96]; /* GGUF name */
    pq_dtype dt;
    int n_dims;
    int64_t shape[2]; /* outermost first */
    size_t off, nbytes;
} rec;

struct pq__gguf_out {
    int ftype;
    const pq__imatrix *im; /* convert --imatrix: per-column importance of the linears, or NULL */
    pq_dtype *lin;         /* [n_layers * PQ_BLOCK_LINEARS] */
    pq_dtype embd, output;
    int halfsplit; /* the file's RoPE row layout */
    pq__atomic blob;
    size_t off;
    rec *r;
    int64_t n, cap;
};

static pq_dtype dtype_of_mix(int t) {
    if (t == PQ_MIX_F16) return PQ_DTYPE_F16;
    if (t == PQ_MIX_BF16) return PQ_DTYPE_BF16;
    const pq__ggml_info *ti = pq__ggml_info_by_id((uint32_t)t);
    return ti ? ti->dtype : PQ_DTYPE_F32;
}

/* The tensors of the file with GGUF names and shapes (ne[0] = row length), for the plan. */
typedef struct plan_list {
    pq__gguf_mix_tensor *t;
    char (*names)[96];
    int64_t n;
} plan_list;

static void plan_add(plan_list *pl, const char *hf, int64_t rows, int64_t cols) {
    char *nm = pl->names[pl->n];
    if (!pq__gguf_name_from_hf(hf, nm, 96)) snprintf(nm, 96, "%s", hf);
    pq__gguf_mix_tensor *t = &pl->t[pl->n++];
    t->name = nm;
    t->ne[0] = cols ? cols : rows;
    t->ne[1] = cols ? rows : 1;
    t->ne[2] = t->ne[3] = 1;
    t->type = PQ_MIX_F32;
}

static pq_status make_plan(pq__pipe *P, const char *preset, int pure) {
    const pq__config *c = &P->m->cfg;
    struct pq__gguf_out *g = P->gguf;
    const int64_t cap = 3 + c->n_layers * (2 + 2 * PQ_BLOCK_LINEARS);
    plan_list pl = {pq__calloc(P->ctx, (size_t)cap, sizeof *pl.t, "the GGUF plan"),
                    pq__calloc(P->ctx, (size_t)cap, sizeof *pl.names, "the GGUF plan"), 0};
    int *types = pq__calloc(P->ctx, (size_t)cap, sizeof *types, "the GGUF plan");
    pq_status st = (pl.t && pl.names && types) ? PQ_OK : PQ_ERR_NOMEM;
    if (st == PQ_OK) {
        plan_add(&pl, "model.embed_tokens.weight", c->vocab_size, c->dim);
        plan_add(&pl, "model.norm.weight", c->dim, 0);
        if (!c->tied) plan_add(&pl, "lm_head.weight", c->vocab_size, c->dim);
        for (int64_t l = 0; l < c->n_layers; l++)
            for (int i = 0; i < PQ_BLOCK_LINEARS; i++) {
                char hf[160];
                pq__linear_name(hf, sizeof hf, l, i);
                strcat(hf, ".weight");
                plan_add(&pl, hf, pq__linear_dim(c, pq__block_linear[i].rows),
                         pq__linear_dim(c, pq__block_linear[i].cols));
            }
        pq__gguf_mix_params mp = pq__gguf_mix_params_default();
        mp.pure = pure;
        const pq__gguf_mix_model mm = {c->arch == PQ_ARCH_QWEN2 ? "qwen2" : "llama", c->n_layers, c->n_heads,
                                       c->n_kv_heads, 0};
        st = pq__gguf_mix_plan(P->ctx, preset, &mp, &mm, pl.t, pl.n, types);
    }
    if (st == PQ_OK) {
        int64_t k = 0;
        g->embd = dtype_of_mix(types[k++]);
        k++; /* output_norm: F32 */
        g->output = c->tied ? g->embd : dtype_of_mix(types[k++]);
        for (int64_t j = 0; j < c->n_layers * PQ_BLOCK_LINEARS; j++)
            g->lin[j] = dtype_of_mix(types[k++]);
    }
    free(pl.t);
    free(pl.names);
    free(types);
    return st;
}

pq_status pq__gguf_out_begin(pq__pipe *P, const char *path) {
    const pq__config *c = &P->m->cfg;
    if (!(P->gguf = pq__calloc(P->ctx, 1, sizeof *P->gguf, "GGUF output"))) return PQ_ERR_NOMEM;
    int pure = 0, def = 0;
    if (!pq__gguf_mix_parse(P->p.gguf_type, &P->gguf->ftype, &def, &pure))
        return pq__fail(
            P->ctx, PQ_ERR_INVALID,
            "compress: --gguf-type '%s': not a type or preset (Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q4_K_M, Q4_K_S, "
            "Q3_K_L, Q3_K_M, Q3_K_S, Q2_K, Q5_0, Q5_1, Q4_0, Q4_1, Q5_K, Q4_K, Q3_K)",
            P->p.gguf_type);
    P->gguf->lin = pq__calloc(P->ctx, (size_t)(c->n_layers * PQ_BLOCK_LINEARS), sizeof(pq_dtype), "GGUF types");
    if (!P->gguf->lin) return PQ_ERR_NOMEM;
    P->gguf->halfsplit = c->arch == PQ_ARCH_QWEN2;
    pq_status st = make_plan(P, P->p.gguf_type, pure);
    if (st) return st;
    char *blob = malloc(strlen(path) + 8);
    if (!blob) return pq__fail(P->ctx, PQ_ERR_NOMEM, "out of memory naming the spool file of %s", path);
    sprintf(blob, "%s.spool", path);
    st = pq__atomic_open(P->ctx, blob, &P->gguf->blob);
    free(blob);
    return st;
}

pq_dtype pq__gguf_out_type(const pq__pipe *P, int64_t l, int i) {
    return P->gguf->lin[l * PQ_BLOCK_LINEARS + i];
}

/* Appends bytes as one tensor of the file. */
static pq_status put(pq__pipe *P, const char *hf, pq_dtype dt, int n_dims, int64_t d0, int64_t d1, const void *data,
                     size_t nbytes) {
    struct pq__gguf_out *g = P->gguf;
    if (g->n == g->cap) {
        const int64_t cap = g->cap ? 2 * g->cap : 64;
        rec *r = realloc(g->r, (size_t)cap * sizeof *r);
        if (!r)
            return pq__fail(P->ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the GGUF tensor list",
                            (size_t)cap * sizeof *r);
        g->r = r;
        g->cap = cap;
    }
    rec *r = &g->r[g->n];
    if (!pq__gguf_name_from_hf(hf, r->name, sizeof r->name))
        return pq__fail(P->ctx, PQ_ERR_INTERNAL, "no GGUF name for tensor '%s'", hf);
    r->dt = dt;
    r->n_dims = n_dims;
    r->shape[0] = d0;
    r->shape[1] = d1;
    r->off = g->off;
    r->nbytes = nbytes;
    pq_status st = pq__atomic_write(P->ctx, &g->blob, data, nbytes);
    /* GGUF aligns tensor data to 32 bytes: keep every tensor's offset aligned in the spool too */
    static const uint8_t pad[32];
    const size_t np = (32 - nbytes % 32) % 32;
    if (st == PQ_OK && np) st = pq__atomic_write(P->ctx, &g->blob, pad, np);
    if (st == PQ_OK) {
        g->off += nbytes + np;
        g->n++;
        P->total += (double)nbytes;
    }
    return st;
}

/* Rows x [n, cols] in dt: float types converted, block types rounded to nearest with
 * llama.cpp's weighting; into out (bytes of n rows). */
static void encode_rows(pq_dtype dt, const float *x, int64_t n, int64_t cols, uint8_t *out, float *w,
                        const float *imat) {
    const pq__ggml_info *ti = pq__ggml_info_of(dt);
    if (!ti) {
        pq__from_f32(dt, x, out, n * cols);
        return;
    }
    const size_t rb = pq__dtype_nbytes(dt, cols);
    for (int64_t r = 0; r < n; r++) {
        pq__ggml_weights(ti, x + r * cols, imat, cols, w);
        pq__ggml_quantize_row(ti, x + r * cols, w, cols, out + (size_t)r * rb);
    }
}

/* A float tensor of the model, rows permuted for RoPE when rope_heads > 0, in dt. */
static pq_status put_f32(pq__pipe *P, const char *hf, const float *x, int64_t rows, int64_t cols, int64_t rope_heads,
                         pq_dtype dt) {
    const pq__config *c = &P->m->cfg;
    const int64_t cc = cols ? cols : 1;
    if (!pq__ggml_info_of(dt) && dt != PQ_DTYPE_F16 && dt != PQ_DTYPE_BF16) dt = PQ_DTYPE_F32;
    const size_t nb = pq__dtype_nbytes(dt, rows * cc);
    uint8_t *buf = pq__malloc(P->ctx, nb, hf), *perm = NULL;
    float *w = pq__malloc(P->ctx, sizeof(float) * (size_t)cc, "importance weights");
    pq_status st = buf && w ? PQ_OK : PQ_ERR_NOMEM;
    /* convert --imatrix: llama-quantize's importance for this weight (matched by GGUF name) */
    const float *imat = NULL;
    char gname[96];
    if (P->gguf->im && cols && pq__gguf_name_from_hf(hf, gname, sizeof gname)) {
        const pq__imatrix_item *it = pq__imatrix_find(P->gguf->im, gname);
        if (it && it->ncols == cols) imat = it->importance;
    }
    if (st == PQ_OK) encode_rows(dt, x, rows, cc, buf, w, imat);
    if (st == PQ_OK && rope_heads && P->gguf->halfsplit != c->rope_halfsplit) {
        if (!(perm = pq__malloc(P->ctx, nb, hf))) st = PQ_ERR_NOMEM;
        if (perm) pq__permute_rope_rows(buf, perm, rope_heads, c->head_dim, nb / (size_t)rows, P->gguf->halfsplit);
    }
    if (st == PQ_OK) st = put(P, hf, dt, cols ? 2 : 1, rows, cols, perm ? perm : buf, nb);
    free(buf);
    free(perm);
    free(w);
    return st;
}

/* A [rows, cols] weight of the source model in pieces of 256 rows (never whole in memory). */
static pq_status put_stream(pq__pipe *P, const char *hf, int64_t rows, int64_t cols, pq_dtype dt) {
    const int64_t per = 256;
    const size_t rb = pq__dtype_nbytes(dt, cols);
    float *x = pq__malloc(P->ctx, sizeof(float) * (size_t)(per * cols), hf),
          *w = pq__malloc(P->ctx, sizeof(float) * (size_t)cols, hf);
    uint8_t *out = pq__malloc(P->ctx, rb * (size_t)per, hf);
    pq_status st = x && w && out ? PQ_OK : PQ_ERR_NOMEM;
    const size_t off = P->gguf->off;
    for (int64_t r0 = 0; r0 < rows && st == PQ_OK; r0 += per) {
        const int64_t n = rows - r0 < per ? rows - r0 : per;
        if ((st = pq__progress(P->ctx, "compress", 0, P->m->cfg.n_layers))) break;
        if ((st = pq__model_rows_f32(P->ctx, P->m, hf, r0, n, x))) break;
        encode_rows(dt, x, n, cols, out, w, NULL);
        st = pq__atomic_write(P->ctx, &P->gguf->blob, out, rb * (size_t)n);
        P->gguf->off += rb * (size_t)n;
    }
    free(x);
    free(w);
    free(out);
    if (st) return st;
    /* record it (its bytes are in the spool already) */
    const size_t nb = P->gguf->off - off;
    P->gguf->off = off;
    struct pq__gguf_out *g = P->gguf;
    const pq_status s2 = put(P, hf, dt, 2, rows, cols, NULL, 0);
    if (s2) return s2;
    g->r[g->n - 1].nbytes = nb;
    g->off = off + nb;
    const size_t np = (32 - nb % 32) % 32;
    static const uint8_t pad[32];
    P->total += (double)nb;
    if (np) {
        g->off += np;
        return pq__atomic_write(P->ctx, &g->blob, pad, np);
    }
    return PQ_OK;
}

pq_status pq__gguf_out_head(pq__pipe *P) {
    const pq__config *c = &P->m->cfg;
    pq_status st = put_stream(P, "model.embed_tokens.weight", c->vocab_size, c->dim, P->gguf->embd);
    if (st == PQ_OK) st = put_f32(P, "model.norm.weight", P->m->out_norm, c->dim, 0, 0, PQ_DTYPE_F32);
    if (st == PQ_OK && !c->tied) st = put_stream(P, "lm_head.weight", c->vocab_size, c->dim, P->gguf->output);
    return st;
}

/* Linear i of block l: its ggml blocks (rows permuted for RoPE as the file expects) or its
 * float weights in the plan's float type. */
static pq_status put_linear(pq__pipe *P, int64_t l, int i, const pq__linear *lin) {
    const pq__config *c = &P->m->cfg;
    const int64_t heads = pq__linear_rope_heads(c, i);
    char base[128], n[160];
    pq__linear_name(base, sizeof base, l, i);
    pq_status st = PQ_OK;
    if (lin->b) {
        snprintf(n, sizeof n, "%s.bias", base);
        if ((st = put_f32(P, n, lin->b, lin->rows, 0, heads, PQ_DTYPE_F32))) return st;
    }
    snprintf(n, sizeof n, "%s.weight", base);
    const pq_qcodes *q = &P->w.codes[i];
    if (!q->gguf_blocks) return put_f32(P, n, P->w.w[i], lin->rows, lin->cols, heads, pq__gguf_out_type(P, l, i));
    uint8_t *perm = NULL;
    if (heads && P->gguf->halfsplit != c->rope_halfsplit) {
        if (!(perm = pq__malloc(P->ctx, q->gguf_bytes, n))) return PQ_ERR_NOMEM;
        pq__permute_rope_rows(q->gguf_blocks, perm, heads, c->head_dim, q->gguf_bytes / (size_t)lin->rows,
                              P->gguf->halfsplit);
    }
    st = put(P, n, q->gguf_type, 2, lin->rows, lin->cols, perm ? perm : q->gguf_blocks, q->gguf_bytes);
    free(perm);
    return st;
}

pq_status pq__gguf_out_block(pq__pipe *P, int64_t l, const pq__block *b) {
    const pq__config *c = &P->m->cfg;
    char n[160];
    snprintf(n, sizeof n, "model.layers.%lld.input_layernorm.weight", (long long)l);
    pq_status st = put_f32(P, n, b->attn_norm, c->dim, 0, 0, PQ_DTYPE_F32);
    snprintf(n, sizeof n, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
    if (st == PQ_OK) st = put_f32(P, n, b->ffn_norm, c->dim, 0, 0, PQ_DTYPE_F32);
    for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++)
        st = put_linear(P, l, i, pq__block_linear_get(b, i));
    if (st == PQ_OK) st = pq__progress(P->ctx, "compress", l, c->n_layers);
    pq__block_work_next(&P->w);
    return st;
}

pq_status pq__gguf_out_finish(pq__pipe *P, const char *path) {
    struct pq__gguf_out *g = P->gguf;
    if (fflush(g->blob.f)) return pq__fail(P->ctx, PQ_ERR_IO, "%s: cannot write", g->blob.tmp);
    pq__file f;
    pq_status st = pq__file_open(P->ctx, g->blob.tmp, 1, &f);
    if (st) return st;
    pq__gguf_writer *w = NULL;
    int halfsplit;
    st = pq__gguf_model_writer(P->ctx, P->m, path, (uint32_t)g->ftype, &w, &halfsplit);
    for (int64_t i = 0; i < g->n && st == PQ_OK; i++) {
        const rec *r = &g->r[i];
        /* GGUF order: shape outermost first as pq__tensor (the writer reverses it) */
        pq__gguf_writer_add_tensor(w, r->name, r->dt, r->n_dims, r->shape, f.data + r->off, r->nbytes);
    }
    if (st == PQ_OK) st = pq__gguf_writer_save(P->ctx, w, path);
    pq__gguf_writer_free(w);
    pq__file_close(&f);
    return st;
}

void pq__gguf_out_free(pq__pipe *P) {
    if (!P->gguf) return;
    if (P->gguf->blob.f) pq__atomic_abort(&P->gguf->blob);
    free(P->gguf->lin);
    free(P->gguf->r);
    free(P->gguf);
    P->gguf = NULL;
}

/* convert --to gguf --gguf-type: the same file layout and mixture, every weight rounded to
 * nearest (with llama.cpp's imatrix rule when an imatrix is given), one block at a time. */
pq_status pq_model_save_gguf(pq_ctx *ctx, const pq_model *m, const char *path, const char *gguf_type,
                             const char *imatrix_path) {
    pq__pipe P;
    memset(&P, 0, sizeof P);
    P.ctx = ctx;
    P.m = m;
    P.p = pq_compress_params_default();
    P.p.gguf_type = gguf_type;
    pq__imatrix *im = NULL;
    pq_status st = pq__check_output_path(ctx, path, 0);
    if (st == PQ_OK && imatrix_path) st = pq__imatrix_read(ctx, imatrix_path, &im);
    if (st == PQ_OK) st = pq__gguf_out_begin(&P, path);
    if (st == PQ_OK) P.gguf->im = im;
    if (st == PQ_OK) st = pq__gguf_out_head(&P);
    for (int64_t l = 0; l < m->cfg.n_layers && st == PQ_OK; l++) {
        pq__block b = m->blocks[l];
        for (int i = 0; i < PQ_BLOCK_LINEARS && st == PQ_OK; i++) {
            pq__linear *lin = pq__block_linear_at(&b, i);
            char name[128];
            pq__linear_name(name, sizeof name, l, i);
            st = pq__block_work_load(ctx, m, &P.w, i, name, lin->rows, lin->cols);
            lin->w = pq__qmat_f32(lin->rows, lin->cols, P.w.w[i]);
        }
        if (st == PQ_OK) st = pq__gguf_out_block(&P, l, &b);
    }
    if (st == PQ_OK) st = pq__gguf_out_finish(&P, path);
    pq__block_work_free(&P.w);
    pq__gguf_out_free(&P);
    pq__imatrix_free(im);
    return st;
}
