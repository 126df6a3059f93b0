/* prunequant layer: compresses one weight matrix given its Hessian (.npy in, .npy out). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "prunequant-compress.h"

int pq_cli_layer(int argc, char **argv);

static const char *const layer_usage =
    "usage: prunequant layer --weight W.npy --hessian H.npy --out Q.npy [options]\n"
    "Compresses one linear layer W [rows, cols] given its Hessian H [cols, cols] = 2 X X^T / N\n"
    "and writes the compressed (dequantized) weights.\n"
    "  --prune none|magnitude|wanda|sparsegpt   pruning method (default none)\n"
    "  --sparsity F          unstructured sparsity in [0, 1) (default 0.5)\n"
    "  --pattern N:M         N of every M consecutive weights pruned (2:4, 4:8, ...)\n"
    "  --quant none|rtn|gptq quantization method (default none)\n"
    "  --bits B              2..8 (default 4)\n"
    "  --group G             columns per grid, -1 = one per row (default -1)\n"
    "  --sym | --asym        symmetric or min-max grid (default --asym)\n"
    "  --act-order           sweep columns by decreasing diag(H)\n"
    "  --static-groups       fit every group's grid up front on the original columns\n"
    "  --percdamp P          damping as a fraction of mean(diag H) (default 0.01)\n"
    "  --blocksize B         lazy-batch block (default 128)\n"
    "  --joint a|b|fused     pruning + quantization: prune then quantize (a), with the mask\n"
    "                        frozen (b), or one joint sweep (fused) (default a)\n"
    "  --no-keep-mask        mode a: leave pruned weights that GPTQ moved off zero (default: re-zero\n"
    "                        them, so the pattern and sparsity asked for hold; the count is printed)\n"
    "  --reference           reproduce the GPTQ/SparseGPT reference implementations' quirks\n"
    "  --f32-factor          factor H in float32 (faster)\n"
    "  --error auto|direct|none  how the error tr((W-Q) H (W-Q)^T) is computed (default auto)\n"
    "  --threads N           threads (default: all cores)\n"
    "  --json                print the result as one JSON object\n"
    "  --quiet               no progress or info messages\n";

/* Prints s as a JSON string. */
static void json_str(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void json_num(double v) {
    if (isfinite(v))
        printf("%.10g", v);
    else
        printf("null");
}

/* Reads a 2-D .npy; on failure prints the error and returns NULL. */
static float *read_matrix(const char *cmd, pq_ctx *ctx, const char *path, int64_t shape[2]) {
    float *x = NULL;
    int ndim = 0;
    if (pq_npy_read(ctx, path, &x, shape, &ndim) != PQ_OK) {
        cli_fail(cmd, ctx);
        return NULL;
    }
    if (ndim != 2 || shape[0] <= 0 || shape[1] <= 0) {
        fprintf(stderr, "prunequant %s: %s: expected a non-empty 2-D array, got shape (%lld%s%lld)\n", cmd, path,
                (long long)shape[0], ndim == 2 ? ", " : ",", ndim == 2 ? (long long)shape[1] : 0LL);
        free(x);
        return NULL;
    }
    return x;
}

typedef struct layer_opts {
    const char *wpath, *hpath, *out, *pattern;
    int json, quiet;
    unsigned given; /* recipe keys given (PQ_KEY_*), for pq_recipe_check */
    int64_t threads;
    pq_layer_params p;
} layer_opts;

enum { FLAG_DONE = -1, FLAG_UNKNOWN = -2 }; /* besides exit codes >= 0 */

/* --act-order -> act_order, --no-keep-mask/--asym too: the recipe key a flag gives. */
static unsigned flag_key(const char *a) {
    if (a[0] != '-' || a[1] != '-') return 0;
    char key[32];
    snprintf(key, sizeof key, "%s",
             !strcmp(a, "--no-keep-mask") ? "keep_mask"
             : !strcmp(a, "--asym")       ? "sym"
                                          : a + 2);
    for (char *k = key; *k; k++)
        if (*k == '-') *k = '_';
    return pq_recipe_key_parse(key);
}

static int takes_value(const char *a) {
    static const char *const valued[] = {"--weight",    "--hessian", "--out",     "--prune", "--sparsity",
                                         "--pattern",   "--quant",   "--bits",    "--group", "--percdamp",
                                         "--blocksize", "--joint",   "--threads", "--error"};
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
        if (!strcmp(a, valued[i])) return 1;
    return 0;
}

/* A flag with a value: FLAG_DONE, FLAG_UNKNOWN or an exit code. */
static int layer_value_flag(const char *cmd, layer_opts *o, const char *a, const char *v) {
    pq_layer_params *p = &o->p;
    int64_t iv;
    if (!strcmp(a, "--weight")) {
        o->wpath = v;
    } else if (!strcmp(a, "--hessian")) {
        o->hpath = v;
    } else if (!strcmp(a, "--out")) {
        o->out = v;
    } else if (!strcmp(a, "--prune")) {
        if (pq_prune_method_parse(v, &p->prune))
            return cli_usage_error(cmd, "--prune: expected none|magnitude|wanda|sparsegpt, got '%s'", v);
    } else if (!strcmp(a, "--sparsity")) {
        if (cli_parse_f64(cmd, a, v, 0.0, 1.0, &p->sparsity)) return 2;
    } else if (!strcmp(a, "--pattern")) {
        o->pattern = v;
    } else if (!strcmp(a, "--quant")) {
        if (pq_quant_method_parse(v, &p->quant))
            return cli_usage_error(cmd, "--quant: expected none|rtn|gptq, got '%s'", v);
    } else if (!strcmp(a, "--bits")) {
        if (cli_parse_i64(cmd, a, v, 2, 8, &iv)) return 2;
        p->bits = (int)iv;
    } else if (!strcmp(a, "--group")) {
        if (cli_parse_i64(cmd, a, v, -1, INT64_MAX, &p->group_size)) return 2;
    } else if (!strcmp(a, "--percdamp")) {
        if (cli_parse_f64(cmd, a, v, 0.0, 100.0, &p->percdamp)) return 2;
    } else if (!strcmp(a, "--blocksize")) {
        if (cli_parse_i64(cmd, a, v, 1, 1 << 20, &p->blocksize)) return 2;
    } else if (!strcmp(a, "--joint")) {
        if (pq_joint_mode_parse(v, &p->joint))
            return cli_usage_error(cmd, "--joint: expected a|b|fused, got '%s'", v);
    } else if (!strcmp(a, "--error")) {
        if (!strcmp(v, "auto"))
            p->error_mode = PQ_ERROR_AUTO;
        else if (!strcmp(v, "direct"))
            p->error_mode = PQ_ERROR_DIRECT;
        else if (!strcmp(v, "none"))
            p->error_mode = PQ_ERROR_NONE;
        else
            return cli_usage_error(cmd, "--error: expected auto|direct|none, got '%s'", v);
    } else if (!strcmp(a, "--threads")) {
        if (cli_parse_i64(cmd, a, v, 0, 1024, &o->threads)) return 2;
    } else {
        return FLAG_UNKNOWN;
    }
    return FLAG_DONE;
}

/* A flag without a value: FLAG_DONE or FLAG_UNKNOWN. */
static int layer_switch(layer_opts *o, const char *a) {
    pq_layer_params *p = &o->p;
    if (!strcmp(a, "--sym"))
        p->sym = 1;
    else if (!strcmp(a, "--asym"))
        p->sym = 0;
    else if (!strcmp(a, "--act-order"))
        p->act_order = 1;
    else if (!strcmp(a, "--static-groups"))
        p->static_groups = 1;
    else if (!strcmp(a, "--keep-mask"))
        p->keep_mask = 1;
    else if (!strcmp(a, "--no-keep-mask"))
        p->keep_mask = 0;
    else if (!strcmp(a, "--reference"))
        p->reference = 1;
    else if (!strcmp(a, "--f32-factor"))
        p->factor_f32 = 1;
    else if (!strcmp(a, "--json"))
        o->json = 1;
    else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
        o->quiet = 1;
    else
        return FLAG_UNKNOWN;
    return FLAG_DONE;
}

/* The command line into o: FLAG_DONE, or the exit code (0 after --help). */
static int layer_parse(const char *cmd, int argc, char **argv, layer_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        o->given |= flag_key(a);
        if (takes_value(a)) {
            if (i + 1 >= argc) return cli_usage_error(cmd, "%s needs a value", a);
            v = argv[++i];
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(layer_usage, stdout);
            return 0;
        }
        int rc = v ? layer_value_flag(cmd, o, a, v) : layer_switch(o, a);
        if (rc == FLAG_UNKNOWN)
            rc = a[0] == '-' ? cli_unknown_option(cmd, a) : cli_usage_error(cmd, "unexpected argument '%s'", a);
        if (rc != FLAG_DONE) return rc;
    }
    return FLAG_DONE;
}

