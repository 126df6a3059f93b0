/* Running tasks: one task on one model (pq_eval_task), and a task list on a model and its
 * base with cached base results, retention and compression metrics (pq_eval_run). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/json.h"
#include "eval/eval.h"
#include "eval/units.h"
#include "pipeline/pipeline.h"
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
    free(r->tasks);
    free(r);
}

/* ---------------------------------------------------------------- one task */

static pq_status eval_ppl(pq_ctx *ctx, const pq_model *m, const pq__task *t, const pq_eval_params *p,
                          pq_task_result *out) {
    const pq_tokenizer *tok = pq_model_tokenizer(m);
    if (!tok) return pq__fail(ctx, PQ_ERR_INVALID, "%s: the model has no tokenizer (give --tokenizer)", t->name);
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    int64_t n = 0;
    pq_status st = pq__read_text(ctx, t->file, (size_t)1 << 31, &text, &len);
    if (st) return st;
    st = pq_tokenize(ctx, tok, text, len, 1, &ids, &n);
    free(text);
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
    if (!o) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory (log samples)");
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
    if (!s) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory (log samples)");
    const int stop = p->on_sample(p->sample_user, s);
    free(s);
    return stop ? pq__fail(ctx, PQ_ERR_CANCELLED, "%s: stopped while logging samples", t->name) : PQ_OK;
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
    if (t.kind == PQ__KIND_PPL) {
        st = eval_ppl(ctx, m, &t, &p, out);
        pq__task_free(&t);
        return st;
    }
    if (t.kind == PQ__KIND_KLD) {
        pq__task_free(&t);
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: kld needs a base model (--base)", spec);
    }
    const int k = p.shots >= 0 ? p.shots : t.default_shots;
    const int64_t gen_tokens = p.gen_max_tokens > 0 ? p.gen_max_tokens : t.gen_tokens;
    out->shots = k;
    out->n_choices = t.n_choices;
    double sum = 0, sum2 = 0, s_ll = 0, s_ll2 = 0, chance = 0;
    int64_t done = 0, n_words = 0;
    double *ll = NULL;
    int64_t *chars = NULL;
    int *greedy = NULL;
    int maxc = 1;
    for (int64_t i = 0; i < t.n_items; i++)
        if (t.items[i].n_choices > maxc) maxc = t.items[i].n_choices;
    ll = malloc((size_t)maxc * sizeof *ll);
    chars = malloc((size_t)maxc * sizeof *chars);
    greedy = malloc((size_t)maxc * sizeof *greedy);
    if (!ll || !chars || !greedy) st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    out->units.kind = PQ_UNITS_MEAN; /* one unit per item: its 0/1 score */
    if (!st && t.n_eval > 0 &&
        !(out->units.value = pq__malloc(ctx, (size_t)t.n_eval * sizeof *out->units.value, "per-item scores")))
        st = ctx->status;
    pq__str full = {0};
    char *lastout = NULL; /* the generated text of the item, for on_sample */
    for (int64_t e = 0; e < t.n_eval && !st; e++) {
        const int64_t i = t.eval_idx[e];
        const pq__item *it = &t.items[i];
        char *shots = pq__task_fewshot(&t, i, k, p.seed);
        if (!shots) {
            st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
            break;
        }
        full.len = 0;
        double score = 0;
        if (t.kind == PQ__KIND_MC) {
            if (!pq__str_add(&full, "", 0) || !pq__str_adds(&full, shots) || !pq__str_adds(&full, it->context)) {
                st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
            } else if (!(st = pq__score_mc_text(ctx, m, full.p, (const char *const *)it->choices, it->n_choices, ll,
                                                chars, NULL))) {
                score = pq__mc_pick(ll, NULL, it->n_choices) == it->gold;
                s_ll += pq__mc_pick(ll, chars, it->n_choices) == it->gold;
                chance += 1.0 / it->n_choices;
            }
        } else if (t.kind == PQ__KIND_PARTIAL) {
            char **ctxs = calloc((size_t)it->n_choices, sizeof *ctxs);
            if (!ctxs) st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
            for (int c = 0; !st && c < it->n_choices; c++) {
                pq__str s = {0};
                if (!pq__str_add(&s, "", 0) || !pq__str_adds(&s, shots) || !pq__str_adds(&s, it->choices[c]))
                    st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
                ctxs[c] = s.p;
            }
            if (!st) st = pq__score_partial_text(ctx, m, (const char *const *)ctxs, it->n_choices, it->target, ll);
            if (!st) {
                score = pq__mc_pick(ll, NULL, it->n_choices) == it->gold;
                chance += 1.0 / it->n_choices;
            }
            for (int c = 0; ctxs && c < it->n_choices; c++)
                free(ctxs[c]);
            free(ctxs);
        } else if (t.kind == PQ__KIND_LAMBADA) {
            const char *ch[1] = {it->target};
            if (!pq__str_add(&full, "", 0) || !pq__str_adds(&full, shots) || !pq__str_adds(&full, it->context))
                st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
            else if (!(st = pq__score_mc_text(ctx, m, full.p, ch, 1, ll, NULL, greedy))) {
                score = greedy[0];
                s_ll += ll[0];
                s_ll2 += ll[0] * ll[0];
                n_words++;
            }
        } else { /* GEN */
            char *outp = NULL;
            if (!pq__str_add(&full, "", 0) || !pq__str_adds(&full, shots) || !pq__str_adds(&full, it->context))
                st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
            else if (it->n_stops)
                st =
                    pq__generate_text(ctx, m, full.p, (const char *const *)it->stops, it->n_stops, gen_tokens, &outp);
            else
                st = pq__generate_text(ctx, m, full.p, (const char *const *)t.stops, t.n_stops, gen_tokens, &outp);
            if (!st) {
                char a[512], b[512];
                if (t.extract == PQ__EXTRACT_GSM8K) {
                    score = pq__extract_last_number(outp, a, sizeof a) && pq__answers_equal(a, it->target);
                } else if (t.extract == PQ__EXTRACT_MATH) {
                    if (!pq__extract_boxed(outp, a, sizeof a)) {
                        const char *fa = strstr(outp, "final answer is");
                        snprintf(a, sizeof a, "%s", fa ? fa + 15 : "");
                        char *dot = strstr(a, ". I hope");
                        if (dot) *dot = 0;
                    }
                    char na[512];
                    pq__math_normalize(a, na, sizeof na);
                    pq__math_normalize(it->target, b, sizeof b);
                    score = na[0] && pq__answers_equal(na, b);
                } else {
                    score = pq__exact_match(outp, it->target);
                }
            }
            lastout = outp;
        }
        if (!st && p.on_sample)
            st = emit_sample(ctx, &p, &t, e, it, t.kind == PQ__KIND_PARTIAL ? it->target : full.p, ll,
                             t.kind == PQ__KIND_LAMBADA ? 1 : it->n_choices, score, lastout);
        free(lastout);
        lastout = NULL;
        free(shots);
        if (st) break;
        sum += score;
        sum2 += score * score;
        out->units.value[done] = score;
        out->units.n = ++done;
        st = pq__progress(ctx, t.name, done, t.n_eval);
    }
    free(full.p);
    free(ll);
    free(chars);
    free(greedy);
    if (!st && done == 0) st = pq__fail(ctx, PQ_ERR_INVALID, "%s: no items to evaluate in %s", spec, t.file);
    if (!st) {
        const double N = (double)done;
        out->n = done;
        out->score = sum / N;
        out->se = pq_metrics_binom_stderr(out->score, done);
        if (t.kind == PQ__KIND_MC) {
            snprintf(out->metric2, sizeof out->metric2, "acc_norm");
            out->score2 = s_ll / N;
            out->se2 = pq_metrics_binom_stderr(out->score2, done);
        } else if (t.kind == PQ__KIND_LAMBADA) {
            snprintf(out->metric2, sizeof out->metric2, "ppl");
            const double mean = s_ll / (double)n_words;
            double var = n_words > 1 ? (s_ll2 / (double)n_words - mean * mean) * n_words / (n_words - 1.0) : 0;
            out->score2 = exp(-mean);
            out->se2 = out->score2 * (var > 0 ? sqrt(var / (double)n_words) : 0);
        }
        if (t.kind == PQ__KIND_MC || t.kind == PQ__KIND_PARTIAL) {
            chance /= N;
            if (!out->n_choices) out->n_choices = (int)lround(1.0 / chance);
        }
        const char *what = t.kind == PQ__KIND_MC        ? "multiple choice: sum log P(\" \"+choice | context); acc = "
                                                          "argmax, acc_norm = argmax per character"
                           : t.kind == PQ__KIND_PARTIAL ? "partial scoring: sum log P(\" \"+continuation | option); "
                                                          "acc = argmax"
                           : t.kind == PQ__KIND_LAMBADA ? "lambada: acc = greedy tokens equal \" \"+last word; ppl = "
                                                          "exp(-mean log P(word))"
                           : t.extract == PQ__EXTRACT_GSM8K ? "generative greedy: last number of the output vs the "
                                                              "\"####\" number (flexible-extract)"
                           : t.extract == PQ__EXTRACT_MATH  ? "generative greedy: last \\boxed{} normalised vs answer"
                                                            : "generative greedy: exact match (trimmed, case-"
                                                              "insensitive)";
        char extra[64] = "";
        if (t.kind == PQ__KIND_GEN) snprintf(extra, sizeof extra, ", max %lld new tokens", (long long)gen_tokens);
        snprintf(out->protocol, sizeof out->protocol, "%s; %d-shot (seed %llu)%s; stderr sqrt(p(1-p)/(n-1))", what, k,
                 (unsigned long long)p.seed, extra);
    }
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
    pq_ctx *tmp = pq_ctx_new();
    int ok = 0;
    if (path && tmp && pq__file_exists(path) && pq__read_text(tmp, path, 1 << 20, &buf, &len) == PQ_OK) {
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
    pq_ctx_free(tmp);
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
    pq_ctx *tmp = pq_ctx_new();
    pq__atomic a;
    if (path && s && tmp && pq__atomic_open(tmp, path, &a) == PQ_OK) {
        if (pq__atomic_write(tmp, &a, s, strlen(s)) == PQ_OK)
            pq__atomic_commit(tmp, &a);
        else
            pq__atomic_abort(&a);
    }
    if (tmp && pq_ctx_error(tmp)[0]) pq__log(ctx, PQ_LOG_WARN, "cache: %s", pq_ctx_error(tmp));
    pq_ctx_free(tmp);
    free(s);
    free(path);
}

static double wall_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
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
            for (int64_t e = 0; e < n; e++) /* zeros of the float32 weights the forward uses */
                zeros += lin->w[e] == 0.0f;
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
    pq_ctx *quiet = pq_ctx_new(); /* an unpaired result only loses its interval */
    if (quiet)
        pq_bootstrap_sr(quiet, 1, &a, &b, &higher, NULL, &point, res->retention_ci);
    else
        pq__log(ctx, PQ_LOG_WARN, "%s: no memory for the bootstrap interval", res->name);
    pq_ctx_free(quiet);
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
        pq_ctx *quiet = pq_ctx_new();
        if (quiet) pq_bootstrap_sr(quiet, k, a, b, higher, NULL, &point, mt->sr_ci);
        pq_ctx_free(quiet);
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
        if (!p) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        r->tasks = p;
        *cap = nc;
    }
    r->tasks[r->n_tasks++] = *res;
    return PQ_OK;
}

