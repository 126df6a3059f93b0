/* The GGUF type mixture (quant/gguf_mix) and imatrix files (io/imatrix).
 *
 * Without arguments: unit tests that need no llama.cpp. With a command it is the helper of
 * tests/cli_gguf_mix.sh, which compares with real llama-quantize / llama-imatrix:
 *   synth OUT.gguf DIM FFN LAYERS HEADS KV_HEADS VOCAB TIED [TOKENIZER]   f32 Llama GGUF
 *   plan MODEL.gguf PRESET [pure] [imatrix]     "name type" per tensor, in file order
 *   imatrix-write OUT MODEL.gguf                known statistics for the model's linears
 *   imatrix-check FILE MODEL.gguf [known]       plausibility (known: the values written above)
 *   imatrix-compare A B                         same entries, importance within 1e-6 rel. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/imatrix.h"
#include "quant/gguf_mix.h"
#include "synth.h"
#include "test.h"

#define MAXT 256

/* A Llama-shaped tensor list in GGUF naming: dims d, ffn f, n_kv heads of hd each. */
typedef struct tlist {
    pq__gguf_mix_tensor t[MAXT];
    char names[MAXT][64];
    int64_t n;
} tlist;

static void tl_add(tlist *l, const char *name, int64_t ne0, int64_t ne1) {
    snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
    l->t[l->n] = (pq__gguf_mix_tensor){.name = l->names[l->n], .ne = {ne0, ne1, 1, 1}, .type = PQ_MIX_F32};
    l->n++;
}

static void llama_list(tlist *l, int64_t layers, int64_t d, int64_t f, int64_t kvd, int64_t vocab, int tied) {
    char n[64];
    l->n = 0;
    tl_add(l, "token_embd.weight", d, vocab);
    tl_add(l, "output_norm.weight", d, 1);
    if (!tied) tl_add(l, "output.weight", d, vocab);
    for (int64_t i = 0; i < layers; i++) {
#define ADD(s, a, b) (snprintf(n, sizeof n, "blk.%lld.%s", (long long)i, s), tl_add(l, n, a, b))
        ADD("attn_norm.weight", d, 1);
        ADD("attn_q.weight", d, d);
        ADD("attn_k.weight", d, kvd);
        ADD("attn_v.weight", d, kvd);
        ADD("attn_output.weight", d, d);
        ADD("ffn_norm.weight", d, 1);
        ADD("ffn_gate.weight", d, f);
        ADD("ffn_up.weight", d, f);
        ADD("ffn_down.weight", f, d);
#undef ADD
    }
}

static int find(const tlist *l, const char *name) {
    for (int64_t i = 0; i < l->n; i++)
        if (strcmp(l->t[i].name, name) == 0) return (int)i;
    return -1;
}

static int plan(const char *preset, const pq__gguf_mix_params *p, const pq__gguf_mix_model *m, const tlist *l,
                int *types) {
    pq_ctx *ctx = pq_ctx_new();
    pq_status st = pq__gguf_mix_plan(ctx, preset, p, m, l->t, l->n, types);
    if (st) fprintf(stderr, "plan %s: %s\n", preset, pq_ctx_error(ctx));
    pq_ctx_free(ctx);
    return st == PQ_OK;
}

static int type_of(const tlist *l, const int *types, const char *name) {
    int i = find(l, name);
    return i < 0 ? -2 : types[i];
}

static int layer_type(const tlist *l, const int *types, int64_t layer, const char *what) {
    char n[64];
    snprintf(n, sizeof n, "blk.%lld.%s", (long long)layer, what);
    return type_of(l, types, n);
}

static void test_parse_and_fallback(void) {
    int ft = -1, ty = -1, pure = -1;
    CHECK(pq__gguf_mix_parse("q4_k_m", &ft, &ty, &pure) && ft == 15 && ty == PQ_MIX_Q4_K && pure == 0);
    CHECK(pq__gguf_mix_parse("Q4_K", &ft, &ty, &pure) && ft == 15 && ty == PQ_MIX_Q4_K && pure == 1);
    CHECK(pq__gguf_mix_parse("Q3_K", &ft, &ty, &pure) && ft == 12 && ty == PQ_MIX_Q3_K && pure == 1);
    CHECK(pq__gguf_mix_parse("Q8_0", &ft, &ty, &pure) && ft == 7 && ty == PQ_MIX_Q8_0 && pure == 0);
    CHECK(pq__gguf_mix_parse("Q5_0", &ft, &ty, NULL) && ft == 8 && ty == PQ_MIX_Q5_0);
    CHECK(!pq__gguf_mix_parse("Q4_K_X", NULL, NULL, NULL) && !pq__gguf_mix_parse("IQ2_XS", NULL, NULL, NULL));
    CHECK(pq__gguf_mix_block_size(PQ_MIX_Q6_K) == 256 && pq__gguf_mix_block_size(PQ_MIX_Q5_1) == 32);
    CHECK(strcmp(pq__gguf_mix_type_name(PQ_MIX_Q5_K), "Q5_K") == 0);
    /* rows of 64: K types fall back to the 32-block ones; rows of 48: to F16 */
    CHECK(pq__gguf_mix_fallback(PQ_MIX_Q2_K, 64) == PQ_MIX_Q4_0);
    CHECK(pq__gguf_mix_fallback(PQ_MIX_Q3_K, 64) == PQ_MIX_Q4_0);
    CHECK(pq__gguf_mix_fallback(PQ_MIX_Q4_K, 64) == PQ_MIX_Q5_0);
    CHECK(pq__gguf_mix_fallback(PQ_MIX_Q5_K, 64) == PQ_MIX_Q5_1);
    CHECK(pq__gguf_mix_fallback(PQ_MIX_Q6_K, 64) == PQ_MIX_Q8_0);
    CHECK(pq__gguf_mix_fallback(PQ_MIX_Q4_K, 512) == PQ_MIX_Q4_K);
    CHECK(pq__gguf_mix_fallback(PQ_MIX_Q4_K, 48) == PQ_MIX_F16);
    CHECK(pq__gguf_mix_fallback(PQ_MIX_Q4_1, 48) == PQ_MIX_F16 &&
          pq__gguf_mix_fallback(PQ_MIX_Q4_1, 96) == PQ_MIX_Q4_1);
    CHECK(pq__gguf_mix_fallback(PQ_MIX_F16, 7) == PQ_MIX_F16);
}

