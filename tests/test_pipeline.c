/* Whole-model pipeline: packed output decodes to exactly the dense output, GPTQ beats RTN,
 * N:M outputs hold their pattern, ACr near TCr, atomic output, bad recipes. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "calib/calib.h"
#include "model/model.h"
#include "model/packed.h"
#include "prunequant-pipeline.h"
#include "synth.h"
#include "failalloc.h"
#include "test.h"

static char root[256];

static int32_t *random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
    int32_t *t = malloc((size_t)n * sizeof *t);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
    for (int64_t i = 0; i < n; i++)
        t[i] = (int32_t)(synth_rng(&s) % (uint64_t)vocab);
    return t;
}

static const char *out_path(const char *name) {
    static char buf[4][320];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
    return buf[k];
}

/* Logits of a model on a fixed batch of 2 x 24 tokens (malloc'ed). */
static float *logits_of(pq_ctx *ctx, const pq_model *m, const int32_t *toks) {
    const int64_t V = m->cfg.vocab_size;
    float *l = calloc((size_t)(2 * 24 * V), sizeof(float));
    if (pq_model_logits(ctx, m, toks, 2, 24, 0, l) != PQ_OK) {
        fprintf(stderr, "logits: %s\n", pq_ctx_error(ctx));
        free(l);
        return NULL;
    }
    return l;
}

static pq_model *load(pq_ctx *ctx, const char *dir) {
    pq_load_params lp = pq_load_params_default();
    pq_model *m = NULL;
    if (pq_model_load(ctx, dir, &lp, &m) != PQ_OK) fprintf(stderr, "load %s: %s\n", dir, pq_ctx_error(ctx));
    return m;
}

static double mse(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s / (double)n;
}

static pq_model *compress_load(pq_ctx *ctx, const pq_model *m, const int32_t *calib, int64_t n_calib,
                               const pq_compress_params *p, const char *name) {
    const char *dir = out_path(name);
    pq_status st = pq_compress_model(ctx, m, calib, n_calib, p, dir);
    CHECK_MSG(st == PQ_OK, "%s: %s", name, pq_ctx_error(ctx));
    if (st) return NULL;
    pq_model *o = load(ctx, dir);
    CHECK(o != NULL);
    return o;
}

static float *compress_logits(pq_ctx *ctx, const pq_model *m, const int32_t *calib, int64_t n_calib,
                              const pq_compress_params *p, const char *name, const int32_t *eval) {
    pq_model *o = compress_load(ctx, m, calib, n_calib, p, name);
    float *l = o ? logits_of(ctx, o, eval) : NULL;
    pq_model_free(o);
    return l;
}

/* Mean next-token NLL of the 2 x 24 eval tokens under logits l. */
static double mean_nll(const float *l, const int32_t *toks, int64_t V) {
    double s = 0;
    for (int q = 0; q < 2; q++)
        for (int t = 0; t < 23; t++) {
            const float *r = l + (q * 24 + t) * V;
            double mx = r[0], z = 0;
            for (int64_t v = 1; v < V; v++)
                mx = fmax(mx, r[v]);
            for (int64_t v = 0; v < V; v++)
                z += exp((double)r[v] - mx);
            s += mx + log(z) - r[toks[q * 24 + t + 1]];
        }
    return s / 46;
}

static pq_compress_params base_params(void) {
    pq_compress_params p = pq_compress_params_default();
    p.nsamples = 8;
    p.seqlen = 64;
    p.layer.quant = PQ_QUANT_GPTQ;
    p.layer.bits = 4;
    p.layer.group_size = 32;
    return p;
}

/* Dense and packed outputs of the same recipe: every packed linear decodes to exactly the dense
 * output's weights, runs from its stored form (codes / float16, not expanded), and the packed
 * model's perplexity equals the dense one's within 1e-6 relative (the kernels sum in another
 * order than BLAS; tests/test_qmat.c bounds each product). */
