/* prunequant sweep / recommend / report: grids of recipes, the results database, the
 * recommended configuration and the HTML report (library: prunequant-sweep.h). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "prunequant-eval.h"
#include "prunequant-sweep.h"

#ifdef PQ_HAVE_MPI
#include <mpi.h>
#endif

int pq_cli_sweep(int argc, char **argv);
int pq_cli_recommend(int argc, char **argv);
int pq_cli_report(int argc, char **argv);

static const char *sweep_usage =
    "usage: prunequant sweep MODEL --grid GRID.json --calib FILE --tasks LIST --db FILE.sqlite\n"
    "  [--data-dir DIR] [--limit N] [--nsamples N (32)] [--seqlen L] [--seed S (0)] [--tokenizer FILE]\n"
    "  [--resume] [--keep-models DIR] [--tcr LIST] [--threads N] [--dry-run] [--quiet | --verbose]\n"
    "GRID.json: {\"prune\": [...], \"sparsity\": [0.25, \"2:4\"], \"quant\": [...], \"bits\": [...],\n"
    "  \"group\": [...], \"sym\": [...], \"act_order\": [...], \"joint\": [\"a\", \"b\", \"fused\"]}\n"
    "--dry-run prints the run list (hash, TCr, recipe) and exits. Ctrl-C stops after cleaning up\n"
    "(the config in flight is not stored; --resume redoes it). --resume also retries failed configs.\n"
    "Exit status: 0 all done, 3 some configs failed (stored as 'failed'), 130 interrupted.\n"
#ifdef PQ_HAVE_MPI
    "MPI: yes (mpirun -np N prunequant sweep ...: configs round-robin over ranks, rank 0 writes the db)\n";
#else
    "MPI: no (built without <mpi.h>)\n";
#endif

static const char *recommend_usage =
    "usage: prunequant recommend --db FILE [--tcr X | --max-bytes N | --min-sr Y [--point]] [--json]\n"
    "  default: max SrCr; --tcr: max Sr at that TCr; --max-bytes: max Sr within the byte budget of the\n"
    "  compressed linear weights; --min-sr: the smallest config whose Sr is >= Y at the lower end of\n"
    "  its 95% interval (--point: the point estimate).\n"
    "  --json prints only the recipe (usable by 'prunequant compress --recipe').\n";

static const char *report_usage =
    "usage: prunequant report --db FILE [--out report.html] [--text] [--json]\n"
    "  --out writes the HTML report; --text prints the iso-TCr table (joint vs quantization only);\n"
    "  --json prints the runs and the iso-TCr / iso-bpw comparisons with paired bootstrap intervals.\n";

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
    /* a second Ctrl-C kills at once */
    signal(SIGINT, SIG_DFL);
}

static int stop_requested(void *user) {
    (void)user;
    return interrupted;
}

/* The stop flag, and the bar of the configs (the library also logs configs done/total with the
 * ETA after each config). */
static int log_quiet;
static int on_progress(void *user, const char *stage, int64_t done, int64_t total) {
    (void)user;
    return cli_progress(log_quiet, stage, done, total) || interrupted;
}

/* The pipeline logs every layer at info level: in a sweep of many configs only the sweep's
 * own lines (configs done/total, ETA) are shown, unless --verbose. */
static int log_verbose;

static void on_log(void *user, pq_log_level level, const char *msg) {
    (void)user;
    if (level == PQ_LOG_DEBUG && !log_verbose) return;
    if (level == PQ_LOG_INFO && (log_quiet || (!log_verbose && strncmp(msg, "sweep: ", 7)))) return;
    cli_progress_done();
    static const char *const tag[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "prunequant: %s: %s\n", tag[level], msg);
}

