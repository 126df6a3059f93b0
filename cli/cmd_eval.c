/* eval: benchmarks, KL divergence and retention metrics; tasks: list task files, make
 * cloze tasks from text. Public API only (prunequant-eval.h). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "prunequant-eval.h"

int pq_cli_eval(int argc, char **argv);
int pq_cli_tasks(int argc, char **argv);

static const char *value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static const char *fmt_num(char *b, size_t n, double v, int pct) {
    if (!isfinite(v))
        snprintf(b, n, "-");
    else if (pct)
        snprintf(b, n, "%.4f", v);
    else
        snprintf(b, n, "%.4f", v);
    return b;
}

static const char *fmt_ci(char *b, size_t n, const double ci[2]) {
    if (!isfinite(ci[0]) || !isfinite(ci[1]))
        snprintf(b, n, "-");
    else
        snprintf(b, n, "[%.4f, %.4f]", ci[0], ci[1]);
    return b;
}

static void print_report(const pq_eval_report *r, const char *data_dir) {
    printf("model: %s\n", r->model);
    if (r->base[0]) printf("base:  %s\n", r->base);
    if (data_dir) printf("data:  %s\n", data_dir);
    printf("\n%-28s %-11s %9s %9s %9s %9s %-17s %9s %7s\n", "task", "metric", "score", "stderr", "base", "retention",
           "95% interval", "ret_norm", "n");
    for (int64_t i = 0; i < r->n_tasks; i++) {
        const pq_task_result *t = &r->tasks[i];
        char a[32], b[32], c[32], d[32], e[32], f[48];
        printf("%-28s %-11s %9s %9s %9s %9s %-17s %9s %7lld\n", t->name, t->metric, fmt_num(a, sizeof a, t->score, 0),
               fmt_num(b, sizeof b, t->se, 0), t->has_base ? fmt_num(c, sizeof c, t->base_score, 0) : "-",
               fmt_num(d, sizeof d, t->retention, 0), fmt_ci(f, sizeof f, t->retention_ci),
               fmt_num(e, sizeof e, t->retention_norm, 0), (long long)t->n);
        if (t->metric2[0])
            printf("%-28s %-11s %9s %9s %9s\n", "", t->metric2, fmt_num(a, sizeof a, t->score2, 0),
                   fmt_num(b, sizeof b, t->se2, 0), t->has_base ? fmt_num(c, sizeof c, t->base_score2, 0) : "-");
    }
    if (r->n_tasks) printf("\nprotocols and files:\n");
    for (int64_t i = 0; i < r->n_tasks; i++) {
        const pq_task_result *t = &r->tasks[i];
        printf("  %s: %s%s\n    file %s\n", t->name, t->protocol, t->base_cached ? " (base result from cache)" : "",
               t->file);
        if (t->seconds > 0)
            printf("    %lld %s in %.2f s: %.1f %s/s\n", (long long)t->n, t->metric[0] == 'p' ? "tokens" : "items",
                   t->seconds, (double)t->n / t->seconds, t->metric[0] == 'p' ? "tokens" : "items");
    }
    if (r->has_kld) {
        const pq_kld_result *k = &r->kld;
        printf("\nKL divergence to base (%s, %lld tokens in %lld windows)\n", k->file, (long long)k->n_tokens,
               (long long)k->n_windows);
        printf("  mean KLD      %.6f +/- %.6f  95%% interval [%.6f, %.6f] (bootstrap, windows as blocks)\n", k->mean,
               k->se, k->mean_ci[0], k->mean_ci[1]);
        printf("  percentiles   99.9%% %.6f  99%% %.6f  95%% %.6f  90%% %.6f  median %.6f  10%% %.6f  5%% %.6f  1%% "
               "%.6f\n",
               k->p999, k->p99, k->p95, k->p90, k->median, k->p10, k->p05, k->p01);
        printf("  same top      %.4f%% +/- %.4f%%\n", 100 * k->same_top, 100 * k->same_top_se);
        printf("  delta p       mean %.6f +/- %.6f  rms %.6f  99%% %.6f  median %.6f  1%% %.6f\n", k->dp_mean,
               k->dp_se, k->dp_rms, k->dp_p99, k->dp_median, k->dp_p01);
        printf("  ppl           base %.4f  model %.4f  ln(ratio) %.6f +/- %.6f\n", k->ppl_base, k->ppl_model,
               k->ln_ppl_ratio, k->ln_ppl_ratio_se);
        printf("  protocol      %s\n", k->protocol);
        if (k->seconds > 0)
            printf("  throughput    %lld tokens in %.2f s: %.0f tokens/s (base and model forward passes)\n",
                   (long long)k->n_tokens, k->seconds, (double)k->n_tokens / k->seconds);
    }
    const pq_metrics *m = &r->metrics;
    char a[32], b[32], c[32], d[32], acr[32];
    /* ACr < 0: stored wider than f16 (a dense f32 model): nothing compressed, shown as "-" */
    fmt_num(acr, sizeof acr, m->acr >= 0 ? m->acr : NAN, 0);
    printf("\nmetrics: sparsity %.4f  bits %g  (stored %.2f bits/weight)  TCr %.4f  ACr %s  bpw %.3f\n", m->sparsity,
           m->bits, m->stored_bits, m->tcr, acr, m->bpw);
    char ci[48], method[160];
    pq_bootstrap_describe(NULL, method, sizeof method);
    printf("         Sr %s %s (over %d tasks)  Sr_norm %s  SrCr %s  Sr*TCr %s\n", fmt_num(a, sizeof a, m->sr, 0),
           fmt_ci(ci, sizeof ci, m->sr_ci), m->n_retention, fmt_num(b, sizeof b, m->sr_norm, 0),
           fmt_num(c, sizeof c, m->srcr, 0), fmt_num(d, sizeof d, m->sr_tcr, 0));
    if (r->base[0]) printf("         intervals: %s\n", method);
    printf("         (SrCr = Sr / (sqrt(1-s) * log2(q)/log2(16)) is this project's reading of the paper)\n");
}

