/* Running a sweep: base model evaluated once, then per config compress -> reload -> measure
 * -> evaluate against the base -> store. Every number stored comes from the pipeline and
 * evaluation APIs; a config that fails is stored as 'failed' with its message. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "prunequant-alloc.h"
#include "prunequant-eval.h"
#include "prunequant-pipeline.h"
#include "prunequant-sweep.h"
#include "recipe/recipe.h"
#include "sweep/sweep_mpi.h"

pq_sweep_params pq_sweep_params_default(void) {
    pq_sweep_params p;
    memset(&p, 0, sizeof p);
    p.calib = pq_sweep_calib_default();
    return p;
}

/* sc holds rep->n_tasks + 2 entries: the tasks, then the KLD (mean and same-top rate, no
 * retention: they are distances to the base, not scores, and stay out of Sr). */
static void fill_scores(pq_sweep_run *run, pq_eval_report *rep, pq_sweep_score *sc, int base) {
    run->scores = sc;
    run->n_scores = rep->n_tasks;
    if (rep->has_kld) {
        const pq_kld_result *k = &rep->kld;
        const char *f = strrchr(k->file, '/') ? strrchr(k->file, '/') + 1 : k->file;
        for (int j = 0; j < 2; j++) {
            pq_sweep_score *s = &sc[rep->n_tasks + j];
            memset(s, 0, sizeof *s);
            snprintf(s->task, sizeof s->task, "%s:%.80s", j ? "kld_same_top" : "kld", f);
            snprintf(s->metric, sizeof s->metric, "%s", j ? "same_top" : "kld_mean");
            s->score = j ? k->same_top : k->mean;
            s->se = j ? k->same_top_se : k->se;
            s->base_score = j ? 1.0 : 0.0;
            s->retention = NAN;
            if (!j) { /* the windows' KLD, for paired comparisons of runs (allocated vs uniform) */
                s->units = rep->kld.units;
                memset(&rep->kld.units, 0, sizeof rep->kld.units);
            }
        }
        run->n_scores += 2;
    }
    for (int64_t i = 0; i < rep->n_tasks; i++) {
        const pq_task_result *t = &rep->tasks[i];
        memset(&sc[i], 0, sizeof sc[i]);
        snprintf(sc[i].task, sizeof sc[i].task, "%s", t->name);
        snprintf(sc[i].metric, sizeof sc[i].metric, "%s", t->metric);
        sc[i].score = t->score;
        sc[i].se = t->se;
        sc[i].base_score = base ? t->score : t->has_base ? t->base_score : NAN;
        sc[i].retention = base ? 1.0 : t->retention;
        sc[i].higher_is_better = t->higher_is_better;
        sc[i].retention_ci[0] = sc[i].retention_ci[1] = NAN;
        /* the units move to the score (the report is freed before the run is stored) */
        sc[i].units = rep->tasks[i].units;
        memset(&rep->tasks[i].units, 0, sizeof rep->tasks[i].units);
    }
}

/* A resumed sweep must measure the same thing as the runs already stored. */
static pq_status check_meta(pq_ctx *ctx, pq_sweep_db *db, const char *key, const char *value, int resume) {
    char *old = NULL;
    pq_status st = pq_sweep_db_meta_get(ctx, db, key, &old);
    if (st != PQ_OK) return st;
    if (old && strcmp(old, value))
        st = pq__fail(ctx, PQ_ERR_INVALID, "the database was made with %s '%s', not '%s'; use another --db", key, old,
                      value);
    else if (!old)
        st = pq_sweep_db_meta_set(ctx, db, key, value);
    free(old);
    (void)resume;
    return st;
}

/* The task list of the base model: kld tasks compare a model with the base, so there is
 * nothing to measure for the base itself. */
static pq_status base_tasks(pq_ctx *ctx, const char *tasks, pq__buf *out) {
    char *list = pq__strdup(ctx, tasks, "the task list");
    if (!list) return ctx->status;
    pq_status st = PQ_OK;
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t && st == PQ_OK; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (!*t || !strncmp(t, "kld:", 4)) continue;
        st = pq__buf_printf(ctx, out, "the base model's task list", "%s%s", out->len ? "," : "", t);
    }
    free(list);
    return st;
}

