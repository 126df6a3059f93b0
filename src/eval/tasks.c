/* Task data: one loader per file format of shared/data (PROVENANCE.md), all producing
 * pq__items, plus the harness-style prompts and k-shot prefixes. Malformed lines fail
 * with a message naming the file and line. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/eval.h"
#include "io/bz2.h"

#define MAX_TEXT_BYTES ((size_t)1 << 30)

static const char *const task_names[] = {"lambada", "arc_easy", "arc_challenge", "piqa",  "hellaswag", "winogrande",
                                         "boolq",   "mmlu",     "mmlu_pro",      "gsm8k", "math",      "bbh",
                                         NULL};

const char *const *pq_eval_task_names(void) {
    return task_names;
}

/* One line per built-in task (same order as task_names): what it measures and how. */
static const char *const task_descr[] = {
    "LAMBADA (OpenAI): predict the last word of a passage; acc = greedy match, word ppl",
    "ARC-Easy: grade-school science questions, 4 choices (multiple choice)",
    "ARC-Challenge: the hard ARC questions, 4 choices (multiple choice)",
    "PIQA: physical commonsense, 2 solutions (multiple choice)",
    "HellaSwag: commonsense sentence endings, 4 choices (multiple choice, acc_norm)",
    "WinoGrande: pronoun resolution, 2 options (partial scoring)",
    "BoolQ: yes/no questions about a passage (multiple choice)",
    "MMLU: 57 subjects of exam questions, 4 choices, k-shot from dev",
    "MMLU-Pro: harder MMLU, 10 choices (multiple choice)",
    "GSM8K: grade-school math word problems, greedy generation, last number (5-shot)",
    "MATH-500: competition math, greedy generation, last \\boxed{} (4-shot)",
    "BIG-Bench Hard: 27 reasoning tasks, greedy generation, exact match",
};

const char *pq_eval_task_description(const char *name) {
    for (int i = 0; task_names[i]; i++)
        if (!strcmp(name, task_names[i])) return task_descr[i];
    if (!strncmp(name, "bbh:", 4)) return "BIG-Bench Hard subtask: greedy generation, exact match";
    return NULL;
}

/* ---------------------------------------------------------------- helpers */

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* a + b + c, malloc'ed; on failure the bytes and what are said on ctx. */
static char *xcat(pq_ctx *ctx, const char *a, const char *b, const char *c, const char *what) {
    pq__buf s = {0};
    if (pq__buf_printf(ctx, &s, what, "%s%s%s", a, b, c) != PQ_OK) return NULL;
    return pq__buf_take(&s);
}