static void test_quantizable(void) {
    pq__gguf_mix_tensor t = {.name = "blk.0.attn_norm.weight", .ne = {256, 1, 1, 1}};
    CHECK(!pq__gguf_mix_quantizable(&t, 0));
    t.ne[1] = 4; /* a 2-D norm is still a norm */
    CHECK(!pq__gguf_mix_quantizable(&t, 0));
    t.name = "blk.0.attn_q.weight";
    CHECK(pq__gguf_mix_quantizable(&t, 0));
    t.name = "blk.0.attn_q.bias";
    CHECK(!pq__gguf_mix_quantizable(&t, 0));
    t.name = "blk.0.ffn_gate_inp.weight";
    CHECK(!pq__gguf_mix_quantizable(&t, 0));
    t.name = "output.weight";
    CHECK(pq__gguf_mix_quantizable(&t, 0) && !pq__gguf_mix_quantizable(&t, 1));
    t.name = "abcde"; /* llama.cpp's rfind quirk: a 5-byte name passes the "weight" test */
    CHECK(pq__gguf_mix_quantizable(&t, 0));
    t.name = "blk.0.attn_q.weight";
    t.ne[1] = 1; /* ggml counts trailing 1s out: 1-D */
    CHECK(!pq__gguf_mix_quantizable(&t, 0));
}

/* Q4_K_M on 8 layers: attn_v and ffn_down in Q6_K where use_more_bits (layers 0, 3, 6, 7). */
static void test_q4_k_m(void) {
    static tlist l;
    int ty[MAXT];
    llama_list(&l, 8, 256, 768, 128, 512, 0);
    const pq__gguf_mix_model m = {.arch = "llama", .n_layers = 8, .n_head = 4, .n_head_kv = 2};
    CHECK(plan("Q4_K_M", NULL, &m, &l, ty));
    CHECK(type_of(&l, ty, "output.weight") == PQ_MIX_Q6_K);
    CHECK(type_of(&l, ty, "token_embd.weight") == PQ_MIX_Q4_K);
    CHECK(type_of(&l, ty, "output_norm.weight") == PQ_MIX_F32);
    for (int64_t i = 0; i < 8; i++) {
        const int more = i == 0 || i == 3 || i == 6 || i == 7;
        CHECK_MSG(layer_type(&l, ty, i, "attn_v.weight") == (more ? PQ_MIX_Q6_K : PQ_MIX_Q4_K), "layer %lld",
                  (long long)i);
        CHECK(layer_type(&l, ty, i, "ffn_down.weight") == (more ? PQ_MIX_Q6_K : PQ_MIX_Q4_K));
        CHECK(layer_type(&l, ty, i, "attn_q.weight") == PQ_MIX_Q4_K);
        CHECK(layer_type(&l, ty, i, "attn_output.weight") == PQ_MIX_Q4_K);
        CHECK(layer_type(&l, ty, i, "ffn_norm.weight") == PQ_MIX_F32);
    }
    /* any input order gives the same plan: the counters follow llama.cpp's order */
    static tlist r;
    r.n = l.n;
    for (int64_t i = 0; i < l.n; i++) {
        memcpy(r.names[i], l.names[l.n - 1 - i], sizeof r.names[0]);
        r.t[i] = l.t[l.n - 1 - i];
        r.t[i].name = r.names[i];
    }
    int ty2[MAXT];
    CHECK(plan("Q4_K_M", NULL, &m, &r, ty2));
    for (int64_t i = 0; i < l.n; i++)
        CHECK(ty2[i] == ty[l.n - 1 - i]);
    /* more than 10 layers: blk.10 sorts after blk.9 (by number, not by name) */
    static tlist big;
    llama_list(&big, 12, 256, 768, 128, 512, 0);
    const pq__gguf_mix_model m12 = {.arch = "llama", .n_layers = 12, .n_head = 4, .n_head_kv = 2};
    CHECK(plan("Q3_K_M", NULL, &m12, &big, ty));
    CHECK(layer_type(&big, ty, 0, "attn_v.weight") == PQ_MIX_Q5_K);
    CHECK(layer_type(&big, ty, 1, "attn_v.weight") == PQ_MIX_Q5_K);
    CHECK(layer_type(&big, ty, 10, "attn_v.weight") == PQ_MIX_Q4_K);
    CHECK(layer_type(&big, ty, 2, "attn_v.weight") == PQ_MIX_Q4_K);
}

