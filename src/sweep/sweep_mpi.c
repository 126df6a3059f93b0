/* The ranks of a sweep (sweep_mpi.h): configs still to do are dealt round-robin over the
 * ranks; every rank loads the model and evaluates its own configs (its base results come
 * from its own eval cache); rank 0 alone touches the database: it stores its own runs and
 * the ones the other ranks send (one JSON message per config dealt to them: a result, or
 * "cancelled" when they were stopped). The transport is MPI_COMM_WORLD when built with MPI,
 * else a single process, which never sends or receives. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "eval/units.h"
#include "sweep/sweep_mpi.h"

/* ---------------------------------------------------------------- transport */

#ifdef PQ_HAVE_MPI
#include <mpi.h>

enum { TAG_RESULT = 7301 };

/* MPI is up (the caller initialised it and has not finalised it): else one process. */
static int mpi_running(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

void pq__sweep_transport_world(int *rank, int *size) {
    *rank = 0;
    *size = 1;
    if (!mpi_running()) return;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
}

int pq__sweep_transport_all_ok(int ok) {
    if (!mpi_running()) return ok != 0;
    int mine = ok != 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}

void pq__sweep_transport_bcast(uint8_t *buf, int64_t n) {
    if (mpi_running()) MPI_Bcast(buf, (int)n, MPI_UINT8_T, 0, MPI_COMM_WORLD);
}

void pq__sweep_transport_send(const char *msg) {
    if (mpi_running()) MPI_Send(msg, (int)strlen(msg) + 1, MPI_CHAR, 0, TAG_RESULT, MPI_COMM_WORLD);
}

pq_status pq__sweep_transport_recv(pq_ctx *ctx, int wait, char **msg, int *from) {
    *msg = NULL;
    *from = -1;
    if (!mpi_running())
        return wait ? pq__fail(ctx, PQ_ERR_INTERNAL, "sweep: waiting for a result with no other rank") : PQ_OK;
    MPI_Status ms;
    if (!wait) {
        int flag = 0;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &flag, &ms);
        if (!flag) return PQ_OK;
    } else {
        MPI_Probe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &ms);
    }
    int len = 0;
    MPI_Get_count(&ms, MPI_CHAR, &len);
    char *buf = pq__malloc(ctx, (size_t)len + 1, "a result message from another rank");
    if (!buf) return ctx->status;
    MPI_Recv(buf, len, MPI_CHAR, ms.MPI_SOURCE, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    buf[len] = 0;
    *msg = buf;
    *from = ms.MPI_SOURCE;
    return PQ_OK;
}

#else /* one process: rank 0 of 1 */

void pq__sweep_transport_world(int *rank, int *size) {
    *rank = 0;
    *size = 1;
}

int pq__sweep_transport_all_ok(int ok) {
    return ok != 0;
}

void pq__sweep_transport_bcast(uint8_t *buf, int64_t n) {
    (void)buf;
    (void)n;
}

void pq__sweep_transport_send(const char *msg) {
    (void)msg;
}

pq_status pq__sweep_transport_recv(pq_ctx *ctx, int wait, char **msg, int *from) {
    *msg = NULL;
    *from = -1;
    return wait ? pq__fail(ctx, PQ_ERR_INTERNAL, "sweep: waiting for a result with no other rank") : PQ_OK;
}

#endif

/* ---------------------------------------------------------------- messages */

void pq__sweep_run_init(pq_sweep_run *run, const pq_sweep_config *c) {
    memset(run, 0, sizeof *run);
    snprintf(run->hash, sizeof run->hash, "%s", c->hash);
    run->recipe = c->recipe;
    run->sparsity = c->sparsity;
    run->bits = c->bits;
    run->tcr = c->tcr;
    run->acr = run->bpw = run->sr = run->srcr = run->seconds = NAN;
}

static double get_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *get_str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void pq__sweep_score_json(cJSON *e, const pq_sweep_score *sc) {
    cJSON_AddStringToObject(e, "metric", sc->metric);
    pq__json_add_num(e, "score", sc->score);
    pq__json_add_num(e, "base_score", sc->base_score);
    pq__json_add_num(e, "retention", sc->retention);
}

/* exact numbers (common/json.h): rank 0 stores what the other ranks computed */
static void scores_to_json(cJSON *a, const pq_sweep_run *run) {
    for (int64_t k = 0; run && a && k < run->n_scores; k++) {
        const pq_sweep_score *c = &run->scores[k];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "task", c->task);
        pq__sweep_score_json(e, c);
        pq__json_add_num(e, "se", c->se);
        cJSON_AddNumberToObject(e, "higher", c->higher_is_better);
        pq__units_to_json(e, &c->units);
        cJSON_AddItemToArray(a, e);
    }
}

char *pq__sweep_msg_encode(int64_t i, const pq_sweep_run *run, const char *status) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "i", (double)i);
    cJSON_AddStringToObject(o, "status", status);
    pq__json_add_num(o, "acr", run ? run->acr : NAN);
    pq__json_add_num(o, "bpw", run ? run->bpw : NAN);
    pq__json_add_num(o, "bytes", run ? (double)run->bytes : 0);
    pq__json_add_num(o, "sr", run ? run->sr : NAN);
    pq__json_add_num(o, "srcr", run ? run->srcr : NAN);
    pq__json_add_num(o, "seconds", run ? run->seconds : NAN);
    if (run && run->error) cJSON_AddStringToObject(o, "error", run->error);
    if (run && run->layers) cJSON_AddStringToObject(o, "layers", run->layers);
    if (run && run->recipe) cJSON_AddStringToObject(o, "recipe", run->recipe); /* an allocation's own */
    if (run) { /* an allocation's sparsity, bits and TCr are known only after it */
        pq__json_add_num(o, "sparsity", run->sparsity);
        pq__json_add_num(o, "bits", run->bits);
        pq__json_add_num(o, "tcr", run->tcr);
    }
    scores_to_json(cJSON_AddArrayToObject(o, "scores"), run);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return txt;
}