/* Required flags and the recipe rule of compress: FLAG_DONE or the exit code. */
static int layer_validate(const char *cmd, layer_opts *o) {
    const pq_layer_params *p = &o->p;
    if (!o->wpath) return cli_usage_error(cmd, "--weight is required");
    if (!o->out) return cli_usage_error(cmd, "--out is required");
    pq_ctx *c = pq_ctx_new(); /* keys without effect are refused */
    const int bad = !c || pq_recipe_check(c, &o->p, o->given, 1) != PQ_OK;
    if (bad)
        cli_usage_error(cmd, "%s", c ? pq_ctx_error(c) : "out of memory creating a context for the recipe check");
    pq_ctx_free(c);
    if (bad) return 2;
    if (p->prune == PQ_PRUNE_NONE && p->quant == PQ_QUANT_NONE)
        return cli_usage_error(cmd, "nothing to do: give --prune and/or --quant");
    if (!o->hpath && !(p->error_mode == PQ_ERROR_NONE && p->quant != PQ_QUANT_GPTQ && p->prune != PQ_PRUNE_WANDA &&
                       p->prune != PQ_PRUNE_SPARSEGPT))
        return cli_usage_error(cmd, "--hessian is required");
    return FLAG_DONE;
}

static void layer_print_json(const layer_opts *o, const int64_t ws[2], const char *pat, const pq_layer_result *res,
                             int threads) {
    const pq_layer_params *p = &o->p;
    const int do_prune = p->prune != PQ_PRUNE_NONE, do_quant = p->quant != PQ_QUANT_NONE;
    printf("{\"weight\": ");
    json_str(o->wpath);
    printf(", \"hessian\": ");
    if (o->hpath)
        json_str(o->hpath);
    else
        printf("null");
    printf(", \"out\": ");
    json_str(o->out);
    printf(", \"rows\": %lld, \"cols\": %lld, \"prune\": \"%s\", ", (long long)ws[0], (long long)ws[1],
           pq_prune_method_name(p->prune));
    if (do_prune && pat[0])
        printf("\"pattern\": \"%s\", \"target_sparsity\": %.10g, ", pat, (double)p->prune_n / p->prune_m);
    else
        printf("\"pattern\": null, \"target_sparsity\": %.10g, ", do_prune ? p->sparsity : 0.0);
    printf("\"quant\": \"%s\", \"bits\": %d, \"group\": %lld, \"sym\": %s, \"act_order\": %s, "
           "\"static_groups\": %s, \"joint\": \"%s\", \"reference\": %s, \"error\": ",
           pq_quant_method_name(p->quant), do_quant ? p->bits : 32, (long long)p->group_size,
           p->sym ? "true" : "false", p->act_order ? "true" : "false", p->static_groups ? "true" : "false",
           pq_joint_mode_name(p->joint), p->reference ? "true" : "false");
    json_num(res->error);
    printf(", \"error_direct\": %s, \"loss\": ", res->error_direct ? "true" : "false");
    json_num(res->loss);
    printf(", \"seconds\": %.4f, \"error_seconds\": %.4f, \"sparsity\": %.6f, \"zeros\": %.6f, \"damping\": ",
           res->seconds, res->error_seconds, res->sparsity, res->zeros);
    json_num(res->damp);
    printf(", \"percdamp\": ");
    json_num(res->percdamp);
    printf(", \"chol_retries\": %d, \"dead_cols\": %lld, \"moved_off_zero\": %lld, \"blocksize\": %lld, "
           "\"threads\": %d}\n",
           res->chol_retries, (long long)res->dead_cols, (long long)res->moved_off_zero, (long long)res->blocksize,
           threads);
}