static void test_other_presets(void) {
    static tlist l;
    int ty[MAXT];
    llama_list(&l, 8, 256, 768, 128, 512, 0);
    pq__gguf_mix_model m = {.arch = "llama", .n_layers = 8, .n_head = 4, .n_head_kv = 2};
    CHECK(plan("Q3_K_M", NULL, &m, &l, ty));
    CHECK(layer_type(&l, ty, 1, "attn_v.weight") == PQ_MIX_Q5_K &&
          layer_type(&l, ty, 2, "attn_v.weight") == PQ_MIX_Q4_K);
    CHECK(layer_type(&l, ty, 0, "ffn_down.weight") == PQ_MIX_Q4_K); /* 8/16 = 0 layers in Q5_K */
    CHECK(layer_type(&l, ty, 3, "attn_output.weight") == PQ_MIX_Q4_K);
    CHECK(layer_type(&l, ty, 3, "ffn_up.weight") == PQ_MIX_Q3_K);
    CHECK(plan("Q3_K_L", NULL, &m, &l, ty));
    CHECK(layer_type(&l, ty, 5, "attn_v.weight") == PQ_MIX_Q5_K &&
          layer_type(&l, ty, 5, "ffn_down.weight") == PQ_MIX_Q5_K);
    CHECK(layer_type(&l, ty, 5, "attn_output.weight") == PQ_MIX_Q5_K &&
          layer_type(&l, ty, 5, "attn_k.weight") == PQ_MIX_Q3_K);
    CHECK(plan("Q3_K_S", NULL, &m, &l, ty));
    CHECK(layer_type(&l, ty, 0, "attn_v.weight") == PQ_MIX_Q3_K && type_of(&l, ty, "output.weight") == PQ_MIX_Q6_K);
    CHECK(plan("Q4_K_S", NULL, &m, &l, ty));
    CHECK(layer_type(&l, ty, 3, "attn_v.weight") == PQ_MIX_Q5_K &&
          layer_type(&l, ty, 4, "attn_v.weight") == PQ_MIX_Q4_K);
    CHECK(layer_type(&l, ty, 0, "ffn_down.weight") == PQ_MIX_Q5_K &&
          layer_type(&l, ty, 1, "ffn_down.weight") == PQ_MIX_Q4_K);
    CHECK(plan("Q2_K", NULL, &m, &l, ty));
    CHECK(layer_type(&l, ty, 0, "attn_v.weight") == PQ_MIX_Q3_K &&
          layer_type(&l, ty, 0, "ffn_down.weight") == PQ_MIX_Q3_K);
    CHECK(layer_type(&l, ty, 0, "attn_output.weight") == PQ_MIX_Q3_K &&
          layer_type(&l, ty, 0, "attn_q.weight") == PQ_MIX_Q2_K);
    m.n_head_kv = 1; /* n_gqa 4: attn_v in Q4_K */
    CHECK(plan("Q2_K", NULL, &m, &l, ty));
    CHECK(layer_type(&l, ty, 0, "attn_v.weight") == PQ_MIX_Q4_K);
    m.n_head_kv = 2;
    CHECK(plan("Q8_0", NULL, &m, &l, ty));
    CHECK(type_of(&l, ty, "output.weight") == PQ_MIX_Q8_0 && layer_type(&l, ty, 0, "attn_v.weight") == PQ_MIX_Q8_0);
    CHECK(plan("Q5_K_S", NULL, &m, &l, ty));
    CHECK(layer_type(&l, ty, 0, "attn_v.weight") == PQ_MIX_Q5_K && type_of(&l, ty, "output.weight") == PQ_MIX_Q6_K);
    /* Q4_0: no imatrix, plain; with one, the first n_layers/8 ffn_down in Q4_1 */
    CHECK(plan("Q4_0", NULL, &m, &l, ty));
    CHECK(layer_type(&l, ty, 0, "ffn_down.weight") == PQ_MIX_Q4_0 && type_of(&l, ty, "output.weight") == PQ_MIX_Q6_K);
    pq__gguf_mix_params p = pq__gguf_mix_params_default();
    p.has_imatrix = 1;
    CHECK(plan("Q4_0", &p, &m, &l, ty));
    CHECK(layer_type(&l, ty, 0, "ffn_down.weight") == PQ_MIX_Q4_1 &&
          layer_type(&l, ty, 1, "ffn_down.weight") == PQ_MIX_Q4_0);
    CHECK(plan("Q5_0", &p, &m, &l, ty));
    CHECK(layer_type(&l, ty, 0, "ffn_down.weight") == PQ_MIX_Q5_1);
    CHECK(plan("Q4_1", &p, &m, &l, ty)); /* Q4_1 has no such guard */
    CHECK(layer_type(&l, ty, 0, "ffn_down.weight") == PQ_MIX_Q4_1);
}