/* The protocol of every number goes with the numbers. */
static pq_status base_protocol(pq_ctx *ctx, const pq_sweep_params *p, const pq_model *base, const pq_eval_report *rep,
                               pq__buf *proto) {
    const char *what = "the sweep protocol";
    pq_status st =
        pq__buf_printf(ctx, proto, what, "limit %lld; calibration %lld windows x %lld tokens, seed %llu",
                       (long long)p->limit, (long long)p->calib.nsamples,
                       (long long)(p->calib.seqlen > 0 ? p->calib.seqlen : pq_compress_default_seqlen(base)),
                       (unsigned long long)p->calib.seed);
    for (int64_t i = 0; i < rep->n_tasks && st == PQ_OK; i++)
        st = pq__buf_printf(ctx, proto, what, "; %s: %s", rep->tasks[i].name, rep->tasks[i].protocol);
    return st;
}

/* Stores the base model's scores and the protocol (row "base"). */
static pq_status store_base(pq_ctx *ctx, const pq_sweep_params *p, const pq_model *base, pq_eval_report *rep,
                            double seconds, pq_sweep_db *db) {
    pq_sweep_score *sc = pq__calloc(ctx, (size_t)(rep->n_tasks + 2), sizeof *sc, "scores");
    if (!sc) return ctx->status;
    pq__buf proto = {0};
    pq_status st = base_protocol(ctx, p, base, rep, &proto);
    if (st != PQ_OK) {
        free(sc);
        return st;
    }
    pq_sweep_run run;
    memset(&run, 0, sizeof run);
    snprintf(run.hash, sizeof run.hash, "base");
    run.recipe = (char *)"{}";
    snprintf(run.status, sizeof run.status, "done");
    run.bits = 16;
    run.sr = 1;
    run.srcr = 1;
    run.acr = 0;
    run.bpw = 16;
    run.seconds = seconds;
    fill_scores(&run, rep, sc, 1);
    st = pq_sweep_db_meta_set(ctx, db, "protocol", proto.data);
    if (st == PQ_OK) st = pq_sweep_db_put(ctx, db, &run);
    pq__buf_free(&proto);
    pq_sweep_scores_free(sc, run.n_scores);
    return st;
}

static pq_status eval_base(pq_ctx *ctx, const pq_sweep_params *p, const pq_model *base, const pq_eval_params *ep,
                           pq_sweep_db *db) {
    char status[12];
    pq_status st = pq_sweep_db_status(ctx, db, "base", status);
    if (st != PQ_OK || !strcmp(status, "done")) return st;
    pq__log(ctx, PQ_LOG_INFO, "sweep: evaluating the base model on %s", p->tasks);
    double t0 = pq__now();
    pq_eval_report *rep = NULL;
    pq_compress_info ci = pq_compress_info_default();
    ci.sparsity = 0;
    ci.bits = 16;
    pq__buf tasks = {0};
    st = base_tasks(ctx, p->tasks, &tasks);
    if (st == PQ_OK)
        st = tasks.len
                 ? pq_eval_run(ctx, base, p->model_path, NULL, NULL, tasks.data, ep, &ci, &rep)
                 : pq__fail(ctx, PQ_ERR_INVALID, "sweep: --tasks has no task besides kld (Sr needs at least one)");
    pq__buf_free(&tasks);
    if (st == PQ_OK) st = store_base(ctx, p, base, rep, pq__now() - t0, db);
    pq_eval_report_free(rep);
    return st;
}

/* The compress parameters of recipe layer with the sweep's calibration. */
static pq_compress_params calib_params(const pq_sweep_params *p, const pq_layer_params *layer) {
    pq_compress_params cp = pq_compress_params_default();
    cp.layer = *layer;
    cp.nsamples = p->calib.nsamples;
    cp.seqlen = p->calib.seqlen;
    cp.seed = p->calib.seed;
    cp.calib_name = p->calib_path;
    return cp;
}