pq_status pq_eval_tasks_check(pq_ctx *ctx, const char *tasks, const pq_eval_params *params, int have_base) {
    pq_eval_params p = params ? *params : pq_eval_params_default();
    char *list = tasks ? strdup(tasks) : NULL;
    if (!list)
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory (task list of %zu bytes)", tasks ? strlen(tasks) : 0);
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

pq_status pq_eval_run(pq_ctx *ctx, const pq_model *model, const char *model_path, const pq_model *base,
                      const char *base_path, const char *tasks, const pq_eval_params *params,
                      const pq_compress_info *cinfo, pq_eval_report **out) {
    *out = NULL;
    pq_eval_params p = params ? *params : pq_eval_params_default();
    pq_compress_info ci = cinfo ? *cinfo : pq_compress_info_default();
    pq_eval_report *r = calloc(1, sizeof *r);
    char *list = tasks ? strdup(tasks) : NULL;
    if (!r || !list) {
        free(r);
        free(list);
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    }
    snprintf(r->model, sizeof r->model, "%s", model_path ? model_path : "");
    snprintf(r->base, sizeof r->base, "%s", base_path ? base_path : "");
    /* every task is checked before any is run: a typo in the last one must not cost the others */
    pq_status st = pq_eval_tasks_check(ctx, tasks, &p, base != NULL);
    int64_t cap = 0;
    uint64_t base_hash = 0;
    if (base && p.cache_dir) base_hash = pq__model_hash(base);
    char *save = NULL;
    for (char *spec = strtok_r(list, ",", &save); spec && !st; spec = strtok_r(NULL, ",", &save)) {
        while (*spec == ' ')
            spec++;
        if (!*spec) continue;
        if (!strncmp(spec, "kld:", 4)) {
            if (!base) {
                st = pq__fail(ctx, PQ_ERR_INVALID, "%s: kld needs a base model (--base)", spec);
                break;
            }
            char file[1024];
            if (!pq__resolve_file(spec + 4, p.data_dir, file, sizeof file)) {
                st = pq__fail(ctx, PQ_ERR_IO, "%s: file %s not found", spec, spec + 4);
                break;
            }
            if (r->has_kld) pq__log(ctx, PQ_LOG_WARN, "%s: only the last kld task is reported", spec);
            const double t0 = wall_s();
            if ((st = pq_eval_kld(ctx, base, model, file, &p, &r->kld))) break;
            r->kld.seconds = wall_s() - t0;
            r->has_kld = 1;
            continue;
        }
        pq_task_result res;
        pq__log(ctx, PQ_LOG_INFO, "task %s", spec);
        const double t0 = wall_s();
        if ((st = pq_eval_task(ctx, model, spec, &p, &res))) break;
        res.seconds = wall_s() - t0;
        if (base) {
            char key[2048];
            cache_key(key, sizeof key, base_hash, spec, &res, &p);
            if (p.cache_dir && cache_get(p.cache_dir, key, &res)) {
                res.base_cached = 1;
            } else {
                pq_task_result b;
                pq__log(ctx, PQ_LOG_INFO, "task %s (base model)", spec);
                pq_eval_params pb = p;
                pb.on_sample = NULL; /* the samples are the evaluated model's */
                if ((st = pq_eval_task(ctx, base, spec, &pb, &b))) {
                    pq_units_clear(&res.units);
                    break;
                }
                res.base_score = b.score;
                res.base_se = b.se;
                res.base_score2 = b.metric2[0] ? b.score2 : NAN;
                if (p.cache_dir) cache_put(ctx, p.cache_dir, key, &b);
                res.base_units = b.units; /* moved */
            }
            res.has_base = 1;
            /* --normalize chance: the interval is of the chance-normalised retention */
            if (p.normalize_chance && res.n_choices > 1) res.units.chance_k = res.base_units.chance_k = res.n_choices;
            task_ci(ctx, &res);
            res.retention = pq_metrics_retention(res.score, res.base_score, res.higher_is_better);
            if (!isfinite(res.retention))
                pq__log(ctx, PQ_LOG_WARN, "task %s: retention undefined (score %g, base score %g%s); left out of Sr",
                        spec, res.score, res.base_score,
                        res.base_score == 0 || res.score == 0 ? ": a score of 0 gives no ratio" : "");
            if (res.n_choices > 1)
                res.retention_norm = pq_metrics_retention(pq_metrics_chance_norm(res.score, res.n_choices),
                                                          pq_metrics_chance_norm(res.base_score, res.n_choices), 1);
        }
        if ((st = add_task(ctx, r, &cap, &res))) {
            pq_units_clear(&res.units);
            pq_units_clear(&res.base_units);
            break;
        }
    }
    free(list);
    if (st) {
        pq_eval_report_free(r);
        return st;
    }
    model_metrics(model, &ci, &r->metrics);
    double *ret = malloc((size_t)(r->n_tasks ? r->n_tasks : 1) * sizeof *ret);
    double *retn = malloc((size_t)(r->n_tasks ? r->n_tasks : 1) * sizeof *retn);
    if (!ret || !retn) {
        free(ret);
        free(retn);
        pq_eval_report_free(r);
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
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
    if (p.normalize_chance) { /* the headline Sr is the chance-normalised one */
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
    *out = r;
    return PQ_OK;
}
