/* Running a sweep: base model evaluated once, then per config compress -> reload -> measure
 * -> evaluate against the base -> store. Every number stored comes from the pipeline and
 * evaluation APIs; a config that fails is stored as 'failed' with its message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "prunequant-eval.h"
#include "prunequant-pipeline.h"
#include "prunequant-sweep.h"

pq_sweep_params pq_sweep_params_default(void) {
    pq_sweep_params p;
    memset(&p, 0, sizeof p);
    p.calib = pq_sweep_calib_default();
    return p;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
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

static pq_status eval_base(pq_ctx *ctx, const pq_sweep_params *p, const pq_model *base, const pq_eval_params *ep,
                           pq_sweep_db *db) {
    char status[12];
    pq_status st = pq_sweep_db_status(ctx, db, "base", status);
    if (st != PQ_OK || !strcmp(status, "done")) return st;
    pq__log(ctx, PQ_LOG_INFO, "sweep: evaluating the base model on %s", p->tasks);
    double t0 = now();
    pq_eval_report *rep = NULL;
    pq_compress_info ci = pq_compress_info_default();
    ci.sparsity = 0;
    ci.bits = 16;
    /* kld tasks compare a model with the base: nothing to measure for the base itself */
    char *tasks = strdup(p->tasks), *out = tasks ? calloc(1, strlen(p->tasks) + 1) : NULL;
    if (!out) {
        free(tasks);
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    }
    char *save = NULL;
    for (char *t = strtok_r(tasks, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (!*t || !strncmp(t, "kld:", 4)) continue;
        if (*out) strcat(out, ",");
        strcat(out, t);
    }
    free(tasks);
    st = *out ? pq_eval_run(ctx, base, p->model_path, NULL, NULL, out, ep, &ci, &rep)
              : pq__fail(ctx, PQ_ERR_INVALID, "sweep: --tasks has no task besides kld (Sr needs at least one)");
    free(out);
    if (st != PQ_OK) return st;
    pq_sweep_score *sc = pq__calloc(ctx, (size_t)(rep->n_tasks + 2), sizeof *sc, "scores");
    /* the protocol of every number goes with the numbers */
    size_t cap = 256 + (size_t)rep->n_tasks * 420;
    char *proto = sc ? pq__malloc(ctx, cap, "protocol") : NULL;
    if (!sc || !proto) {
        free(sc);
        pq_eval_report_free(rep);
        return ctx->status;
    }
    size_t n = (size_t)snprintf(proto, cap, "limit %lld; calibration %lld windows x %lld tokens, seed %llu",
                                (long long)p->limit, (long long)p->calib.nsamples,
                                (long long)(p->calib.seqlen > 0 ? p->calib.seqlen : pq_compress_default_seqlen(base)),
                                (unsigned long long)p->calib.seed);
    for (int64_t i = 0; i < rep->n_tasks && n < cap; i++)
        n += (size_t)snprintf(proto + n, cap - n, "; %s: %s", rep->tasks[i].name, rep->tasks[i].protocol);
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
    run.seconds = now() - t0;
    fill_scores(&run, rep, sc, 1);
    st = pq_sweep_db_meta_set(ctx, db, "protocol", proto);
    if (st == PQ_OK) st = pq_sweep_db_put(ctx, db, &run);
    free(proto);
    pq_sweep_scores_free(sc, run.n_scores);
    pq_eval_report_free(rep);
    return st;
}

