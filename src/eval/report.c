/* The evaluation report as JSON. Non-finite numbers are written as null. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "eval/eval.h"

static void num(cJSON *o, const char *k, double v) {
    pq__json_add_num(o, k, v);
}

static cJSON *kld_json(const pq_kld_result *k) {
    cJSON *o = cJSON_CreateObject();
    num(o, "mean", k->mean);
    num(o, "stderr", k->se);
    pq__json_add_interval(o, "mean_ci", k->mean_ci);
    num(o, "p99_9", k->p999);
    num(o, "p99", k->p99);
    num(o, "p95", k->p95);
    num(o, "p90", k->p90);
    num(o, "median", k->median);
    num(o, "p10", k->p10);
    num(o, "p5", k->p05);
    num(o, "p1", k->p01);
    num(o, "max", k->max);
    num(o, "min", k->min);
    num(o, "same_top", k->same_top);
    num(o, "same_top_stderr", k->same_top_se);
    cJSON *dp = cJSON_AddObjectToObject(o, "delta_p");
    num(dp, "mean", k->dp_mean);
    num(dp, "stderr", k->dp_se);
    num(dp, "rms", k->dp_rms);
    num(dp, "p99_9", k->dp_p999);
    num(dp, "p99", k->dp_p99);
    num(dp, "p95", k->dp_p95);
    num(dp, "p90", k->dp_p90);
    num(dp, "median", k->dp_median);
    num(dp, "p10", k->dp_p10);
    num(dp, "p5", k->dp_p05);
    num(dp, "p1", k->dp_p01);
    num(o, "ppl_base", k->ppl_base);
    num(o, "ppl_model", k->ppl_model);
    num(o, "ln_ppl_ratio", k->ln_ppl_ratio);
    num(o, "ln_ppl_ratio_stderr", k->ln_ppl_ratio_se);
    num(o, "tokens", (double)k->n_tokens);
    num(o, "windows", (double)k->n_windows);
    num(o, "ctx", (double)k->ctx);
    num(o, "seconds", k->seconds);
    num(o, "tokens_per_second", k->seconds > 0 ? (double)k->n_tokens / k->seconds : NAN);
    cJSON_AddStringToObject(o, "protocol", k->protocol);
    cJSON_AddStringToObject(o, "file", k->file);
    return o;
}

char *pq_eval_report_json(const pq_eval_report *r) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "model", r->model);
    if (r->base[0])
        cJSON_AddStringToObject(root, "base", r->base);
    else
        cJSON_AddNullToObject(root, "base");
    cJSON *tasks = cJSON_AddObjectToObject(root, "tasks");
    for (int64_t i = 0; i < r->n_tasks; i++) {
        const pq_task_result *t = &r->tasks[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "metric", t->metric);
        num(o, "score", t->score);
        num(o, "stderr", t->se);
        if (t->has_base) {
            num(o, "base_score", t->base_score);
            num(o, "base_stderr", t->base_se);
            cJSON_AddBoolToObject(o, "base_cached", t->base_cached);
        } else {
            cJSON_AddNullToObject(o, "base_score");
        }
        num(o, "retention", t->retention);
        if (t->has_base) pq__json_add_interval(o, "retention_ci", t->retention_ci);
        if (t->n_choices > 1) {
            num(o, "retention_norm", t->retention_norm);
            num(o, "score_norm", pq_metrics_chance_norm(t->score, t->n_choices));
            num(o, "n_choices", t->n_choices);
        }
        if (t->metric2[0]) {
            cJSON *m2 = cJSON_AddObjectToObject(o, t->metric2);
            num(m2, "score", t->score2);
            num(m2, "stderr", t->se2);
            if (t->has_base) num(m2, "base_score", t->base_score2);
        }
        num(o, "n", (double)t->n);
        num(o, "seconds", t->seconds);
        num(o, "per_second", t->seconds > 0 ? (double)t->n / t->seconds : NAN); /* items (ppl: tokens) per s */
        if (t->metric[0] != 'p') num(o, "shots", t->shots);
        cJSON_AddStringToObject(o, "protocol", t->protocol);
        cJSON_AddStringToObject(o, "file", t->file);
        cJSON_AddItemToObject(tasks, t->name, o);
    }
    if (r->has_kld)
        cJSON_AddItemToObject(root, "kld", kld_json(&r->kld));
    else
        cJSON_AddNullToObject(root, "kld");
    const pq_metrics *m = &r->metrics;
    cJSON *mo = cJSON_AddObjectToObject(root, "metrics");
    num(mo, "tcr", m->tcr);
    num(mo, "acr", m->acr);
    num(mo, "bpw", m->bpw);
    num(mo, "sparsity", m->sparsity);
    num(mo, "bits", m->bits);
    num(mo, "stored_bits", m->stored_bits);
    num(mo, "sr", m->sr);
    pq__json_add_interval(mo, "sr_ci", m->sr_ci);
    num(mo, "sr_norm", m->sr_norm);
    num(mo, "sr_tasks", m->n_retention);
    num(mo, "srcr", m->srcr);
    num(mo, "sr_tcr", m->sr_tcr);
    cJSON_AddStringToObject(mo, "definitions",
                            "tcr = 1-(1-s)q/16; acr = 1-bytes/(2 n) over linear weights; sr = mean task retention "
                            "(ppl: base/model); srcr = sr/(sqrt(1-s) log2(q)/log2(16)) is this project's reading of "
                            "the paper (its equation is unpublished); sr_tcr = sr*tcr");
    char method[160];
    pq_bootstrap_describe(NULL, method, sizeof method);
    cJSON_AddStringToObject(mo, "interval_method", method);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

pq_status pq_eval_report_write_json(pq_ctx *ctx, const pq_eval_report *r, const char *path) {
    char *s = pq_eval_report_json(r);
    if (!s) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory building the JSON report for %s", path);
    pq__atomic a;
    pq_status st = pq__atomic_open(ctx, path, &a);
    if (!st) st = pq__atomic_write(ctx, &a, s, strlen(s));
    if (!st) st = pq__atomic_write(ctx, &a, "\n", 1);
    if (!st)
        st = pq__atomic_commit(ctx, &a);
    else
        pq__atomic_abort(&a);
    free(s);
    return st;
}

pq_status pq_eval_task_count(pq_ctx *ctx, const char *task, const pq_eval_params *params, int64_t *n_items,
                             char *file, size_t file_size) {
    pq_eval_params p = params ? *params : pq_eval_params_default();
    pq__task t;
    pq_status st = pq__task_load(ctx, task, p.data_dir, p.cache_dir, p.limit, &t);
    if (st) return st;
    *n_items = t.n_eval;
    if (file && file_size) snprintf(file, file_size, "%s", t.file);
    pq__task_free(&t);
    return PQ_OK;
}
