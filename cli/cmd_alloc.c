/* prunequant allocate: one recipe per linear under a byte budget, written as a recipe file
 * with overrides for compress --recipe. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "prunequant-alloc.h"

int pq_cli_allocate(int argc, char **argv);

static const char *alloc_usage =
    "usage: prunequant allocate MODEL --calib FILE (--budget-bpw B | --budget-bytes N) --out RECIPE.json\n"
    "  [--candidates LIST (prune=none,2:4;bits=2..8;group=32,128)] [--tokenizer FILE]\n"
    "  [--nsamples N (32)] [--seqlen L (min(512, model max))] [--seed S (0)]\n"
    "  [--prune magnitude|wanda|sparsegpt (sparsegpt)] [--quant rtn|gptq (gptq)] [--joint a|b|fused (fused)]\n"
    "  [--no-keep-mask] [--sym] [--percdamp P] [--blocksize B] [--format packed|packed-v1]\n"
    "  [--sample-rows N (128)] [--sample-seed S (0)] [--no-sensitivity] [--sens-windows N (4)] [--sens-len T (128)]\n"
    "  [--json] [--threads N] [--quiet]\n"
    "Chooses for every linear one candidate (pruning pattern or sparsity x bits x group) so that the\n"
    "summed damage (the layer error tr(dW H dW^T) of the real compression of a sample of its rows,\n"
    "scaled to all rows, times the KLD at the model's output one unit of it causes, measured per\n"
    "linear on --sens-windows calibration windows; --no-sensitivity: the layer error alone) is\n"
    "smallest while the packed bytes of the linears stay within the budget (Lagrangian relaxation +\n"
    "greedy fill; the dual bound gives the gap). Writes RECIPE.json (compress --recipe) and prints the\n"
    "allocation as a block x linear grid (--json: as JSON).\n";

typedef struct alloc_opts {
    const char *model, *calib, *out, *tokenizer;
    int64_t threads;
    int quiet, json;
    pq_alloc_params p;
} alloc_opts;

static const char *val(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* A recipe key shared by every candidate (--prune, --quant, --joint, --percdamp, ...). */
static int set_recipe(const char *cmd, alloc_opts *o, const char *key, const char *v) {
    pq_ctx *c = pq_ctx_new();
    const int bad = !c || pq_recipe_set(c, &o->p.compress.layer, key, v, 1) != PQ_OK;
    if (bad) cli_usage_error(cmd, "%s", c ? pq_ctx_error(c) : "out of memory creating a context");
    pq_ctx_free(c);
    return bad ? 2 : 0;
}

/* A flag with a value: 0 to go on, else the exit code; -1: not one of these. */
static int alloc_value(const char *cmd, alloc_opts *o, const char *a, const char *v) {
    pq_compress_params *cp = &o->p.compress;
    int64_t i64;
    if (!strcmp(a, "--calib"))
        o->calib = v;
    else if (!strcmp(a, "--out"))
        o->out = v;
    else if (!strcmp(a, "--tokenizer"))
        o->tokenizer = v;
    else if (!strcmp(a, "--candidates"))
        o->p.candidates = v;
    else if (!strcmp(a, "--budget-bpw"))
        return cli_parse_f64(cmd, a, v, 0.01, 32, &o->p.budget_bpw) ? 2 : 0;
    else if (!strcmp(a, "--budget-bytes"))
        return cli_parse_i64(cmd, a, v, 1, INT64_MAX, &o->p.budget_bytes) ? 2 : 0;
    else if (!strcmp(a, "--nsamples"))
        return cli_parse_i64(cmd, a, v, 1, 1 << 20, &cp->nsamples) ? 2 : 0;
    else if (!strcmp(a, "--seqlen"))
        return cli_parse_i64(cmd, a, v, 1, 1 << 24, &cp->seqlen) ? 2 : 0;
    else if (!strcmp(a, "--sample-rows"))
        return cli_parse_i64(cmd, a, v, 1, INT32_MAX, &o->p.sample_rows) ? 2 : 0;
    else if (!strcmp(a, "--sens-windows"))
        return cli_parse_i64(cmd, a, v, 1, 1 << 20, &o->p.sens_windows) ? 2 : 0;
    else if (!strcmp(a, "--sens-len"))
        return cli_parse_i64(cmd, a, v, 2, 1 << 24, &o->p.sens_len) ? 2 : 0;
    else if (!strcmp(a, "--threads"))
        return cli_parse_i64(cmd, a, v, 0, 1024, &o->threads) ? 2 : 0;
    else if (!strcmp(a, "--seed") || !strcmp(a, "--sample-seed")) {
        if (cli_parse_i64(cmd, a, v, 0, INT64_MAX, &i64)) return 2;
        if (a[2] == 's' && a[3] == 'e')
            cp->seed = (uint64_t)i64;
        else
            o->p.sample_seed = (uint64_t)i64;
    } else if (!strcmp(a, "--format")) {
        if (strcmp(v, "packed") && strcmp(v, "packed-v1"))
            return cli_usage_error(cmd, "--format: packed or packed-v1 (the bytes are counted in it)");
        cp->packed = !strcmp(v, "packed") ? 2 : 1;
    } else if (!strcmp(a, "--prune") || !strcmp(a, "--quant") || !strcmp(a, "--joint") || !strcmp(a, "--percdamp") ||
               !strcmp(a, "--blocksize"))
        return set_recipe(cmd, o, a + 2, v);
    else
        return -1;
    return 0;
}