static void check_dense_packed(pq_ctx *ctx, const pq__config *cfg, pq_compress_params p, const char *tag) {
    pq_model *m = synth_model(ctx, cfg, 11);
    CHECK(m != NULL);
    if (!m) return;
    int32_t *calib = random_tokens(3000, cfg->vocab_size, 1), *eval = random_tokens(48, cfg->vocab_size, 2);
    char nd[64], np[64];
    snprintf(nd, sizeof nd, "%s_dense", tag);
    snprintf(np, sizeof np, "%s_packed", tag);
    p.packed = 0;
    pq_model *md = compress_load(ctx, m, calib, 3000, &p, nd);
    float *ld = md ? logits_of(ctx, md, eval) : NULL;
    for (int v = 1; v <= 2; v++) { /* packed-v1 (bitmask) and packed-v2 (indices, coded masks) */
        p.packed = v;
        pq_model *mp = compress_load(ctx, m, calib, 3000, &p, np);
        float *lp = mp ? logits_of(ctx, mp, eval) : NULL;
        if (md && mp) {
            int exact = 1, native = 0;
            for (int64_t l = 0; l < cfg->n_layers; l++)
                for (int i = 0; i < PQ_BLOCK_LINEARS; i++) {
                    const pq__linear *a = pq__block_linear_get(&md->blocks[l], i),
                                     *b = pq__block_linear_get(&mp->blocks[l], i);
                    float *wb = malloc(sizeof(float) * (size_t)(b->rows * b->cols));
                    pq__qmat_rows_f32(&b->w, 0, b->rows, wb);
                    exact &= a->w.kind == PQ_QMAT_F32 &&
                             !memcmp(a->w.data, wb, sizeof(float) * (size_t)(b->rows * b->cols));
                    native += b->w.kind != PQ_QMAT_F32; /* act-order: codes in group order */
                    free(wb);
                }
            CHECK_MSG(exact, "%s: packed-v%d weights differ from the dense output's", tag, v);
            CHECK_MSG(native == PQ_BLOCK_LINEARS * cfg->n_layers, "%s: packed-v%d: %d of %lld linears run as stored",
                      tag, v, native, (long long)(PQ_BLOCK_LINEARS * cfg->n_layers));
        }
        if (ld && lp) {
            const double a = mean_nll(ld, eval, cfg->vocab_size), b = mean_nll(lp, eval, cfg->vocab_size);
            CHECK_MSG(fabs(exp(b - a) - 1) <= 1e-6, "%s: packed-v%d ppl %.9g vs dense %.9g (mse of logits %g)", tag,
                      v, exp(b), exp(a), mse(ld, lp, 48 * cfg->vocab_size));
        }
        free(lp);
        pq_model_free(mp);
    }
    free(ld);
    pq_model_free(md);
    free(calib);
    free(eval);
    pq_model_free(m);
}

static int cancel_after_one(void *user, const char *stage, int64_t done, int64_t total) {
    (void)user;
    (void)total;
    return !strcmp(stage, "compress") && done >= 1;
}

static int dir_entries(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = k >= 0 ? malloc((size_t)k + 1) : NULL;
    if (b && fread(b, 1, (size_t)k, f) != (size_t)k) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = b ? (size_t)k : 0;
    return b;
}

/* Every file of folder a equals the one of the same name in b. */
static int same_folders(const char *a, const char *b) {
    DIR *d = opendir(a);
    if (!d) return 0;
    int ok = dir_entries(a) == dir_entries(b), files = 0;
    struct dirent *e;
    while (ok && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char pa[512], pb[512];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        size_t na, nb;
        char *ba = slurp(pa, &na), *bb = slurp(pb, &nb);
        ok = ba && bb && na == nb && memcmp(ba, bb, na) == 0;
        if (!ok) fprintf(stderr, "same_folders: %s differs\n", e->d_name);
        files++;
        free(ba);
        free(bb);
    }
    closedir(d);
    return ok && files > 0;
}

/* A model loaded with deferred weights (f16 on disk: converted one block at a time,
 * embeddings and lm_head streamed in pieces) compresses to exactly the same folder as the
 * model loaded whole; its forward pass is refused. */