/* Frees v[n] strings and v (NULL is a no-op). */
static void free_strs(char **v, int n) {
    for (int i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void item_free(pq__item *it) {
    if (!it) return;
    free(it->context);
    free_strs(it->choices, it->n_choices);
    free(it->target);
    free(it->shot_target);
    free_strs(it->stops, it->n_stops);
}

void pq__task_free(pq__task *t) {
    if (!t) return;
    for (int64_t i = 0; i < t->n_items; i++)
        item_free(&t->items[i]);
    for (int64_t i = 0; i < t->n_dev; i++)
        item_free(&t->dev[i]);
    free_strs(t->group_names, t->n_groups);
    free_strs(t->group_descr, t->n_groups);
    free_strs(t->stops, t->n_stops);
    free(t->items);
    free(t->dev);
    free(t->eval_idx);
    memset(t, 0, sizeof *t);
}

/* Appends a zeroed item to items (dev = 1: the dev split). */
static pq__item *add_item(pq_ctx *ctx, pq__task *t, int dev) {
    pq__item **arr = dev ? &t->dev : &t->items;
    int64_t *n = dev ? &t->n_dev : &t->n_items, *cap = dev ? &t->cap_dev : &t->cap_items;
    if (*n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 256;
        pq__item *p = realloc(*arr, (size_t)nc * sizeof *p);
        if (!p) {
            pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the items of %s",
                     (size_t)nc * sizeof *p, t->file);
            return NULL;
        }
        *arr = p;
        *cap = nc;
    }
    pq__item *it = &(*arr)[(*n)++];
    memset(it, 0, sizeof *it);
    return it;
}

/* Adds a group (subject); its index, or -1 with the failure on ctx. */
static int add_group(pq_ctx *ctx, pq__task *t, const char *name, const char *descr) {
    const size_t bytes = (size_t)(t->n_groups + 1) * sizeof(char *);
    char **g = realloc(t->group_names, bytes);
    char **d = g ? realloc(t->group_descr, bytes) : NULL;
    if (g) t->group_names = g;
    if (d) t->group_descr = d;
    if (!g || !d) {
        pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the groups of %s", bytes, t->file);
        return -1;
    }
    t->group_names[t->n_groups] = xstrdup(name);
    t->group_descr[t->n_groups] = descr ? xstrdup(descr) : NULL;
    return t->n_groups++;
}

static pq_status set_stops(pq_ctx *ctx, pq__task *t, const char *const *stops, int n) {
    t->stops = pq__calloc(ctx, (size_t)n, sizeof *t->stops, "the stop strings");
    if (!t->stops) return ctx->status;
    for (int i = 0; i < n; i++)
        if (!(t->stops[i] = pq__strdup(ctx, stops[i], "a stop string"))) return ctx->status;
    t->n_stops = n;
    return PQ_OK;
}

int pq__resolve_file(const char *arg, const char *data_dir, char *out, size_t n) {
    struct stat sb;
    if (stat(arg, &sb) == 0) {
        snprintf(out, n, "%s", arg);
        return 1;
    }
    if (!data_dir || arg[0] == '/') return 0;
    static const char *const sub[] = {"", "text/", "tasks/"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(out, n, "%s/%s%s", data_dir, sub[i], arg);
        if (stat(out, &sb) == 0) return 1;
    }
    return 0;
}

/* Iterates the lines of a text buffer in place: returns the next line (NUL-terminated,
 * "\r" stripped) and advances *p, or NULL at the end. */
static char *next_line(char **p, char *end) {
    if (*p >= end) return NULL;
    char *s = *p, *e = memchr(s, '\n', (size_t)(end - s));
    if (!e) e = end;
    *e = 0;
    *p = e + 1;
    if (e > s && e[-1] == '\r') e[-1] = 0;
    return s;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Callback for one parsed JSONL object; returns PQ_OK or fails naming file:line. */
typedef pq_status (*jsonl_fn)(pq_ctx *ctx, pq__task *t, const cJSON *o, const char *file, int64_t line, void *user);

static pq_status read_jsonl(pq_ctx *ctx, pq__task *t, const char *path, jsonl_fn fn, void *user) {
    char *buf = NULL;
    size_t len = 0;
    pq_status st = pq__read_text(ctx, path, MAX_TEXT_BYTES, &buf, &len);
    if (st) return st;
    char *p = buf, *end = buf + len, *ln;
    int64_t line = 0;
    while ((ln = next_line(&p, end)) && st == PQ_OK) {
        line++;
        if (blank(ln)) continue;
        cJSON *o = cJSON_Parse(ln);
        if (!o || !cJSON_IsObject(o))
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s:%lld: malformed JSON line", path, (long long)line);
        else
            st = fn(ctx, t, o, path, line, user);
        cJSON_Delete(o);
    }
    free(buf);
    return st;
}

static pq_status missing(pq_ctx *ctx, const char *file, int64_t line, const char *what) {
    return pq__fail(ctx, PQ_ERR_FORMAT, "%s:%lld: missing or bad %s", file, (long long)line, what);
}

/* Copies a JSON array of strings into choices. */
static int set_choices(pq__item *it, const cJSON *arr) {
    if (!cJSON_IsArray(arr)) return 0;
    int n = cJSON_GetArraySize(arr);
    if (n < 1) return 0;
    it->choices = calloc((size_t)n, sizeof *it->choices);
    if (!it->choices) return 0;
    it->n_choices = n;
    int c = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (!cJSON_IsString(v) || !(it->choices[c++] = xstrdup(v->valuestring))) return 0;
    }
    return 1;
}

static int get_gold(const cJSON *o, const char *key, int n, int *gold) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(g) || g->valuedouble != (double)(int)g->valuedouble) return 0;
    *gold = (int)g->valuedouble;
    return *gold >= 0 && *gold < n;
}

/* A generative item: the prompt pre + q + post, the text after it in a few-shot example
 * (shot) and the answer compared with the output (target). */
static pq_status gen_item(pq_ctx *ctx, pq__item *it, const char *pre, const char *q, const char *post,
                          const char *shot, const char *target) {
    if (!(it->context = xcat(ctx, pre, q, post, "an item's prompt")) ||
        !(it->shot_target = pq__strdup(ctx, shot, "an item's few-shot answer")) ||
        !(it->target = pq__strdup(ctx, target, "an item's answer")))
        return ctx->status;
    return PQ_OK;
}

/* ---------------------------------------------------------------- JSONL formats */

/* MosaicML MC {query, choices, gold} (arc, boolq) and mc:FILE {context, choices, gold}. */
static pq_status on_mc(pq_ctx *ctx, pq__task *t, const cJSON *o, const char *file, int64_t line, void *user) {
    const char *suffix = user;
    const char *q = json_str(o, "query");
    if (!q) q = json_str(o, "context");
    if (!q) return missing(ctx, file, line, "\"query\"/\"context\" (string)");
    pq__item *it = add_item(ctx, t, 0);
    if (!it) return ctx->status;
    if (!set_choices(it, cJSON_GetObjectItemCaseSensitive(o, "choices")))
        return missing(ctx, file, line, "\"choices\" (array of strings)");
    if (!get_gold(o, "gold", it->n_choices, &it->gold))
        return missing(ctx, file, line, "\"gold\" (index of a choice)");
    if (!(it->context = xcat(ctx, q, suffix ? suffix : "", "", "an item's context"))) return ctx->status;
    return PQ_OK;
}