static const char *val(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int sweep_main(int argc, char **argv, int rank, int size);

/* Under mpirun (built with PQ_HAVE_MPI) the configs are spread over the ranks and rank 0
 * alone writes the database; a plain run is one rank. */
int pq_cli_sweep(int argc, char **argv) {
    int rank = 0, size = 1;
#ifdef PQ_HAVE_MPI
    /* MPI only when started by a launcher (mpirun / srun): a plain run stays a plain process */
    const int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
    int provided = 0;
    if (launched && MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "prunequant sweep: MPI_Init failed\n");
        return 1;
    }
    if (launched) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
#endif
    int ret = sweep_main(argc, argv, rank, size);
#ifdef PQ_HAVE_MPI
    if (launched) MPI_Finalize();
#endif
    return ret;
}

typedef struct sweep_opts {
    const char *grid_path, *db_path, *tcr_list;
    int64_t threads;
    int quiet, dry;
    pq_sweep_params p;
} sweep_opts;

enum { FLAG_DONE = -1, FLAG_UNKNOWN = -2 }; /* besides exit codes >= 0 */

/* A flag with a value: FLAG_DONE, FLAG_UNKNOWN or an exit code. */
static int sweep_value_flag(const char *cmd, int argc, char **argv, int *i, sweep_opts *o) {
    const char *a = argv[*i], *v = NULL;
    pq_sweep_params *p = &o->p;
    static const char *const names[] = {"--grid", "--calib",       "--tasks",     "--data-dir",
                                        "--db",   "--keep-models", "--tokenizer", "--tcr"};
    const char **dest[] = {&o->grid_path, &p->calib_path,  &p->tasks,          &p->data_dir,
                           &o->db_path,   &p->keep_models, &p->tokenizer_path, &o->tcr_list};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (!strcmp(a, names[k])) return (*dest[k] = val(cmd, argc, argv, i)) ? FLAG_DONE : 2;
    int64_t i64;
    if (!strcmp(a, "--limit")) {
        if (!(v = val(cmd, argc, argv, i)) || cli_parse_i64(cmd, a, v, 0, INT64_MAX, &p->limit)) return 2;
    } else if (!strcmp(a, "--nsamples")) {
        if (!(v = val(cmd, argc, argv, i)) || cli_parse_i64(cmd, a, v, 1, 1 << 20, &p->calib.nsamples)) return 2;
    } else if (!strcmp(a, "--seqlen")) {
        if (!(v = val(cmd, argc, argv, i)) || cli_parse_i64(cmd, a, v, 1, 1 << 24, &p->calib.seqlen)) return 2;
    } else if (!strcmp(a, "--seed")) {
        if (!(v = val(cmd, argc, argv, i)) || cli_parse_i64(cmd, a, v, 0, INT64_MAX, &i64)) return 2;
        p->calib.seed = (uint64_t)i64;
    } else if (!strcmp(a, "--threads")) {
        if (!(v = val(cmd, argc, argv, i)) || cli_parse_i64(cmd, a, v, 0, 1024, &o->threads)) return 2;
    } else {
        return FLAG_UNKNOWN;
    }
    return FLAG_DONE;
}

/* The command line into o: FLAG_DONE, or the exit code (0 after --help). */
static int sweep_parse(const char *cmd, int argc, char **argv, sweep_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s", sweep_usage);
            return 0;
        }
        int rc = FLAG_DONE;
        if (!strcmp(a, "--resume"))
            o->p.resume = 1;
        else if (!strcmp(a, "--dry-run"))
            o->dry = 1;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
            o->quiet = 1;
        else if (!strcmp(a, "--verbose") || !strcmp(a, "-v"))
            log_verbose = 1;
        else if ((rc = sweep_value_flag(cmd, argc, argv, &i, o)) != FLAG_UNKNOWN) {
            if (rc != FLAG_DONE) return rc;
        } else if (a[0] == '-' && a[1]) {
            return cli_unknown_option(cmd, a);
        } else if (o->p.model_path) {
            return cli_usage_error(cmd, "more than one model given");
        } else {
            o->p.model_path = a;
        }
    }
    if (!o->grid_path) return cli_usage_error(cmd, "--grid GRID.json is required");
    if (!o->dry && (!o->p.model_path || !o->p.calib_path || !o->p.tasks || !o->db_path))
        return cli_usage_error(cmd, "MODEL, --grid, --calib, --tasks and --db are required");
    return FLAG_DONE;
}