static int write_sample(void *user, const char *line) {
    return fprintf((FILE *)user, "%s\n", line) < 0;
}

static void eval_usage(FILE *f) {
    fprintf(f, "usage: prunequant eval MODEL --tasks LIST [--tokenizer FILE] [--base BASE [--base-tokenizer FILE]]\n"
               "         [--data-dir DIR] [--limit N] [--shots K] [--seed S] [--json FILE] [--threads N]\n"
               "         [--cache-dir DIR | --no-cache] [--ctx N] [--protocol gptq|llamacpp] [--max-gen N]\n"
               "         [--normalize chance|none]  (chance: Sr from chance-normalised retentions of MC tasks)\n"
               "         [--log-samples FILE.jsonl]  (per item: prompt, choices, log-likelihoods, prediction, gold)\n"
               "         [--sparsity S] [--bits Q] [--quiet]\n"
               "tasks (comma-separated): ppl:FILE kld:FILE (needs --base) lambada arc_easy arc_challenge piqa\n"
               "  hellaswag winogrande boolq mmlu mmlu_pro gsm8k math bbh bbh:NAME mc:FILE.jsonl gen:FILE.jsonl\n"
               "--limit: items per task (per subject for mmlu/bbh; windows for ppl/kld). --shots: k-shot for every\n"
               "task (default: the task's own, 0 for most; gsm8k 5, math 4). --sparsity/--bits declare the\n"
               "compression for TCr/SrCr (default: measured zeros, 16 bits). --json - writes JSON to stdout.\n");
}

static pq_model *load(const char *cmd, pq_ctx *ctx, const char *path, const char *tok) {
    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = tok;
    pq_model *m = NULL;
    if (pq_model_load(ctx, path, &lp, &m) != PQ_OK) {
        cli_fail(cmd, ctx);
        return NULL;
    }
    return m;
}

typedef struct eval_opts {
    const char *model_path, *tok, *base_path, *base_tok, *tasks, *json, *samples_path, *data_dir, *cache_dir;
    int no_cache, quiet;
    int64_t threads;
    pq_eval_params p;
    pq_compress_info ci;
} eval_opts;

enum { FLAG_DONE = -1, FLAG_UNKNOWN = -2 }; /* besides exit codes >= 0 */

/* A flag naming a file, folder or list: FLAG_DONE, FLAG_UNKNOWN or an exit code. */
static int eval_path_flag(const char *cmd, int argc, char **argv, int *i, eval_opts *o) {
    const char *a = argv[*i];
    static const char *const names[] = {"--tokenizer", "--base",      "--base-tokenizer", "--tasks",
                                        "--data-dir",  "--cache-dir", "--json",           "--log-samples"};
    const char **dest[] = {&o->tok,      &o->base_path, &o->base_tok, &o->tasks,
                           &o->data_dir, &o->cache_dir, &o->json,     &o->samples_path};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (!strcmp(a, names[k])) return (*dest[k] = value(cmd, argc, argv, i)) ? FLAG_DONE : 2;
    return FLAG_UNKNOWN;
}