void pq__sweep_send_run(int64_t i, const pq_sweep_run *run, const char *status) {
    char *txt = pq__sweep_msg_encode(i, run, status);
    char fallback[64];
    if (!txt) snprintf(fallback, sizeof fallback, "{\"i\":%lld,\"status\":\"cancelled\"}", (long long)i);
    pq__sweep_transport_send(txt ? txt : fallback);
    free(txt);
}

/* The scores of a message into run->scores (malloc'ed; the units with them). */
static pq_status scores_from_json(pq_ctx *ctx, const cJSON *a, pq_sweep_run *run) {
    const int na = cJSON_GetArraySize(a);
    run->scores = na ? pq__calloc(ctx, (size_t)na, sizeof *run->scores, "the scores of a result message") : NULL;
    if (na && !run->scores) return ctx->status;
    for (const cJSON *e = a ? a->child : NULL; e; e = e->next) {
        pq_sweep_score *sc = &run->scores[run->n_scores++];
        const char *t = get_str(e, "task"), *mt = get_str(e, "metric");
        snprintf(sc->task, sizeof sc->task, "%s", t ? t : "?");
        snprintf(sc->metric, sizeof sc->metric, "%s", mt ? mt : "?");
        sc->score = get_num(e, "score");
        sc->se = get_num(e, "se");
        sc->base_score = get_num(e, "base_score");
        sc->retention = get_num(e, "retention");
        const cJSON *hb = cJSON_GetObjectItemCaseSensitive(e, "higher");
        sc->higher_is_better = cJSON_IsNumber(hb) ? hb->valueint : 1;
        if (!pq__units_from_json(e, &sc->units)) memset(&sc->units, 0, sizeof sc->units);
    }
    return PQ_OK;
}

/* The numbers and texts of a message into run (error and layers borrowed from o). */
static void run_from_json(const cJSON *o, pq_sweep_run *run) {
    run->acr = get_num(o, "acr");
    run->bpw = get_num(o, "bpw");
    const double b = get_num(o, "bytes");
    run->bytes = isfinite(b) ? (int64_t)b : 0;
    run->sr = get_num(o, "sr");
    run->srcr = get_num(o, "srcr");
    run->seconds = get_num(o, "seconds");
    run->error = (char *)get_str(o, "error");
    run->layers = (char *)get_str(o, "layers");
    if (get_str(o, "recipe")) run->recipe = (char *)get_str(o, "recipe");
    const double sp = get_num(o, "sparsity"), bits = get_num(o, "bits"), tcr = get_num(o, "tcr");
    if (isfinite(sp) && isfinite(bits) && isfinite(tcr)) run->sparsity = sp, run->bits = bits, run->tcr = tcr;
}

static pq_status store_run(pq_ctx *ctx, const pq_sweep_grid *grid, pq_sweep_db *db, const cJSON *o, int64_t i,
                           const char *status, int from, int64_t *n_done, int64_t *n_failed) {
    const pq_sweep_config *c = &grid->configs[i];
    pq_sweep_run run;
    pq__sweep_run_init(&run, c);
    snprintf(run.status, sizeof run.status, "%s", status);
    run_from_json(o, &run);
    pq_status st = scores_from_json(ctx, cJSON_GetObjectItemCaseSensitive(o, "scores"), &run);
    if (st != PQ_OK) return st;
    st = pq_sweep_db_put(ctx, db, &run);
    if (!strcmp(run.status, "done") || !strcmp(run.status, "undefined"))
        (*n_done)++;
    else
        (*n_failed)++;
    pq__log(ctx, PQ_LOG_INFO, "sweep: config %lld/%lld %s from rank %d: %s (Sr %.4f, SrCr %.4f)", (long long)(i + 1),
            (long long)grid->n, c->hash, from, run.status, run.sr, run.srcr);
    pq_sweep_scores_free(run.scores, run.n_scores);
    return st;
}

pq_status pq__sweep_msg_store(pq_ctx *ctx, const pq_sweep_grid *grid, pq_sweep_db *db, const char *msg, int from,
                              int64_t *n_done, int64_t *n_failed) {
    cJSON *o = cJSON_Parse(msg);
    const double di = get_num(o, "i");
    const char *status = get_str(o, "status");
    pq_status st;
    if (!o || !(di >= 0 && di < (double)grid->n) || !status)
        st = pq__fail(ctx, PQ_ERR_INTERNAL, "sweep: malformed result from rank %d", from);
    else if (!strcmp(status, "cancelled"))
        st = pq_sweep_db_delete(ctx, db, grid->configs[(int64_t)di].hash);
    else
        st = store_run(ctx, grid, db, o, (int64_t)di, status, from, n_done, n_failed);
    cJSON_Delete(o);
    return st;
}

pq_status pq__sweep_recv_run(pq_ctx *ctx, const pq_sweep_grid *grid, pq_sweep_db *db, int wait, int *got,
                             int64_t *n_done, int64_t *n_failed) {
    char *msg = NULL;
    int from = -1;
    *got = 0;
    pq_status st = pq__sweep_transport_recv(ctx, wait, &msg, &from);
    if (st != PQ_OK || !msg) return st;
    *got = 1;
    st = pq__sweep_msg_store(ctx, grid, db, msg, from, n_done, n_failed);
    free(msg);
    return st;
}