/* argv[*i] (and its value): 0 to go on, else the exit code. */
static int alloc_flag(const char *cmd, int argc, char **argv, int *i, alloc_opts *o) {
    const char *a = argv[*i];
    if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
        o->quiet = 1;
    else if (!strcmp(a, "--json"))
        o->json = 1;
    else if (!strcmp(a, "--no-sensitivity"))
        o->p.sensitivity = 0;
    else if (!strcmp(a, "--sym"))
        o->p.compress.layer.sym = 1;
    else if (!strcmp(a, "--no-keep-mask"))
        o->p.compress.layer.keep_mask = 0;
    else if (a[0] == '-' && a[1] == '-' && a[2]) {
        const char *v = val(cmd, argc, argv, i);
        if (!v) return 2;
        const int rc = alloc_value(cmd, o, a, v);
        return rc < 0 ? cli_unknown_option(cmd, a) : rc;
    } else if (a[0] == '-' && a[1]) {
        return cli_unknown_option(cmd, a);
    } else if (o->model) {
        return cli_usage_error(cmd, "more than one model given");
    } else {
        o->model = a;
    }
    return 0;
}

/* The allocation as a block x linear grid of candidate labels, then the totals. */
static void print_text(const pq_alloc_result *r, const char *out) {
    static const char *const cols[] = {"q", "k", "v", "o", "gate", "up", "down"};
    printf("%-6s", "block");
    for (int i = 0; i < 7; i++)
        printf(" %-14s", cols[i]);
    printf("\n");
    for (int64_t k = 0; k < r->n_linears; k++) {
        char lab[48];
        pq_alloc_label(&r->candidates[r->linears[k].choice], lab, sizeof lab);
        if (k % 7 == 0) printf("%-6lld", (long long)(k / 7));
        printf(" %-14s", lab);
        if (k % 7 == 6) printf("\n");
    }
    const double bpw = 8.0 * (double)r->total_bytes / (double)r->n_weights;
    printf("budget %lld bytes (%.4f bpw); allocated %lld bytes (%.4f bpw, %.2f%% of the budget)\n",
           (long long)r->budget, 8.0 * (double)r->budget / (double)r->n_weights, (long long)r->total_bytes, bpw,
           100.0 * (double)r->total_bytes / (double)r->budget);
    printf("damage %.6g +/- %.2g (sampled rows); dual bound %.6g: gap at most %.3g%% (lambda %.4g, %lld greedy "
           "upgrades)\n",
           r->total_damage, r->total_damage_se, r->lower_bound,
           r->total_damage > 0 ? 100.0 * (r->total_damage - r->lower_bound) / r->total_damage : 0.0, r->lambda,
           (long long)r->upgrades);
    printf("%lld candidates x %lld linears in %.1f s (sweeps %.1f s, sensitivity %.1f s); recipe: %s\n",
           (long long)r->n_candidates, (long long)r->n_linears, r->seconds, r->sweep_seconds, r->sens_seconds, out);
}