static void layer_print_recipe(const pq_layer_params *p, const char *pat) {
    const int do_prune = p->prune != PQ_PRUNE_NONE, do_quant = p->quant != PQ_QUANT_NONE;
    printf("recipe    ");
    if (do_prune) {
        if (pat[0])
            printf("prune %s %s", pq_prune_method_name(p->prune), pat);
        else
            printf("prune %s %.4g%%", pq_prune_method_name(p->prune), 100.0 * p->sparsity);
    }
    if (do_prune && do_quant) printf(" + ");
    if (do_quant) {
        printf("quant %s %d-bit %s%s%s%s", pq_quant_method_name(p->quant), p->bits, p->sym ? "sym" : "asym",
               p->act_order ? " act-order" : "", p->static_groups ? " static-groups" : "", "");
        if (p->group_size > 0)
            printf(" g%lld", (long long)p->group_size);
        else
            printf(" per-row");
    }
    if (do_prune && do_quant) printf(", joint %s%s", pq_joint_mode_name(p->joint), p->keep_mask ? " keep-mask" : "");
    printf("%s\n", p->reference ? ", reference mode" : "");
}

static void layer_print_text(const layer_opts *o, const int64_t ws[2], const char *pat, const pq_layer_result *res,
                             int threads) {
    printf("layer     %s [%lld x %lld]%s%s\n", o->wpath, (long long)ws[0], (long long)ws[1],
           o->hpath ? ", hessian " : "", o->hpath ? o->hpath : "");
    layer_print_recipe(&o->p, pat);
    if (isfinite(res->error))
        printf("error     %.6g  (tr((W-Q) H (W-Q)^T) on the original H, %s)\n", res->error,
               res->error_direct ? "computed directly" : "from the sweep");
    if (res->loss > 0) printf("loss      %.6g  (sweep: sum (w-q)^2 / d^2 / 2)\n", res->loss);
    printf("sparsity  %.4f%%  (zeros %.4f%%)\n", 100.0 * res->sparsity, 100.0 * res->zeros);
    if (res->moved_off_zero) printf("moved     %lld pruned weights off zero\n", (long long)res->moved_off_zero);
    if (res->damp > 0)
        printf("damping   %.4g x mean(diag H) = %.6g (%d retries), %lld dead columns\n", res->percdamp, res->damp,
               res->chol_retries, (long long)res->dead_cols);
    printf("time      %.3f s (+%.3f s error), %d threads\n", res->seconds, res->error_seconds, threads);
    printf("wrote     %s\n", o->out);
}