static void check_deferred(pq_ctx *ctx) {
    pq__config c = synth_config(PQ_ARCH_LLAMA, 64, 128, 2, 4, 2, 2600);
    c.tied = 0;
    pq_model *m = synth_model(ctx, &c, 5);
    CHECK(m != NULL);
    if (!m) return;
    const char *src = out_path("deferred_src");
    CHECK(pq_model_save(ctx, m, PQ_FORMAT_HF, src, PQ_DTYPE_F16) == PQ_OK);
    pq_model_free(m);
    pq_load_params lp = pq_load_params_default();
    pq_model *whole = NULL, *lazy = NULL;
    CHECK(pq_model_load(ctx, src, &lp, &whole) == PQ_OK);
    lp.defer_weights = 1;
    CHECK(pq_model_load(ctx, src, &lp, &lazy) == PQ_OK);
    if (whole && lazy) {
        int32_t *calib = random_tokens(3000, c.vocab_size, 1);
        pq_compress_params p = base_params();
        p.layer.prune = PQ_PRUNE_SPARSEGPT;
        p.layer.sparsity = 0.25;
        p.dtype = PQ_DTYPE_F16;
        CHECK(pq_compress_model(ctx, whole, calib, 3000, &p, out_path("deferred_a")) == PQ_OK);
        CHECK_MSG(pq_compress_model(ctx, lazy, calib, 3000, &p, out_path("deferred_b")) == PQ_OK, "%s",
                  pq_ctx_error(ctx));
        CHECK(same_folders(out_path("deferred_a"), out_path("deferred_b")));
        float *l = logits_of(ctx, lazy, calib);
        CHECK(l == NULL && strstr(pq_ctx_error(ctx), "defer_weights") != NULL);
        free(l);
        free(calib);
    }
    pq_model_free(whole);
    pq_model_free(lazy);
}

/* The panelled Hessian accumulator against a naive double X^T X: several chunks, a column
 * count that is not a multiple of the panel, finished in place.
 *
 * Tolerance, entry by entry, from the float32 error bound rather than a fixed relative limit
 * (entries that cancel to near zero have a large relative error on any BLAS kernel): each chunk
 * of k rows is one float dot product per entry, whatever the kernel's order of summation or FMA
 * use, |fl(x.y) - x.y| <= gamma_k sum |x_r||y_r| with gamma_k = k u / (1 - k u), u = 2^-24;
 * the chunks are summed and scaled in double (error ~1e-16, covered by the 1.01 factor) and the
 * result is rounded once to float (u |H|). So |H - 2 X^T X / N| <= (2/N) sum_chunks gamma_k
 * sum_chunk |x_ri x_rj| + u |H|, which holds on every x86-64 OpenBLAS kernel. */
static void check_hacc(pq_ctx *ctx) {
    const int64_t cols = 1100, n1 = 37, n2 = 64;
    float *x = malloc((size_t)((n1 + n2) * cols) * sizeof(float));
    double *ref = calloc((size_t)(cols * cols), sizeof(double));
    double *bound = calloc((size_t)(cols * cols), sizeof(double));
    uint64_t s = 7;
    for (int64_t i = 0; i < (n1 + n2) * cols; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) + (i % cols == 5 ? 20.0f : 0.0f);
    }
    const double u = 1.0 / 16777216.0;
    for (int64_t r = 0; r < n1 + n2; r++) {
        const double k = (double)(r < n1 ? n1 : n2), gamma = k * u / (1.0 - k * u);
        for (int64_t i = 0; i < cols; i++)
            for (int64_t j = 0; j < cols; j++) {
                const double p = (double)x[r * cols + i] * x[r * cols + j];
                ref[i * cols + j] += p;
                bound[i * cols + j] += gamma * fabs(p);
            }
    }
    pq__hacc a;
    CHECK(pq__hacc_init(ctx, &a, cols) == PQ_OK);
    pq__hacc_add(&a, x, n1);
    pq__hacc_add(&a, x + n1 * cols, n2);
    float *H = NULL;
    CHECK(pq__hacc_finish(ctx, &a, &H) == PQ_OK && H);
    double worst = 0, worst_rel = 0;
    const double f = 2.0 / (double)(n1 + n2);
    for (int64_t i = 0; H && i < cols * cols; i++) {
        const double want = f * ref[i], err = fabs(H[i] - want);
        const double lim = 1.01 * (f * bound[i] + u * fabs(want)) + 1e-300;
        if (err / lim > worst) worst = err / lim;
        const double rel = err / (fabs(want) + 1e-2);
        if (rel > worst_rel) worst_rel = rel;
    }
    fprintf(stderr, "hacc: worst error %.3g of its float32 bound, worst relative error %.3g\n", worst, worst_rel);
    CHECK_MSG(worst <= 1.0, "hacc error %g x its float32 bound (worst relative error %g)", worst, worst_rel);
    CHECK(H && H[3 * cols + 1000] == H[1000 * cols + 3]);
    float *H2 = NULL;
    CHECK(pq__hacc_finish(ctx, &a, &H2) != PQ_OK && !H2); /* consumed */
    pq__hacc_free(&a);
    free(H);
    free(x);
    free(ref);
    free(bound);
}