/* Reloads the compressed model in dir, measures its bytes, evaluates it against the base. */
static pq_status measure(pq_ctx *ctx, const pq_sweep_params *p, const pq_model *base, const pq_eval_params *ep,
                         double sparsity, double bits, const char *dir, pq_sweep_run *run) {
    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = p->tokenizer_path;
    pq_model *m = NULL;
    pq_sparsity_report sr;
    memset(&sr, 0, sizeof sr);
    pq_eval_report *rep = NULL;
    pq_status st = pq_model_load(ctx, dir, &lp, &m);
    if (st == PQ_OK) st = pq_model_sparsity(ctx, m, &sr);
    if (st == PQ_OK) {
        int64_t bytes = 0;
        for (int64_t i = 0; i < sr.n_layers; i++)
            bytes += sr.layers[i].bytes;
        run->acr = sr.acr;
        run->bpw = sr.bpw;
        run->bytes = bytes;
        pq_compress_info ci = pq_compress_info_default();
        ci.sparsity = sparsity;
        ci.bits = bits;
        ci.linear_bytes = (size_t)bytes;
        st = pq_eval_run(ctx, m, dir, base, p->model_path, p->tasks, ep, &ci, &rep);
    }
    if (st == PQ_OK) {
        pq_sweep_score *sc = pq__calloc(ctx, (size_t)(rep->n_tasks + 2), sizeof *sc, "scores");
        if (!sc)
            st = ctx->status;
        else
            fill_scores(run, rep, sc, 0);
        run->sr = rep->metrics.sr;
        run->srcr = pq_metrics_srcr(run->sr, sparsity, bits);
    }
    pq_eval_report_free(rep);
    pq_sparsity_report_free(&sr);
    pq_model_free(m);
    return st;
}

/* Compresses with cp into dir (its per-linear report goes with the run: the report's heat
 * map), then measures. Fills run (scores malloc'ed). */
static pq_status compress_measure(pq_ctx *ctx, const pq_sweep_params *p, const pq_model *base, const int32_t *ids,
                                  int64_t n_ids, const pq_eval_params *ep, pq_compress_params *cp, double sparsity,
                                  double bits, const char *dir, pq_sweep_run *run) {
    pq__buf lpath = {0};
    pq_status st = pq__buf_printf(ctx, &lpath, "the path of the per-linear report", "%s.layers.jsonl", dir);
    if (st != PQ_OK) return st;
    cp->report = lpath.data;
    st = pq_compress_model(ctx, base, ids, n_ids, cp, dir);
    if (st == PQ_OK) {
        size_t n = 0;
        pq_ctx quiet; /* a run without its layer table is still a run */
        pq__quiet_begin(ctx, &quiet);
        if (pq__read_text(&quiet, lpath.data, (size_t)1 << 26, &run->layers, &n) != PQ_OK) run->layers = NULL;
    }
    unlink(lpath.data);
    pq__buf_free(&lpath);
    cp->report = NULL;
    return st == PQ_OK ? measure(ctx, p, base, ep, sparsity, bits, dir, run) : st;
}

/* One config: compress into dir, reload, measure, evaluate. Fills run (scores malloc'ed). */
static pq_status run_one(pq_ctx *ctx, const pq_sweep_params *p, const pq_model *base, const int32_t *ids,
                         int64_t n_ids, const pq_eval_params *ep, const pq_sweep_config *c, const char *dir,
                         pq_sweep_run *run) {
    pq_compress_params cp = calib_params(p, &c->layer);
    return compress_measure(ctx, p, base, ids, n_ids, ep, &cp, c->sparsity, c->bits, dir, run);
}

/* The parameter-weighted sparsity and bits (of the kept weights) of an allocation, so that
 * 1 - (1 - s) q / 16 is its parameter-weighted TCr (as compress declares it). */
static void alloc_metrics(const pq_alloc_result *r, double *sparsity, double *bits) {
    double n_all = 0, pruned = 0, kept = 0, kept_bits = 0;
    for (int64_t k = 0; k < r->n_linears; k++) {
        const pq_layer_params *c = &r->candidates[r->linears[k].choice];
        const double n = (double)(r->linears[k].rows * r->linears[k].cols), sp = pq__recipe_sparsity(c);
        n_all += n, pruned += n * sp, kept += n * (1 - sp), kept_bits += n * (1 - sp) * pq__recipe_bits(c);
    }
    *sparsity = n_all > 0 ? pruned / n_all : 0;
    *bits = kept > 0 ? kept_bits / kept : 16;
}

/* The recipe on one line, as the database keeps every recipe (json is freed; NULL stays NULL). */
static char *compact(char *json) {
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    free(json);
    return s;
}

/* An allocated config: pq_allocate with config c's methods at budget bytes, compressed with the
 * recipe it makes (run->recipe, malloc'ed), measured as run_one. */