static void print_json(const pq_alloc_result *r, const char *out) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "recipe", out);
    cJSON_AddNumberToObject(j, "budget", (double)r->budget);
    cJSON_AddNumberToObject(j, "bytes", (double)r->total_bytes);
    cJSON_AddNumberToObject(j, "n_weights", (double)r->n_weights);
    cJSON_AddNumberToObject(j, "bpw", 8.0 * (double)r->total_bytes / (double)r->n_weights);
    cJSON_AddNumberToObject(j, "damage", r->total_damage);
    cJSON_AddNumberToObject(j, "damage_se", r->total_damage_se);
    cJSON_AddNumberToObject(j, "lower_bound", r->lower_bound);
    cJSON_AddNumberToObject(j, "lambda", r->lambda);
    cJSON_AddNumberToObject(j, "upgrades", (double)r->upgrades);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON *arr = cJSON_AddArrayToObject(j, "linears");
    for (int64_t k = 0; k < r->n_linears; k++) {
        const pq_alloc_linear *li = &r->linears[k];
        const int64_t at = k * r->n_candidates + li->choice;
        char lab[48];
        pq_alloc_label(&r->candidates[li->choice], lab, sizeof lab);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", li->name);
        cJSON_AddStringToObject(o, "choice", lab);
        cJSON_AddNumberToObject(o, "bytes", (double)r->bytes[at]);
        cJSON_AddBoolToObject(o, "bytes_exact", r->exact[at]);
        cJSON_AddNumberToObject(o, "damage", r->damage[at]);
        cJSON_AddNumberToObject(o, "damage_se", r->damage_se[at]);
        cJSON_AddNumberToObject(o, "sampled_rows", (double)li->sampled);
        cJSON_AddNumberToObject(o, "sensitivity", li->sensitivity);
        cJSON_AddItemToArray(arr, o);
    }
    char *s = cJSON_Print(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

/* Loads the model (its weights only with --sensitivity), tokenizes the calibration text,
 * allocates, writes the recipe: the exit code. */
static int alloc_run(const char *cmd, const alloc_opts *o) {
    pq_ctx *ctx = cli_ctx_new((int)o->threads, o->quiet);
    cli_catch_signals();
    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = o->tokenizer;
    lp.defer_weights = !o->p.sensitivity; /* one block at a time, as compress */
    pq_model *m = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    size_t len = 0;
    char *text = NULL;
    pq_alloc_result *r = NULL;
    int ret = 1;
    if (pq_model_load(ctx, o->model, &lp, &m) != PQ_OK) goto fail;
    if (!pq_model_tokenizer(m)) {
        fprintf(stderr, "prunequant %s: %s: the model has no tokenizer; pass --tokenizer FILE\n", cmd, o->model);
        goto done;
    }
    if (!(text = cli_read_text(cmd, "--calib", o->calib, &len, o->quiet))) goto done;
    if (pq_tokenize(ctx, pq_model_tokenizer(m), text, len, 1, &ids, &n_ids) != PQ_OK ||
        pq_allocate(ctx, m, ids, n_ids, &o->p, &r) != PQ_OK || pq_alloc_recipe_write(ctx, r, &o->p, o->out) != PQ_OK)
        goto fail;
    cli_progress_done();
    if (o->json)
        print_json(r, o->out);
    else
        print_text(r, o->out);
    ret = 0;
    goto done;
fail:
    cli_progress_done();
    ret = cli_fail(cmd, ctx);
done:
    pq_alloc_result_free(r);
    free(ids);
    free(text);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return ret;
}

int pq_cli_allocate(int argc, char **argv) {
    const char *cmd = "allocate";
    alloc_opts o = {.p = pq_alloc_params_default()};
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("%s", alloc_usage);
            return 0;
        }
        rc = alloc_flag(cmd, argc, argv, &i, &o);
    }
    if (rc) return rc;
    if (!o.model || !o.calib || !o.out)
        return cli_usage_error(cmd, "MODEL, --calib FILE and --out RECIPE.json are required");
    if ((o.p.budget_bpw > 0) == (o.p.budget_bytes > 0))
        return cli_usage_error(cmd, "give one budget: --budget-bpw B or --budget-bytes N");
    o.p.compress.calib_name = o.calib;
    pq_ctx *c = pq_ctx_new(); /* a bad list is bad usage: checked before the model is read */
    pq_layer_params *cands = NULL;
    int64_t n = 0;
    const int bad = !c || pq_alloc_candidates(c, o.p.candidates, &o.p.compress.layer, &cands, &n) != PQ_OK;
    if (bad) cli_usage_error(cmd, "--%s", c ? pq_ctx_error(c) : "candidates: out of memory");
    free(cands);
    pq_ctx_free(c);
    return bad ? 2 : alloc_run(cmd, &o);
}