/* Reads W (and H), compresses, writes the output and prints the result; the exit code. */
static int layer_run(const char *cmd, pq_ctx *ctx, layer_opts *o) {
    int rc = 1;
    float *W = NULL, *H = NULL; /* W [ws0, ws1], H [ws1, ws1] */
    int64_t ws[2] = {0, 0}, hs[2] = {0, 0};
    pq_layer_result res;
    if (!(W = read_matrix(cmd, ctx, o->wpath, ws))) goto done;
    if (o->hpath) {
        if (!(H = read_matrix(cmd, ctx, o->hpath, hs))) goto done;
        if (hs[0] != ws[1] || hs[1] != ws[1]) {
            fprintf(stderr,
                    "prunequant %s: %s: shape (%lld, %lld) does not match %s (%lld, %lld): expected (%lld, %lld)\n",
                    cmd, o->hpath, (long long)hs[0], (long long)hs[1], o->wpath, (long long)ws[0], (long long)ws[1],
                    (long long)ws[1], (long long)ws[1]);
            goto done;
        }
    }
    if (pq_layer_params_validate(ctx, &o->p, ws[1]) != PQ_OK) {
        rc = cli_usage_error(cmd, "%s", pq_ctx_error(ctx));
        goto done;
    }
    if (pq_layer_compress(ctx, &o->p, W, ws[0], ws[1], H, NULL, NULL, &res) != PQ_OK ||
        pq_npy_write(ctx, o->out, W, ws, 2) != PQ_OK) {
        cli_fail(cmd, ctx);
        goto done;
    }
    cli_progress_done();
    char pat[32] = "";
    if (o->p.prune_m > 0) snprintf(pat, sizeof pat, "%d:%d", o->p.prune_n, o->p.prune_m);
    if (o->json)
        layer_print_json(o, ws, pat, &res, pq_ctx_threads(ctx));
    else
        layer_print_text(o, ws, pat, &res, pq_ctx_threads(ctx));
    rc = 0;
done:
    free(W);
    free(H);
    return rc;
}

int pq_cli_layer(int argc, char **argv) {
    const char *cmd = "layer";
    layer_opts o = {.p = pq_layer_params_default()};
    o.p.quant = PQ_QUANT_NONE;
    int rc = layer_parse(cmd, argc, argv, &o);
    if (rc == FLAG_DONE) rc = layer_validate(cmd, &o);
    if (rc != FLAG_DONE) return rc;
    pq_ctx *ctx = cli_ctx_new((int)o.threads, o.quiet);
    cli_catch_signals();
    if (o.pattern && pq_pattern_parse(ctx, o.pattern, &o.p.prune_n, &o.p.prune_m) != PQ_OK)
        rc = cli_usage_error(cmd, "%s", pq_ctx_error(ctx));
    else
        rc = layer_run(cmd, ctx, &o);
    pq_ctx_free(ctx);
    return rc;
}