/* The grid of text[len] expanded into g and filtered by --tcr (*tcr, malloc'ed): FLAG_DONE,
 * or the exit code after a message. */
static int sweep_grid(const char *cmd, pq_ctx *ctx, sweep_opts *o, const char *text, size_t len, pq_sweep_grid *g,
                      double **tcr) {
    int64_t n_tcr = 0;
    if (pq_sweep_grid_expand(ctx, text, len, &o->p.calib, g) != PQ_OK) {
        fprintf(stderr, "prunequant %s: %s: %s\n", cmd, o->grid_path, pq_ctx_error(ctx));
        return 1;
    }
    if (o->tcr_list) {
        if (pq_sweep_parse_list(ctx, o->tcr_list, tcr, &n_tcr) != PQ_OK) {
            fprintf(stderr, "prunequant %s: --tcr: %s\n", cmd, pq_ctx_error(ctx));
            return 2;
        }
        pq_sweep_grid_filter_tcr(g, *tcr, n_tcr);
    }
    if (!o->quiet)
        fprintf(stderr, "prunequant %s: %lld configs (%lld invalid and %lld duplicate combinations dropped)\n", cmd,
                (long long)g->n, (long long)g->n_invalid, (long long)g->n_duplicate);
    return FLAG_DONE;
}

/* Opens the database (rank 0), runs every config of g with the stop flag and the logs of a
 * sweep, prints the totals: the exit code. */
static int sweep_run(const char *cmd, pq_ctx *ctx, sweep_opts *o, const pq_sweep_grid *g, int rank, int size,
                     pq_sweep_db **db) {
    int db_ok = rank != 0 || pq_sweep_db_open(ctx, o->db_path, db) == PQ_OK;
    if (!db_ok) cli_fail(cmd, ctx);
#ifdef PQ_HAVE_MPI
    /* every rank must learn that rank 0 cannot write before anyone starts working */
    if (size > 1) MPI_Bcast(&db_ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
#endif
    if (!db_ok) return 1;
    if (size > 1 && !o->quiet)
        fprintf(stderr, "prunequant %s: %d MPI ranks; rank 0 writes %s\n", cmd, size, o->db_path);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pq_ctx_set_progress(ctx, on_progress, NULL);
    log_quiet = o->quiet;
    pq_ctx_set_log(ctx, on_log, NULL);
    o->p.stop = stop_requested;
    int64_t n_done = 0, n_failed = 0;
    pq_status st = pq_sweep_execute(ctx, &o->p, g, *db, &n_done, &n_failed);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (st == PQ_ERR_CANCELLED) {
        cli_progress_done();
        fprintf(stderr, "prunequant %s: interrupted after %lld configs; rerun with --resume to go on\n", cmd,
                (long long)n_done);
        return 130;
    }
    if (st != PQ_OK) {
        cli_fail(cmd, ctx);
        return 1;
    }
    if (!o->quiet)
        fprintf(stderr, "prunequant %s: %lld done, %lld failed; results in %s\n", cmd, (long long)n_done,
                (long long)n_failed, o->db_path);
    return n_failed ? 3 : 0;
}

static int sweep_main(int argc, char **argv, int rank, int size) {
    const char *cmd = "sweep";
    sweep_opts o = {.p = pq_sweep_params_default()};
    int ret = sweep_parse(cmd, argc, argv, &o);
    if (ret != FLAG_DONE) return ret;
    char dbuf[4200];
    if (!o.p.data_dir) o.p.data_dir = cli_default_data_dir(dbuf, sizeof dbuf); /* as eval and tasks find it */
    if (rank != 0) o.quiet = 1; /* one voice: rank 0 reports for all (warnings still show) */
    size_t len;
    char *text = cli_read_file(cmd, o.grid_path, &len);
    if (!text) return 1;
    pq_ctx *ctx = cli_ctx_new((int)o.threads, o.quiet);
    pq_sweep_grid g;
    double *tcr = NULL;
    pq_sweep_db *db = NULL;
    memset(&g, 0, sizeof g);
    if ((ret = sweep_grid(cmd, ctx, &o, text, len, &g, &tcr)) != FLAG_DONE) goto done;
    ret = 1;
    if (o.dry) {
        for (int64_t i = 0; rank == 0 && i < g.n; i++)
            printf("%s %.6f %s\n", g.configs[i].hash, g.configs[i].tcr, g.configs[i].recipe);
        ret = 0;
        goto done;
    }
    if (!g.n) {
        fprintf(stderr, "prunequant %s: the grid has no valid configuration%s\n", cmd, o.tcr_list ? " at --tcr" : "");
        goto done;
    }
    /* the task list is checked before the database is created: a typo leaves nothing behind */
    pq_eval_params ep = pq_eval_params_default();
    ep.data_dir = o.p.data_dir;
    ep.limit = o.p.limit;
    if (pq_eval_tasks_check(ctx, o.p.tasks, &ep, 1) != PQ_OK) {
        fprintf(stderr, "prunequant %s: --tasks: %s\n", cmd, pq_ctx_error(ctx));
        goto done;
    }
    ret = sweep_run(cmd, ctx, &o, &g, rank, size, &db);
done:
    pq_sweep_db_close(db);
    pq_sweep_grid_free(&g);
    free(tcr);
    free(text);
    pq_ctx_free(ctx);
    return ret;
}

/* Opens and reads the whole database; returns 0 on success (prints the error otherwise). */
static int load_db(const char *cmd, pq_ctx *ctx, const char *path, pq_sweep_results *r) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "prunequant %s: %s: cannot open\n", cmd, path);
        return 1;
    }
    fclose(f);
    pq_sweep_db *db = NULL;
    if (pq_sweep_db_open(ctx, path, &db) != PQ_OK || pq_sweep_db_load(ctx, db, r) != PQ_OK) {
        pq_sweep_db_close(db);
        return cli_fail(cmd, ctx);
    }
    pq_sweep_db_close(db);
    /* paired bootstrap intervals from the stored per-item results (arithmetic only) */
    if (pq_sweep_results_intervals(ctx, r, NULL) != PQ_OK) {
        pq_sweep_results_free(r);
        return cli_fail(cmd, ctx);
    }
    return 0;
}