static void test_pure_tied_overrides(void) {
    static tlist l;
    int ty[MAXT];
    const pq__gguf_mix_model m = {.arch = "llama", .n_layers = 4, .n_head = 4, .n_head_kv = 2};
    llama_list(&l, 4, 256, 768, 128, 512, 0);
    CHECK(plan("Q4_K", NULL, &m, &l, ty)); /* plain type: everything in Q4_K */
    for (int64_t i = 0; i < l.n; i++)
        CHECK(ty[i] == (strstr(l.t[i].name, "norm") ? PQ_MIX_F32 : PQ_MIX_Q4_K));
    pq__gguf_mix_params p = pq__gguf_mix_params_default();
    p.pure = 1;
    CHECK(plan("Q4_0", &p, &m, &l, ty));
    CHECK(type_of(&l, ty, "output.weight") == PQ_MIX_Q4_0);
    p = pq__gguf_mix_params_default();
    p.leave_output = 1;
    l.t[find(&l, "output.weight")].type = PQ_MIX_F16;
    CHECK(plan("Q4_K_M", &p, &m, &l, ty));
    CHECK(type_of(&l, ty, "output.weight") == PQ_MIX_F16 && type_of(&l, ty, "token_embd.weight") == PQ_MIX_Q4_K);
    p = pq__gguf_mix_params_default();
    p.output_type = PQ_MIX_Q5_K; /* taken as given, even where it does not divide */
    p.token_embd_type = PQ_MIX_Q8_0;
    CHECK(plan("Q4_K_M", &p, &m, &l, ty));
    CHECK(type_of(&l, ty, "output.weight") == PQ_MIX_Q5_K && type_of(&l, ty, "token_embd.weight") == PQ_MIX_Q8_0);
    p.output_type = 99;
    CHECK(!plan("Q4_K_M", &p, &m, &l, ty));
    CHECK(!plan("Q7_K", NULL, &m, &l, ty));
    /* tied: token_embd takes output's rule (Q6_K; Q8_0 if rows do not split into the default's blocks) */
    llama_list(&l, 4, 256, 768, 128, 512, 1);
    CHECK(plan("Q4_0", NULL, &m, &l, ty));
    CHECK(type_of(&l, ty, "token_embd.weight") == PQ_MIX_Q6_K);
    CHECK(plan("Q4_K", NULL, &m, &l, ty)); /* pure: no output rule */
    CHECK(type_of(&l, ty, "token_embd.weight") == PQ_MIX_Q4_K);
    /* rows of 64 (stories260K) and 48 */
    llama_list(&l, 5, 64, 172, 32, 512, 1);
    const pq__gguf_mix_model ms = {.arch = "llama", .n_layers = 5, .n_head = 8, .n_head_kv = 4};
    CHECK(plan("Q4_K_M", NULL, &ms, &l, ty));
    CHECK(type_of(&l, ty, "token_embd.weight") == PQ_MIX_Q8_0); /* 64 % 256: Q8_0 directly */
    CHECK(layer_type(&l, ty, 1, "attn_q.weight") == PQ_MIX_Q5_0);
    CHECK(layer_type(&l, ty, 0, "attn_v.weight") == PQ_MIX_Q5_0);  /* Q4_K -> Q5_0 */
    CHECK(layer_type(&l, ty, 4, "attn_v.weight") == PQ_MIX_Q8_0);  /* more bits: Q6_K -> Q8_0 */
    CHECK(layer_type(&l, ty, 0, "ffn_down.weight") == PQ_MIX_F16); /* rows of 172 */
    CHECK(layer_type(&l, ty, 1, "ffn_down.weight") == PQ_MIX_F16);
    CHECK(plan("Q4_0", NULL, &ms, &l, ty));
    CHECK(type_of(&l, ty, "token_embd.weight") == PQ_MIX_Q8_0); /* Q6_K, then 64 % 256 -> Q8_0 */
    llama_list(&l, 2, 48, 96, 48, 64, 1);
    CHECK(plan("Q4_0", NULL, &ms, &l, ty));
    CHECK(type_of(&l, ty, "token_embd.weight") == PQ_MIX_F16 &&
          layer_type(&l, ty, 0, "ffn_down.weight") == PQ_MIX_Q4_0);
}