/* A flag with a number or a choice: FLAG_DONE, FLAG_UNKNOWN or an exit code. */
static int eval_number_flag(const char *cmd, int argc, char **argv, int *i, eval_opts *o) {
    const char *a = argv[*i], *v;
    pq_eval_params *p = &o->p;
    int64_t k;
    double x;
    if (strcmp(a, "--normalize") && strcmp(a, "--limit") && strcmp(a, "--shots") && strcmp(a, "--seed") &&
        strcmp(a, "--threads") && strcmp(a, "--ctx") && strcmp(a, "--max-gen") && strcmp(a, "--protocol") &&
        strcmp(a, "--sparsity") && strcmp(a, "--bits"))
        return FLAG_UNKNOWN;
    if (!(v = value(cmd, argc, argv, i))) return 2;
    if (!strcmp(a, "--normalize")) {
        if (strcmp(v, "chance") && strcmp(v, "none"))
            return cli_usage_error(cmd, "--normalize: chance or none (got '%s')", v);
        p->normalize_chance = !strcmp(v, "chance");
    } else if (!strcmp(a, "--limit")) {
        if (cli_parse_i64(cmd, a, v, 0, INT64_MAX, &p->limit)) return 2;
    } else if (!strcmp(a, "--shots")) {
        if (cli_parse_i64(cmd, a, v, 0, 64, &k)) return 2;
        p->shots = (int)k;
    } else if (!strcmp(a, "--seed")) {
        if (cli_parse_i64(cmd, a, v, 0, INT64_MAX, &k)) return 2;
        p->seed = (uint64_t)k;
    } else if (!strcmp(a, "--threads")) {
        if (cli_parse_i64(cmd, a, v, 0, 1024, &o->threads)) return 2;
    } else if (!strcmp(a, "--ctx")) {
        if (cli_parse_i64(cmd, a, v, 2, 1 << 20, &p->ctx)) return 2;
    } else if (!strcmp(a, "--max-gen")) {
        if (cli_parse_i64(cmd, a, v, 1, 1 << 20, &p->gen_max_tokens)) return 2;
    } else if (!strcmp(a, "--protocol")) {
        if (!strcmp(v, "gptq"))
            p->ppl_protocol = PQ_PPL_GPTQ;
        else if (!strcmp(v, "llamacpp"))
            p->ppl_protocol = PQ_PPL_LLAMACPP;
        else
            return cli_usage_error(cmd, "--protocol: expected gptq or llamacpp, got '%s'", v);
    } else if (!strcmp(a, "--sparsity")) {
        if (cli_parse_f64(cmd, a, v, 0, 0.999999, &x)) return 2;
        o->ci.sparsity = x;
    } else { /* --bits */
        if (cli_parse_f64(cmd, a, v, 1, 32, &x)) return 2;
        o->ci.bits = x;
    }
    return FLAG_DONE;
}

/* The command line into o: FLAG_DONE, or the exit code (0 after --help). */
static int eval_parse(const char *cmd, int argc, char **argv, eval_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            eval_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-cache")) {
            o->no_cache = 1;
            continue;
        }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o->quiet = 1;
            continue;
        }
        int rc = eval_path_flag(cmd, argc, argv, &i, o);
        if (rc == FLAG_UNKNOWN) rc = eval_number_flag(cmd, argc, argv, &i, o);
        if (rc != FLAG_UNKNOWN) {
            if (rc != FLAG_DONE) return rc;
        } else if (a[0] == '-' && a[1]) {
            return cli_unknown_option(cmd, a);
        } else if (o->model_path) {
            return cli_usage_error(cmd, "more than one model given");
        } else {
            o->model_path = a;
        }
    }
    if (!o->model_path) return cli_usage_error(cmd, "no MODEL given");
    if (!o->tasks) return cli_usage_error(cmd, "--tasks LIST is required");
    if (o->base_tok && !o->base_path) return cli_usage_error(cmd, "--base-tokenizer needs --base");
    return FLAG_DONE;
}

/* The report on stdout (and --json FILE): 0, or 1 after a message. */
static int eval_output(const char *cmd, pq_ctx *ctx, const eval_opts *o, const pq_eval_report *r) {
    if (o->json && !strcmp(o->json, "-")) {
        char *s = pq_eval_report_json(r);
        if (s) printf("%s\n", s);
        free(s);
        return 0;
    }
    print_report(r, o->p.data_dir);
    if (o->json && pq_eval_report_write_json(ctx, r, o->json) != PQ_OK) {
        cli_fail(cmd, ctx);
        return 1;
    }
    return 0;
}

