/* Running tasks: one task on one model (pq_eval_task), and a task list on a model and its
 * base with cached base results, retention and compression metrics (pq_eval_run). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/json.h"
#include "eval/eval.h"
#include "eval/units.h"
#include "model/packed.h"
#include "tokenizer/tokenizer.h"

pq_eval_params pq_eval_params_default(void) {
    pq_eval_params p;
    memset(&p, 0, sizeof p);
    p.shots = -1;
    p.seed = 1234;
    p.ctx = 512;
    p.ppl_protocol = PQ_PPL_GPTQ;
    return p;
}

pq_compress_info pq_compress_info_default(void) {
    pq_compress_info c = {-1.0, 0.0, 0};
    return c;
}

void pq_eval_report_free(pq_eval_report *r) {
    if (!r) return;
    for (int64_t i = 0; i < r->n_tasks; i++) {
        pq_units_clear(&r->tasks[i].units);
        pq_units_clear(&r->tasks[i].base_units);
    }
    pq_units_clear(&r->kld.units);
    free(r->tasks);
    free(r);
}

/* ---------------------------------------------------------------- one task */

static pq_status eval_ppl(pq_ctx *ctx, const pq_model *m, const pq__task *t, const pq_eval_params *p,
                          pq_task_result *out) {
    const pq_tokenizer *tok = pq_model_tokenizer(m);
    if (!tok) return pq__fail(ctx, PQ_ERR_INVALID, "%s: the model has no tokenizer (give --tokenizer)", t->name);
    int32_t *ids = NULL;
    int64_t n = 0;
    pq_status st = pq__read_tokens(ctx, tok, t->file, &ids, &n);
    if (st) return st;
    pq_ppl_params pp = pq_ppl_params_default();
    pp.ctx = p->ctx > 0 ? p->ctx : 512;
    if (pp.ctx > m->cfg.max_seq_len) pp.ctx = m->cfg.max_seq_len;
    pp.protocol = p->ppl_protocol;
    if (p->limit > 0) pp.max_tokens = p->limit * pp.ctx;
    /* one unit per window, for paired statistics */
    const int64_t n_win = (pp.max_tokens > 0 && n > pp.max_tokens ? pp.max_tokens : n) / pp.ctx;
    pq_units *u = &out->units;
    u->kind = PQ_UNITS_PPL;
    if (n_win > 0) {
        u->value = pq__malloc(ctx, (size_t)n_win * sizeof *u->value, "ppl windows");
        u->weight = u->value ? pq__malloc(ctx, (size_t)n_win * sizeof *u->weight, "ppl windows") : NULL;
        if (!u->weight) {
            pq_units_clear(u);
            free(ids);
            return ctx->status;
        }
        pp.window_nll = u->value;
    }
    pq_ppl_result r;
    st = pq_perplexity(ctx, m, ids, n, &pp, &r);
    free(ids);
    if (st) {
        pq_units_clear(u);
        return st;
    }
    u->n = r.n_windows;
    for (int64_t w = 0; w < u->n; w++)
        u->weight[w] = (double)(r.tokens_scored / r.n_windows); /* every window scores as many tokens */
    out->score = r.ppl;
    out->se = r.ppl * r.nll_stderr; /* nll_stderr is already the standard error of the mean */
    snprintf(out->metric2, sizeof out->metric2, "nll");
    out->score2 = r.nll_mean;
    out->se2 = r.nll_stderr;
    out->n = r.tokens_scored;
    out->higher_is_better = 0;
    char d[200];
    pq_ppl_protocol_describe(&pp, d, sizeof d);
    snprintf(out->protocol, sizeof out->protocol, "perplexity %s%s", d,
             p->limit > 0 ? " (first --limit windows)" : "");
    return PQ_OK;
}

