/* Story-continuation multiple-choice tasks from any text ("tasks make-cloze"): passages
 * are split on blank lines and into sentences (., ! or ? plus closing quotes, then
 * whitespace); an item is a passage's first j sentences, its sentence j+1, and n-1
 * sentences drawn from other passages, of similar length where possible. Deterministic
 * for a seed. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

pq_cloze_params pq_cloze_params_default(void) {
    pq_cloze_params p = {4, 0, 1000};
    return p;
}

typedef struct sent {
    char *s; /* owned, whitespace collapsed */
} sent;

typedef struct passage {
    sent *v;
    int64_t n, cap;
} passage;

static int push_sent(passage *p, const char *b, const char *e) {
    /* collapse whitespace runs (including newlines) to one space, trim */
    char *s = malloc((size_t)(e - b) + 1), *w = s;
    if (!s) return 0;
    int sp = 0;
    for (const char *c = b; c < e; c++) {
        if (isspace((unsigned char)*c)) {
            sp = w != s;
            continue;
        }
        if (sp) *w++ = ' ';
        sp = 0;
        *w++ = *c;
    }
    *w = 0;
    if (w - s < 2) {
        free(s);
        return 1;
    }
    if (p->n == p->cap) {
        int64_t nc = p->cap ? p->cap * 2 : 8;
        sent *v = realloc(p->v, (size_t)nc * sizeof *v);
        if (!v) {
            free(s);
            return 0;
        }
        p->v = v;
        p->cap = nc;
    }
    p->v[p->n++].s = s;
    return 1;
}

/* Splits [b, e) into sentences. */
static int split_sentences(passage *p, const char *b, const char *e) {
    const char *start = b;
    for (const char *c = b; c < e; c++) {
        if (*c != '.' && *c != '!' && *c != '?') continue;
        const char *q = c + 1;
        while (q < e && (*q == '.' || *q == '!' || *q == '?'))
            q++;
        while (q < e && (*q == '"' || *q == '\'' || *q == ')'))
            q++;
        if (q < e && !isspace((unsigned char)*q)) continue;
        if (!push_sent(p, start, q)) return 0;
        start = q;
        c = q - 1;
    }
    if (start < e && !push_sent(p, start, e)) return 0;
    return 1;
}

static void free_passages(passage *ps, int64_t np) {
    for (int64_t i = 0; ps && i < np; i++) {
        for (int64_t k = 0; k < ps[i].n; k++)
            free(ps[i].v[k].s);
        free(ps[i].v);
    }
    free(ps);
}

/* Appends the passage [b, e) split into sentences (dropped when it has none). */
static pq_status add_passage(pq_ctx *ctx, passage **ps, int64_t *np, int64_t *cap, const char *b, const char *e) {
    if (*np == *cap) {
        int64_t nc = *cap ? *cap * 2 : 256;
        passage *q = realloc(*ps, (size_t)nc * sizeof *q);
        if (!q)
            return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the passages",
                            (size_t)nc * sizeof *q);
        *ps = q;
        *cap = nc;
    }
    passage *P = &(*ps)[*np];
    memset(P, 0, sizeof *P);
    pq_status st = PQ_OK;
    if (!split_sentences(P, b, e))
        st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory splitting a passage of %zu bytes into sentences",
                      (size_t)(e - b));
    if (P->n > 0)
        (*np)++;
    else
        free(P->v);
    return st;
}

/* Passages of text[len]: split on lines that are blank. */
static pq_status read_passages(pq_ctx *ctx, const char *text, size_t len, passage **ps, int64_t *np) {
    int64_t cap = 0;
    pq_status st = PQ_OK;
    const char *p = text, *end = text + len, *pstart = text;
    while (p <= end && !st) {
        const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        const char *le = nl ? nl : end;
        int is_blank = 1;
        for (const char *c = p; c < le; c++)
            if (!isspace((unsigned char)*c)) is_blank = 0;
        if (is_blank || !nl) {
            const char *pe = is_blank ? p : end;
            if (pe > pstart) st = add_passage(ctx, ps, np, &cap, pstart, pe);
            pstart = nl ? nl + 1 : end;
        }
        if (!nl) break;
        p = nl + 1;
    }
    return st;
}

/* The state of the item generator. */
typedef struct cloze_gen {
    const passage *ps;
    int64_t np;
    int64_t *order; /* [np] passages in shuffled order */
    uint64_t rng;
    int n_choices;
    const char **ch; /* [n_choices] the item's choices (borrowed) */
} cloze_gen;

/* A distractor for choice c of an item whose answer truth comes from passage from; NULL when
 * none is found. */
static const char *pick_distractor(cloze_gen *g, int64_t from, const char *truth, int c, int gold) {
    const passage *ps = g->ps;
    const int64_t np = g->np;
    /* distractors of similar length (within a factor 1.5) where possible, so that the summed
     * log-likelihood is not decided by length alone */
    const double tl = (double)strlen(truth);
    for (int tries = 0; tries < 2000; tries++) {
        int64_t pi = (int64_t)(pq__rng_next(&g->rng) % (uint64_t)np);
        /* not from the same or a neighbouring passage: with stories written as paragraphs,
         * neighbours are often the same story */
        const int64_t gap = pi > from ? pi - from : from - pi;
        if (gap == 0 || (np > 16 && gap <= 3)) continue;
        /* not a passage's opening sentence when it has others: openings ("Once upon a time
         * ...") are likely anywhere and would make distractors too easy to confuse with a
         * story start rather than a continuation */
        const int64_t si = ps[pi].n > 1 ? 1 + (int64_t)(pq__rng_next(&g->rng) % (uint64_t)(ps[pi].n - 1)) : 0;
        const char *s = ps[pi].v[si].s;
        const double r = (double)strlen(s) / tl;
        if (tries < 1000 && (r < 1.0 / 1.5 || r > 1.5)) continue;
        int dup = !strcmp(s, truth);
        for (int d = 0; d < c && !dup; d++)
            dup = d != gold && !strcmp(g->ch[d], s);
        if (!dup) return s;
    }
    return NULL;
}