static pq_status on_winogrande(pq_ctx *ctx, pq__task *t, const cJSON *o, const char *file, int64_t line, void *u) {
    (void)u; /* a jsonl_fn: only on_mc takes a suffix */
    pq__item *it = add_item(ctx, t, 0);
    if (!it) return ctx->status;
    if (!set_choices(it, cJSON_GetObjectItemCaseSensitive(o, "context_options")))
        return missing(ctx, file, line, "\"context_options\" (array of strings)");
    const char *c = json_str(o, "continuation");
    if (!c) return missing(ctx, file, line, "\"continuation\" (string)");
    if (!get_gold(o, "gold", it->n_choices, &it->gold)) return missing(ctx, file, line, "\"gold\"");
    if (!(it->target = pq__strdup(ctx, c, "an item's continuation"))) return ctx->status;
    return PQ_OK;
}

static pq_status on_piqa(pq_ctx *ctx, pq__task *t, const cJSON *o, const char *file, int64_t line, void *u) {
    (void)u; /* a jsonl_fn: only on_mc takes a suffix */
    const char *g = json_str(o, "goal"), *s1 = json_str(o, "sol1"), *s2 = json_str(o, "sol2");
    if (!g || !s1 || !s2) return missing(ctx, file, line, "\"goal\"/\"sol1\"/\"sol2\" (strings)");
    pq__item *it = add_item(ctx, t, 0);
    if (!it) return ctx->status;
    it->choices = pq__calloc(ctx, 2, sizeof *it->choices, "an item's choices");
    if (!it->choices) return ctx->status;
    it->n_choices = 2;
    if (!(it->choices[0] = pq__strdup(ctx, s1, "an item's choice")) ||
        !(it->choices[1] = pq__strdup(ctx, s2, "an item's choice")) ||
        !(it->context = xcat(ctx, "Question: ", g, "\nAnswer:", "an item's context")))
        return ctx->status;
    return PQ_OK;
}

static pq_status on_lambada(pq_ctx *ctx, pq__task *t, const cJSON *o, const char *file, int64_t line, void *u) {
    (void)u; /* a jsonl_fn: only on_mc takes a suffix */
    const char *s = json_str(o, "text");
    if (!s) return missing(ctx, file, line, "\"text\" (string)");
    const char *sp = strrchr(s, ' ');
    if (!sp || !sp[1]) return pq__fail(ctx, PQ_ERR_FORMAT, "%s:%lld: text has no last word", file, (long long)line);
    pq__item *it = add_item(ctx, t, 0);
    if (!it) return ctx->status;
    it->context = pq__malloc(ctx, (size_t)(sp - s) + 1, "an item's context");
    if (!it->context || !(it->target = pq__strdup(ctx, sp + 1, "an item's last word"))) return ctx->status;
    memcpy(it->context, s, (size_t)(sp - s));
    it->context[sp - s] = 0;
    return PQ_OK;
}

static pq_status on_gsm8k(pq_ctx *ctx, pq__task *t, const cJSON *o, const char *file, int64_t line, void *u) {
    (void)u; /* a jsonl_fn: only on_mc takes a suffix */
    const char *q = json_str(o, "question"), *a = json_str(o, "answer");
    if (!q || !a) return missing(ctx, file, line, "\"question\"/\"answer\" (strings)");
    char num[128];
    if (!pq__extract_gsm8k_target(a, num, sizeof num))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s:%lld: answer has no \"#### number\"", file, (long long)line);
    pq__item *it = add_item(ctx, t, 0);
    if (!it) return ctx->status;
    return gen_item(ctx, it, "Question: ", q, "\nAnswer:", a, num);
}

static pq_status on_math(pq_ctx *ctx, pq__task *t, const cJSON *o, const char *file, int64_t line, void *u) {
    (void)u; /* a jsonl_fn: only on_mc takes a suffix */
    const char *q = json_str(o, "problem"), *s = json_str(o, "solution"), *a = json_str(o, "answer");
    if (!q || !s || !a) return missing(ctx, file, line, "\"problem\"/\"solution\"/\"answer\" (strings)");
    pq__item *it = add_item(ctx, t, 0);
    if (!it) return ctx->status;
    return gen_item(ctx, it, "Problem:\n", q, "\n\nSolution:", s, a);
}

static pq_status on_mmlu_pro(pq_ctx *ctx, pq__task *t, const cJSON *o, const char *file, int64_t line, void *u) {
    (void)u; /* a jsonl_fn: only on_mc takes a suffix */
    const char *q = json_str(o, "question"), *cat = json_str(o, "category");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(o, "options");
    if (!q || !cat) return missing(ctx, file, line, "\"question\"/\"category\" (strings)");
    if (!cJSON_IsArray(opts) || cJSON_GetArraySize(opts) < 2 || cJSON_GetArraySize(opts) > 26)
        return missing(ctx, file, line, "\"options\" (2-26 strings)");
    int n = cJSON_GetArraySize(opts), gold;
    if (!get_gold(o, "answer_index", n, &gold)) return missing(ctx, file, line, "\"answer_index\"");
    int g = -1;
    for (int i = 0; i < t->n_groups; i++)
        if (!strcmp(t->group_names[i], cat)) g = i;
    if (g < 0) {
        char d[256];
        snprintf(d, sizeof d, "The following are multiple choice questions (with answers) about %s.\n\n", cat);
        if ((g = add_group(ctx, t, cat, d)) < 0) return ctx->status;
    }
    pq__item *it = add_item(ctx, t, 0);
    if (!it) return ctx->status;
    pq__str s = {0};
    int ok = pq__str_addf(&s, "Question: %s\nOptions:\n", q);
    it->choices = calloc((size_t)n, sizeof *it->choices);
    it->n_choices = it->choices ? n : 0;
    for (int i = 0; i < it->n_choices && ok; i++) {
        const cJSON *v = cJSON_GetArrayItem(opts, i);
        if (!cJSON_IsString(v)) {
            free(s.p);
            return missing(ctx, file, line, "\"options\" (strings)");
        }
        char letter[2] = {(char)('A' + i), 0};
        ok = pq__str_addf(&s, "%c. %s\n", 'A' + i, v->valuestring) && (it->choices[i] = xstrdup(letter));
    }
    ok = ok && it->choices && pq__str_adds(&s, "Answer:");
    it->context = s.p;
    it->gold = gold;
    it->group = g;
    if (!ok)
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory building the prompt of %s:%lld (%zu bytes so far)", file,
                        (long long)line, s.len);
    return PQ_OK;
}