/* Loads the model(s), runs the tasks, writes --log-samples and the report: the exit code. */
static int eval_run(const char *cmd, pq_ctx *ctx, eval_opts *o) {
    /* --log-samples FILE.jsonl: written under a temporary name, renamed when the run succeeds */
    char samples_tmp[4200];
    FILE *sf = NULL;
    if (o->samples_path) {
        snprintf(samples_tmp, sizeof samples_tmp, "%s.tmp.%ld", o->samples_path, (long)getpid());
        if (!(sf = fopen(samples_tmp, "w"))) {
            fprintf(stderr, "prunequant %s: --log-samples %s: cannot create: %s\n", cmd, o->samples_path,
                    strerror(errno));
            return 1;
        }
        o->p.on_sample = write_sample;
        o->p.sample_user = sf;
    }
    pq_model *m = load(cmd, ctx, o->model_path, o->tok), *b = NULL;
    int rc = 1;
    pq_eval_report *r = NULL;
    if (!m) goto out;
    if (o->base_path && !(b = load(cmd, ctx, o->base_path, o->base_tok ? o->base_tok : o->tok))) goto out;
    if (pq_eval_run(ctx, m, o->model_path, b, o->base_path, o->tasks, &o->p, &o->ci, &r) != PQ_OK) {
        cli_fail(cmd, ctx);
        goto out;
    }
    if (sf) {
        const int bad = fclose(sf) != 0;
        sf = NULL;
        if (bad || rename(samples_tmp, o->samples_path) != 0) {
            fprintf(stderr, "prunequant %s: --log-samples %s: cannot write: %s\n", cmd, o->samples_path,
                    strerror(errno));
            goto out;
        }
    }
    cli_progress_done();
    rc = eval_output(cmd, ctx, o, r);
out:
    if (sf) { /* failed or interrupted: nothing is left */
        fclose(sf);
        unlink(samples_tmp);
    }
    pq_eval_report_free(r);
    pq_model_free(b);
    pq_model_free(m);
    return rc;
}

int pq_cli_eval(int argc, char **argv) {
    const char *cmd = "eval";
    eval_opts o = {.p = pq_eval_params_default(), .ci = pq_compress_info_default()};
    const int rc = eval_parse(cmd, argc, argv, &o);
    if (rc != FLAG_DONE) return rc;
    char dbuf[PATH_MAX + 32], cbuf[PATH_MAX + 32];
    o.p.data_dir = o.data_dir ? o.data_dir : cli_default_data_dir(dbuf, sizeof dbuf);
    o.p.cache_dir = o.no_cache ? NULL : o.cache_dir ? o.cache_dir : cli_default_cache_dir(cbuf, sizeof cbuf);
    if (o.cache_dir && !o.no_cache && !cli_is_dir(o.cache_dir) && mkdir(o.cache_dir, 0755) != 0)
        fprintf(stderr, "prunequant eval: warning: cannot create cache folder %s: %s\n", o.cache_dir,
                strerror(errno));
    pq_ctx *ctx = cli_ctx_new((int)o.threads, o.quiet);
    if ((o.json && strcmp(o.json, "-")) || o.samples_path) cli_catch_signals(); /* writes FILE */
    const int ret = eval_run(cmd, ctx, &o);
    pq_ctx_free(ctx);
    return ret;
}

/* ---------------------------------------------------------------- tasks */

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_one(pq_ctx *ctx, const char *name, const pq_eval_params *p) {
    int64_t n = 0;
    char file[1024];
    if (pq_eval_task_count(ctx, name, p, &n, file, sizeof file) != PQ_OK) {
        printf("%-44s %8s  error: %s\n", name, "-", pq_ctx_error(ctx));
        return 1;
    }
    const char *d = pq_eval_task_description(name);
    printf("%-44s %8lld  %s\n", name, (long long)n, file);
    if (d && strncmp(name, "bbh:", 4)) printf("%-44s %8s  %s\n", "", "", d);
    return 0;
}