static void test_special_models(void) {
    static tlist l;
    int ty[MAXT];
    /* 70B-shaped (80 layers, GQA): attn_v Q3_K / Q4_K become Q5_K */
    l.n = 0;
    char n[64];
    for (int i = 0; i < 80; i++) {
        snprintf(n, sizeof n, "blk.%d.attn_v.weight", i);
        tl_add(&l, n, 256, 64);
    }
    pq__gguf_mix_model m = {.arch = "llama", .n_layers = 80, .n_head = 64, .n_head_kv = 8};
    CHECK(plan("Q3_K_S", NULL, &m, &l, ty));
    CHECK(ty[0] == PQ_MIX_Q5_K && ty[79] == PQ_MIX_Q5_K);
    m.n_head_kv = 64; /* 65B: no bump */
    CHECK(plan("Q3_K_S", NULL, &m, &l, ty));
    CHECK(ty[0] == PQ_MIX_Q3_K);
    /* 8 experts: attn_v / attn_k in Q8_0, expert ffn_down by the block in its name */
    l.n = 0;
    tl_add(&l, "blk.0.attn_k.weight", 256, 256);
    tl_add(&l, "blk.0.attn_v.weight", 256, 256);
    tl_add(&l, "blk.3.ffn_down_exps.weight", 768, 256);
    tl_add(&l, "blk.0.attn_output.weight", 256, 256);
    l.t[2].ne[2] = 8;
    m = (pq__gguf_mix_model){.arch = "llama", .n_layers = 8, .n_head = 4, .n_head_kv = 2, .n_expert = 8};
    CHECK(plan("Q4_K_M", NULL, &m, &l, ty));
    CHECK(ty[0] == PQ_MIX_Q8_0 && ty[1] == PQ_MIX_Q8_0 && ty[2] == PQ_MIX_Q6_K && ty[3] == PQ_MIX_Q5_K);
    snprintf(l.names[2], sizeof l.names[2], "blk.9.ffn_down_exps.weight"); /* block out of range */
    CHECK(!plan("Q4_K_M", NULL, &m, &l, ty));
    /* falcon: output in Q8_0; Q3_K_L attn_output in Q4_K */
    l.n = 0;
    tl_add(&l, "output.weight", 256, 512);
    tl_add(&l, "blk.0.attn_output.weight", 256, 256);
    m = (pq__gguf_mix_model){.arch = "falcon", .n_layers = 4, .n_head = 4, .n_head_kv = 4};
    CHECK(plan("Q3_K_L", NULL, &m, &l, ty));
    CHECK(ty[0] == PQ_MIX_Q8_0 && ty[1] == PQ_MIX_Q4_K);
}

/* ---------------------------------------------------------------- imatrix */