/* The JSON line of an item: the first j sentences of P as context, the choices, gold. */
static char *cloze_line(const passage *P, int64_t j, const char *const *ch, int n_choices, int gold) {
    pq__str ctxs = {0};
    int ok = 1;
    for (int64_t k = 0; k < j && ok; k++)
        ok = pq__str_adds(&ctxs, k ? " " : "") && pq__str_adds(&ctxs, P->v[k].s);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "context", ctxs.p ? ctxs.p : "");
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    for (int c = 0; c < n_choices; c++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(ch[c]));
    cJSON_AddNumberToObject(o, "gold", gold);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(ctxs.p);
    if (!ok) {
        free(line);
        return NULL;
    }
    return line;
}

/* The item of the oi-th passage in shuffled order: *line NULL when it has none (too short,
 * or no distractors). */
static pq_status cloze_item(pq_ctx *ctx, cloze_gen *g, int64_t oi, char **line) {
    *line = NULL;
    const passage *P = &g->ps[g->order[oi]];
    if (P->n < 2) return PQ_OK;
    const int64_t j0 = P->n / 2 > 1 ? P->n / 2 : 1; /* at least half the passage as context */
    int64_t j = j0 + (int64_t)(pq__rng_next(&g->rng) % (uint64_t)(P->n - j0));
    const char *truth = P->v[j].s;
    int gold = (int)(pq__rng_next(&g->rng) % (uint64_t)g->n_choices);
    for (int c = 0; c < g->n_choices; c++)
        if (!(g->ch[c] = c == gold ? truth : pick_distractor(g, g->order[oi], truth, c, gold))) return PQ_OK;
    *line = cloze_line(P, j, g->ch, g->n_choices, gold);
    if (!*line)
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory building the JSON line of a cloze item (%lld sentences)",
                        (long long)j);
    return PQ_OK;
}

/* Writes up to limit items (0: every passage's) to a; *written set. */
static pq_status write_items(pq_ctx *ctx, cloze_gen *g, int64_t limit, pq__atomic *a, int64_t *written) {
    pq_status st = PQ_OK;
    for (int64_t oi = 0; oi < g->np && !st && (limit <= 0 || *written < limit); oi++) {
        char *line = NULL;
        st = cloze_item(ctx, g, oi, &line);
        if (st || !line) continue;
        st = pq__atomic_write(ctx, a, line, strlen(line));
        if (!st) st = pq__atomic_write(ctx, a, "\n", 1);
        free(line);
        (*written)++;
    }
    return st;
}

/* The passages in a seeded random order (Fisher-Yates). */
static void shuffle(int64_t *order, int64_t np, uint64_t *rng) {
    for (int64_t i = 0; i < np; i++)
        order[i] = i;
    for (int64_t i = np - 1; i > 0; i--) {
        int64_t j = (int64_t)(pq__rng_next(rng) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

pq_status pq_tasks_make_cloze(pq_ctx *ctx, const char *text_path, const char *out_path, const pq_cloze_params *params,
                              int64_t *n_written) {
    pq_cloze_params cp = params ? *params : pq_cloze_params_default();
    if (n_written) *n_written = 0;
    if (cp.n_choices < 2 || cp.n_choices > 26)
        return pq__fail(ctx, PQ_ERR_INVALID, "make-cloze: --choices must be 2..26 (got %d)", cp.n_choices);
    char *text = NULL;
    size_t len = 0;
    pq_status st = pq__read_text(ctx, text_path, (size_t)1 << 31, &text, &len);
    if (st) return st;
    passage *ps = NULL;
    int64_t np = 0;
    st = read_passages(ctx, text, len, &ps, &np);
    free(text);
    int64_t usable = 0;
    for (int64_t i = 0; i < np; i++)
        usable += ps[i].n >= 2;
    if (!st && (usable == 0 || np < 2))
        st = pq__fail(ctx, PQ_ERR_INVALID, "make-cloze: %s has no passage with two sentences and another passage",
                      text_path);
    cloze_gen g = {.ps = ps, .np = np, .n_choices = cp.n_choices};
    g.rng = cp.seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    if (!st && !(g.order = pq__malloc(ctx, (size_t)np * sizeof *g.order, "the passage order"))) st = ctx->status;
    pq__atomic a;
    int open = 0;
    if (!st && !(st = pq__atomic_open(ctx, out_path, &a))) open = 1;
    if (!st) shuffle(g.order, np, &g.rng);
    if (!st && !(g.ch = pq__calloc(ctx, (size_t)cp.n_choices, sizeof *g.ch, "the choices of an item")))
        st = ctx->status;
    int64_t written = 0;
    if (!st) st = write_items(ctx, &g, cp.limit, &a, &written);
    if (open) {
        if (!st)
            st = pq__atomic_commit(ctx, &a);
        else
            pq__atomic_abort(&a);
    }
    if (!st && n_written) *n_written = written;
    free(g.ch);
    free(g.order);
    free_passages(ps, np);
    return st;
}