static int tasks_list(int argc, char **argv) {
    const char *cmd = "tasks list", *data_dir = NULL, *cache_dir = NULL, *v;
    pq_eval_params p = pq_eval_params_default();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--data-dir")) {
            if (!(data_dir = value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--cache-dir")) {
            if (!(cache_dir = value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--limit")) {
            if (!(v = value(cmd, argc, argv, &i)) || cli_parse_i64(cmd, a, v, 0, INT64_MAX, &p.limit)) return 2;
        } else {
            return a[0] == '-' ? cli_unknown_option(cmd, a) : cli_usage_error(cmd, "unexpected argument %s", a);
        }
    }
    char dbuf[PATH_MAX + 32], cbuf[PATH_MAX + 32];
    p.data_dir = data_dir ? data_dir : cli_default_data_dir(dbuf, sizeof dbuf);
    p.cache_dir = cache_dir ? cache_dir : cli_default_cache_dir(cbuf, sizeof cbuf);
    if (!p.data_dir) {
        fprintf(stderr, "prunequant tasks list: no data folder found (give --data-dir)\n");
        return 1;
    }
    printf("data: %s\n%-44s %8s  %s\n", p.data_dir, "task", "items", "file");
    pq_ctx *ctx = cli_ctx_new(1, 1);
    int bad = 0;
    for (const char *const *t = pq_eval_task_names(); *t; t++)
        bad += list_one(ctx, *t, &p);
    /* every bbh subtask */
    char dir[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/tasks/bbh", p.data_dir);
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t nn = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l <= 5 || strcmp(e->d_name + l - 5, ".json")) continue;
            char **q = realloc(names, (nn + 1) * sizeof *q);
            if (!q) break;
            names = q;
            names[nn] = malloc(l + 5);
            if (names[nn]) snprintf(names[nn++], l + 5, "bbh:%.*s", (int)(l - 5), e->d_name);
        }
        closedir(d);
    }
    if (nn) qsort(names, nn, sizeof *names, cmp_name);
    for (size_t i = 0; i < nn; i++) {
        bad += list_one(ctx, names[i], &p);
        free(names[i]);
    }
    free(names);
    printf("also: ppl:FILE kld:FILE (text files, e.g. text/wikitext-2-raw/wiki.test.raw), mc:FILE.jsonl, "
           "gen:FILE.jsonl\n");
    pq_ctx_free(ctx);
    return bad ? 1 : 0;
}

static int tasks_make_cloze(int argc, char **argv) {
    const char *cmd = "tasks make-cloze", *text = NULL, *out = NULL, *v;
    pq_cloze_params cp = pq_cloze_params_default();
    int64_t k;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--out")) {
            if (!(out = value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--choices")) {
            if (!(v = value(cmd, argc, argv, &i)) || cli_parse_i64(cmd, a, v, 2, 26, &k)) return 2;
            cp.n_choices = (int)k;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = value(cmd, argc, argv, &i)) || cli_parse_i64(cmd, a, v, 0, INT64_MAX, &k)) return 2;
            cp.seed = (uint64_t)k;
        } else if (!strcmp(a, "--limit")) {
            if (!(v = value(cmd, argc, argv, &i)) || cli_parse_i64(cmd, a, v, 0, INT64_MAX, &cp.limit)) return 2;
        } else if (a[0] == '-' && a[1]) {
            return cli_unknown_option(cmd, a);
        } else if (text) {
            return cli_usage_error(cmd, "more than one TEXT given");
        } else {
            text = a;
        }
    }
    if (!text || !out)
        return cli_usage_error(cmd, "usage: TEXT --out FILE.jsonl [--choices K] [--seed S] [--limit N]");
    pq_ctx *ctx = cli_ctx_new(1, 0);
    cli_catch_signals();
    int64_t n = 0;
    int rc = 0;
    if (pq_tasks_make_cloze(ctx, text, out, &cp, &n) != PQ_OK)
        rc = cli_fail(cmd, ctx);
    else
        printf("wrote %lld items (%d choices, seed %llu) to %s\n", (long long)n, cp.n_choices,
               (unsigned long long)cp.seed, out);
    pq_ctx_free(ctx);
    return rc;
}

int pq_cli_tasks(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: prunequant tasks list [--data-dir DIR] [--cache-dir DIR] [--limit N]\n"
                   "       prunequant tasks make-cloze TEXT --out FILE.jsonl [--choices K] [--seed S] [--limit N]\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "list")) return tasks_list(argc, argv);
    if (!strcmp(argv[1], "make-cloze")) return tasks_make_cloze(argc, argv);
    return cli_usage_error("tasks", "unknown subcommand '%s' (list, make-cloze)", argv[1]);
}