/* gen:FILE {prompt, answer, stop: [...]} */
static pq_status on_gen(pq_ctx *ctx, pq__task *t, const cJSON *o, const char *file, int64_t line, void *u) {
    (void)u; /* a jsonl_fn: only on_mc takes a suffix */
    const char *p = json_str(o, "prompt"), *a = json_str(o, "answer");
    if (!p || !a) return missing(ctx, file, line, "\"prompt\"/\"answer\" (strings)");
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (stop && !cJSON_IsArray(stop) && !cJSON_IsString(stop))
        return missing(ctx, file, line, "\"stop\" (array of strings)");
    pq__item *it = add_item(ctx, t, 0);
    if (!it) return ctx->status;
    if (gen_item(ctx, it, "", p, "", a, a)) return ctx->status;
    if (cJSON_IsString(stop)) {
        it->stops = pq__calloc(ctx, 1, sizeof *it->stops, "an item's stop strings");
        if (!it->stops || !(it->stops[0] = pq__strdup(ctx, stop->valuestring, "a stop string"))) return ctx->status;
        it->n_stops = 1;
    } else if (stop) {
        int n = cJSON_GetArraySize(stop);
        it->stops = pq__calloc(ctx, (size_t)(n ? n : 1), sizeof *it->stops, "an item's stop strings");
        if (!it->stops) return ctx->status;
        const cJSON *v;
        cJSON_ArrayForEach(v, stop) {
            if (!cJSON_IsString(v)) return missing(ctx, file, line, "\"stop\" (array of strings)");
            if (!(it->stops[it->n_stops++] = pq__strdup(ctx, v->valuestring, "a stop string"))) return ctx->status;
        }
    }
    return PQ_OK;
}

/* ---------------------------------------------------------------- other formats */

/* PIQA labels: one 0/1 per line, aligned with the items. */
static pq_status read_piqa_labels(pq_ctx *ctx, pq__task *t, const char *path) {
    char *buf = NULL;
    size_t len = 0;
    pq_status st = pq__read_text(ctx, path, MAX_TEXT_BYTES, &buf, &len);
    if (st) return st;
    char *p = buf, *end = buf + len, *ln;
    int64_t line = 0, k = 0;
    while ((ln = next_line(&p, end))) {
        line++;
        if (blank(ln)) continue;
        while (isspace((unsigned char)*ln))
            ln++;
        if ((ln[0] != '0' && ln[0] != '1') || !blank(ln + 1)) {
            free(buf);
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s:%lld: label must be 0 or 1", path, (long long)line);
        }
        if (k < t->n_items) t->items[k].gold = ln[0] - '0';
        k++;
    }
    free(buf);
    if (k != t->n_items)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %lld labels for %lld questions", path, (long long)k,
                        (long long)t->n_items);
    return PQ_OK;
}

/* llama.cpp HellaSwag text: 6 lines per task (context, gold 0-3, 4 endings). */
static pq_status read_hellaswag(pq_ctx *ctx, pq__task *t, const char *path) {
    char *buf = NULL;
    size_t len = 0;
    size_t pl = strlen(path);
    pq_status st = pl > 4 && !strcmp(path + pl - 4, ".bz2") ? pq__read_bz2(ctx, path, MAX_TEXT_BYTES, &buf, &len)
                                                            : pq__read_text(ctx, path, MAX_TEXT_BYTES, &buf, &len);
    if (st) return st;
    char *p = buf, *end = buf + len, *ln[6];
    int64_t line = 0;
    for (;;) {
        int k = 0;
        for (; k < 6 && (ln[k] = next_line(&p, end)); k++)
            line++;
        if (k == 0 || (k == 1 && blank(ln[0]))) break;
        if (k < 6) {
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s:%lld: truncated task (6 lines per task)", path, (long long)line);
            break;
        }
        if (ln[1][0] < '0' || ln[1][0] > '3' || ln[1][1]) {
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s:%lld: gold label must be 0-3", path, (long long)line - 4);
            break;
        }
        pq__item *it = add_item(ctx, t, 0);
        if (!it) {
            st = ctx->status;
            break;
        }
        it->gold = ln[1][0] - '0';
        if (!(it->context = pq__strdup(ctx, ln[0], "an item's context")) ||
            !(it->choices = pq__calloc(ctx, 4, sizeof *it->choices, "an item's choices"))) {
            st = ctx->status;
            break;
        }
        it->n_choices = 4;
        for (int c = 0; c < 4; c++)
            it->choices[c] = xstrdup(ln[2 + c]);
    }
    free(buf);
    return st;
}