static void test_imatrix_roundtrip(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/im.gguf", dir);
    float s1[6] = {0, 1.5f, 2, 3e-3f, 1e6f, 7}, s2[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t c1[1] = {3}, c2[2] = {10, 0};
    const pq__imatrix_entry e[2] = {
        {.name = "blk.1.ffn_down_exps.weight", .ncols = 4, .n_mat = 2, .sum2 = s2, .counts = c2},
        {.name = "blk.0.attn_q.weight", .ncols = 6, .sum2 = s1, .counts = c1},
    };
    const char *ds[1] = {"calib.txt"};
    const pq__imatrix_meta meta = {.datasets = ds, .n_datasets = 1, .chunk_count = 4, .chunk_size = 128};
    pq_ctx *ctx = pq_ctx_new();
    CHECK(pq__imatrix_write(ctx, path, e, 2, &meta) == PQ_OK);
    pq__imatrix *im = NULL;
    CHECK(pq__imatrix_read(ctx, path, &im) == PQ_OK);
    if (im) {
        CHECK(im->n == 2 && !im->legacy && im->chunk_count == 4 && im->chunk_size == 128);
        CHECK(im->n_datasets == 1 && strcmp(im->datasets[0], "calib.txt") == 0);
        CHECK(strcmp(im->items[0].name, "blk.0.attn_q.weight") == 0); /* sorted by name */
        const pq__imatrix_item *a = pq__imatrix_find(im, "blk.0.attn_q.weight");
        const pq__imatrix_item *b = pq__imatrix_find(im, "blk.1.ffn_down_exps.weight");
        CHECK(a && b && !pq__imatrix_find(im, "blk.0.attn_k.weight"));
        if (a && b) {
            CHECK(a->ncols == 6 && a->n_mat == 1 && a->counts[0] == 3);
            for (int i = 0; i < 6; i++)
                CHECK(a->sum2[i] == s1[i] && a->importance[i] == s1[i] / 3.0f);
            CHECK(b->ncols == 4 && b->n_mat == 2 && b->counts[0] == 10 && b->counts[1] == 0);
            for (int i = 0; i < 4; i++)
                CHECK(b->importance[i] == s2[i] / 10.0f && b->importance[4 + i] == 1.0f); /* no tokens: 1 */
        }
    }
    pq__imatrix_free(im);
    /* refused at write: duplicates, negative or non-finite sums */
    pq__imatrix_entry d[2] = {e[1], e[1]};
    CHECK(pq__imatrix_write(ctx, path, d, 2, &meta) == PQ_ERR_INVALID);
    float bad[6] = {1, -1, 0, 0, 0, 0};
    d[0].sum2 = bad;
    CHECK(pq__imatrix_write(ctx, path, d, 1, NULL) == PQ_ERR_INVALID);
    bad[1] = NAN;
    CHECK(pq__imatrix_write(ctx, path, d, 1, NULL) == PQ_ERR_INVALID);
    pq_ctx_free(ctx);
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* The legacy .dat layout, built by hand. */
static void test_imatrix_legacy(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/im.dat", dir);
    uint8_t buf[256];
    size_t o = 0;
#define PUT(v, n) (memcpy(buf + o, (v), (n)), o += (n))
    int32_t n = 2, len = 19, ncall = 4, nval = 3, zero = 0, chunks = 9, dl = 5;
    float v[3] = {8, 2, 0.5f};
    PUT(&n, 4);
    PUT(&len, 4);
    PUT("blk.0.attn_q.weight", 19);
    PUT(&ncall, 4);
    PUT(&nval, 4);
    PUT(v, 12);
    PUT(&len, 4);
    PUT("blk.0.attn_k.weight", 19);
    PUT(&zero, 4);
    PUT(&nval, 4);
    PUT(v, 12);
    PUT(&chunks, 4);
    PUT(&dl, 4);
    PUT("a.txt", 5);
#undef PUT
    CHECK(write_file(path, buf, o));
    pq_ctx *ctx = pq_ctx_new();
    pq__imatrix *im = NULL;
    CHECK(pq__imatrix_read(ctx, path, &im) == PQ_OK);
    if (im) {
        CHECK(im->legacy && im->n == 2 && im->chunk_count == 9 && im->n_datasets == 1);
        CHECK(im->n_datasets == 1 && strcmp(im->datasets[0], "a.txt") == 0);
        const pq__imatrix_item *q = pq__imatrix_find(im, "blk.0.attn_q.weight");
        const pq__imatrix_item *k = pq__imatrix_find(im, "blk.0.attn_k.weight");
        CHECK(q && k);
        if (q && k) {
            CHECK(q->ncols == 3 && q->counts[0] == 4 && q->importance[0] == 2.0f && q->importance[2] == 0.125f);
            CHECK(k->importance[0] == 8.0f); /* ncall 0: the value itself */
        }
    }
    pq__imatrix_free(im);
    /* truncated: fails with a message, no crash */
    CHECK(write_file(path, buf, 30));
    CHECK(pq__imatrix_read(ctx, path, &im) == PQ_ERR_FORMAT && im == NULL);
    int32_t none = 0;
    CHECK(write_file(path, &none, 4));
    CHECK(pq__imatrix_read(ctx, path, &im) == PQ_ERR_FORMAT);
    pq_ctx_free(ctx);
}

/* GGUF files that llama-quantize refuses: no imatrix metadata; sums without counts. */
static void test_imatrix_refused(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    pq_ctx *ctx = pq_ctx_new();
    float s[4] = {1, 2, 3, 4}, c[1] = {2};
    const int64_t sh[2] = {1, 4}, shc[2] = {1, 1};
    for (int k = 0; k < 2; k++) {
        pq__gguf_writer *w = NULL;
        CHECK(pq__gguf_writer_new(ctx, &w) == PQ_OK);
        if (!w) continue;
        if (k == 1) {
            pq__gguf_writer_add_arr_str(w, "imatrix.datasets", NULL, NULL, 0);
            pq__gguf_writer_add_u32(w, "imatrix.chunk_count", 1);
            pq__gguf_writer_add_u32(w, "imatrix.chunk_size", 1);
        }
        pq__gguf_writer_add_tensor(w, "a.weight.in_sum2", PQ_DTYPE_F32, 2, sh, s, sizeof s);
        if (k == 0) pq__gguf_writer_add_tensor(w, "a.weight.counts", PQ_DTYPE_F32, 2, shc, c, sizeof c);
        CHECK(pq__gguf_writer_save(ctx, w, path) == PQ_OK);
        pq__gguf_writer_free(w);
        pq__imatrix *im = NULL;
        CHECK(pq__imatrix_read(ctx, path, &im) == PQ_ERR_FORMAT && im == NULL);
        CHECK(strstr(pq_ctx_error(ctx), k == 0 ? "missing imatrix metadata" : "mismatched sums and counts") != NULL);
    }
    pq_ctx_free(ctx);
}

/* ---------------------------------------------------------------- helper commands */

static int fail_ctx(pq_ctx *ctx, const char *what) {
    fprintf(stderr, "%s: %s\n", what, pq_ctx_error(ctx));
    pq_ctx_free(ctx);
    return 1;
}

static int cmd_synth(int argc, char **argv) {
    if (argc < 10) return fprintf(stderr, "synth: OUT DIM FFN LAYERS HEADS KV VOCAB TIED [TOKENIZER]\n"), 2;
    pq__config c = synth_config(PQ_ARCH_LLAMA, atoll(argv[3]), atoll(argv[4]), atoll(argv[5]), atoll(argv[6]),
                                atoll(argv[7]), atoll(argv[8]));
    c.tied = atoi(argv[9]);
    pq_ctx *ctx = pq_ctx_new();
    pq_model *m = synth_model(ctx, &c, 17);
    if (!m) return fail_ctx(ctx, "synth");
    if (argc > 10 && pq_tokenizer_load(ctx, argv[10], &m->tok) != PQ_OK) return fail_ctx(ctx, "synth tokenizer");
    pq_status st = pq_model_save(ctx, m, PQ_FORMAT_GGUF, argv[2], PQ_DTYPE_F32);
    pq_model_free(m);
    if (st) return fail_ctx(ctx, "synth save");
    pq_ctx_free(ctx);
    return 0;
}

static int64_t kv_int(const pq__gguf *g, const char *arch, const char *key, int64_t dflt) {
    char k[128];
    int64_t v = dflt;
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return pq__gguf_get_int(g, k, &v) == PQ_GGUF_FOUND ? v : dflt;
}

/* Model and tensors of a parsed GGUF file for the plan (arch string and names borrowed). */
static int gguf_plan_input(const pq__gguf *g, char *arch, size_t na, pq__gguf_mix_model *m, pq__gguf_mix_tensor *t) {
    const char *a;
    size_t al;
    if (pq__gguf_get_str(g, "general.architecture", &a, &al) != PQ_GGUF_FOUND || al >= na) return 0;
    memcpy(arch, a, al);
    arch[al] = 0;
    *m = (pq__gguf_mix_model){.arch = arch,
                              .n_layers = kv_int(g, arch, "block_count", 0),
                              .n_head = kv_int(g, arch, "attention.head_count", 0),
                              .n_expert = kv_int(g, arch, "expert_count", 0)};
    m->n_head_kv = kv_int(g, arch, "attention.head_count_kv", m->n_head);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        t[i] = (pq__gguf_mix_tensor){.name = g->tensors[i].name, .type = (int)g->tensors[i].ggml_type};
        memcpy(t[i].ne, g->tensors[i].ne, sizeof t[i].ne);
    }
    return 1;
}

static int cmd_plan(int argc, char **argv) {
    if (argc < 4) return fprintf(stderr, "plan: MODEL PRESET [pure] [imatrix]\n"), 2;
    pq__gguf_mix_params p = pq__gguf_mix_params_default();
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "pure") == 0) p.pure = 1;
        if (strcmp(argv[i], "imatrix") == 0) p.has_imatrix = 1;
    }
    pq_ctx *ctx = pq_ctx_new();
    pq__gguf *g = NULL;
    if (pq__gguf_open(ctx, argv[2], 1, &g) != PQ_OK) return fail_ctx(ctx, "plan");
    pq__gguf_mix_tensor *t = calloc((size_t)g->n_tensors + 1, sizeof *t);
    int *ty = calloc((size_t)g->n_tensors + 1, sizeof *ty);
    char arch[64];
    pq__gguf_mix_model m;
    int rc = 0;
    if (!t || !ty || !gguf_plan_input(g, arch, sizeof arch, &m, t)) {
        fprintf(stderr, "plan: %s: no architecture\n", argv[2]);
        rc = 1;
    } else if (pq__gguf_mix_plan(ctx, argv[3], &p, &m, t, g->n_tensors, ty) != PQ_OK) {
        fprintf(stderr, "plan: %s\n", pq_ctx_error(ctx));
        rc = 1;
    } else {
        for (int64_t i = 0; i < g->n_tensors; i++)
            printf("%s %s\n", t[i].name, pq__gguf_mix_type_name(ty[i]));
    }
    free(t);
    free(ty);
    pq__gguf_free(g);
    pq_ctx_free(ctx);
    return rc;
}