/* One item as a --log-samples JSON line through params->on_sample. */
static pq_status emit_sample(pq_ctx *ctx, const pq_eval_params *p, const pq__task *t, int64_t e, const pq__item *it,
                             const char *prompt, const double *ll, int n_choices, double score, const char *output) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory building the --log-samples JSON of %s item %lld", t->name,
                        (long long)t->eval_idx[e]);
    cJSON_AddStringToObject(o, "task", t->name);
    cJSON_AddNumberToObject(o, "doc_id", (double)t->eval_idx[e]);
    cJSON_AddStringToObject(o, "prompt", prompt ? prompt : "");
    if (t->kind == PQ__KIND_GEN) {
        cJSON_AddStringToObject(o, "output", output ? output : "");
        cJSON_AddStringToObject(o, "target", it->target ? it->target : "");
    } else {
        cJSON *c = cJSON_AddArrayToObject(o, "choices"), *l = cJSON_AddArrayToObject(o, "loglikelihoods");
        int pred = 0;
        for (int k = 0; k < n_choices; k++) {
            if (t->kind == PQ__KIND_LAMBADA)
                cJSON_AddItemToArray(c, cJSON_CreateString(it->target ? it->target : ""));
            else
                cJSON_AddItemToArray(c, cJSON_CreateString(it->choices[k]));
            cJSON_AddItemToArray(l, pq__json_num(ll[k]));
            if (ll[k] > ll[pred]) pred = k;
        }
        cJSON_AddNumberToObject(o, "pred", t->kind == PQ__KIND_LAMBADA ? score : pred);
        cJSON_AddNumberToObject(o, "gold", t->kind == PQ__KIND_LAMBADA ? 1 : it->gold);
    }
    cJSON_AddNumberToObject(o, "acc", score);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory printing the --log-samples JSON of %s item %lld", t->name,
                        (long long)t->eval_idx[e]);
    const int stop = p->on_sample(p->sample_user, s);
    free(s);
    return stop ? pq__fail(ctx, PQ_ERR_CANCELLED, "%s: stopped while logging samples", t->name) : PQ_OK;
}

/* What the scorers of one task share while its items run. */
typedef struct task_run {
    pq_ctx *ctx;
    const pq_model *m;
    const pq__task *t;
    const pq_eval_params *p;
    int k;              /* shots */
    int64_t gen_tokens; /* GEN: the most new tokens */
    double *ll;         /* [max choices] summed log P of each choice */
    int64_t *chars;     /* [max choices] code points of " " + choice */
    int *greedy;        /* [max choices] 1 when every token of the choice is the argmax */
    pq__str full;       /* the item's prompt: shots + context */
    char *output;       /* GEN: the item's generated text */
    double s_ll, s_ll2, chance;
    int64_t n_words;
} task_run;

/* s = shots + text (s reset first). */
static pq_status build_prompt(task_run *r, pq__str *s, const char *shots, const char *text) {
    s->len = 0;
    if (pq__str_add(s, "", 0) && pq__str_adds(s, shots) && pq__str_adds(s, text)) return PQ_OK;
    return pq__fail(r->ctx, PQ_ERR_NOMEM, "out of memory building a prompt of %zu bytes for %s",
                    strlen(shots) + strlen(text) + 1, r->t->name);
}

static pq_status score_mc(task_run *r, const pq__item *it, const char *shots, double *score) {
    pq_status st = build_prompt(r, &r->full, shots, it->context);
    if (st == PQ_OK)
        st = pq__score_mc_text(r->ctx, r->m, r->full.p, (const char *const *)it->choices, it->n_choices, r->ll,
                               r->chars, NULL);
    if (st != PQ_OK) return st;
    *score = pq__mc_pick(r->ll, NULL, it->n_choices) == it->gold;
    r->s_ll += pq__mc_pick(r->ll, r->chars, it->n_choices) == it->gold;
    r->chance += 1.0 / it->n_choices;
    return PQ_OK;
}

static pq_status score_partial(task_run *r, const pq__item *it, const char *shots, double *score) {
    char **ctxs = pq__calloc(r->ctx, (size_t)it->n_choices, sizeof *ctxs, "the contexts of a partial-scoring item");
    pq_status st = ctxs ? PQ_OK : r->ctx->status;
    for (int c = 0; st == PQ_OK && c < it->n_choices; c++) {
        pq__str s = {0};
        st = build_prompt(r, &s, shots, it->choices[c]);
        ctxs[c] = s.p;
    }
    if (st == PQ_OK)
        st = pq__score_partial_text(r->ctx, r->m, (const char *const *)ctxs, it->n_choices, it->target, r->ll);
    if (st == PQ_OK) {
        *score = pq__mc_pick(r->ll, NULL, it->n_choices) == it->gold;
        r->chance += 1.0 / it->n_choices;
    }
    for (int c = 0; ctxs && c < it->n_choices; c++)
        free(ctxs[c]);
    free(ctxs);
    return st;
}

static pq_status score_lambada(task_run *r, const pq__item *it, const char *shots, double *score) {
    const char *ch[1] = {it->target};
    pq_status st = build_prompt(r, &r->full, shots, it->context);
    if (st == PQ_OK) st = pq__score_mc_text(r->ctx, r->m, r->full.p, ch, 1, r->ll, NULL, r->greedy);
    if (st != PQ_OK) return st;
    *score = r->greedy[0];
    r->s_ll += r->ll[0];
    r->s_ll2 += r->ll[0] * r->ll[0];
    r->n_words++;
    return PQ_OK;
}