/* ---------------------------------------------------------------- allocation failures */

/* Every allocation of pq_compress_model (dense and packed output, a report), of
 * pq_model_load on its packed output and on a llama2.c checkpoint fails in turn
 * (tests/failalloc.h). */
typedef struct fa_case {
    const pq_model *model; /* compress when set, else load path */
    const int32_t *calib;
    int64_t n_calib;
    const pq_compress_params *p;
    const char *path; /* output folder (compress) or the file to load */
    int64_t n_layers; /* of the loaded model */
    const char *ref;  /* compress: the folder a run without failures wrote (and its report) */
    const char *ref_report;
} fa_case;

static long count_lines(const char *path) {
    size_t n;
    char *b = slurp(path, &n);
    long k = b ? 0 : -1;
    for (size_t i = 0; i < n; i++)
        k += b[i] == '\n';
    free(b);
    return k;
}

static pq_status fa_body(pq_ctx *ctx, void *user) {
    const fa_case *c = user;
    if (c->model) {
        const pq_status st = pq_compress_model(ctx, c->model, c->calib, c->n_calib, c->p, c->path);
        failalloc_stop();
        struct stat sb;
        CHECK_MSG((st == PQ_OK) == (stat(c->path, &sb) == 0), "status %d: output folder %s", st,
                  st == PQ_OK ? "missing" : "left behind");
        /* a failure absorbed (PQ_OK) must not have dropped anything: the same files, the report whole */
        if (st == PQ_OK) CHECK_MSG(same_folders(c->path, c->ref), "PQ_OK after a failed allocation, other output");
        if (st == PQ_OK && c->p->report)
            CHECK_MSG(count_lines(c->p->report) == count_lines(c->ref_report), "report: %ld lines, not %ld",
                      count_lines(c->p->report), count_lines(c->ref_report));
        if (st == PQ_OK) pq__rmtree(c->path);
        return st;
    }
    pq_model *m = NULL;
    const pq_load_params lp = pq_load_params_default();
    const pq_status st = pq_model_load(ctx, c->path, &lp, &m);
    failalloc_stop();
    pq_model_info info;
    if (st == PQ_OK) CHECK(m && pq_model_get_info(m, &info) == PQ_OK && info.n_layers == c->n_layers);
    pq_model_free(m);
    return st;
}

/* A legacy llama2.c checkpoint of cfg (untied, random weights); returns 1 on success. */
static int write_llama2c(const char *path, const pq__config *cfg) {
    const int64_t D = cfg->dim, F = cfg->hidden_dim, L = cfg->n_layers, V = cfg->vocab_size, HD = cfg->head_dim;
    const int64_t QD = cfg->n_heads * HD, KD = cfg->n_kv_heads * HD;
    const int64_t floats =
        V * D + L * (2 * D + D * QD + 2 * D * KD + QD * D + 3 * D * F) + D + V * D + cfg->max_seq_len * HD;
    const int32_t h[7] = {(int32_t)D,
                          (int32_t)F,
                          (int32_t)L,
                          (int32_t)cfg->n_heads,
                          (int32_t)cfg->n_kv_heads,
                          -(int32_t)V,
                          (int32_t)cfg->max_seq_len};
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(h, sizeof h, 1, f) == 1;
    uint64_t rng = 3;
    for (int64_t i = 0; i < floats && ok; i++) {
        const float v = 0.1f * synth_unif(&rng);
        ok = fwrite(&v, 4, 1, f) == 1;
    }
    return fclose(f) == 0 && ok;
}