/* The known statistics of imatrix-write for column j of tensor i (exact in f32). */
static float known_sum(int64_t i, int64_t j) {
    return (float)((j % 13) + 1) * 0.25f * (float)(i + 1);
}
static int64_t known_count(int64_t i) {
    return 96 + 32 * i;
}

/* The 2-D weights llama-imatrix sees (every quantizable one but the token embeddings). */
static int imatrix_weight(const pq__gguf_tensor *t) {
    pq__gguf_mix_tensor mt = {.name = t->name};
    memcpy(mt.ne, t->ne, sizeof mt.ne);
    return pq__gguf_mix_quantizable(&mt, 0) && strcmp(t->name, "token_embd.weight") != 0;
}

static int cmd_imatrix_write(int argc, char **argv) {
    if (argc < 4) return fprintf(stderr, "imatrix-write: OUT MODEL\n"), 2;
    pq_ctx *ctx = pq_ctx_new();
    pq__gguf *g = NULL;
    if (pq__gguf_open(ctx, argv[3], 1, &g) != PQ_OK) return fail_ctx(ctx, "imatrix-write");
    pq__imatrix_entry *e = calloc((size_t)g->n_tensors + 1, sizeof *e);
    float **sums = calloc((size_t)g->n_tensors + 1, sizeof *sums);
    int64_t *counts = calloc((size_t)g->n_tensors + 1, sizeof *counts), n = 0;
    int rc = !e || !sums || !counts;
    for (int64_t i = 0; i < g->n_tensors && !rc; i++) {
        const pq__gguf_tensor *t = &g->tensors[i];
        if (!imatrix_weight(t)) continue;
        if (!(sums[n] = malloc((size_t)t->ne[0] * sizeof(float)))) {
            rc = 1;
            break;
        }
        for (int64_t j = 0; j < t->ne[0]; j++)
            sums[n][j] = known_sum(n, j);
        counts[n] = known_count(n);
        e[n] = (pq__imatrix_entry){.name = t->name, .ncols = t->ne[0], .sum2 = sums[n], .counts = &counts[n]};
        n++;
    }
    const char *ds[1] = {"known.txt"};
    const pq__imatrix_meta meta = {.datasets = ds, .n_datasets = 1, .chunk_count = 3, .chunk_size = 64};
    if (!rc && pq__imatrix_write(ctx, argv[2], e, n, &meta) != PQ_OK) rc = fprintf(stderr, "%s\n", pq_ctx_error(ctx));
    for (int64_t i = 0; i < n; i++)
        free(sums[i]);
    free(sums);
    free(counts);
    free(e);
    pq__gguf_free(g);
    pq_ctx_free(ctx);
    if (!rc) printf("wrote %lld entries\n", (long long)n);
    return rc ? 1 : 0;
}

/* One item against the model: shape, counts, sums; with known, the values imatrix-write used
 * (entries are numbered in the model's file order, as written). */