static pq_status run_allocated(pq_ctx *ctx, const pq_sweep_params *p, const pq_model *base, const int32_t *ids,
                               int64_t n_ids, const pq_eval_params *ep, const pq_sweep_config *c, int64_t budget,
                               const char *dir, pq_sweep_run *run) {
    pq_alloc_params ap = pq_alloc_params_default();
    const pq_joint_mode joint = ap.compress.layer.joint;
    ap.compress = calib_params(p, &c->layer);
    /* the config's methods; its joint mode only when it is joint (else the allocator's default) */
    if (c->layer.prune == PQ_PRUNE_NONE || c->layer.quant == PQ_QUANT_NONE) ap.compress.layer.joint = joint;
    ap.candidates = c->alloc_candidates;
    ap.budget_bytes = budget;
    pq_alloc_result *r = NULL;
    pq_recipe_overrides ov = {0};
    pq_compress_params cp;
    pq_status st = pq_allocate(ctx, base, ids, n_ids, &ap, &r);
    if (st == PQ_OK) st = pq_alloc_compress_params(ctx, r, &ap, &cp, &ov);
    if (st == PQ_OK && !(run->recipe = compact(pq_alloc_recipe_json(r, &ap))))
        st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory printing the allocated recipe");
    if (st == PQ_OK) {
        alloc_metrics(r, &run->sparsity, &run->bits);
        run->tcr = pq_metrics_tcr(run->sparsity, run->bits);
        pq__log(ctx, PQ_LOG_INFO, "sweep: allocated %lld bytes of %lld (damage %.4g, gap at most %.3g%%)",
                (long long)r->total_bytes, (long long)budget, r->total_damage,
                r->total_damage > 0 ? 100 * (r->total_damage - r->lower_bound) / r->total_damage : 0.0);
        st = compress_measure(ctx, p, base, ids, n_ids, ep, &cp, run->sparsity, run->bits, dir, run);
    }
    pq_recipe_overrides_free(&ov);
    pq_alloc_result_free(r);
    return st;
}

/* Why a finished run has no Sr: the tasks whose retention is undefined, with their scores. */
static void undefined_reason(const pq_sweep_run *run, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "no task has a finite retention");
    const char *sep = ": ";
    for (int64_t i = 0; i < run->n_scores && k < n; i++) {
        const pq_sweep_score *sc = &run->scores[i];
        if (!strncmp(sc->task, "kld", 3)) continue; /* distances, never in Sr */
        k += (size_t)snprintf(buf + k, n - k, "%s%s score %.6g, base %.6g%s", sep, sc->task, sc->score,
                              sc->base_score, sc->base_score == 0 ? " (a base score of 0 gives no ratio)" : "");
        sep = "; ";
    }
}

static int stopped(const pq_sweep_params *p) {
    return p->stop && p->stop(p->stop_user);
}

/* Marks config c 'running' in the db: a crash leaves exactly such rows, which are not
 * 'done' and so are redone on resume. */
static pq_status mark_running(pq_ctx *ctx, pq_sweep_db *db, const pq_sweep_config *c) {
    pq_sweep_run run;
    pq__sweep_run_init(&run, c);
    snprintf(run.status, sizeof run.status, "running");
    return pq_sweep_db_put(ctx, db, &run);
}

/* What a sweep holds while it runs (the steps of pq_sweep_execute share it). */
typedef struct sweep_state {
    pq_ctx *ctx;
    const pq_sweep_params *p;
    const pq_sweep_grid *grid;
    pq_sweep_db *db;
    int rank, size; /* the transport's (sweep_mpi.h) */
    pq_model *base;
    int32_t *ids; /* [n_ids] the calibration text's tokens */
    int64_t n_ids;
    char *tmp, *cache; /* the private scratch folder and the eval cache in it */
    pq_eval_params ep;
    uint8_t *todo;    /* [grid->n] 1: to do; 2: done on this rank and sent to rank 0 */
    int *owner;       /* [grid->n] the rank that runs a config to do */
    int64_t *bytes;   /* [grid->n] the stored bytes of the configs run here (the budgets of allocations) */
    int64_t nd, nf;   /* configs done, failed (rank 0: of every rank) */
    int64_t expected; /* rank 0: messages the other ranks still owe */
    int64_t ran;      /* configs run and stored here, for the ETA */
    double t0;
    int cancelled;
} sweep_state;