/* RFC 4180 CSV record: fields into f[0..max), returns the count, -1 at EOF, -2 on an
 * unterminated quote. Fields point into buf (modified in place). */
static int csv_record(char **p, char *end, char **f, int max, int64_t *line) {
    if (*p >= end) return -1;
    int n = 0;
    char *s = *p;
    for (;;) {
        char *w = s, *start = s;
        if (s < end && *s == '"') {
            s++;
            for (;;) {
                if (s >= end) return -2;
                if (*s == '"') {
                    if (s + 1 < end && s[1] == '"') {
                        *w++ = '"';
                        s += 2;
                        continue;
                    }
                    s++;
                    break;
                }
                if (*s == '\n') (*line)++;
                *w++ = *s++;
            }
            while (s < end && *s != ',' && *s != '\n')
                s++; /* junk after the quote */
        } else {
            while (s < end && *s != ',' && *s != '\n')
                s++;
            w = s;
            if (w > start && w[-1] == '\r') w--;
        }
        char sep = s < end ? *s : '\n';
        *w = 0;
        if (n < max) f[n] = start;
        n++;
        s++;
        if (sep == '\n') {
            (*line)++;
            break;
        }
    }
    *p = s;
    return n;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* MMLU: tasks/mmlu/{test,dev}/<subject>_{test,dev}.csv with the header
 * question,choice0,choice1,choice2,choice3,answer (answer 0-3). */
static pq_status read_mmlu_csv(pq_ctx *ctx, pq__task *t, const char *path, int group, int dev) {
    char *buf = NULL;
    size_t len = 0;
    pq_status st = pq__read_text(ctx, path, MAX_TEXT_BYTES, &buf, &len);
    if (st) return st;
    char *p = buf, *end = buf + len, *f[8];
    int64_t line = 1, rec = 0;
    for (;;) {
        int64_t at = line;
        int n = csv_record(&p, end, f, 8, &line);
        if (n == -1) break;
        if (n == -2) {
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s:%lld: unterminated quoted field", path, (long long)at);
            break;
        }
        if (n == 1 && blank(f[0])) continue;
        if (rec++ == 0 && !strcmp(f[0], "question")) continue; /* header */
        if (n != 6 || f[5][0] < '0' || f[5][0] > '3' || f[5][1]) {
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s:%lld: expected question,4 choices,answer 0-3 (got %d fields)", path,
                          (long long)at, n);
            break;
        }
        pq__item *it = add_item(ctx, t, dev);
        if (!it) {
            st = ctx->status;
            break;
        }
        pq__buf s = {0};
        st = pq__buf_printf(ctx, &s, "an item's prompt", "%s\nA. %s\nB. %s\nC. %s\nD. %s\nAnswer:", f[0], f[1], f[2],
                            f[3], f[4]);
        it->context = pq__buf_take(&s);
        if (st || !(it->choices = pq__calloc(ctx, 4, sizeof *it->choices, "an item's choices"))) {
            st = ctx->status;
            break;
        }
        it->n_choices = 4;
        for (int c = 0; c < 4; c++) {
            char l[2] = {(char)('A' + c), 0};
            it->choices[c] = xstrdup(l);
        }
        it->gold = f[5][0] - '0';
        it->group = group;
    }
    free(buf);
    return st;
}

/* Sorted names in dir ending with suffix (malloc'ed array of malloc'ed names); none is an
 * error. */
static pq_status list_dir(pq_ctx *ctx, const char *dir, const char *suffix, char ***names, int *n) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return pq__fail(ctx, PQ_ERR_IO, "cannot open folder %s", dir);
    struct dirent *e;
    size_t ls = strlen(suffix);
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l <= ls || strcmp(e->d_name + l - ls, suffix)) continue;
        char **p = realloc(*names, (size_t)(*n + 1) * sizeof *p);
        if (!p) break;
        *names = p;
        (*names)[(*n)++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (*n) qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    return *n ? PQ_OK : pq__fail(ctx, PQ_ERR_IO, "no *%s files in %s", suffix, dir);
}

