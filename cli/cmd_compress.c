/* prunequant compress (whole-model pipeline) and info --sparsity. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "prunequant-pipeline.h"

int pq_cli_compress(int argc, char **argv);
int pq_cli_info_sparsity(int argc, char **argv);

static const char *compress_usage =
    "usage: prunequant compress MODEL --calib FILE --out DIR [--tokenizer FILE] [--nsamples N (32)]\n"
    "  [--seqlen L (min(512, model max))] [--seed S (0)] [--prune none|magnitude|wanda|sparsegpt]\n"
    "  [--sparsity F | --pattern N:M] [--quant none|rtn|gptq] [--bits B] [--group G] [--sym|--asym]\n"
    "  [--act-order] [--static-groups] [--percdamp P] [--blocksize B] [--joint a|b|fused] [--no-keep-mask]\n"
    "  [--true-sequential] [--skip REGEX] [--recipe FILE.json] [--report FILE.jsonl]\n"
    "  [--format packed|packed-v1|dense|gguf] [--gguf-type TYPE|PRESET (with gguf: Q4_K_M, Q4_0 ...)] [--imatrix-out "
    "FILE]\n"
    "  [--dtype f32|f16|bf16] [--budget-bytes N] [--threads N] [--quiet]\n"
    "A recipe file may hold \"overrides\": [{\"match\": REGEX, recipe keys...}] (per-linear recipes, first\n"
    "match wins) and \"budget_bytes\" (the linear weights must fit it), as prunequant allocate writes.\n";

/* Recipe keys given (flags or the JSON recipe): pq_recipe_check refuses the ones without effect. */
static unsigned given;
/* The recipe keys, for "did you mean" in a JSON recipe. */
static const char *const recipe_keys =
    "prune sparsity pattern quant bits group sym act_order static_groups percdamp blocksize joint keep_mask "
    "true_sequential nsamples seqlen seed threads format gguf_type imatrix_out dtype skip overrides budget_bytes";

static void mark_given(const char *key) {
    given |= pq_recipe_key_parse(key);
}

/* A key that changes nothing under the rest of the recipe is a usage error, not a silent no-op
 * (defaults: quantization flags alone imply GPTQ; --prune alone means pruning only). */
static int check_given(const char *cmd, pq_layer_params *l) {
    pq_ctx *c = pq_ctx_new();
    const int bad = !c || pq_recipe_check(c, l, given, 1) != PQ_OK;
    if (bad)
        cli_usage_error(cmd, "%s", c ? pq_ctx_error(c) : "out of memory creating a context for the recipe check");
    pq_ctx_free(c);
    return bad;
}