/* The request itself, before anything is read. */
static pq_status check_request(pq_ctx *ctx, const pq_sweep_params *p, const pq_sweep_db *db, int rank) {
    if (!p->model_path || !p->calib_path || !p->tasks || !*p->tasks)
        return pq__fail(ctx, PQ_ERR_INVALID, "sweep: a model, a calibration file and a task list are needed");
    if (rank == 0 && !db) return pq__fail(ctx, PQ_ERR_INVALID, "sweep: no database");
    pq_eval_params chk = pq_eval_params_default();
    chk.data_dir = p->data_dir;
    chk.limit = p->limit;
    return pq_eval_tasks_check(ctx, p->tasks, &chk, 1);
}

/* Rank 0: the database is new, or (--resume) was made for the same experiment. */
static pq_status check_db(pq_ctx *ctx, const pq_sweep_params *p, pq_sweep_db *db) {
    pq_status st = PQ_OK;
    /* without --resume, an existing database is not silently extended or overwritten */
    if (!p->resume) {
        pq_sweep_results old;
        st = pq_sweep_db_load(ctx, db, &old);
        if (st == PQ_OK) {
            int64_t n = old.n;
            pq_sweep_results_free(&old);
            if (n)
                st = pq__fail(ctx, PQ_ERR_INVALID, "the database already holds %lld runs: pass --resume",
                              (long long)n);
        }
    }
    char limit[32];
    snprintf(limit, sizeof limit, "%lld", (long long)p->limit);
    /* absolute paths: a resume from another working folder is the same experiment */
    char *model_abs = realpath(p->model_path, NULL), *calib_abs = realpath(p->calib_path, NULL);
    const char *mk[4] = {"model", "calib", "tasks", "limit"};
    const char *mv[4] = {model_abs ? model_abs : p->model_path, calib_abs ? calib_abs : p->calib_path, p->tasks,
                         limit};
    for (int k = 0; k < 4 && st == PQ_OK; k++)
        st = check_meta(ctx, db, mk[k], mv[k], p->resume);
    free(model_abs);
    free(calib_abs);
    return st;
}

/* The base model, the calibration tokens, the scratch folder and the eval parameters. */
static pq_status prepare(sweep_state *s) {
    pq_ctx *ctx = s->ctx;
    const pq_sweep_params *p = s->p;
    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = p->tokenizer_path;
    char *text = NULL;
    size_t len = 0;
    pq_status st = pq_model_load(ctx, p->model_path, &lp, &s->base);
    if (st == PQ_OK && !pq_model_tokenizer(s->base))
        st = pq__fail(ctx, PQ_ERR_INVALID, "%s: the model has no tokenizer; pass --tokenizer FILE", p->model_path);
    if (st == PQ_OK) st = pq__read_text(ctx, p->calib_path, (size_t)1 << 31, &text, &len);
    if (st == PQ_OK) st = pq_tokenize(ctx, pq_model_tokenizer(s->base), text, len, 1, &s->ids, &s->n_ids);
    free(text);
    /* one private scratch folder: temporary models and the base-result cache of pq_eval_run */
    if (st == PQ_OK) {
        const char *td = p->tmp_dir ? p->tmp_dir : getenv("TMPDIR");
        /* "<tmp>/pq-sweep.tmp.<pid>": one per process, and the folder of a process that was
         * killed outright is removed by the next sweep (pq__tmpdir_create clears the stale
         * siblings of dead processes) */
        char *root = pq__path_join(td && *td ? td : "/tmp", "pq-sweep");
        if (!root)
            st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the sweep's scratch folder path",
                          strlen(td && *td ? td : "/tmp") + 10);
        else
            st = pq__tmpdir_create(ctx, root, &s->tmp);
        free(root);
    }
    if (st == PQ_OK && !(s->cache = pq__path_join(s->tmp, "cache")))
        st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the sweep's eval cache path",
                      strlen(s->tmp) + 7);
    if (st == PQ_OK && mkdir(s->cache, 0755) != 0) st = pq__fail(ctx, PQ_ERR_IO, "%s: cannot create", s->cache);
    if (st == PQ_OK && p->keep_models && !pq__is_dir(p->keep_models) && mkdir(p->keep_models, 0755) != 0 &&
        !pq__is_dir(p->keep_models))
        st = pq__fail(ctx, PQ_ERR_IO, "%s: cannot create the folder", p->keep_models);
    s->ep = pq_eval_params_default();
    s->ep.data_dir = p->data_dir;
    s->ep.limit = p->limit;
    s->ep.cache_dir = s->cache;
    return st;
}