/* One config: compress into dir, reload, measure, evaluate. Fills run (scores malloc'ed). */
static pq_status run_one(pq_ctx *ctx, const pq_sweep_params *p, const pq_model *base, const int32_t *ids,
                         int64_t n_ids, const pq_eval_params *ep, const pq_sweep_config *c, const char *dir,
                         pq_sweep_run *run) {
    pq_compress_params cp = pq_compress_params_default();
    cp.layer = c->layer;
    cp.nsamples = p->calib.nsamples;
    cp.seqlen = p->calib.seqlen;
    cp.seed = p->calib.seed;
    cp.calib_name = p->calib_path;
    /* the per-linear report goes with the run (the report's heat map) */
    char *layers_path = malloc(strlen(dir) + 16);
    if (!layers_path) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    sprintf(layers_path, "%s.layers.jsonl", dir);
    cp.report = layers_path;
    pq_status st = pq_compress_model(ctx, base, ids, n_ids, &cp, dir);
    if (st == PQ_OK) {
        size_t n = 0;
        pq_ctx *quiet = pq_ctx_new(); /* a run without its layer table is still a run */
        if (quiet && pq__read_text(quiet, layers_path, (size_t)1 << 26, &run->layers, &n) != PQ_OK)
            run->layers = NULL;
        pq_ctx_free(quiet);
    }
    unlink(layers_path);
    free(layers_path);
    if (st != PQ_OK) return st;
    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = p->tokenizer_path;
    pq_model *m = NULL;
    pq_sparsity_report sr;
    memset(&sr, 0, sizeof sr);
    pq_eval_report *rep = NULL;
    st = pq_model_load(ctx, dir, &lp, &m);
    if (st == PQ_OK) st = pq_model_sparsity(ctx, m, &sr);
    if (st == PQ_OK) {
        int64_t bytes = 0;
        for (int64_t i = 0; i < sr.n_layers; i++)
            bytes += sr.layers[i].bytes;
        run->acr = sr.acr;
        run->bpw = sr.bpw;
        run->bytes = bytes;
        pq_compress_info ci = pq_compress_info_default();
        ci.sparsity = c->sparsity;
        ci.bits = c->bits;
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
        run->srcr = pq_metrics_srcr(run->sr, c->sparsity, c->bits);
    }
    pq_eval_report_free(rep);
    pq_sparsity_report_free(&sr);
    pq_model_free(m);
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

#ifdef PQ_HAVE_MPI
/* ---------------------------------------------------------------- MPI
 * Configs still to do are dealt round-robin over the ranks; every rank loads the model and
 * evaluates its own configs (its base results come from its own eval cache); rank 0 alone
 * touches the database: it stores its own runs and the ones the other ranks send (one JSON
 * message per config dealt to them: a result, or "cancelled" when they were stopped). */
#include <cjson/cJSON.h>
#include <mpi.h>

#include "common/json.h"
#include "eval/units.h"

enum { TAG_RESULT = 7301 };

static void mpi_world(int *rank, int *size) {
    int init = 0, fin = 0;
    *rank = 0;
    *size = 1;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) return;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
}

static void add_num(cJSON *o, const char *k, double v) {
    pq__json_add_num(o, k, v); /* exact: rank 0 stores what the other ranks computed */
}

static double get_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Sends the outcome of config i to rank 0 (status "done", "failed" or "cancelled"). */
static void mpi_send_run(int64_t i, const pq_sweep_run *run, const char *status) {
    cJSON *o = cJSON_CreateObject();
    char *txt = NULL;
    if (o) {
        cJSON_AddNumberToObject(o, "i", (double)i);
        cJSON_AddStringToObject(o, "status", status);
        add_num(o, "acr", run ? run->acr : NAN);
        add_num(o, "bpw", run ? run->bpw : NAN);
        add_num(o, "bytes", run ? (double)run->bytes : 0);
        add_num(o, "sr", run ? run->sr : NAN);
        add_num(o, "srcr", run ? run->srcr : NAN);
        add_num(o, "seconds", run ? run->seconds : NAN);
        if (run && run->error) cJSON_AddStringToObject(o, "error", run->error);
        if (run && run->layers) cJSON_AddStringToObject(o, "layers", run->layers);
        cJSON *a = cJSON_AddArrayToObject(o, "scores");
        for (int64_t k = 0; run && a && k < run->n_scores; k++) {
            const pq_sweep_score *c = &run->scores[k];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "task", c->task);
            cJSON_AddStringToObject(e, "metric", c->metric);
            add_num(e, "score", c->score);
            add_num(e, "se", c->se);
            add_num(e, "base", c->base_score);
            add_num(e, "retention", c->retention);
            cJSON_AddNumberToObject(e, "higher", c->higher_is_better);
            pq__units_to_json(e, &c->units);
            cJSON_AddItemToArray(a, e);
        }
        txt = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    /* rank 0 counts messages: even out of memory, one (a bare "cancelled") must go */
    char fallback[64];
    if (!txt) snprintf(fallback, sizeof fallback, "{\"i\":%lld,\"status\":\"cancelled\"}", (long long)i);
    const char *m = txt ? txt : fallback;
    MPI_Send(m, (int)strlen(m) + 1, MPI_CHAR, 0, TAG_RESULT, MPI_COMM_WORLD);
    free(txt);
}