static pq_status score_generative(task_run *r, const pq__item *it, const char *shots, double *score) {
    pq_status st = build_prompt(r, &r->full, shots, it->context);
    if (st != PQ_OK) return st;
    /* an item's own stop strings (gen:FILE) replace the task's */
    const int own = it->n_stops > 0;
    st = pq__generate_text(r->ctx, r->m, r->full.p, (const char *const *)(own ? it->stops : r->t->stops),
                           own ? it->n_stops : r->t->n_stops, r->gen_tokens, &r->output);
    if (st == PQ_OK) *score = pq__answer_score(r->t->extract, r->output, it->target);
    return st;
}

/* One scorer per task kind (ppl and kld are whole-text measures, not items). */
typedef pq_status (*item_scorer)(task_run *r, const pq__item *it, const char *shots, double *score);
static const item_scorer item_scorers[] = {
    [PQ__KIND_MC] = score_mc,
    [PQ__KIND_PARTIAL] = score_partial,
    [PQ__KIND_LAMBADA] = score_lambada,
    [PQ__KIND_GEN] = score_generative,
};

/* Scores the e-th evaluated item into out->units (and the sums of r). */
static pq_status score_item(task_run *r, int64_t e, pq_task_result *out) {
    const pq__task *t = r->t;
    const int64_t i = t->eval_idx[e];
    const pq__item *it = &t->items[i];
    char *shots = pq__task_fewshot(t, i, r->k, r->p->seed);
    if (!shots)
        return pq__fail(r->ctx, PQ_ERR_NOMEM, "out of memory building the %d-shot prefix of %s item %lld", r->k,
                        t->name, (long long)i);
    double score = 0;
    pq_status st = item_scorers[t->kind](r, it, shots, &score);
    if (st == PQ_OK && r->p->on_sample)
        st = emit_sample(r->ctx, r->p, t, e, it, t->kind == PQ__KIND_PARTIAL ? it->target : r->full.p, r->ll,
                         t->kind == PQ__KIND_LAMBADA ? 1 : it->n_choices, score, r->output);
    free(r->output);
    r->output = NULL;
    free(shots);
    if (st == PQ_OK) out->units.value[out->units.n++] = score;
    return st;
}

/* How a task of t's kind is scored, for the protocol line. */
static const char *task_method(const pq__task *t) {
    switch (t->kind) {
    case PQ__KIND_MC:
        return "multiple choice: sum log P(\" \"+choice | context); acc = argmax, acc_norm = argmax per character";
    case PQ__KIND_PARTIAL: return "partial scoring: sum log P(\" \"+continuation | option); acc = argmax";
    case PQ__KIND_LAMBADA: return "lambada: acc = greedy tokens equal \" \"+last word; ppl = exp(-mean log P(word))";
    default: return pq__answer_method(t->extract);
    }
}

/* The task's numbers from the scores of its items (done of them). */
static void task_summary(const task_run *r, int64_t done, pq_task_result *out) {
    const pq__task *t = r->t;
    const double N = (double)done;
    double sum = 0;
    for (int64_t e = 0; e < done; e++)
        sum += out->units.value[e];
    out->n = done;
    out->score = sum / N;
    out->se = pq_metrics_binom_stderr(out->score, done);
    if (t->kind == PQ__KIND_MC) {
        snprintf(out->metric2, sizeof out->metric2, "acc_norm");
        out->score2 = r->s_ll / N;
        out->se2 = pq_metrics_binom_stderr(out->score2, done);
    } else if (t->kind == PQ__KIND_LAMBADA) {
        const double nw = (double)r->n_words, mean = r->s_ll / nw;
        double var = r->n_words > 1 ? (r->s_ll2 / nw - mean * mean) * nw / (nw - 1.0) : 0;
        snprintf(out->metric2, sizeof out->metric2, "ppl");
        out->score2 = exp(-mean);
        out->se2 = out->score2 * (var > 0 ? sqrt(var / nw) : 0);
    }
    if ((t->kind == PQ__KIND_MC || t->kind == PQ__KIND_PARTIAL) && !out->n_choices)
        out->n_choices = (int)lround(1.0 / (r->chance / N));
    char extra[64] = "";
    if (t->kind == PQ__KIND_GEN) snprintf(extra, sizeof extra, ", max %lld new tokens", (long long)r->gen_tokens);
    snprintf(out->protocol, sizeof out->protocol, "%s; %d-shot (seed %llu)%s; stderr sqrt(p(1-p)/(n-1))",
             task_method(t), r->k, (unsigned long long)r->p->seed, extra);
}