/* Who runs each config to do: the k-th one that is not an allocation goes to rank k % size; an
 * allocation to the rank of the config whose bytes are its budget (it runs after it, with the
 * bytes at hand), or, when that one is finished already, to rank 0 (which reads them from the
 * database). Every rank deals the same way. */
static pq_status deal(sweep_state *s) {
    const pq_sweep_grid *grid = s->grid;
    s->owner = pq__calloc(s->ctx, (size_t)(grid->n ? grid->n : 1), sizeof *s->owner, "sweep");
    s->bytes = s->owner ? pq__calloc(s->ctx, (size_t)(grid->n ? grid->n : 1), sizeof *s->bytes, "sweep") : NULL;
    if (!s->bytes) return s->ctx->status;
    int64_t k = 0;
    for (int64_t i = 0; i < grid->n; i++) {
        const int64_t u = grid->configs[i].alloc_of;
        s->bytes[i] = -1;
        if (!s->todo[i]) continue;
        s->owner[i] = u < 0 ? (int)(k++ % s->size) : s->todo[u] ? s->owner[u] : 0;
    }
    return PQ_OK;
}

/* What is left to do (rank 0 reads it from the db; every rank gets it) and who owes rank 0
 * what: configs to do are dealt round-robin, the k-th one to rank k % size. Every rank
 * comes here, even after a failure (st) of its own: the other ranks wait in the collective. */
static pq_status plan(sweep_state *s, pq_status st) {
    pq_ctx *ctx = s->ctx;
    const pq_sweep_grid *grid = s->grid;
    if (st == PQ_OK && s->rank == 0) st = eval_base(ctx, s->p, s->base, &s->ep, s->db);
    if (st == PQ_OK && !(s->todo = pq__calloc(ctx, (size_t)(grid->n ? grid->n : 1), 1, "sweep"))) st = ctx->status;
    for (int64_t i = 0; st == PQ_OK && s->rank == 0 && i < grid->n; i++) {
        char status[12];
        st = pq_sweep_db_status(ctx, s->db, grid->configs[i].hash, status);
        s->todo[i] = strcmp(status, "done") != 0 && strcmp(status, "undefined") != 0;
        if (!s->todo[i]) s->nd++;
    }
    if (s->size > 1) {
        if (!pq__sweep_transport_all_ok(st == PQ_OK) && st == PQ_OK)
            st = pq__fail(ctx, PQ_ERR_INVALID, "sweep: another rank failed");
        if (st == PQ_OK) pq__sweep_transport_bcast(s->todo, grid->n);
    }
    if (st == PQ_OK && s->nd) st = pq__progress(ctx, "sweep", s->nd, grid->n);
    if (st == PQ_OK) st = deal(s);
    for (int64_t i = 0; st == PQ_OK && i < grid->n; i++)
        if (s->todo[i]) s->expected += s->owner[i] != 0;
    for (int64_t i = 0; st == PQ_OK && s->rank == 0 && s->size > 1 && i < grid->n; i++)
        if (s->todo[i] && s->owner[i] != 0) st = mark_running(ctx, s->db, &grid->configs[i]);
    return st;
}

/* Config i was stopped (after = 1: while it ran). Another rank tells rank 0; rank 0 keeps
 * nothing half-done: the row goes, the config is redone on resume. */
static pq_status cancel_config(sweep_state *s, int64_t i, int after) {
    s->cancelled = 1;
    if (s->rank != 0) {
        pq__sweep_send_run(i, NULL, "cancelled");
        s->todo[i] = 2;
        return PQ_OK;
    }
    if (!after) return pq__fail(s->ctx, PQ_ERR_CANCELLED, "sweep: interrupted");
    const char *hash = s->grid->configs[i].hash;
    pq_sweep_db_delete(s->ctx, s->db, hash);
    return pq__fail(s->ctx, PQ_ERR_CANCELLED, "sweep: interrupted; config %s not stored", hash);
}