/* Rank 0: receives one message (blocking) and stores it. */
static pq_status mpi_recv_run(pq_ctx *ctx, const pq_sweep_grid *grid, pq_sweep_db *db, int64_t *n_done,
                              int64_t *n_failed) {
    MPI_Status ms;
    int len = 0;
    MPI_Probe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &ms);
    MPI_Get_count(&ms, MPI_CHAR, &len);
    char *buf = malloc((size_t)len + 1);
    if (!buf) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    MPI_Recv(buf, len, MPI_CHAR, ms.MPI_SOURCE, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    buf[len] = 0;
    cJSON *o = cJSON_Parse(buf);
    free(buf);
    double di = get_num(o, "i");
    const cJSON *stj = cJSON_GetObjectItemCaseSensitive(o, "status");
    if (!o || !(di >= 0 && di < (double)grid->n) || !cJSON_IsString(stj)) {
        cJSON_Delete(o);
        return pq__fail(ctx, PQ_ERR_INTERNAL, "sweep: malformed result from rank %d", ms.MPI_SOURCE);
    }
    const pq_sweep_config *c = &grid->configs[(int64_t)di];
    pq_status st;
    if (!strcmp(stj->valuestring, "cancelled")) {
        st = pq_sweep_db_delete(ctx, db, c->hash);
        cJSON_Delete(o);
        return st;
    }
    pq_sweep_run run;
    memset(&run, 0, sizeof run);
    snprintf(run.hash, sizeof run.hash, "%s", c->hash);
    snprintf(run.status, sizeof run.status, "%s", stj->valuestring);
    run.recipe = c->recipe;
    run.sparsity = c->sparsity;
    run.bits = c->bits;
    run.tcr = c->tcr;
    run.acr = get_num(o, "acr");
    run.bpw = get_num(o, "bpw");
    double b = get_num(o, "bytes");
    run.bytes = isfinite(b) ? (int64_t)b : 0;
    run.sr = get_num(o, "sr");
    run.srcr = get_num(o, "srcr");
    run.seconds = get_num(o, "seconds");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
    run.error = cJSON_IsString(err) ? err->valuestring : NULL;
    const cJSON *lay = cJSON_GetObjectItemCaseSensitive(o, "layers");
    run.layers = cJSON_IsString(lay) ? lay->valuestring : NULL; /* borrowed from the message */
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "scores");
    int na = cJSON_GetArraySize(a);
    run.scores = na ? calloc((size_t)na, sizeof *run.scores) : NULL;
    if (na && !run.scores) {
        cJSON_Delete(o);
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    }
    for (const cJSON *e = a ? a->child : NULL; e; e = e->next) {
        pq_sweep_score *sc = &run.scores[run.n_scores++];
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "task"),
                    *mt = cJSON_GetObjectItemCaseSensitive(e, "metric");
        snprintf(sc->task, sizeof sc->task, "%s", cJSON_IsString(t) ? t->valuestring : "?");
        snprintf(sc->metric, sizeof sc->metric, "%s", cJSON_IsString(mt) ? mt->valuestring : "?");
        sc->score = get_num(e, "score");
        sc->se = get_num(e, "se");
        sc->base_score = get_num(e, "base");
        sc->retention = get_num(e, "retention");
        const cJSON *hb = cJSON_GetObjectItemCaseSensitive(e, "higher");
        sc->higher_is_better = cJSON_IsNumber(hb) ? hb->valueint : 1;
        if (!pq__units_from_json(e, &sc->units)) memset(&sc->units, 0, sizeof sc->units);
    }
    st = pq_sweep_db_put(ctx, db, &run);
    if (!strcmp(run.status, "done") || !strcmp(run.status, "undefined"))
        (*n_done)++;
    else
        (*n_failed)++;
    pq__log(ctx, PQ_LOG_INFO, "sweep: config %lld/%lld %s from rank %d: %s (Sr %.4f, SrCr %.4f)", (long long)(di + 1),
            (long long)grid->n, c->hash, ms.MPI_SOURCE, run.status, run.sr, run.srcr);
    pq_sweep_scores_free(run.scores, run.n_scores);
    cJSON_Delete(o);
    return st;
}