static const char *val(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* One recipe key (from a flag or the JSON recipe); returns 0 on success. */
static int set_key(const char *cmd, pq_compress_params *p, const char *key, const char *v, int64_t *threads,
                   const char **format, const char **skip_store) {
    pq_layer_params *l = &p->layer;
    int64_t i64;
    mark_given(key);
    if (pq_recipe_key_parse(key)) { /* a layer-recipe key: the library's parser and ranges */
        pq_ctx *c = pq_ctx_new();
        const int bad = !c || pq_recipe_set(c, l, key, v, 1) != PQ_OK;
        if (bad) cli_usage_error(cmd, "%s", c ? pq_ctx_error(c) : "out of memory creating a context");
        pq_ctx_free(c);
        return bad;
    } else if (!strcmp(key, "nsamples")) {
        if (cli_parse_i64(cmd, "--nsamples", v, 1, 1 << 20, &p->nsamples)) return 1;
    } else if (!strcmp(key, "seqlen")) {
        if (cli_parse_i64(cmd, "--seqlen", v, 1, 1 << 24, &p->seqlen)) return 1;
    } else if (!strcmp(key, "seed")) {
        if (cli_parse_i64(cmd, "--seed", v, 0, INT64_MAX, &i64)) return 1;
        p->seed = (uint64_t)i64;
    } else if (!strcmp(key, "threads")) {
        if (cli_parse_i64(cmd, "--threads", v, 0, 1024, threads)) return 1;
    } else if (!strcmp(key, "format")) {
        if (strcmp(v, "packed") && strcmp(v, "packed-v1") && strcmp(v, "dense") && strcmp(v, "gguf"))
            return cli_usage_error(cmd, "--format: packed, packed-v1, dense or gguf");
        *format = v;
    } else if (!strcmp(key, "gguf_type")) {
        p->gguf_type = v;
    } else if (!strcmp(key, "imatrix_out")) {
        p->imatrix_out = v;
    } else if (!strcmp(key, "dtype")) {
        if (pq_dtype_parse(v, &p->dtype) ||
            (p->dtype != PQ_DTYPE_F32 && p->dtype != PQ_DTYPE_F16 && p->dtype != PQ_DTYPE_BF16))
            return cli_usage_error(cmd, "--dtype: f32, f16 or bf16");
    } else if (!strcmp(key, "skip")) {
        *skip_store = v;
    } else if (!strcmp(key, "budget_bytes")) { /* allocate's recipes: the real bytes are checked */
        if (cli_parse_i64(cmd, "--budget-bytes", v, 1, INT64_MAX, &p->budget_bytes)) return 1;
    } else {
        return -1; /* unknown: the caller names the flag or the file */
    }
    return 0;
}

static int set_bool(pq_compress_params *p, const char *key, int b) {
    pq_layer_params *l = &p->layer;
    if (strcmp(key, "true_sequential")) mark_given(key);
    if (!strcmp(key, "sym"))
        l->sym = b;
    else if (!strcmp(key, "act_order"))
        l->act_order = b;
    else if (!strcmp(key, "static_groups"))
        l->static_groups = b;
    else if (!strcmp(key, "keep_mask"))
        l->keep_mask = b;
    else if (!strcmp(key, "true_sequential"))
        p->true_sequential = b;
    else
        return 0;
    return 1;
}

/* Applies a JSON recipe; strings it keeps point into *keep (freed by the caller). */
static int apply_recipe(const char *cmd, const char *path, pq_compress_params *p, int64_t *threads,
                        const char **format, const char **skip, cJSON **keep) {
    size_t len;
    char *text = cli_read_file(cmd, path, &len);
    if (!text) return 1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        fprintf(stderr, "prunequant %s: %s: not a JSON object\n", cmd, path);
        return 1;
    }
    *keep = j;
    for (cJSON *it = j->child; it; it = it->next) {
        char buf[64];
        const char *v;
        if (!strcmp(it->string, "overrides")) continue; /* read on top of the resolved recipe */
        if (cJSON_IsBool(it)) {
            if (set_bool(p, it->string, cJSON_IsTrue(it))) continue;
            fprintf(stderr, "prunequant %s: %s: key '%s' is not a boolean option\n", cmd, path, it->string);
            return 1;
        }
        if (set_bool(p, it->string, 0)) {
            fprintf(stderr, "prunequant %s: %s: key '%s' must be true or false\n", cmd, path, it->string);
            return 1;
        }
        if (cJSON_IsString(it)) {
            v = it->valuestring;
        } else if (cJSON_IsNumber(it)) {
            snprintf(buf, sizeof buf, "%.17g", it->valuedouble);
            v = buf;
        } else {
            fprintf(stderr, "prunequant %s: %s: key '%s' has a bad value\n", cmd, path, it->string);
            return 1;
        }
        const int r = set_key(cmd, p, it->string, v, threads, format, skip);
        if (r < 0) {
            char near[64];
            if (cli_nearest_word(it->string, recipe_keys, near, sizeof near))
                fprintf(stderr, "prunequant %s: %s: unknown recipe key '%s' (did you mean '%s'?)\n", cmd, path,
                        it->string, near);
            else
                fprintf(stderr, "prunequant %s: %s: unknown recipe key '%s' (keys: %s)\n", cmd, path, it->string,
                        recipe_keys);
            return 1;
        }
        if (r) return 1;
    }
    return 0;
}

typedef struct compress_opts {
    const char *model, *calib, *out, *tokenizer, *format, *skip;
    int64_t threads;
    int quiet;
    pq_compress_params p;
} compress_opts;