static pq_status load_mmlu(pq_ctx *ctx, pq__task *t, const char *data_dir) {
    char test[600], dev[600], path[1200];
    snprintf(test, sizeof test, "%s/tasks/mmlu/test", data_dir);
    snprintf(dev, sizeof dev, "%s/tasks/mmlu/dev", data_dir);
    snprintf(t->file, sizeof t->file, "%s/tasks/mmlu/{test,dev}/*.csv", data_dir);
    char **names;
    int n;
    pq_status st = list_dir(ctx, test, "_test.csv", &names, &n);
    if (st) return st;
    for (int i = 0; i < n && !st; i++) {
        char subject[256];
        snprintf(subject, sizeof subject, "%.*s", (int)(strlen(names[i]) - 9), names[i]);
        char descr[400], pretty[256];
        snprintf(pretty, sizeof pretty, "%s", subject);
        for (char *c = pretty; *c; c++)
            if (*c == '_') *c = ' ';
        snprintf(descr, sizeof descr, "The following are multiple choice questions (with answers) about %s.\n\n",
                 pretty);
        int g = add_group(ctx, t, subject, descr);
        if (g < 0) {
            st = ctx->status;
            break;
        }
        snprintf(path, sizeof path, "%s/%s", test, names[i]);
        if ((st = read_mmlu_csv(ctx, t, path, g, 0))) break;
        snprintf(path, sizeof path, "%s/%s_dev.csv", dev, subject);
        if (pq__file_exists(path)) st = read_mmlu_csv(ctx, t, path, g, 1);
    }
    free_strs(names, n);
    t->dev_first_n = 1;
    return st;
}

/* BBH: tasks/bbh/<name>.json {"examples": [{"input", "target"}]}. */
static pq_status load_bbh_file(pq_ctx *ctx, pq__task *t, const char *path, const char *name) {
    char *buf = NULL;
    size_t len = 0;
    pq_status st = pq__read_text(ctx, path, MAX_TEXT_BYTES, &buf, &len);
    if (st) return st;
    cJSON *o = cJSON_Parse(buf);
    free(buf);
    const cJSON *ex = o ? cJSON_GetObjectItemCaseSensitive(o, "examples") : NULL;
    if (!cJSON_IsArray(ex)) {
        cJSON_Delete(o);
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s:1: expected {\"examples\": [...]}", path);
    }
    int g = add_group(ctx, t, name, NULL);
    if (g < 0) st = ctx->status;
    int64_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ex) {
        if (st) break;
        k++;
        const char *in = json_str(e, "input"), *tg = json_str(e, "target");
        if (!in || !tg) {
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: example %lld: missing \"input\"/\"target\" (strings)", path,
                          (long long)k);
            break;
        }
        pq__item *it = add_item(ctx, t, 0);
        if (!it) {
            st = ctx->status;
            break;
        }
        it->group = g;
        st = gen_item(ctx, it, "Q: ", in, "\nA:", tg, tg);
    }
    cJSON_Delete(o);
    return st;
}

static pq_status load_bbh(pq_ctx *ctx, pq__task *t, const char *data_dir, const char *sub) {
    char dir[600], path[1200];
    snprintf(dir, sizeof dir, "%s/tasks/bbh", data_dir);
    if (sub) {
        snprintf(path, sizeof path, "%s/%s.json", dir, sub);
        if (!pq__file_exists(path))
            return pq__fail(ctx, PQ_ERR_INVALID, "bbh: no subtask '%s' (%s not found)", sub, path);
        snprintf(t->file, sizeof t->file, "%.500s", path);
        return load_bbh_file(ctx, t, path, sub);
    }
    snprintf(t->file, sizeof t->file, "%.490s/*.json", dir);
    char **names;
    int n;
    pq_status st = list_dir(ctx, dir, ".json", &names, &n);
    if (st) return st;
    for (int i = 0; i < n && !st; i++) {
        names[i][strlen(names[i]) - 5] = 0;
        snprintf(path, sizeof path, "%s/%s.json", dir, names[i]);
        st = load_bbh_file(ctx, t, path, names[i]);
    }
    free_strs(names, n);
    return st;
}

/* ---------------------------------------------------------------- dispatch */

static pq_status need_data(pq_ctx *ctx, const char *data_dir, const char *task) {
    if (!data_dir || !pq__is_dir(data_dir))
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: data folder %s not found (give --data-dir)", task,
                        data_dir ? data_dir : "(none)");
    return PQ_OK;
}

/* "prefix:ARG" specs: ppl:FILE kld:FILE mc:FILE gen:FILE bbh:NAME. */
static pq_status load_prefixed(pq_ctx *ctx, pq__task *t, const char *spec, const char *colon, const char *data_dir) {
    pq_status st;
    const char *arg = colon + 1;
    const size_t pl = (size_t)(colon - spec);
    if (pl == 3 && !strncmp(spec, "bbh", 3)) {
        if ((st = need_data(ctx, data_dir, spec))) return st;
        t->kind = PQ__KIND_GEN;
        return load_bbh(ctx, t, data_dir, arg);
    }
    if (!*arg) return pq__fail(ctx, PQ_ERR_INVALID, "task '%s': missing file after ':'", spec);
    if (!pq__resolve_file(arg, data_dir, t->file, sizeof t->file))
        return pq__fail(ctx, PQ_ERR_IO, "task '%s': file %s not found (also looked under %s)", spec, arg,
                        data_dir ? data_dir : "(no data dir)");
    if (pl == 3 && !strncmp(spec, "ppl", 3)) {
        t->kind = PQ__KIND_PPL;
        return PQ_OK;
    }
    if (pl == 3 && !strncmp(spec, "kld", 3)) {
        t->kind = PQ__KIND_KLD;
        return PQ_OK;
    }
    if (pl == 2 && !strncmp(spec, "mc", 2)) return read_jsonl(ctx, t, t->file, on_mc, NULL);
    if (pl == 3 && !strncmp(spec, "gen", 3)) {
        t->kind = PQ__KIND_GEN;
        return read_jsonl(ctx, t, t->file, on_gen, NULL);
    }
    return pq__fail(ctx, PQ_ERR_INVALID, "unknown task '%s' (prefixes: ppl: kld: mc: gen: bbh:)", spec);
}