int pq_cli_recommend(int argc, char **argv) {
    const char *cmd = "recommend";
    const char *db_path = NULL;
    int json = 0, n_goals = 0, point = 0;
    pq_sweep_goal goal = PQ_SWEEP_BEST_SRCR;
    double value = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s", recommend_usage);
            return 0;
        }
        if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--point"))
            point = 1;
        else if (!strcmp(a, "--db")) {
            if (!(db_path = val(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--tcr") || !strcmp(a, "--max-bytes") || !strcmp(a, "--min-sr")) {
            if (!(v = val(cmd, argc, argv, &i))) return 2;
            goal = a[2] == 't' ? PQ_SWEEP_AT_TCR : a[3] == 'a' ? PQ_SWEEP_MAX_BYTES : PQ_SWEEP_MIN_SR;
            if (cli_parse_f64(cmd, a, v, 0,
                              goal == PQ_SWEEP_MAX_BYTES ? 1e18
                              : goal == PQ_SWEEP_AT_TCR  ? 1
                                                         : 100,
                              &value))
                return 2;
            n_goals++;
        } else {
            return a[0] == '-' ? cli_unknown_option(cmd, a) : cli_usage_error(cmd, "unexpected argument %s", a);
        }
    }
    if (!db_path) return cli_usage_error(cmd, "--db FILE is required");
    if (n_goals > 1) return cli_usage_error(cmd, "give at most one of --tcr, --max-bytes, --min-sr");
    if (point && goal != PQ_SWEEP_MIN_SR) return cli_usage_error(cmd, "--point goes with --min-sr");
    if (point) goal = PQ_SWEEP_MIN_SR_POINT;
    pq_ctx *ctx = cli_ctx_new(0, 1);
    pq_sweep_results r;
    memset(&r, 0, sizeof r);
    int ret = load_db(cmd, ctx, db_path, &r);
    int64_t best = -1;
    if (!ret && pq_sweep_recommend(ctx, &r, goal, value, &best) != PQ_OK) ret = cli_fail(cmd, ctx);
    if (!ret) {
        const pq_sweep_run *b = &r.runs[best];
        if (json) {
            printf("%s\n", b->recipe);
        } else {
            char ci[64] = "(no interval: no per-item results)";
            if (isfinite(b->sr_ci[0]))
                snprintf(ci, sizeof ci, "[%.4f, %.4f] (95%% paired bootstrap)", b->sr_ci[0], b->sr_ci[1]);
            printf("config  %s\nTCr     %.4f\nACr     %.4f\nbpw     %.3f\nbytes   %lld\nSr      %.4f %s\n"
                   "SrCr    %.4f  (this project's reading of the paper's metric)\nrecipe  %s\n",
                   b->hash, b->tcr, b->acr, b->bpw, (long long)b->bytes, b->sr, ci, b->srcr, b->recipe);
            for (int64_t s = 0; s < b->n_scores; s++) {
                const pq_sweep_score *sc = &b->scores[s];
                char rt[48];
                if (isfinite(sc->retention))
                    snprintf(rt, sizeof rt, "retention %.4f", sc->retention);
                else if (!strncmp(sc->task, "kld", 3))
                    snprintf(rt, sizeof rt, "a distance, not in Sr");
                else
                    snprintf(rt, sizeof rt, "retention undefined");
                printf("  %-24s %-12s %.4f (base %.4f, %s)\n", sc->task, sc->metric, sc->score, sc->base_score, rt);
            }
            /* configs that finished without an Sr are never recommended: say which and why */
            for (int64_t i = 0; i < r.n; i++)
                if (!strcmp(r.runs[i].status, "undefined"))
                    printf("not ranked: %s (Sr undefined: %s)\n", r.runs[i].hash,
                           r.runs[i].error ? r.runs[i].error : "no reason stored");
        }
    }
    pq_sweep_results_free(&r);
    pq_ctx_free(ctx);
    return ret;
}

int pq_cli_report(int argc, char **argv) {
    const char *cmd = "report";
    const char *db_path = NULL, *out = NULL;
    int text = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("%s", report_usage);
            return 0;
        }
        if (!strcmp(a, "--text")) {
            text = 1;
            continue;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--db")) {
            if (!(db_path = val(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--out")) {
            if (!(out = val(cmd, argc, argv, &i))) return 2;
        } else {
            return a[0] == '-' ? cli_unknown_option(cmd, a) : cli_usage_error(cmd, "unexpected argument %s", a);
        }
    }
    if (!db_path || (!out && !text && !json))
        return cli_usage_error(cmd, "--db FILE and --out FILE.html, --text or --json are required");
    pq_ctx *ctx = cli_ctx_new(0, 1);
    if (out) cli_catch_signals();
    pq_sweep_results r;
    memset(&r, 0, sizeof r);
    int ret = load_db(cmd, ctx, db_path, &r);
    if (!ret && out && pq_sweep_report_html(ctx, &r, out) != PQ_OK) ret = cli_fail(cmd, ctx);
    if (!ret && out) fprintf(stderr, "prunequant %s: wrote %s (%lld runs)\n", cmd, out, (long long)r.n);
    if (!ret && text) {
        char *t = pq_sweep_report_text(&r);
        if (t)
            fputs(t, stdout);
        else
            ret = cli_fail(cmd, ctx);
        free(t);
    }
    if (!ret && json) {
        char *t = pq_sweep_report_json(&r);
        if (t)
            printf("%s\n", t);
        else
            ret = cli_fail(cmd, ctx);
        free(t);
    }
    pq_sweep_results_free(&r);
    pq_ctx_free(ctx);
    return ret;
}