/* A flag without a value: 1 when it is one. */
static int compress_switch(compress_opts *o, const char *a) {
    if (!strcmp(a, "--sym") || !strcmp(a, "--asym"))
        set_bool(&o->p, "sym", a[2] == 's');
    else if (!strcmp(a, "--act-order"))
        set_bool(&o->p, "act_order", 1);
    else if (!strcmp(a, "--static-groups"))
        set_bool(&o->p, "static_groups", 1);
    else if (!strcmp(a, "--keep-mask") || !strcmp(a, "--no-keep-mask"))
        set_bool(&o->p, "keep_mask", a[2] == 'k');
    else if (!strcmp(a, "--true-sequential"))
        set_bool(&o->p, "true_sequential", 1);
    else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
        o->quiet = 1;
    else
        return 0;
    return 1;
}

/* argv[*i] and its value, if any: 0 to go on, else the exit code. */
static int compress_flag(const char *cmd, int argc, char **argv, int *i, compress_opts *o) {
    const char *a = argv[*i], *v;
    int rc = 0;
    if (compress_switch(o, a)) return 0;
    if (!strcmp(a, "--recipe"))
        rc = !val(cmd, argc, argv, i);
    else if (!strcmp(a, "--calib"))
        rc = !(o->calib = val(cmd, argc, argv, i));
    else if (!strcmp(a, "--out"))
        rc = !(o->out = val(cmd, argc, argv, i));
    else if (!strcmp(a, "--tokenizer"))
        rc = !(o->tokenizer = val(cmd, argc, argv, i));
    else if (!strcmp(a, "--report"))
        rc = !(o->p.report = val(cmd, argc, argv, i));
    else if (a[0] == '-' && a[1] == '-' && a[2]) {
        char key[32];
        snprintf(key, sizeof key, "%s", a + 2);
        for (char *k = key; *k; k++)
            if (*k == '-') *k = '_';
        if (!(v = val(cmd, argc, argv, i)))
            rc = 2;
        else if ((rc = set_key(cmd, &o->p, key, v, &o->threads, &o->format, &o->skip)) < 0)
            rc = cli_unknown_option(cmd, a);
        else
            rc = rc ? 2 : 0;
    } else if (a[0] == '-' && a[1]) {
        rc = cli_unknown_option(cmd, a);
    } else if (o->model) {
        rc = cli_usage_error(cmd, "more than one model given");
    } else {
        o->model = a;
    }
    return rc;
}

/* The flags after the recipe: -1 to go on, else the exit code (0 after --help). */
static int compress_parse(const char *cmd, int argc, char **argv, compress_opts *o) {
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("%s", compress_usage);
            return 0;
        }
        rc = compress_flag(cmd, argc, argv, &i, o);
    }
    if (!rc && (!o->model || !o->calib || !o->out))
        rc = cli_usage_error(cmd, "MODEL, --calib FILE and --out DIR are required");
    if (rc || check_given(cmd, &o->p.layer)) return 2;
    const int gguf = !strcmp(o->format, "gguf");
    if (gguf != (o->p.gguf_type != NULL))
        return cli_usage_error(cmd, gguf ? "--format gguf needs --gguf-type TYPE (e.g. Q4_K_M, Q4_0)"
                                         : "--gguf-type needs --format gguf");
    if (gguf && (given & (PQ_KEY_BITS | PQ_KEY_GROUP | PQ_KEY_SYM | PQ_KEY_STATIC_GROUPS)))
        return cli_usage_error(cmd, "--bits, --group, --sym and --static-groups have no effect with --format gguf "
                                    "(the GGUF type fixes the grids)");
    return -1;
}