/* The items of an item task (MC, partial, lambada, generative) one by one. */
static pq_status eval_items(pq_ctx *ctx, const pq_model *m, const pq__task *t, const pq_eval_params *p,
                            pq_task_result *out) {
    task_run r = {.ctx = ctx, .m = m, .t = t, .p = p};
    r.k = p->shots >= 0 ? p->shots : t->default_shots;
    r.gen_tokens = p->gen_max_tokens > 0 ? p->gen_max_tokens : t->gen_tokens;
    out->shots = r.k;
    out->n_choices = t->n_choices;
    int maxc = 1;
    for (int64_t i = 0; i < t->n_items; i++)
        if (t->items[i].n_choices > maxc) maxc = t->items[i].n_choices;
    r.ll = pq__malloc(ctx, (size_t)maxc * sizeof *r.ll, "choice log-likelihoods");
    r.chars = r.ll ? pq__malloc(ctx, (size_t)maxc * sizeof *r.chars, "choice lengths") : NULL;
    r.greedy = r.chars ? pq__malloc(ctx, (size_t)maxc * sizeof *r.greedy, "choice greedy flags") : NULL;
    pq_status st = r.greedy ? PQ_OK : ctx->status;
    out->units.kind = PQ_UNITS_MEAN; /* one unit per item: its 0/1 score */
    if (!st && t->n_eval > 0 &&
        !(out->units.value = pq__malloc(ctx, (size_t)t->n_eval * sizeof *out->units.value, "per-item scores")))
        st = ctx->status;
    for (int64_t e = 0; e < t->n_eval && !st; e++) {
        st = score_item(&r, e, out);
        if (!st) st = pq__progress(ctx, t->name, out->units.n, t->n_eval);
    }
    free(r.full.p);
    free(r.ll);
    free(r.chars);
    free(r.greedy);
    if (!st && out->units.n == 0)
        st = pq__fail(ctx, PQ_ERR_INVALID, "%s: no items to evaluate in %s", t->name, t->file);
    if (!st) task_summary(&r, out->units.n, out);
    return st;
}

pq_status pq_eval_task(pq_ctx *ctx, const pq_model *m, const char *spec, const pq_eval_params *params,
                       pq_task_result *out) {
    pq_eval_params p = params ? *params : pq_eval_params_default();
    memset(out, 0, sizeof *out);
    out->retention = out->retention_norm = NAN;
    out->retention_ci[0] = out->retention_ci[1] = NAN;
    snprintf(out->name, sizeof out->name, "%s", spec);
    out->higher_is_better = 1;
    pq__task t;
    pq_status st = pq__task_load(ctx, spec, p.data_dir, p.cache_dir, p.limit, &t);
    if (st) return st;
    snprintf(out->file, sizeof out->file, "%s", t.file);
    snprintf(out->metric, sizeof out->metric, "%s", t.metric);
    if (t.kind == PQ__KIND_PPL)
        st = eval_ppl(ctx, m, &t, &p, out);
    else if (t.kind == PQ__KIND_KLD)
        st = pq__fail(ctx, PQ_ERR_INVALID, "%s: kld needs a base model (--base)", spec);
    else
        st = eval_items(ctx, m, &t, &p, out);
    pq__task_free(&t);
    if (st) pq_units_clear(&out->units);
    return st;
}

/* ---------------------------------------------------------------- hashing */

static uint64_t hash_words(const uint8_t *p, size_t n, uint64_t h) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    return pq__fnv1a(p + i, n - i, h);
}

uint64_t pq__model_hash(const pq_model *m) {
    uint64_t h = PQ_FNV_INIT;
    h = pq__fnv1a(&m->cfg.arch, sizeof m->cfg.arch, h);
    int64_t dims[8] = {m->cfg.dim,        m->cfg.hidden_dim, m->cfg.n_layers,   m->cfg.n_heads,
                       m->cfg.n_kv_heads, m->cfg.head_dim,   m->cfg.vocab_size, m->cfg.max_seq_len};
    h = pq__fnv1a(dims, sizeof dims, h);
    for (int64_t i = 0; i < m->src.n_tensors; i++) {
        const pq__tensor *t = &m->src.tensors[i];
        h = pq__fnv1a(t->name, strlen(t->name) + 1, h);
        h = pq__fnv1a(&t->dtype, sizeof t->dtype, h);
        h = pq__fnv1a(t->shape, sizeof t->shape, h);
        if (t->data) h = hash_words(t->data, t->nbytes, h);
    }
    if (m->tok) {
        int64_t V = pq_tokenizer_n_vocab(m->tok);
        for (int32_t id = 0; id < V; id++) {
            size_t len = 0;
            const char *s = pq__tokenizer_piece(m->tok, id, &len);
            if (s) h = pq__fnv1a(s, len, h);
            h = pq__fnv1a(&id, sizeof id, h);
        }
        int32_t be[2] = {pq_tokenizer_bos(m->tok), pq_tokenizer_eos(m->tok)};
        h = pq__fnv1a(be, sizeof be, h);
    }
    return h;
}