/* The status of a finished run from its outcome rs; why holds the reason of "undefined". */
static void classify(sweep_state *s, const pq_sweep_config *c, pq_status rs, pq_sweep_run *run, char *why, size_t n) {
    if (rs != PQ_OK) {
        pq_sweep_scores_free(run->scores, run->n_scores);
        free(run->layers);
        run->layers = NULL;
        run->scores = NULL;
        run->n_scores = 0;
        snprintf(run->status, sizeof run->status, "failed");
        run->error = (char *)pq_ctx_error(s->ctx);
        pq__log(s->ctx, PQ_LOG_WARN, "sweep: config %s failed: %s", c->hash, run->error);
        s->nf++;
    } else if (!isfinite(run->sr)) {
        /* finished, but no task gave a retention (e.g. a base score of 0): stored as
         * "undefined" with the reason, never as a done run with a NaN Sr */
        snprintf(run->status, sizeof run->status, "undefined");
        undefined_reason(run, why, n);
        run->error = why;
        pq__log(s->ctx, PQ_LOG_WARN, "sweep: config %s: Sr undefined: %s", c->hash, why);
        s->nd++;
    } else {
        snprintf(run->status, sizeof run->status, "done");
        s->nd++;
    }
}

/* Rank 0 stores the finished run of config i (with the ETA); another rank sends it. */
static pq_status store_or_send(sweep_state *s, int64_t i, pq_sweep_run *run) {
    if (s->rank != 0) {
        pq__sweep_send_run(i, run, run->status);
        s->todo[i] = 2;
        pq_sweep_scores_free(run->scores, run->n_scores);
        free(run->layers);
        return PQ_OK;
    }
    pq_status st = pq_sweep_db_put(s->ctx, s->db, run);
    pq_sweep_scores_free(run->scores, run->n_scores);
    free(run->layers);
    s->ran++;
    if (st != PQ_OK) return st;
    const pq_sweep_grid *grid = s->grid;
    double el = pq__now() - s->t0;
    int64_t left = 0;
    for (int64_t j = i + 1; j < grid->n; j++)
        left += s->todo[j];
    /* under MPI the ranks share the remaining configs */
    pq__log(s->ctx, PQ_LOG_INFO, "sweep: %lld/%lld configs, %s in %.1f s (Sr %.4f, SrCr %.4f); ETA %.0f s",
            (long long)(s->nd + s->nf), (long long)grid->n, run->status, run->seconds, run->sr, run->srcr,
            el / (double)s->ran * (double)left / (double)s->size);
    return pq__progress(s->ctx, "sweep", s->nd + s->nf, grid->n);
}

/* Rank 0: stores what the other ranks have finished meanwhile (without waiting). */
static pq_status collect_finished(sweep_state *s) {
    pq_status st = PQ_OK;
    while (st == PQ_OK && s->rank == 0 && s->size > 1 && s->expected > 0) {
        int got = 0;
        st = pq__sweep_recv_run(s->ctx, s->grid, s->db, 0, &got, &s->nd, &s->nf);
        if (st == PQ_OK && !got) break;
        s->expected--;
    }
    return st;
}

/* The budget of allocated config c: the bytes its config stored, run here or found in the
 * database (rank 0). */
static pq_status alloc_budget(sweep_state *s, const pq_sweep_config *c, int64_t *budget) {
    const pq_sweep_config *u = &s->grid->configs[c->alloc_of];
    *budget = s->bytes[c->alloc_of];
    if (*budget <= 0 && s->rank == 0) {
        pq_status st = pq_sweep_db_bytes(s->ctx, s->db, u->hash, budget);
        if (st != PQ_OK) return st;
    }
    if (*budget <= 0)
        return pq__fail(s->ctx, PQ_ERR_INVALID, "sweep: no stored bytes of config %s, the budget of this allocation",
                        u->hash);
    return PQ_OK;
}

/* Config i into dir: an allocation or a recipe of the grid. */
static pq_status run_any(sweep_state *s, int64_t i, const char *dir, pq_sweep_run *run) {
    const pq_sweep_config *c = &s->grid->configs[i];
    if (c->alloc_of < 0) return run_one(s->ctx, s->p, s->base, s->ids, s->n_ids, &s->ep, c, dir, run);
    int64_t budget = 0;
    const pq_status st = alloc_budget(s, c, &budget);
    return st == PQ_OK ? run_allocated(s->ctx, s->p, s->base, s->ids, s->n_ids, &s->ep, c, budget, dir, run) : st;
}