/* Every rank learns whether every rank is fine (1) after a step that may fail anywhere. */
static int mpi_all_ok(pq_status st) {
    int mine = st == PQ_OK, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}
#endif

/* Marks config c 'running' in the db: a crash leaves exactly such rows, which are not
 * 'done' and so are redone on resume. */
static pq_status mark_running(pq_ctx *ctx, pq_sweep_db *db, const pq_sweep_config *c) {
    pq_sweep_run run;
    memset(&run, 0, sizeof run);
    snprintf(run.hash, sizeof run.hash, "%s", c->hash);
    run.recipe = c->recipe;
    run.sparsity = c->sparsity;
    run.bits = c->bits;
    run.tcr = c->tcr;
    run.acr = run.bpw = run.sr = run.srcr = run.seconds = NAN;
    snprintf(run.status, sizeof run.status, "running");
    return pq_sweep_db_put(ctx, db, &run);
}

pq_status pq_sweep_execute(pq_ctx *ctx, const pq_sweep_params *p, const pq_sweep_grid *grid, pq_sweep_db *db,
                           int64_t *n_done, int64_t *n_failed) {
    int64_t nd = 0, nf = 0;
    if (n_done) *n_done = 0;
    if (n_failed) *n_failed = 0;
    int rank = 0, size = 1;
#ifdef PQ_HAVE_MPI
    mpi_world(&rank, &size);
#endif
    if (!p->model_path || !p->calib_path || !p->tasks || !*p->tasks)
        return pq__fail(ctx, PQ_ERR_INVALID, "sweep: a model, a calibration file and a task list are needed");
    if (rank == 0 && !db) return pq__fail(ctx, PQ_ERR_INVALID, "sweep: no database");
    pq_eval_params chk = pq_eval_params_default();
    chk.data_dir = p->data_dir;
    chk.limit = p->limit;
    pq_status st = pq_eval_tasks_check(ctx, p->tasks, &chk, 1);
    if (st != PQ_OK) return st;
    /* without --resume, an existing database is not silently extended or overwritten */
    if (rank == 0 && !p->resume) {
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
    for (int k = 0; rank == 0 && k < 4 && st == PQ_OK; k++)
        st = check_meta(ctx, db, mk[k], mv[k], p->resume);
    free(model_abs);
    free(calib_abs);
#ifdef PQ_HAVE_MPI
    if (size > 1 && !mpi_all_ok(st) && st == PQ_OK) st = pq__fail(ctx, PQ_ERR_INVALID, "sweep: rank 0 failed");
#endif
    if (st != PQ_OK) return st;

    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = p->tokenizer_path;
    pq_model *base = NULL;
    char *text = NULL, *tmp = NULL, *cache = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    size_t len = 0;
    uint8_t *todo = NULL;
    st = pq_model_load(ctx, p->model_path, &lp, &base);
    if (st == PQ_OK && !pq_model_tokenizer(base))
        st = pq__fail(ctx, PQ_ERR_INVALID, "%s: the model has no tokenizer; pass --tokenizer FILE", p->model_path);
    if (st == PQ_OK) st = pq__read_text(ctx, p->calib_path, (size_t)1 << 31, &text, &len);
    if (st == PQ_OK) st = pq_tokenize(ctx, pq_model_tokenizer(base), text, len, 1, &ids, &n_ids);
    free(text);
    /* one private scratch folder: temporary models and the base-result cache of pq_eval_run */
    if (st == PQ_OK) {
        const char *td = p->tmp_dir ? p->tmp_dir : getenv("TMPDIR");
        /* "<tmp>/pq-sweep.tmp.<pid>": one per process, and the folder of a process that was
         * killed outright is removed by the next sweep (pq__tmpdir_create clears the stale
         * siblings of dead processes) */
        char *root = pq__path_join(td && *td ? td : "/tmp", "pq-sweep");
        if (!root)
            st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        else
            st = pq__tmpdir_create(ctx, root, &tmp);
        free(root);
    }
    if (st == PQ_OK && !(cache = pq__path_join(tmp, "cache"))) st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    if (st == PQ_OK && mkdir(cache, 0755) != 0) st = pq__fail(ctx, PQ_ERR_IO, "%s: cannot create", cache);
    if (st == PQ_OK && p->keep_models && !pq__is_dir(p->keep_models) && mkdir(p->keep_models, 0755) != 0 &&
        !pq__is_dir(p->keep_models))
        st = pq__fail(ctx, PQ_ERR_IO, "%s: cannot create the folder", p->keep_models);
    pq_eval_params ep = pq_eval_params_default();
    ep.data_dir = p->data_dir;
    ep.limit = p->limit;
    ep.cache_dir = cache;
    if (st == PQ_OK && rank == 0) st = eval_base(ctx, p, base, &ep, db);
    /* what is left to do (rank 0 reads it from the db; under MPI every rank gets it) */
    if (st == PQ_OK && !(todo = pq__calloc(ctx, (size_t)(grid->n ? grid->n : 1), 1, "sweep"))) st = ctx->status;
    for (int64_t i = 0; st == PQ_OK && rank == 0 && i < grid->n; i++) {
        char status[12];
        st = pq_sweep_db_status(ctx, db, grid->configs[i].hash, status);
        todo[i] = strcmp(status, "done") != 0 && strcmp(status, "undefined") != 0;
        if (!todo[i]) nd++;
    }
#ifdef PQ_HAVE_MPI
    if (size > 1) {
        if (!mpi_all_ok(st) && st == PQ_OK) st = pq__fail(ctx, PQ_ERR_INVALID, "sweep: another rank failed");
        if (st == PQ_OK) MPI_Bcast(todo, (int)grid->n, MPI_UINT8_T, 0, MPI_COMM_WORLD);
    }
#endif
    if (st == PQ_OK && nd) st = pq__progress(ctx, "sweep", nd, grid->n);
    /* configs to do are dealt round-robin: the k-th one goes to rank k % size */
    int64_t expected = 0, k = 0;
    for (int64_t i = 0; i < grid->n; i++)
        if (todo && todo[i]) expected += (k++ % size) != 0;
    for (int64_t i = 0, kk = 0; st == PQ_OK && rank == 0 && size > 1 && i < grid->n; i++)
        if (todo[i] && (kk++ % size) != 0) st = mark_running(ctx, db, &grid->configs[i]);

    double t0 = now();
    int64_t ran = 0, mine = -1;
    int cancelled = 0;
    for (int64_t i = 0; st == PQ_OK && i < grid->n; i++) {
        const pq_sweep_config *c = &grid->configs[i];
        if (!todo[i] || (++mine % size) != rank) continue;
        if (cancelled || stopped(p)) {
            cancelled = 1;
#ifdef PQ_HAVE_MPI
            if (rank != 0) {
                mpi_send_run(i, NULL, "cancelled");
                todo[i] = 2;
                continue;
            }
#endif
            st = pq__fail(ctx, PQ_ERR_CANCELLED, "sweep: interrupted");
            break;
        }
        pq_sweep_run run;
        char why[512];
        memset(&run, 0, sizeof run);
        snprintf(run.hash, sizeof run.hash, "%s", c->hash);
        run.recipe = c->recipe;
        run.sparsity = c->sparsity;
        run.bits = c->bits;
        run.tcr = c->tcr;
        run.acr = run.bpw = run.sr = run.srcr = NAN;
        if (rank == 0 && (st = mark_running(ctx, db, c)) != PQ_OK) break;
        pq__log(ctx, PQ_LOG_INFO, "sweep: config %lld/%lld %s %s (TCr %.4f)%s", (long long)(i + 1),
                (long long)grid->n, c->hash, c->recipe, c->tcr, size > 1 ? " on this rank" : "");
        char *dir = pq__path_join(p->keep_models ? p->keep_models : tmp, c->hash);
        if (!dir) {
            st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
            break;
        }
        double t1 = now();
        pq_status rs = run_one(ctx, p, base, ids, n_ids, &ep, c, dir, &run);
        run.seconds = now() - t1;
        if (!p->keep_models) pq__rmtree(dir);
        free(dir);
        if (rs == PQ_ERR_CANCELLED || stopped(p)) {
            pq_sweep_scores_free(run.scores, run.n_scores);
            free(run.layers);
            cancelled = 1;
#ifdef PQ_HAVE_MPI
            if (rank != 0) {
                mpi_send_run(i, NULL, "cancelled");
                todo[i] = 2;
                continue;
            }
#endif
            /* nothing half-done stays: the row goes, the config is redone on resume */
            pq_sweep_db_delete(ctx, db, c->hash);
            st = pq__fail(ctx, PQ_ERR_CANCELLED, "sweep: interrupted; config %s not stored", c->hash);
            break;
        }
        if (rs != PQ_OK) {
            pq_sweep_scores_free(run.scores, run.n_scores);
            free(run.layers);
            run.layers = NULL;
            run.scores = NULL;
            run.n_scores = 0;
            snprintf(run.status, sizeof run.status, "failed");
            run.error = (char *)pq_ctx_error(ctx);
            pq__log(ctx, PQ_LOG_WARN, "sweep: config %s failed: %s", c->hash, run.error);
            nf++;
        } else if (!isfinite(run.sr)) {
            /* finished, but no task gave a retention (e.g. a base score of 0): stored as
             * "undefined" with the reason, never as a done run with a NaN Sr */
            snprintf(run.status, sizeof run.status, "undefined");
            undefined_reason(&run, why, sizeof why);
            run.error = why;
            pq__log(ctx, PQ_LOG_WARN, "sweep: config %s: Sr undefined: %s", c->hash, why);
            nd++;
        } else {
            snprintf(run.status, sizeof run.status, "done");
            nd++;
        }
#ifdef PQ_HAVE_MPI
        if (rank != 0) {
            mpi_send_run(i, &run, run.status);
            todo[i] = 2;
            pq_sweep_scores_free(run.scores, run.n_scores);
            free(run.layers);
            continue;
        }
#endif
        st = pq_sweep_db_put(ctx, db, &run);
        pq_sweep_scores_free(run.scores, run.n_scores);
        free(run.layers);
        ran++;
        if (st == PQ_OK) {
            double el = now() - t0;
            int64_t left = 0;
            for (int64_t j = i + 1; j < grid->n; j++)
                left += todo[j];
            /* under MPI the ranks share the remaining configs */
            pq__log(ctx, PQ_LOG_INFO, "sweep: %lld/%lld configs, %s in %.1f s (Sr %.4f, SrCr %.4f); ETA %.0f s",
                    (long long)(nd + nf), (long long)grid->n, run.status, run.seconds, run.sr, run.srcr,
                    el / (double)ran * (double)left / (double)size);
            st = pq__progress(ctx, "sweep", nd + nf, grid->n);
        }
#ifdef PQ_HAVE_MPI
        /* store what the other ranks have finished meanwhile */
        for (int flag = 1; st == PQ_OK && size > 1 && expected > 0;) {
            MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
            if (!flag) break;
            st = mpi_recv_run(ctx, grid, db, &nd, &nf);
            expected--;
        }
#endif
    }
#ifdef PQ_HAVE_MPI
    /* a rank that stopped early still owes rank 0 one message per config dealt to it */
    for (int64_t i = 0, kk = 0; rank != 0 && todo && i < grid->n; i++)
        if (todo[i] && (kk++ % size) == rank && todo[i] != 2) mpi_send_run(i, NULL, "cancelled");
    /* rank 0 collects every message it is owed, even after a failure of its own, so that no
     * rank blocks in MPI_Send; a store failure is kept but the draining goes on */
    if (rank == 0 && size > 1 && todo) {
        if (st != PQ_OK && st != PQ_ERR_CANCELLED)
            pq__log(ctx, PQ_LOG_WARN, "sweep: waiting for the other ranks after: %s", pq_ctx_error(ctx));
        for (; expected > 0; expected--) {
            pq_status rs = mpi_recv_run(ctx, grid, db, &nd, &nf);
            if (rs != PQ_OK && st == PQ_OK) st = rs;
        }
    }
#endif
    if (n_done) *n_done = nd;
    if (n_failed) *n_failed = nf;
    if (tmp) pq__rmtree(tmp);
    free(tmp);
    free(cache);
    free(ids);
    free(todo);
    pq_model_free(base);
    return st;
}