/* ---------------------------------------------------------------- cache */

/* v2: scores are stored exactly (v1 entries had lost the last bit of some values); v3: with
 * the per-unit results for paired statistics */
static void cache_key(char *key, size_t n, uint64_t model_hash, const char *spec, const pq_task_result *r,
                      const pq_eval_params *p) {
    struct stat sb;
    long long size = stat(r->file, &sb) == 0 ? (long long)sb.st_size : -1;
    snprintf(key, n,
             "v3|model %016llx|task %s|file %s (%lld bytes)|protocol %s|limit %lld|shots %d|seed %llu|ctx %lld",
             (unsigned long long)model_hash, spec, r->file, size, r->protocol, (long long)p->limit, p->shots,
             (unsigned long long)p->seed, (long long)p->ctx);
}

static char *cache_path(const char *dir, const char *key) {
    char name[64];
    snprintf(name, sizeof name, "eval-%016llx.json", (unsigned long long)pq__fnv1a(key, strlen(key), PQ_FNV_INIT));
    return pq__path_join(dir, name);
}

/* Reads a cached base result; 1 if found and its key matches. */
static int cache_get(const char *dir, const char *key, pq_task_result *r) {
    char *path = cache_path(dir, key), *buf = NULL;
    size_t len = 0;
    pq_ctx quiet; /* a cache entry that cannot be read is a miss */
    pq__quiet_begin(NULL, &quiet);
    int ok = 0;
    if (path && pq__file_exists(path) && pq__read_text(&quiet, path, 1 << 20, &buf, &len) == PQ_OK) {
        cJSON *o = cJSON_Parse(buf);
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "key");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "score"), *e = cJSON_GetObjectItemCaseSensitive(o, "se");
        const cJSON *s2 = cJSON_GetObjectItemCaseSensitive(o, "score2");
        if (cJSON_IsString(k) && !strcmp(k->valuestring, key) && cJSON_IsNumber(s) && cJSON_IsNumber(e) &&
            pq__units_from_json(o, &r->base_units)) {
            r->base_score = s->valuedouble;
            r->base_se = e->valuedouble;
            r->base_score2 = cJSON_IsNumber(s2) ? s2->valuedouble : NAN;
            ok = 1;
        }
        cJSON_Delete(o);
    }
    free(buf);
    free(path);
    return ok;
}

static void cache_put(pq_ctx *ctx, const char *dir, const char *key, const pq_task_result *b) {
    if (!pq__is_dir(dir) && mkdir(dir, 0755) != 0) {
        pq__log(ctx, PQ_LOG_WARN, "cannot create cache folder %s; base results not cached", dir);
        return;
    }
    char *path = cache_path(dir, key);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", key);
    /* exact: a result read back from the cache must equal the one computed */
    pq__json_add_num(o, "score", b->score);
    pq__json_add_num(o, "se", b->se);
    if (b->metric2[0]) pq__json_add_num(o, "score2", b->score2);
    cJSON_AddNumberToObject(o, "n", (double)b->n);
    pq__units_to_json(o, &b->units);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    pq_ctx quiet; /* a base result that cannot be cached is only a warning */
    pq__quiet_begin(ctx, &quiet);
    pq__atomic a;
    if (!path || !s)
        pq__fail(&quiet, PQ_ERR_NOMEM, "out of memory building the cache entry (JSON) of %s", b->name);
    else if (pq__atomic_open(&quiet, path, &a) == PQ_OK) {
        if (pq__atomic_write(&quiet, &a, s, strlen(s)) == PQ_OK)
            pq__atomic_commit(&quiet, &a);
        else
            pq__atomic_abort(&a);
    }
    if (quiet.error[0]) pq__log(ctx, PQ_LOG_WARN, "cache: %s", quiet.error);
    free(s);
    free(path);
}

/* ---------------------------------------------------------------- metrics of a model */

/* Sparsity and bits: given by the caller, else declared by a prunequant-compressed folder
 * (config.json quantization_config), else measured (zeros of the weights; Q4_0 / Q8_0 GGUF
 * tensors count as 4 / 8 bits). ACr and bpw: the bytes stored for the linear weights (packed
 * tensors with their scales, zeros and masks, or the .weight tensors as stored). */