/* One config on this rank: compress, evaluate, store (or send). */
static pq_status run_config(sweep_state *s, int64_t i) {
    pq_ctx *ctx = s->ctx;
    const pq_sweep_params *p = s->p;
    const pq_sweep_config *c = &s->grid->configs[i];
    if (s->cancelled || stopped(p)) return cancel_config(s, i, 0);
    pq_sweep_run run;
    char why[512];
    pq__sweep_run_init(&run, c);
    pq_status st = s->rank == 0 ? mark_running(ctx, s->db, c) : PQ_OK;
    if (st != PQ_OK) return st;
    pq__log(ctx, PQ_LOG_INFO, "sweep: config %lld/%lld %s %s (TCr %.4f)%s", (long long)(i + 1), (long long)s->grid->n,
            c->hash, c->recipe, c->tcr, s->size > 1 ? " on this rank" : "");
    char *dir = pq__path_join(p->keep_models ? p->keep_models : s->tmp, c->hash);
    if (!dir)
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the folder path of config %s",
                        strlen(p->keep_models ? p->keep_models : s->tmp) + strlen(c->hash) + 2, c->hash);
    double t1 = pq__now();
    pq_status rs = run_any(s, i, dir, &run);
    run.seconds = pq__now() - t1;
    if (!p->keep_models) pq__rmtree(dir);
    free(dir);
    char *own = run.recipe != c->recipe ? run.recipe : NULL; /* an allocation's recipe */
    if (rs == PQ_ERR_CANCELLED || stopped(p)) {
        pq_sweep_scores_free(run.scores, run.n_scores);
        free(run.layers);
        free(own);
        return cancel_config(s, i, 1);
    }
    classify(s, c, rs, &run, why, sizeof why);
    if (rs == PQ_OK) s->bytes[i] = run.bytes;
    st = store_or_send(s, i, &run);
    free(own);
    return st == PQ_OK ? collect_finished(s) : st;
}

/* After the loop: a rank that stopped early still owes rank 0 one message per config dealt
 * to it; rank 0 collects every message it is owed, even after a failure of its own, so that
 * no rank blocks in its send; a store failure is kept but the draining goes on. */
static pq_status finish_ranks(sweep_state *s, pq_status st) {
    const pq_sweep_grid *grid = s->grid;
    for (int64_t i = 0; s->rank != 0 && s->todo && s->owner && i < grid->n; i++)
        if (s->todo[i] && s->owner[i] == s->rank && s->todo[i] != 2) pq__sweep_send_run(i, NULL, "cancelled");
    if (s->rank != 0 || s->size <= 1 || !s->todo) return st;
    if (st != PQ_OK && st != PQ_ERR_CANCELLED)
        pq__log(s->ctx, PQ_LOG_WARN, "sweep: waiting for the other ranks after: %s", pq_ctx_error(s->ctx));
    for (; s->expected > 0; s->expected--) {
        int got = 0;
        pq_status rs = pq__sweep_recv_run(s->ctx, grid, s->db, 1, &got, &s->nd, &s->nf);
        if (rs != PQ_OK && st == PQ_OK) st = rs;
    }
    return st;
}

pq_status pq_sweep_execute(pq_ctx *ctx, const pq_sweep_params *p, const pq_sweep_grid *grid, pq_sweep_db *db,
                           int64_t *n_done, int64_t *n_failed) {
    if (n_done) *n_done = 0;
    if (n_failed) *n_failed = 0;
    sweep_state s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    s.p = p;
    s.grid = grid;
    s.db = db;
    pq__sweep_transport_world(&s.rank, &s.size);
    pq_status st = check_request(ctx, p, db, s.rank);
    if (st != PQ_OK) return st;
    if (s.rank == 0) st = check_db(ctx, p, db);
    if (s.size > 1 && !pq__sweep_transport_all_ok(st == PQ_OK) && st == PQ_OK)
        st = pq__fail(ctx, PQ_ERR_INVALID, "sweep: rank 0 failed");
    if (st != PQ_OK) return st;
    st = plan(&s, prepare(&s));
    s.t0 = pq__now();
    for (int64_t i = 0; st == PQ_OK && i < grid->n; i++)
        if (s.todo[i] && s.owner[i] == s.rank) st = run_config(&s, i);
    st = finish_ranks(&s, st);
    if (n_done) *n_done = s.nd;
    if (n_failed) *n_failed = s.nf;
    if (s.tmp) pq__rmtree(s.tmp);
    free(s.tmp);
    free(s.cache);
    free(s.ids);
    free(s.todo);
    free(s.owner);
    free(s.bytes);
    pq_model_free(s.base);
    return st;
}