/* The built-in JSONL tasks: name, file under the data folder, format, kind, extraction. */
static const struct jsonl_task {
    const char *name, *rel;
    jsonl_fn fn;
    const char *suffix; /* after each query (on_mc) */
    pq__task_kind kind;
    pq__extract_kind extract;
} jsonl_tasks[] = {
    {"arc_easy", "tasks/arc/arc_easy.jsonl", on_mc, "\nAnswer:", PQ__KIND_MC, PQ__EXTRACT_EXACT},
    {"arc_challenge", "tasks/arc/arc_challenge.jsonl", on_mc, "\nAnswer:", PQ__KIND_MC, PQ__EXTRACT_EXACT},
    {"boolq", "tasks/boolq/boolq.jsonl", on_mc, "\nAnswer:", PQ__KIND_MC, PQ__EXTRACT_EXACT},
    {"winogrande", "tasks/winogrande/winogrande.jsonl", on_winogrande, NULL, PQ__KIND_PARTIAL, PQ__EXTRACT_EXACT},
    {"lambada", "text/lambada/lambada_test.jsonl", on_lambada, NULL, PQ__KIND_LAMBADA, PQ__EXTRACT_EXACT},
    {"mmlu_pro", "tasks/mmlu_pro/mmlu_pro_test.jsonl", on_mmlu_pro, NULL, PQ__KIND_MC, PQ__EXTRACT_EXACT},
    {"gsm8k", "tasks/gsm8k/test.jsonl", on_gsm8k, NULL, PQ__KIND_GEN, PQ__EXTRACT_GSM8K},
    {"math", "tasks/math/math500_test.jsonl", on_math, NULL, PQ__KIND_GEN, PQ__EXTRACT_MATH},
};

/* HellaSwag: a decompressed copy (data folder, then aux_dir), else the shipped .bz2. */
static pq_status load_hellaswag(pq_ctx *ctx, pq__task *t, const char *data_dir, const char *aux_dir) {
    char path[1024];
    snprintf(t->file, sizeof t->file, "%s/tasks/hellaswag/hellaswag_val_full.txt", data_dir);
    if (!pq__file_exists(t->file) && aux_dir) {
        snprintf(path, sizeof path, "%s/hellaswag_val_full.txt", aux_dir);
        if (pq__file_exists(path)) snprintf(t->file, sizeof t->file, "%.500s", path);
    }
    if (!pq__file_exists(t->file)) /* the shipped file: read through libbz2 */
        snprintf(t->file, sizeof t->file, "%s/tasks/hellaswag/hellaswag_val_full.txt.bz2", data_dir);
    return read_hellaswag(ctx, t, t->file);
}

/* The built-in tasks by name (data under data_dir). */
static pq_status load_builtin(pq_ctx *ctx, pq__task *t, const char *spec, const char *data_dir, const char *aux_dir) {
    pq_status st;
    if ((st = need_data(ctx, data_dir, spec))) return st;
    for (size_t i = 0; i < sizeof jsonl_tasks / sizeof jsonl_tasks[0]; i++) {
        const struct jsonl_task *j = &jsonl_tasks[i];
        if (strcmp(spec, j->name)) continue;
        t->kind = j->kind;
        t->extract = j->extract;
        snprintf(t->file, sizeof t->file, "%s/%s", data_dir, j->rel);
        return read_jsonl(ctx, t, t->file, j->fn, (void *)j->suffix);
    }
    if (!strcmp(spec, "piqa")) {
        char path[1024];
        snprintf(t->file, sizeof t->file, "%s/%s", data_dir, "tasks/piqa/valid.jsonl");
        if ((st = read_jsonl(ctx, t, t->file, on_piqa, NULL))) return st;
        snprintf(path, sizeof path, "%s/tasks/piqa/valid-labels.lst", data_dir);
        return read_piqa_labels(ctx, t, path);
    }
    if (!strcmp(spec, "hellaswag")) return load_hellaswag(ctx, t, data_dir, aux_dir);
    if (!strcmp(spec, "mmlu")) return load_mmlu(ctx, t, data_dir);
    if (!strcmp(spec, "bbh")) {
        t->kind = PQ__KIND_GEN;
        return load_bbh(ctx, t, data_dir, NULL);
    }
    return pq__fail(ctx, PQ_ERR_INVALID,
                    "unknown task '%s' (known: lambada arc_easy arc_challenge piqa hellaswag winogrande boolq mmlu "
                    "mmlu_pro gsm8k math bbh bbh:NAME ppl:FILE kld:FILE mc:FILE gen:FILE)",
                    spec);
}

static pq_status load_items(pq_ctx *ctx, pq__task *t, const char *spec, const char *data_dir, const char *aux_dir) {
    const char *colon = strchr(spec, ':');
    t->kind = PQ__KIND_MC;
    snprintf(t->metric, sizeof t->metric, "acc");
    return colon ? load_prefixed(ctx, t, spec, colon, data_dir) : load_builtin(ctx, t, spec, data_dir, aux_dir);
}