static void model_metrics(const pq_model *m, const pq_compress_info *ci, pq_metrics *mt) {
    int64_t n_lin = 0, zeros = 0;
    size_t stored = 0;
    int q4 = 0, q8 = 0, other = 0;
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        const pq__block *b = &m->blocks[l];
        for (int j = 0; j < PQ_BLOCK_LINEARS; j++) {
            const pq__linear *lin = pq__block_linear_get(b, j);
            const int64_t n = lin->rows * lin->cols;
            char base[128], wn[144];
            pq__linear_name(base, sizeof base, l, j);
            snprintf(wn, sizeof wn, "%s.weight", base);
            const pq__tensor *t = pq__source_find(&m->src, wn); /* NULL when packed */
            stored += pq__linear_stored_bytes(&m->src, base, n);
            if (t && t->dtype == PQ_DTYPE_Q4_0)
                q4++;
            else if (t && t->dtype == PQ_DTYPE_Q8_0)
                q8++;
            else
                other++;
            n_lin += n;
            zeros += pq__qmat_count_zeros(&lin->w); /* zeros of the weights the forward uses */
        }
    }
    const pq__config *c = &m->cfg;
    mt->sparsity = ci->sparsity >= 0  ? ci->sparsity
                   : c->declared_bits ? c->declared_sparsity
                   : n_lin            ? (double)zeros / (double)n_lin
                                      : 0;
    mt->bits = ci->bits > 0            ? ci->bits
               : c->declared_bits      ? c->declared_bits
               : (q4 && !q8 && !other) ? 4
               : (q8 && !q4 && !other) ? 8
                                       : 16;
    mt->stored_bits = pq_metrics_bpw(stored, n_lin);
    size_t bytes = ci->linear_bytes ? ci->linear_bytes : stored;
    mt->tcr = pq_metrics_tcr(mt->sparsity, mt->bits);
    mt->acr = pq_metrics_acr(bytes, n_lin);
    mt->bpw = pq_metrics_bpw(bytes, n_lin);
}

/* ---------------------------------------------------------------- run */

/* The paired interval of one task's retention (NAN when the units are not paired). */
static void task_ci(pq_ctx *ctx, pq_task_result *res) {
    res->retention_ci[0] = res->retention_ci[1] = NAN;
    if (res->units.n <= 0 || res->units.n != res->base_units.n) return;
    const pq_units *a = &res->units, *b = &res->base_units;
    const int higher = res->higher_is_better;
    double point;
    pq_ctx quiet; /* an unpaired result only loses its interval */
    pq__quiet_begin(ctx, &quiet);
    pq_bootstrap_sr(&quiet, 1, &a, &b, &higher, NULL, &point, res->retention_ci);
}

/* The paired interval of Sr over the tasks that have paired units and a retention. */
static void sr_ci(pq_ctx *ctx, pq_eval_report *r) {
    pq_metrics *mt = &r->metrics;
    mt->sr_ci[0] = mt->sr_ci[1] = NAN;
    const size_t nt = r->n_tasks > 0 && r->n_tasks < (1 << 20) ? (size_t)r->n_tasks : 1;
    const pq_units **a = calloc(nt, sizeof *a);
    const pq_units **b = calloc(nt, sizeof *b);
    int *higher = calloc(nt, sizeof *higher);
    int64_t k = 0, with_ret = 0;
    for (int64_t i = 0; a && b && higher && i < r->n_tasks; i++) {
        const pq_task_result *t = &r->tasks[i];
        if (!isfinite(t->retention)) continue;
        with_ret++;
        if (t->units.n <= 0 || t->units.n != t->base_units.n) continue;
        a[k] = &t->units, b[k] = &t->base_units, higher[k] = t->higher_is_better, k++;
    }
    /* an interval only when every task in Sr has paired units */
    if (k && k == with_ret) {
        double point;
        pq_ctx quiet; /* Sr without an interval is still Sr */
        pq__quiet_begin(ctx, &quiet);
        pq_bootstrap_sr(&quiet, k, a, b, higher, NULL, &point, mt->sr_ci);
    } else if (with_ret && (!a || !b || !higher)) {
        pq__log(ctx, PQ_LOG_WARN, "no memory for the bootstrap interval of Sr");
    }
    free(a);
    free(b);
    free(higher);
}

static pq_status add_task(pq_ctx *ctx, pq_eval_report *r, int64_t *cap, pq_task_result *res) {
    if (r->n_tasks == *cap) {
        int64_t nc = *cap ? *cap * 2 : 8;
        pq_task_result *p = realloc(r->tasks, (size_t)nc * sizeof *p);
        if (!p)
            return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the task results",
                            (size_t)nc * sizeof *p);
        r->tasks = p;
        *cap = nc;
    }
    r->tasks[r->n_tasks++] = *res;
    return PQ_OK;
}