/* Loads the model, tokenizes the calibration text, compresses: the exit code. */
static int compress_run(const char *cmd, const compress_opts *o) {
    pq_ctx *ctx = cli_ctx_new((int)o->threads, o->quiet);
    cli_catch_signals();
    const double t0 = cli_now();
    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = o->tokenizer;
    lp.defer_weights = 1; /* the pipeline converts one block at a time */
    pq_model *m = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    size_t len = 0;
    char *text = NULL;
    int ret = 1;
    if (pq_model_load(ctx, o->model, &lp, &m) != PQ_OK) {
        cli_fail(cmd, ctx);
        goto done;
    }
    if (!pq_model_tokenizer(m)) {
        fprintf(stderr, "prunequant %s: %s: the model has no tokenizer; pass --tokenizer FILE\n", cmd, o->model);
        goto done;
    }
    if (!(text = cli_read_text(cmd, "--calib", o->calib, &len, o->quiet))) goto done;
    if (pq_tokenize(ctx, pq_model_tokenizer(m), text, len, 1, &ids, &n_ids) != PQ_OK ||
        pq_compress_model(ctx, m, ids, n_ids, &o->p, o->out) != PQ_OK) {
        cli_progress_done();
        cli_fail(cmd, ctx);
        goto done;
    }
    cli_progress_done();
    if (!o->quiet) cli_compress_summary(cmd, m, o->out, cli_now() - t0);
    ret = 0;
done:
    free(ids);
    free(text);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return ret;
}

/* The recipe file's "overrides" on top of the recipe the file and the flags resolved. */
static int apply_overrides(const char *cmd, const char *path, const cJSON *recipe, compress_opts *o,
                           pq_recipe_overrides *ov) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(recipe, "overrides");
    if (!a) return 0;
    char *text = cJSON_PrintUnformatted(a);
    pq_ctx *c = pq_ctx_new();
    const int bad = !text || !c || pq_recipe_overrides_parse(c, text, strlen(text), &o->p.layer, ov) != PQ_OK;
    if (bad) fprintf(stderr, "prunequant %s: %s: %s\n", cmd, path, c && text ? pq_ctx_error(c) : "out of memory");
    pq_ctx_free(c);
    free(text);
    o->p.overrides = ov->v;
    o->p.n_overrides = ov->n;
    return bad;
}

int pq_cli_compress(int argc, char **argv) {
    const char *cmd = "compress";
    compress_opts o = {.format = "packed", .p = pq_compress_params_default()};
    const char *recipe = NULL;
    cJSON *recipe_json = NULL; /* strings of o point into it */
    /* the recipe first, so that flags override it wherever they stand */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--recipe") && i + 1 < argc) recipe = argv[i + 1];
    if (recipe && apply_recipe(cmd, recipe, &o.p, &o.threads, &o.format, &o.skip, &recipe_json)) {
        cJSON_Delete(recipe_json);
        return 1; /* a bad recipe file is bad data, not bad usage */
    }
    int rc = compress_parse(cmd, argc, argv, &o);
    pq_recipe_overrides ov = {0};
    if (rc < 0 && recipe_json && apply_overrides(cmd, recipe, recipe_json, &o, &ov)) rc = 1;
    if (rc < 0) {
        o.p.packed = !strcmp(o.format, "packed") ? 2 : !strcmp(o.format, "packed-v1") ? 1 : 0;
        if (o.p.gguf_type && o.p.layer.quant == PQ_QUANT_NONE) o.p.layer.quant = PQ_QUANT_GPTQ;
        o.p.skip = o.skip;
        o.p.calib_name = o.calib;
        rc = compress_run(cmd, &o);
    }
    pq_recipe_overrides_free(&ov);
    cJSON_Delete(recipe_json);
    return rc;
}

/* A linear as stored, in a few characters (a cell of the heat map): its pruning from the mask
 * ("2:4", or the kept share's complement "25%"), its bits and group ("4b g32"; g-1: one grid per
 * row), "f16"-style for an unpacked weight. */