static int check_item(const pq__imatrix_item *it, const pq__gguf *g, int known, int64_t k) {
    int64_t ti = pq__gguf_find_tensor(g, it->name);
    if (ti < 0 || g->tensors[ti].ne[0] != it->ncols || it->n_mat != 1)
        return fprintf(stderr, "%s: not a weight of the model with %lld columns\n", it->name, (long long)it->ncols),
               0;
    if (it->counts[0] <= 0) return fprintf(stderr, "%s: count %lld\n", it->name, (long long)it->counts[0]), 0;
    for (int64_t j = 0; j < it->ncols; j++) {
        if (!(it->sum2[j] >= 0) || !(it->importance[j] >= 0))
            return fprintf(stderr, "%s: negative or NaN sum at %lld\n", it->name, (long long)j), 0;
        if (known &&
            (it->sum2[j] != known_sum(k, j) || it->importance[j] != known_sum(k, j) / (float)known_count(k) ||
             it->counts[0] != known_count(k)))
            return fprintf(stderr, "%s: value %lld differs from the one written\n", it->name, (long long)j), 0;
    }
    return 1;
}

static int cmd_imatrix_check(int argc, char **argv) {
    if (argc < 4) return fprintf(stderr, "imatrix-check: FILE MODEL [known]\n"), 2;
    const int known = argc > 4 && strcmp(argv[4], "known") == 0;
    pq_ctx *ctx = pq_ctx_new();
    pq__imatrix *im = NULL;
    pq__gguf *g = NULL;
    if (pq__imatrix_read(ctx, argv[2], &im) != PQ_OK) return fail_ctx(ctx, "imatrix-check");
    if (pq__gguf_open(ctx, argv[3], 1, &g) != PQ_OK) {
        pq__imatrix_free(im);
        return fail_ctx(ctx, "imatrix-check");
    }
    int ok = im->n > 0;
    int64_t k = 0, n_weights = 0;
    for (int64_t i = 0; i < g->n_tensors && ok; i++) {
        if (!imatrix_weight(&g->tensors[i])) continue;
        n_weights++;
        const pq__imatrix_item *it = pq__imatrix_find(im, g->tensors[i].name);
        if (it)
            ok = check_item(it, g, known, k);
        else if (known)
            ok = fprintf(stderr, "%s: missing\n", g->tensors[i].name) < 0;
        k++;
    }
    for (int64_t i = 0; i < im->n && ok; i++)
        if (pq__gguf_find_tensor(g, im->items[i].name) < 0)
            ok = fprintf(stderr, "%s: not in the model\n", im->items[i].name) < 0;
    printf("entries %lld of %lld weights, legacy %d, chunks %lld, chunk size %lld, first count %lld\n",
           (long long)im->n, (long long)n_weights, im->legacy, (long long)im->chunk_count, (long long)im->chunk_size,
           (long long)(im->n ? im->items[0].counts[0] : 0));
    pq__gguf_free(g);
    pq__imatrix_free(im);
    pq_ctx_free(ctx);
    return ok ? 0 : 1;
}

static int cmd_imatrix_compare(int argc, char **argv) {
    if (argc < 4) return fprintf(stderr, "imatrix-compare: A B\n"), 2;
    pq_ctx *ctx = pq_ctx_new();
    pq__imatrix *a = NULL, *b = NULL;
    if (pq__imatrix_read(ctx, argv[2], &a) != PQ_OK || pq__imatrix_read(ctx, argv[3], &b) != PQ_OK) {
        pq__imatrix_free(a);
        return fail_ctx(ctx, "imatrix-compare");
    }
    int ok = a->n == b->n && a->n > 0;
    double worst = 0;
    for (int64_t i = 0; i < a->n && ok; i++) {
        const pq__imatrix_item *x = &a->items[i], *y = pq__imatrix_find(b, x->name);
        if (!y || y->ncols * y->n_mat != x->ncols * x->n_mat) {
            ok = 0;
            break;
        }
        for (int64_t j = 0; j < x->ncols * x->n_mat; j++) {
            double d =
                fabs((double)x->importance[j] - y->importance[j]) / fmax(fabs((double)y->importance[j]), 1e-30);
            if (d > worst) worst = d;
        }
    }
    printf("entries %lld / %lld, max relative difference %.3g\n", (long long)a->n, (long long)b->n, worst);
    pq__imatrix_free(a);
    pq__imatrix_free(b);
    pq_ctx_free(ctx);
    return ok && worst <= 1e-6 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        if (strcmp(argv[1], "synth") == 0) return cmd_synth(argc, argv);
        if (strcmp(argv[1], "plan") == 0) return cmd_plan(argc, argv);
        if (strcmp(argv[1], "imatrix-write") == 0) return cmd_imatrix_write(argc, argv);
        if (strcmp(argv[1], "imatrix-check") == 0) return cmd_imatrix_check(argc, argv);
        if (strcmp(argv[1], "imatrix-compare") == 0) return cmd_imatrix_compare(argc, argv);
        fprintf(stderr, "unknown command %s\n", argv[1]);
        return 2;
    }
    test_parse_and_fallback();
    test_quantizable();
    test_q4_k_m();
    test_other_presets();
    test_pure_tied_overrides();
    test_special_models();
    char dir[] = "/tmp/pq_gguf_mix_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    test_imatrix_roundtrip(dir);
    test_imatrix_legacy(dir);
    test_imatrix_refused(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return test_end("test_gguf_mix");
}