pq_status pq_eval_tasks_check(pq_ctx *ctx, const char *tasks, const pq_eval_params *params, int have_base) {
    pq_eval_params p = params ? *params : pq_eval_params_default();
    if (!tasks) return pq__fail(ctx, PQ_ERR_INVALID, "eval: no task list");
    char *list = pq__strdup(ctx, tasks, "the task list");
    if (!list) return ctx->status;
    pq_status st = PQ_OK;
    int n = 0;
    char *save = NULL;
    for (char *spec = strtok_r(list, ",", &save); spec && !st; spec = strtok_r(NULL, ",", &save)) {
        while (*spec == ' ')
            spec++;
        if (!*spec) continue;
        n++;
        if (!strncmp(spec, "kld:", 4)) {
            char file[1024];
            if (!have_base)
                st = pq__fail(ctx, PQ_ERR_INVALID, "%s: kld needs a base model (--base)", spec);
            else if (!pq__resolve_file(spec + 4, p.data_dir, file, sizeof file))
                st = pq__fail(ctx, PQ_ERR_IO, "task '%s': file %s not found (also looked under %s)", spec, spec + 4,
                              p.data_dir ? p.data_dir : "(no data folder)");
            continue;
        }
        /* loading is the check: unknown names, missing or malformed files all fail here */
        pq__task t;
        if ((st = pq__task_load(ctx, spec, p.data_dir, p.cache_dir, p.limit, &t)) == PQ_OK) pq__task_free(&t);
    }
    free(list);
    if (!st && !n) st = pq__fail(ctx, PQ_ERR_INVALID, "the task list '%s' names no task", tasks);
    return st;
}

/* One kld:FILE task: the distance of model to base on FILE. */
static pq_status run_kld(pq_ctx *ctx, pq_eval_report *r, const char *spec, const pq_model *base,
                         const pq_model *model, const pq_eval_params *p) {
    if (!base) return pq__fail(ctx, PQ_ERR_INVALID, "%s: kld needs a base model (--base)", spec);
    char file[1024];
    if (!pq__resolve_file(spec + 4, p->data_dir, file, sizeof file))
        return pq__fail(ctx, PQ_ERR_IO, "%s: file %s not found", spec, spec + 4);
    if (r->has_kld) pq__log(ctx, PQ_LOG_WARN, "%s: only the last kld task is reported", spec);
    pq_units_clear(&r->kld.units);
    const double t0 = pq__now();
    pq_status st = pq_eval_kld(ctx, base, model, file, p, &r->kld);
    if (st) return st;
    r->kld.seconds = pq__now() - t0;
    r->has_kld = 1;
    return PQ_OK;
}

/* The base model's result of task spec (from the cache, else evaluated and cached) and the
 * retention of res against it. */
static pq_status add_base(pq_ctx *ctx, const pq_model *base, uint64_t base_hash, const char *spec,
                          const pq_eval_params *p, pq_task_result *res) {
    char key[2048];
    cache_key(key, sizeof key, base_hash, spec, res, p);
    if (p->cache_dir && cache_get(p->cache_dir, key, res)) {
        res->base_cached = 1;
    } else {
        pq_task_result b;
        pq__log(ctx, PQ_LOG_INFO, "task %s (base model)", spec);
        pq_eval_params pb = *p;
        pb.on_sample = NULL; /* the samples are the evaluated model's */
        pq_status st = pq_eval_task(ctx, base, spec, &pb, &b);
        if (st) return st;
        res->base_score = b.score;
        res->base_se = b.se;
        res->base_score2 = b.metric2[0] ? b.score2 : NAN;
        if (p->cache_dir) cache_put(ctx, p->cache_dir, key, &b);
        res->base_units = b.units; /* moved */
    }
    res->has_base = 1;
    /* --normalize chance: the interval is of the chance-normalised retention */
    if (p->normalize_chance && res->n_choices > 1) res->units.chance_k = res->base_units.chance_k = res->n_choices;
    task_ci(ctx, res);
    res->retention = pq_metrics_retention(res->score, res->base_score, res->higher_is_better);
    if (!isfinite(res->retention))
        pq__log(ctx, PQ_LOG_WARN, "task %s: retention undefined (score %g, base score %g%s); left out of Sr", spec,
                res->score, res->base_score,
                res->base_score == 0 || res->score == 0 ? ": a score of 0 gives no ratio" : "");
    if (res->n_choices > 1)
        res->retention_norm = pq_metrics_retention(pq_metrics_chance_norm(res->score, res->n_choices),
                                                   pq_metrics_chance_norm(res->base_score, res->n_choices), 1);
    return PQ_OK;
}