static void cell_label(const pq_sparsity_entry *e, char *buf, size_t n) {
    char pr[24] = "";
    const int64_t numel = e->rows * e->cols;
    if (e->mask_bytes > 0 && e->pattern_m && e->pattern_ok)
        snprintf(pr, sizeof pr, "%d:%d", e->pattern_n, e->pattern_m);
    else if (e->mask_bytes > 0)
        snprintf(pr, sizeof pr, "%.0f%%", 100.0 * (1.0 - (double)e->kept / (double)numel));
    if (e->bits > 0) {
        const int64_t groups = e->rows > 0 ? e->scales_bytes / 2 / e->rows : 0;
        const int64_t g = groups > 1 ? e->cols / groups : -1;
        snprintf(buf, n, "%s%s%db g%lld", pr, pr[0] ? "+" : "", e->bits, (long long)g);
    } else if (e->values_bytes > 0) {
        snprintf(buf, n, "%s f16", pr);
    } else {
        snprintf(buf, n, "%.0f-bit", e->rows > 0 ? 8.0 * (double)e->weight_bytes / (double)numel : 0.0);
    }
}

/* The block of a linear ("model.layers.<b>.") and its place in the block (q k v o gate up
 * down), -1 when the name is not a decoder linear's. */
static int linear_slot(const char *name, long *block) {
    static const char *const kinds[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                        "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                        "mlp.down_proj"};
    int used = 0;
    if (sscanf(name, "model.layers.%ld.%n", block, &used) != 1 || !used) return -1;
    for (int i = 0; i < 7; i++)
        if (!strcmp(name + used, kinds[i])) return i;
    return -1;
}

/* The heat map: blocks x linears, each cell the linear's bits and pattern as stored. */
static void sparsity_print_grid(const pq_sparsity_report *r) {
    static const char *const cols[] = {"q", "k", "v", "o", "gate", "up", "down"};
    printf("\n%-6s", "block");
    for (int i = 0; i < 7; i++)
        printf(" %-14s", cols[i]);
    long last = -1;
    for (int64_t k = 0; k < r->n_layers; k++) {
        long b;
        const int slot = linear_slot(r->layers[k].name, &b);
        if (slot < 0) continue;
        if (b != last) printf("\n%-6ld", b), last = b;
        char cell[48];
        cell_label(&r->layers[k], cell, sizeof cell);
        printf(" %-14s", cell);
    }
    printf("\n");
}

/* The same grid as JSON: [[cell per linear] per block]. */
static void sparsity_grid_json(cJSON *j, const pq_sparsity_report *r) {
    cJSON *grid = cJSON_AddArrayToObject(j, "grid"), *row = NULL;
    long last = -1;
    for (int64_t k = 0; k < r->n_layers; k++) {
        long b;
        if (linear_slot(r->layers[k].name, &b) < 0) continue;
        if (b != last) cJSON_AddItemToArray(grid, row = cJSON_CreateArray()), last = b;
        char cell[48];
        cell_label(&r->layers[k], cell, sizeof cell);
        cJSON_AddItemToArray(row, cJSON_CreateString(cell));
    }
}

static void sparsity_print_json(const char *model, const pq_sparsity_report *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", model);
    cJSON *arr = cJSON_AddArrayToObject(j, "layers");
    for (int64_t i = 0; i < r->n_layers; i++) {
        const pq_sparsity_entry *e = &r->layers[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", e->name);
        cJSON_AddNumberToObject(o, "rows", (double)e->rows);
        cJSON_AddNumberToObject(o, "cols", (double)e->cols);
        cJSON_AddNumberToObject(o, "sparsity", e->sparsity);
        char pat[32];
        snprintf(pat, sizeof pat, "%d:%d", e->pattern_n, e->pattern_m);
        if (e->pattern_m)
            cJSON_AddStringToObject(o, "pattern", pat);
        else
            cJSON_AddNullToObject(o, "pattern");
        cJSON_AddBoolToObject(o, "pattern_ok", e->pattern_ok);
        cJSON_AddNumberToObject(o, "bytes", (double)e->bytes);
        cJSON *parts = cJSON_AddObjectToObject(o, "parts");
        const struct {
            const char *k;
            int64_t v;
        } pt[] = {{"codes", e->codes_bytes},  {"scales", e->scales_bytes}, {"zeros", e->zeros_bytes},
                  {"g_idx", e->g_idx_bytes},  {"mask", e->mask_bytes},     {"values", e->values_bytes},
                  {"weight", e->weight_bytes}};
        for (size_t k = 0; k < sizeof pt / sizeof pt[0]; k++)
            cJSON_AddNumberToObject(parts, pt[k].k, (double)pt[k].v);
        cJSON_AddNumberToObject(o, "bits", e->bits);
        char cell[48];
        cell_label(e, cell, sizeof cell);
        cJSON_AddStringToObject(o, "stored", cell);
        cJSON_AddNumberToObject(o, "kept", (double)e->kept);
        cJSON_AddNumberToObject(o, "mask_bound", e->mask_bound);
        cJSON_AddNumberToObject(o, "bound_bytes", e->bound_bytes);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddBoolToObject(j, "packed", r->packed);
    cJSON_AddNumberToObject(j, "acr", r->acr);
    cJSON_AddNumberToObject(j, "bpw", r->bpw);
    cJSON_AddNumberToObject(j, "bound_bpw", r->bound_bpw);
    sparsity_grid_json(j, r);
    char *s = cJSON_Print(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

/* Per linear: sparsity, the N:M pattern, bytes stored part by part (codes, scales + zeros +
 * g_idx, mask, f16 values or an unpacked weight) and the information bound. */
static void sparsity_print_text(const pq_sparsity_report *r) {
    printf("%-40s %8s %7s %3s %4s %10s %10s %9s %9s %10s %10s\n", "layer", "sparsity", "pattern", "ok", "bits",
           "bytes", "codes", "scale+0", "mask", "other", "bound");
    for (int64_t i = 0; i < r->n_layers; i++) {
        const pq_sparsity_entry *e = &r->layers[i];
        char pat[32];
        if (e->pattern_m)
            snprintf(pat, sizeof pat, "%d:%d", e->pattern_n, e->pattern_m);
        else
            snprintf(pat, sizeof pat, "-");
        printf("%-40s %8.4f %7s %3s %4d %10lld %10lld %9lld %9lld %10lld %10.0f\n", e->name, e->sparsity, pat,
               e->pattern_ok ? "yes" : "no", e->bits, (long long)e->bytes, (long long)e->codes_bytes,
               (long long)(e->scales_bytes + e->zeros_bytes + e->g_idx_bytes), (long long)e->mask_bytes,
               (long long)(e->values_bytes + e->weight_bytes), e->bound_bytes);
    }
    char acr[32] = "-"; /* ACr < 0: stored wider than f16 (dense f32) */
    if (r->acr >= 0) snprintf(acr, sizeof acr, "%.4f", r->acr);
    printf("ACr %s  bpw %.3f  information bound %.3f bpw%s\n", acr, r->bpw, r->bound_bpw,
           r->packed ? "" : "  (not packed)");
    sparsity_print_grid(r);
}

int pq_cli_info_sparsity(int argc, char **argv) {
    const char *cmd = "info";
    const char *model = NULL, *tokenizer = NULL;
    int json = 0;
    int64_t threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--sparsity")) continue;
        if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
            continue;
        else if (!strcmp(a, "--tokenizer")) {
            if (!(tokenizer = val(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--threads")) {
            const char *v = val(cmd, argc, argv, &i);
            if (!v || cli_parse_i64(cmd, "--threads", v, 0, 1024, &threads)) return 2;
        } else if (a[0] == '-' && a[1]) {
            return cli_unknown_option("info", a);
        } else {
            model = a;
        }
    }
    if (!model) return cli_usage_error(cmd, "no MODEL given");
    pq_ctx *ctx = cli_ctx_new((int)threads, 1);
    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = tokenizer;
    pq_model *m = NULL;
    pq_sparsity_report r;
    if (pq_model_load(ctx, model, &lp, &m) != PQ_OK || pq_model_sparsity(ctx, m, &r) != PQ_OK) {
        int e = cli_fail(cmd, ctx);
        pq_model_free(m);
        pq_ctx_free(ctx);
        return e;
    }
    if (json)
        sparsity_print_json(model, &r);
    else
        sparsity_print_text(&r);
    pq_sparsity_report_free(&r);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return 0;
}