pq_status pq__task_load(pq_ctx *ctx, const char *spec, const char *data_dir, const char *aux_dir, int64_t limit,
                        pq__task *t) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", spec);
    pq_status st = load_items(ctx, t, spec, data_dir, aux_dir);
    if (st) {
        pq__task_free(t);
        return st;
    }
    /* defaults per task (lm-evaluation-harness yaml conventions) */
    if (t->kind == PQ__KIND_GEN) {
        snprintf(t->metric, sizeof t->metric, "exact_match");
        if (t->extract == PQ__EXTRACT_GSM8K) {
            static const char *const s[] = {"Question:", "\n\n"};
            t->default_shots = 5;
            t->gen_tokens = 256;
            st = set_stops(ctx, t, s, 2);
        } else if (t->extract == PQ__EXTRACT_MATH) {
            static const char *const s[] = {"Problem:"};
            t->default_shots = 4;
            t->gen_tokens = 512;
            st = set_stops(ctx, t, s, 1);
        } else if (!strncmp(spec, "bbh", 3)) {
            static const char *const s[] = {"Q:", "\n\n"};
            t->gen_tokens = 128;
            st = set_stops(ctx, t, s, 2);
        } else {
            t->gen_tokens = 128;
        }
    } else if (t->kind == PQ__KIND_PPL) {
        snprintf(t->metric, sizeof t->metric, "ppl");
    } else if (t->kind == PQ__KIND_KLD) {
        snprintf(t->metric, sizeof t->metric, "kld");
    }
    /* the evaluated subset: the first limit items of each group */
    if (!st && t->n_items > 0) {
        t->eval_idx = pq__malloc(ctx, (size_t)t->n_items * sizeof *t->eval_idx, "the evaluated items");
        int ng = t->n_groups > 0 ? t->n_groups : 1;
        int64_t *seen = t->eval_idx ? pq__calloc(ctx, (size_t)ng, sizeof *seen, "the items per group") : NULL;
        if (!seen) st = ctx->status;
        for (int64_t i = 0; !st && i < t->n_items; i++) {
            int g = t->items[i].group;
            if (limit <= 0 || seen[g] < limit) {
                seen[g]++;
                t->eval_idx[t->n_eval++] = i;
            }
        }
        free(seen);
        /* chance level for MC tasks with a constant number of choices */
        if (!st && (t->kind == PQ__KIND_MC || t->kind == PQ__KIND_PARTIAL)) {
            t->n_choices = t->items[0].n_choices;
            for (int64_t i = 1; i < t->n_items; i++)
                if (t->items[i].n_choices != t->n_choices) t->n_choices = 0;
        }
    }
    if (st) pq__task_free(t);
    return st;
}

/* ---------------------------------------------------------------- few-shot */

static int shot_text(pq__str *s, const pq__task *t, const pq__item *it) {
    switch (t->kind) {
    case PQ__KIND_PARTIAL: return pq__str_addf(s, "%s %s", it->choices[it->gold], it->target);
    case PQ__KIND_LAMBADA: return pq__str_addf(s, "%s %s", it->context, it->target);
    case PQ__KIND_GEN: return pq__str_addf(s, "%s %s", it->context, it->shot_target ? it->shot_target : it->target);
    default: return pq__str_addf(s, "%s %s", it->context, it->choices[it->gold]);
    }
}

char *pq__task_fewshot(const pq__task *t, int64_t i, int k, uint64_t seed) {
    pq__str s = {0};
    const pq__item *item = &t->items[i];
    if (!pq__str_add(&s, "", 0)) return NULL;
    if (t->group_descr && t->group_descr[item->group] && !pq__str_adds(&s, t->group_descr[item->group])) goto oom;
    if (k <= 0) return s.p;
    /* pool: the dev split of the same group, else the other items of the group */
    const pq__item *src = t->dev ? t->dev : t->items;
    int64_t n_src = t->dev ? t->n_dev : t->n_items, np = 0;
    int64_t *pool = malloc((size_t)(n_src ? n_src : 1) * sizeof *pool);
    if (!pool) goto oom;
    for (int64_t j = 0; j < n_src; j++)
        if (src[j].group == item->group && (t->dev || j != i)) pool[np++] = j;
    if (!(t->dev && t->dev_first_n)) {
        uint64_t rng = (seed + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)i * 0xD1B54A32D192ED03ull);
        for (int64_t j = 0; j < np && j < k; j++) { /* partial Fisher-Yates */
            int64_t r = j + (int64_t)(pq__rng_next(&rng) % (uint64_t)(np - j));
            int64_t tmp = pool[j];
            pool[j] = pool[r];
            pool[r] = tmp;
        }
    }
    for (int64_t j = 0; j < np && j < k; j++)
        if (!shot_text(&s, t, &src[pool[j]]) || !pq__str_adds(&s, "\n\n")) {
            free(pool);
            goto oom;
        }
    free(pool);
    return s.p;
oom:
    free(s.p);
    return NULL;
}