/* One task of the list on model (and its base) into the report. */
static pq_status run_one_task(pq_ctx *ctx, pq_eval_report *r, int64_t *cap, const char *spec, const pq_model *model,
                              const pq_model *base, uint64_t base_hash, const pq_eval_params *p) {
    if (!strncmp(spec, "kld:", 4)) return run_kld(ctx, r, spec, base, model, p);
    pq_task_result res;
    pq__log(ctx, PQ_LOG_INFO, "task %s", spec);
    const double t0 = pq__now();
    pq_status st = pq_eval_task(ctx, model, spec, p, &res);
    if (st) return st;
    res.seconds = pq__now() - t0;
    if (base && (st = add_base(ctx, base, base_hash, spec, p, &res))) {
        pq_units_clear(&res.units);
        return st;
    }
    if ((st = add_task(ctx, r, cap, &res))) {
        pq_units_clear(&res.units);
        pq_units_clear(&res.base_units);
    }
    return st;
}

/* Sr (plain and chance-normalised, with its interval) and SrCr from the tasks' retentions. */
static pq_status summarise(pq_ctx *ctx, pq_eval_report *r, const pq_eval_params *p) {
    const size_t nt = (size_t)(r->n_tasks ? r->n_tasks : 1);
    double *ret = pq__malloc(ctx, nt * sizeof *ret, "task retentions");
    double *retn = ret ? pq__malloc(ctx, nt * sizeof *retn, "chance-normalised task retentions") : NULL;
    if (!retn) {
        free(ret);
        return ctx->status;
    }
    int nr = 0;
    for (int64_t i = 0; i < r->n_tasks; i++) {
        ret[i] = r->tasks[i].retention;
        retn[i] = r->tasks[i].n_choices > 1 ? r->tasks[i].retention_norm : r->tasks[i].retention;
        nr += isfinite(ret[i]) != 0;
    }
    pq_metrics *mt = &r->metrics;
    mt->n_retention = nr;
    mt->sr = pq_metrics_sr(ret, r->n_tasks);
    mt->sr_norm = pq_metrics_sr(retn, r->n_tasks);
    if (p->normalize_chance) { /* the headline Sr is the chance-normalised one */
        mt->sr = mt->sr_norm;
        for (int64_t i = 0; i < r->n_tasks; i++) {
            pq_task_result *t = &r->tasks[i];
            if (t->n_choices <= 1) continue;
            t->retention = t->retention_norm; /* its interval was computed normalised */
            size_t l = strlen(t->protocol);
            snprintf(t->protocol + l, sizeof t->protocol - l, "; retention chance-normalised (k = %d)", t->n_choices);
        }
    }
    sr_ci(ctx, r);
    mt->srcr = pq_metrics_srcr(mt->sr, mt->sparsity, mt->bits);
    mt->sr_tcr = pq_metrics_sr_tcr(mt->sr, mt->sparsity, mt->bits);
    free(ret);
    free(retn);
    return PQ_OK;
}

pq_status pq_eval_run(pq_ctx *ctx, const pq_model *model, const char *model_path, const pq_model *base,
                      const char *base_path, const char *tasks, const pq_eval_params *params,
                      const pq_compress_info *cinfo, pq_eval_report **out) {
    *out = NULL;
    pq_eval_params p = params ? *params : pq_eval_params_default();
    pq_compress_info ci = cinfo ? *cinfo : pq_compress_info_default();
    if (!tasks) return pq__fail(ctx, PQ_ERR_INVALID, "eval: no task list");
    pq_eval_report *r = pq__calloc(ctx, 1, sizeof *r, "the evaluation report");
    char *list = r ? pq__strdup(ctx, tasks, "the task list") : NULL;
    if (!list) {
        free(r);
        return ctx->status;
    }
    snprintf(r->model, sizeof r->model, "%s", model_path ? model_path : "");
    snprintf(r->base, sizeof r->base, "%s", base_path ? base_path : "");
    /* every task is checked before any is run: a typo in the last one must not cost the others */
    pq_status st = pq_eval_tasks_check(ctx, tasks, &p, base != NULL);
    int64_t cap = 0;
    const uint64_t base_hash = base && p.cache_dir ? pq__model_hash(base) : 0;
    char *save = NULL;
    for (char *spec = strtok_r(list, ",", &save); spec && !st; spec = strtok_r(NULL, ",", &save)) {
        while (*spec == ' ')
            spec++;
        if (*spec) st = run_one_task(ctx, r, &cap, spec, model, base, base_hash, &p);
    }
    free(list);
    if (!st) {
        model_metrics(model, &ci, &r->metrics);
        st = summarise(ctx, r, &p);
    }
    if (st) {
        pq_eval_report_free(r);
        return st;
    }
    *out = r;
    return PQ_OK;
}