static void check_alloc_failures(pq_ctx *ctx) {
    pq__config c = synth_config(PQ_ARCH_LLAMA, 32, 64, 1, 4, 2, 40);
    pq_model *m = synth_model(ctx, &c, 5);
    int32_t *calib = random_tokens(200, c.vocab_size, 3);
    pq_compress_params p = base_params();
    p.nsamples = 2;
    p.seqlen = 16;
    p.layer.group_size = 16;
    char out[320];
    snprintf(out, sizeof out, "%s", out_path("fa_out"));
    /* every allocation of the library and of cJSON fails once; a run that absorbs it must
     * write what a run without failures writes */
    char ref[320], ref_report[320];
    snprintf(ref, sizeof ref, "%s", out_path("fa_ref"));
    snprintf(ref_report, sizeof ref_report, "%s", out_path("fa_ref_report.jsonl"));
    fa_case fc = {.model = m, .calib = calib, .n_calib = 200, .p = &p, .path = out, .ref = ref};
    CHECK(m && pq_compress_model(ctx, m, calib, 200, &p, ref) == PQ_OK);
    failalloc_exe_only = 1; /* its config.json and index go through the cJSON paths of the next entry */
    if (m) failalloc_run("pq_compress_model (packed gptq)", fa_body, &fc, 2, 50000);
    failalloc_exe_only = 0;
    pq__rmtree(ref);
    pq_compress_params pd = p;
    pd.packed = 0;
    pd.dtype = PQ_DTYPE_BF16;
    pd.true_sequential = 1;
    pd.layer.prune = PQ_PRUNE_SPARSEGPT;
    pd.layer.prune_n = 2;
    pd.layer.prune_m = 4;
    pd.layer.joint = PQ_JOINT_FUSED;
    pd.report = ref_report;
    CHECK(m && pq_compress_model(ctx, m, calib, 200, &pd, ref) == PQ_OK);
    pd.report = out_path("fa_report.jsonl");
    fc.p = &pd;
    fc.ref_report = ref_report;
    if (m) failalloc_run("pq_compress_model (dense fused 2:4, report)", fa_body, &fc, 2, 50000);
    pq__rmtree(ref);
    remove(ref_report);
    /* loading the packed output */
    CHECK(m && pq_compress_model(ctx, m, calib, 200, &p, out) == PQ_OK);
    fa_case fl = {.path = out, .n_layers = 1};
    failalloc_run("pq_model_load (packed hf folder)", fa_body, &fl, 1, 50000);
    pq__rmtree(out);
    /* a llama2.c checkpoint */
    pq__config c2 = synth_config(PQ_ARCH_LLAMA, 16, 32, 2, 4, 2, 24);
    c2.max_seq_len = 32;
    fl = (fa_case){.path = out_path("fa.bin"), .n_layers = 2};
    CHECK(write_llama2c(fl.path, &c2));
    failalloc_run("pq_model_load (llama2.c .bin)", fa_body, &fl, 1, 50000);
    remove(fl.path);
    free(calib);
    pq_model_free(m);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/pq_test_pipeline_XXXXXX");
    if (!mkdtemp(root)) return 1;
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, 2);
    check_hacc(ctx);
    check_alloc_failures(ctx);
    check_deferred(ctx);

    /* 1. dense == packed, for quantization, pruning only, joint, act-order, interleaved RoPE, biases */
    pq__config c = synth_config(PQ_ARCH_LLAMA, 64, 128, 2, 4, 2, 97);
    pq_compress_params p = base_params();
    check_dense_packed(ctx, &c, p, "gptq");
    pq_compress_params pa = p;
    pa.layer.act_order = 1;
    pa.true_sequential = 1;
    check_dense_packed(ctx, &c, pa, "actorder");
    pq_compress_params pp = p;
    pp.layer.quant = PQ_QUANT_NONE;
    pp.layer.prune = PQ_PRUNE_SPARSEGPT;
    pp.layer.sparsity = 0.5;
    check_dense_packed(ctx, &c, pp, "prune");
    pq_compress_params pj = p;
    pj.layer.prune = PQ_PRUNE_WANDA;
    pj.layer.prune_n = 2;
    pj.layer.prune_m = 4;
    pj.layer.joint = PQ_JOINT_A; /* pruned weights may move off zero: the mask must keep them */
    check_dense_packed(ctx, &c, pj, "jointa");
    pq__config ci = c;
    ci.rope_halfsplit = 0;
    check_dense_packed(ctx, &ci, p, "interleaved");
    pq__config cq = synth_config(PQ_ARCH_QWEN2, 64, 128, 1, 4, 2, 97);
    check_dense_packed(ctx, &cq, pj, "qwen2");
    pq_compress_params pv = pp; /* 2:4 pruned only: f16 values behind an N:M index */
    pv.layer.prune_n = 2;
    pv.layer.prune_m = 4;
    check_dense_packed(ctx, &c, pv, "prune24");
    pq_compress_params p8 = p; /* 2:8 + 4-bit fused: cells of 8 */
    p8.layer.prune = PQ_PRUNE_SPARSEGPT;
    p8.layer.prune_n = 2;
    p8.layer.prune_m = 8;
    p8.layer.joint = PQ_JOINT_FUSED;
    check_dense_packed(ctx, &c, p8, "fused28");

    /* 2. an uncompressed pass of an interleaved model reproduces its logits (q/k permutation) */
    {
        pq_model *m = synth_model(ctx, &ci, 11);
        int32_t *calib = random_tokens(3000, c.vocab_size, 1), *eval = random_tokens(48, c.vocab_size, 2);
        pq_compress_params pn = p;
        pn.layer.quant = PQ_QUANT_NONE;
        float *base = logits_of(ctx, m, eval);
        float *l = compress_logits(ctx, m, calib, 3000, &pn, "identity", eval);
        if (base && l) CHECK_MSG(mse(base, l, 48 * c.vocab_size) < 1e-8, "mse %g", mse(base, l, 48 * c.vocab_size));
        free(base);
        free(l);

        /* 3. GPTQ is closer to the base logits than RTN (same bits and groups) */
        base = logits_of(ctx, m, eval);
        pq_compress_params pr = p;
        pr.layer.quant = PQ_QUANT_RTN;
        pr.layer.bits = 3;
        pq_compress_params pg = pr;
        pg.layer.quant = PQ_QUANT_GPTQ;
        float *lr = compress_logits(ctx, m, calib, 3000, &pr, "rtn", eval);
        float *lg = compress_logits(ctx, m, calib, 3000, &pg, "gptq3", eval);
        if (base && lr && lg) {
            double er = mse(base, lr, 48 * c.vocab_size), eg = mse(base, lg, 48 * c.vocab_size);
            CHECK_MSG(eg < er, "gptq mse %g, rtn mse %g", eg, er);
        }
        free(base);
        free(lr);
        free(lg);

        /* 4. 2:4 output holds the pattern in every cell */
        pq_compress_params ps = p;
        ps.layer.quant = PQ_QUANT_NONE;
        ps.layer.prune = PQ_PRUNE_SPARSEGPT;
        ps.layer.prune_n = 2;
        ps.layer.prune_m = 4;
        CHECK(pq_compress_model(ctx, m, calib, 3000, &ps, out_path("s24")) == PQ_OK);
        pq_model *o = load(ctx, out_path("s24"));
        pq_sparsity_report r;
        if (o && pq_model_sparsity(ctx, o, &r) == PQ_OK) {
            CHECK(r.n_layers == 14 && r.packed);
            for (int64_t i = 0; i < r.n_layers; i++) {
                CHECK_MSG(r.layers[i].pattern_n >= 2 && r.layers[i].pattern_m == 4 && r.layers[i].pattern_ok,
                          "%s: %d:%d", r.layers[i].name, r.layers[i].pattern_n, r.layers[i].pattern_m);
                CHECK_NEAR(r.layers[i].sparsity, 0.5, 0.01);
            }
            pq_sparsity_report_free(&r);
        }
        pq_model_free(o);

        /* 5. atomic output: a failure half-way leaves neither the folder nor a temp folder */
        int before = dir_entries(root);
        pq_ctx_set_progress(ctx, cancel_after_one, NULL);
        CHECK(pq_compress_model(ctx, m, calib, 3000, &p, out_path("cancelled")) != PQ_OK);
        pq_ctx_set_progress(ctx, NULL, NULL);
        CHECK(dir_entries(root) == before);

        /* 6. bad recipes: clear errors, nothing written */
        pq_compress_params bad = p;
        bad.layer.bits = 1;
        CHECK(pq_compress_model(ctx, m, calib, 3000, &bad, out_path("bad")) == PQ_ERR_INVALID);
        CHECK(strstr(pq_ctx_error(ctx), "bits") != NULL);
        bad = p;
        bad.layer.prune = PQ_PRUNE_MAGNITUDE;
        bad.layer.prune_n = 3;
        bad.layer.prune_m = 2;
        CHECK(pq_compress_model(ctx, m, calib, 3000, &bad, out_path("bad")) == PQ_ERR_INVALID);
        bad = p;
        bad.layer.group_size = 48;
        CHECK(pq_compress_model(ctx, m, calib, 3000, &bad, out_path("bad")) == PQ_ERR_INVALID);
        CHECK(strstr(pq_ctx_error(ctx), "48") != NULL);
        bad = p;
        bad.skip = "(";
        CHECK(pq_compress_model(ctx, m, calib, 3000, &bad, out_path("bad")) == PQ_ERR_INVALID);
        CHECK(pq_compress_model(ctx, m, calib, 10, &p, out_path("bad")) == PQ_ERR_INVALID); /* too few tokens */
        CHECK(dir_entries(root) == before);

        /* --skip keeps matching layers dense */
        pq_compress_params pk = p;
        pk.skip = "down_proj$";
        CHECK(pq_compress_model(ctx, m, calib, 3000, &pk, out_path("skip")) == PQ_OK);
        o = load(ctx, out_path("skip"));
        if (o) {
            CHECK(pq__source_find(&o->src, "model.layers.0.mlp.down_proj.weight") != NULL);
            CHECK(pq__source_find(&o->src, "model.layers.0.mlp.up_proj.qcodes") != NULL);
        }
        pq_model_free(o);
        free(calib);
        free(eval);
        pq_model_free(m);
    }

    /* 7. ACr of a packed 4-bit g128 Llama-shaped model is within 3 points of TCr = 0.75 */
    {
        pq__config cl = synth_config(PQ_ARCH_LLAMA, 256, 512, 1, 4, 4, 64);
        pq_model *m = synth_model(ctx, &cl, 3);
        int32_t *calib = random_tokens(2000, cl.vocab_size, 4);
        pq_compress_params pc = p;
        pc.nsamples = 4;
        pc.layer.group_size = 128;
        CHECK(pq_compress_model(ctx, m, calib, 2000, &pc, out_path("acr")) == PQ_OK);
        pq_model *o = load(ctx, out_path("acr"));
        pq_sparsity_report r;
        if (o && pq_model_sparsity(ctx, o, &r) == PQ_OK) {
            CHECK_MSG(fabs(r.acr - 0.75) <= 0.03, "ACr %g", r.acr);
            CHECK_NEAR(r.bpw, 4.0 + 24.0 / 128, 1e-9);
            pq_sparsity_report_free(&r);
        }
        pq_model_free(o);
        free(calib);
        pq_model_free(m);
    }

    pq_ctx_free(ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", root);
    return test_end("test_pipeline");
}
