/* Sweep stage: grid expansion (counts, dedup, invalid removal, TCr filter), stable hashes,
 * the SQLite store (insert, no duplicates, a crashed 'running' row is not 'done'),
 * recommend rules on a hand-filled database, and the HTML report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/common.h"
#include "prunequant-sweep.h"
#include "sweep/sweep_mpi.h"
#include "test.h"

static pq_status expand(pq_ctx *ctx, const char *json, pq_sweep_grid *g) {
    pq_sweep_calib c = pq_sweep_calib_default();
    return pq_sweep_grid_expand(ctx, json, strlen(json), &c, g);
}

static int64_t count_tcr(const pq_sweep_grid *g, double t) {
    int64_t n = 0;
    for (int64_t i = 0; i < g->n; i++)
        n += fabs(g->configs[i].tcr - t) <= 1e-9;
    return n;
}

static const pq_sweep_config *find(const pq_sweep_grid *g, const char *needle) {
    for (int64_t i = 0; i < g->n; i++)
        if (strstr(g->configs[i].recipe, needle)) return &g->configs[i];
    return NULL;
}

static void test_grid(pq_ctx *ctx) {
    const char *grid = "{\"prune\": [\"none\", \"sparsegpt\"], \"sparsity\": [0.25, 0.5, \"2:4\", \"2:8\"],"
                       " \"quant\": [\"none\", \"gptq\"], \"bits\": [3, 4, 8], \"joint\": [\"a\", \"fused\"]}";
    pq_sweep_grid g;
    CHECK(expand(ctx, grid, &g) == PQ_OK);
    /* 96 combinations: prune none x quant none is nothing (24); prune none collapses the 4
     * sparsities and 2 joints (3 distinct: bits); quant none collapses bits and joints */
    CHECK(g.n == 31);
    CHECK(g.n_invalid == 24);
    CHECK(g.n_duplicate == 41);
    /* iso-TCr at 81.25%: 3-bit alone, 25% + 4-bit and 2:8 + 4-bit (two joint modes each) */
    CHECK(count_tcr(&g, 0.8125) == 5);
    const pq_sweep_config *c = find(&g, "\"sparsity\":0.25,\"quant\":\"gptq\",\"bits\":4");
    CHECK(c && fabs(c->tcr - 0.8125) < 1e-12 && fabs(c->sparsity - 0.25) < 1e-12 && c->bits == 4);
    c = find(&g, "\"pattern\":\"2:8\",\"quant\":\"gptq\",\"bits\":4");
    CHECK(c && fabs(c->tcr - 0.8125) < 1e-12 && c->layer.prune_n == 2 && c->layer.prune_m == 8);
    c = find(&g, "\"prune\":\"none\",\"quant\":\"gptq\",\"bits\":3");
    CHECK(c && fabs(c->tcr - 0.8125) < 1e-12);
    CHECK_MSG(c && !strcmp(c->hash, "0ec86d010c609517"), "hash %s", c ? c->hash : "-");
    c = find(&g, "\"pattern\":\"2:4\",\"quant\":\"none\"");
    CHECK(c && fabs(c->tcr - 0.5) < 1e-12);
    /* hashes: unique, 16 hex digits, the hash of the recipe */
    for (int64_t i = 0; i < g.n; i++) {
        char h[17];
        pq_sweep_hash(g.configs[i].recipe, h);
        CHECK(!strcmp(h, g.configs[i].hash) && strlen(h) == 16);
        for (int64_t j = 0; j < i; j++)
            CHECK(strcmp(g.configs[i].hash, g.configs[j].hash));
    }
    /* the same grid written in another key order and with repeated values: same run list */
    const char *grid2 = "{\"joint\": [\"fused\", \"a\"], \"bits\": [8, 4, 3, 4], \"quant\": [\"gptq\", \"none\"],"
                        " \"sparsity\": [\"2:8\", \"2:4\", 0.5, 0.25], \"prune\": [\"sparsegpt\", \"none\"]}";
    pq_sweep_grid g2;
    CHECK(expand(ctx, grid2, &g2) == PQ_OK);
    CHECK(g2.n == g.n);
    for (int64_t i = 0; i < g.n; i++) {
        int found = 0;
        for (int64_t j = 0; j < g2.n; j++)
            found += !strcmp(g.configs[i].hash, g2.configs[j].hash);
        CHECK(found == 1);
    }
    pq_sweep_grid_free(&g2);
    /* TCr filter */
    double t[3];
    int64_t nt;
    double *tl = NULL;
    CHECK(pq_sweep_parse_list(ctx, "0.75,0.8125,0.875", &tl, &nt) == PQ_OK && nt == 3);
    if (tl) memcpy(t, tl, sizeof t);
    free(tl);
    pq_sweep_grid_filter_tcr(&g, t, 3);
    CHECK(g.n == 14);
    CHECK(count_tcr(&g, 0.8125) == 5 && count_tcr(&g, 0.75) == 5 && count_tcr(&g, 0.875) == 4);
    pq_sweep_grid_free(&g);
    pq_sweep_grid_free(&g);   /* twice: a freed grid is empty */
    pq_sweep_grid_free(NULL); /* no-op */
    CHECK(pq_sweep_parse_list(ctx, "0.75,x", &tl, &nt) != PQ_OK && !tl);

    /* bits outside 2..8 name the key (the recipe's parser and ranges); act_order acts only with gptq (normalised away
     * for rtn) */
    CHECK(expand(ctx, "{\"quant\": \"rtn\", \"bits\": [4, 9]}", &g) == PQ_ERR_INVALID &&
          strstr(pq_ctx_error(ctx), "grid: bits: must be an integer 2..8 (got '9')"));
    CHECK(expand(ctx, "{\"quant\": [\"rtn\", \"gptq\"], \"act_order\": [false, true]}", &g) == PQ_OK);
    CHECK(g.n == 3 && g.n_duplicate == 1 && !strstr(g.configs[0].recipe, "act_order"));
    pq_sweep_grid_free(&g);
    /* a key that acts in no combination is an error, as for compress flags (issue 10, defect 2) */
    CHECK(expand(ctx, "{\"quant\": \"rtn\", \"act_order\": [false, true]}", &g) == PQ_ERR_INVALID &&
          strstr(pq_ctx_error(ctx), "'act_order' has no effect"));
    CHECK(expand(ctx, "{\"quant\": \"gptq\", \"sparsity\": [0.5, \"2:4\"]}", &g) == PQ_ERR_INVALID &&
          strstr(pq_ctx_error(ctx), "'sparsity' has no effect"));
    CHECK(expand(ctx, "{\"prune\": \"wanda\", \"sparsity\": 0.5, \"quant\": \"gptq\", \"joint\": \"b\"}", &g) ==
          PQ_OK);
    CHECK(g.n == 1 && !strstr(g.configs[0].recipe, "keep_mask"));
    pq_sweep_grid_free(&g);
    /* mode a records keep_mask in its recipe (a new hash since mode a re-masks by default) */
    CHECK(expand(ctx, "{\"prune\": \"wanda\", \"sparsity\": 0.5, \"quant\": \"gptq\"}", &g) == PQ_OK);
    CHECK(g.n == 1 && strstr(g.configs[0].recipe, "\"keep_mask\":true"));
    pq_sweep_grid_free(&g);
    CHECK(expand(ctx, "{\"prune\": \"magnitude\", \"sparsity\": [0, 0.5], \"quant\": \"rtn\", \"joint\": \"fused\"}",
                 &g) == PQ_OK);
    CHECK(g.n == 0 && g.n_invalid == 2);
    pq_sweep_grid_free(&g);
    /* quant none ignores bits/group, so a grid giving them without quantization is an error */
    CHECK(expand(ctx, "{\"prune\": \"wanda\", \"sparsity\": 0.5, \"bits\": [2, 3, 4], \"group\": [-1, 64]}", &g) ==
              PQ_ERR_INVALID &&
          strstr(pq_ctx_error(ctx), "'bits' has no effect"));
    /* ... but where some combination quantizes they are normalised away in the others */
    CHECK(expand(ctx,
                 "{\"prune\": \"wanda\", \"sparsity\": 0.5, \"quant\": [\"none\", \"rtn\"], \"bits\": [2, 3, 4]}",
                 &g) == PQ_OK);
    CHECK(g.n == 4 && g.n_duplicate == 2);
    pq_sweep_grid_free(&g);
    /* errors */
    CHECK(expand(ctx, "{\"prunes\": \"none\"}", &g) == PQ_ERR_INVALID && strstr(pq_ctx_error(ctx), "prunes"));
    CHECK(expand(ctx, "{\"sparsity\": [1.5]}", &g) == PQ_ERR_INVALID);
    CHECK(expand(ctx, "{\"quant\": [\"gtpq\"]}", &g) == PQ_ERR_INVALID && strstr(pq_ctx_error(ctx), "gtpq"));
    CHECK(expand(ctx, "{\"bits\": []}", &g) == PQ_ERR_INVALID);
    CHECK(expand(ctx, "[1, 2]", &g) == PQ_ERR_FORMAT);
    CHECK(g.n == 0 && g.configs == NULL);
}

static pq_sweep_run mkrun(const char *hash, const char *status, double tcr, double sr, double srcr, int64_t bytes) {
    pq_sweep_run r;
    memset(&r, 0, sizeof r);
    snprintf(r.hash, sizeof r.hash, "%s", hash);
    snprintf(r.status, sizeof r.status, "%s", status);
    r.recipe = (char *)"{\"prune\":\"none\",\"quant\":\"gptq\",\"bits\":4}";
    r.tcr = tcr;
    r.sr = sr;
    r.srcr = srcr;
    r.bytes = bytes;
    r.acr = tcr - 0.02;
    r.bpw = 16 * (1 - r.acr);
    r.sparsity = 0;
    r.bits = 4;
    r.seconds = 1.5;
    return r;
}

/* "allocate": an allocated config per config, after them, its hash the config's + "." + 6 hex
 * digits of the allocation's settings; --tcr keeps the pairs together. */
static void test_grid_allocate(pq_ctx *ctx) {
    pq_sweep_grid g;
    const char *grid = "{\"quant\": \"gptq\", \"bits\": [2, 3, 4], \"group\": 32, \"allocate\": \"bits=2..6\"}";
    CHECK(expand(ctx, grid, &g) == PQ_OK && g.n == 6);
    for (int64_t i = 0; i < 3 && g.n == 6; i++) {
        const pq_sweep_config *u = &g.configs[i], *a = &g.configs[3 + i];
        CHECK(u->alloc_of == -1 && a->alloc_of == i && !strncmp(a->hash, u->hash, 16) && a->hash[16] == '.' &&
              strlen(a->hash) == 23 && a->alloc_candidates && !strcmp(a->alloc_candidates, "bits=2..6"));
        CHECK(strstr(a->recipe, u->hash) && a->tcr == u->tcr);
    }
    const double t = 0.8125; /* 3-bit: its allocation goes with it, renumbered */
    pq_sweep_grid_filter_tcr(&g, &t, 1);
    CHECK(g.n == 2 && g.configs[0].alloc_of == -1 && g.configs[0].bits == 3 && g.configs[1].alloc_of == 0);
    pq_sweep_grid_free(&g);
    CHECK(expand(ctx, "{\"quant\": \"gptq\", \"allocate\": true}", &g) == PQ_OK && g.n == 2 &&
          g.configs[1].alloc_candidates == NULL);
    pq_sweep_grid_free(&g);
    const char *bad[] = {"{\"quant\": \"gptq\", \"allocate\": 3}", "{\"quant\": \"gptq\", \"allocate\": \"bits=9\"}"};
    for (int k = 0; k < 2; k++)
        CHECK_MSG(expand(ctx, bad[k], &g) == PQ_ERR_INVALID && strstr(pq_ctx_error(ctx), "allocate"), "%s: %s",
                  bad[k], pq_ctx_error(ctx));
}

static void test_store(pq_ctx *ctx, const char *dir) {
    char *path = pq__path_join(dir, "t.sqlite");
    pq_sweep_db *db = NULL;
    CHECK(pq_sweep_db_open(ctx, path, &db) == PQ_OK);
    if (!db) {
        free(path);
        return;
    }
    CHECK(pq_sweep_db_meta_set(ctx, db, "model", "m.bin") == PQ_OK);
    char *v = NULL;
    CHECK(pq_sweep_db_meta_get(ctx, db, "model", &v) == PQ_OK && v && !strcmp(v, "m.bin"));
    free(v);
    CHECK(pq_sweep_db_meta_get(ctx, db, "nothing", &v) == PQ_OK && !v);

    pq_sweep_score sc[2] = {{"arc_easy", "acc", 0.5, 0.05, 0.6, 0.5 / 0.6, 1, {0}, {NAN, NAN}},
                            {"ppl:x", "ppl", 12, NAN, 10, 10.0 / 12, 0, {0}, {NAN, NAN}}};
    pq_sweep_run r = mkrun("aaaa", "running", 0.75, NAN, NAN, 0);
    CHECK(pq_sweep_db_put(ctx, db, &r) == PQ_OK);
    char st[12];
    CHECK(pq_sweep_db_status(ctx, db, "aaaa", st) == PQ_OK && !strcmp(st, "running"));
    CHECK(pq_sweep_db_status(ctx, db, "zzzz", st) == PQ_OK && st[0] == 0);
    r = mkrun("aaaa", "done", 0.75, 0.9, 1.8, 1000);
    r.scores = sc;
    r.n_scores = 2;
    CHECK(pq_sweep_db_put(ctx, db, &r) == PQ_OK);
    CHECK(pq_sweep_db_put(ctx, db, &r) == PQ_OK); /* rewriting: still one row and two scores */
    /* a crash mid-config leaves a 'running' row: after reopening it is not 'done' (redone on resume) */
    pq_sweep_run crash = mkrun("bbbb", "running", 0.8125, NAN, NAN, 0);
    CHECK(pq_sweep_db_put(ctx, db, &crash) == PQ_OK);
    pq_sweep_db_close(db);
    db = NULL;
    CHECK(pq_sweep_db_open(ctx, path, &db) == PQ_OK);
    CHECK(pq_sweep_db_status(ctx, db, "bbbb", st) == PQ_OK && !strcmp(st, "running"));
    CHECK(pq_sweep_db_status(ctx, db, "aaaa", st) == PQ_OK && !strcmp(st, "done"));
    /* redoing it replaces the row */
    crash = mkrun("bbbb", "failed", 0.8125, NAN, NAN, 0);
    crash.error = (char *)"cholesky <failed>";
    CHECK(pq_sweep_db_put(ctx, db, &crash) == PQ_OK);
    pq_sweep_results res;
    CHECK(pq_sweep_db_load(ctx, db, &res) == PQ_OK);
    CHECK(res.n == 2 && !res.has_base && res.model && !strcmp(res.model, "m.bin"));
    if (res.n == 2) {
        CHECK(!strcmp(res.runs[0].hash, "aaaa") && res.runs[0].n_scores == 2);
        CHECK(res.runs[0].sr == 0.9 && res.runs[0].bytes == 1000);
        CHECK(res.runs[0].n_scores == 2 && isnan(res.runs[0].scores[1].se) && res.runs[0].scores[1].score == 12);
        CHECK(!strcmp(res.runs[1].status, "failed") && isnan(res.runs[1].sr) && res.runs[1].error &&
              !strcmp(res.runs[1].error, "cholesky <failed>"));
    }
    pq_sweep_results_free(&res);
    pq_sweep_results_free(&res);
    pq_sweep_results_free(NULL);
    CHECK(pq_sweep_db_delete(ctx, db, "bbbb") == PQ_OK);
    CHECK(pq_sweep_db_status(ctx, db, "bbbb", st) == PQ_OK && st[0] == 0);
    pq_sweep_db_close(db);
    pq_sweep_db_close(NULL);
    /* not a database */
    char *bad = pq__path_join(dir, "bad.sqlite");
    FILE *f = fopen(bad, "wb");
    if (f) {
        fputs("this is not an sqlite file, not at all, really not at all.......................", f);
        fclose(f);
    }
    CHECK(pq_sweep_db_open(ctx, bad, &db) != PQ_OK && !db);
    free(bad);
    free(path);
}

/* A hand-filled database for recommend and report. */
static void fill(pq_ctx *ctx, pq_sweep_db *db) {
    pq_sweep_score sc[1] = {{"arc_easy", "acc", 0.5, 0.05, 0.6, 0.5 / 0.6, 1, {0}, {NAN, NAN}}};
    pq_sweep_run runs[6] = {
        mkrun("q3", "done", 0.8125, 0.70, 1.5, 1100),  /* 3-bit alone */
        mkrun("j25", "done", 0.8125, 0.84, 1.9, 1150), /* 25% + 4-bit */
        mkrun("j28", "done", 0.8125, 0.80, 1.7, 1200), /* 2:8 + 4-bit */
        mkrun("q4", "done", 0.75, 0.95, 1.6, 1400),    /* 4-bit */
        mkrun("f", "failed", 0.875, NAN, NAN, 0),      /* failed */
        mkrun("r", "running", 0.5, 2.0, 9.0, 10),      /* in flight: never recommended */
    };
    runs[0].bits = 3;
    runs[1].sparsity = 0.25;
    runs[2].sparsity = 0.25;
    runs[1].recipe =
        (char *)"{\"prune\":\"sparsegpt\",\"sparsity\":0.25,\"quant\":\"gptq\",\"bits\":4,\"joint\":\"a\"}";
    for (int i = 0; i < 6; i++) {
        runs[i].scores = sc;
        runs[i].n_scores = 1;
        CHECK(pq_sweep_db_put(ctx, db, &runs[i]) == PQ_OK);
    }
    pq_sweep_run base = mkrun("base", "done", 0, 1, 1, 0);
    base.recipe = (char *)"{}";
    base.scores = sc;
    base.n_scores = 1;
    CHECK(pq_sweep_db_put(ctx, db, &base) == PQ_OK);
    CHECK(pq_sweep_db_meta_set(ctx, db, "model", "stories<260K>.bin") == PQ_OK);
    CHECK(pq_sweep_db_meta_set(ctx, db, "tasks", "arc_easy") == PQ_OK);
}

static const char *rec(pq_ctx *ctx, const pq_sweep_results *r, pq_sweep_goal g, double v) {
    int64_t i = -1;
    if (pq_sweep_recommend(ctx, r, g, v, &i) != PQ_OK) return "(none)";
    return r->runs[i].hash;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static void test_recommend_report(pq_ctx *ctx, const char *dir) {
    char *path = pq__path_join(dir, "r.sqlite");
    pq_sweep_db *db = NULL;
    CHECK(pq_sweep_db_open(ctx, path, &db) == PQ_OK);
    if (!db) {
        free(path);
        return;
    }
    fill(ctx, db);
    pq_sweep_results r;
    CHECK(pq_sweep_db_load(ctx, db, &r) == PQ_OK);
    CHECK(r.n == 6 && r.has_base && r.base.n_scores == 1);
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_BEST_SRCR, 0), "j25"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_AT_TCR, 0.8125), "j25"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_AT_TCR, 0.75), "q4"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_AT_TCR, 0.875), "(none)") && strstr(pq_ctx_error(ctx), "0.875"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_MAX_BYTES, 1100), "q3"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_MAX_BYTES, 1199), "j25"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_MAX_BYTES, 1e9), "q4"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_MAX_BYTES, 10), "(none)"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_MIN_SR, 0.5), "q3"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_MIN_SR, 0.75), "j25"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_MIN_SR, 0.9), "q4"));
    CHECK(!strcmp(rec(ctx, &r, PQ_SWEEP_MIN_SR, 0.99), "(none)"));
    int on[6];
    pq_sweep_pareto(&r, on);
    CHECK(!on[0] && on[1] && !on[2] && on[3] && !on[4] && !on[5]);

    char *html = pq__path_join(dir, "report.html");
    CHECK(pq_sweep_report_html(ctx, &r, html) == PQ_OK);
    char *s = slurp(html);
    CHECK(s != NULL);
    if (s) {
        CHECK(!strncmp(s, "<!DOCTYPE html>", 15));
        CHECK(strstr(s, "</html>\n") && !strcmp(strstr(s, "</html>\n"), "</html>\n"));
        CHECK(strstr(s, "<svg id=\"sr-vs-tcr\""));
        CHECK(strstr(s, "<svg id=\"iso-tcr\""));
        CHECK(strstr(s, "<svg id=\"srcr-ranking\""));
        CHECK(strstr(s, "id=\"pareto\""));
        CHECK(strstr(s, "class=\"bar joint\"") && strstr(s, "class=\"bar quant\""));
        CHECK(strstr(s, "stories&lt;260K&gt;.bin") && !strstr(s, "stories<260K>"));
        CHECK(strstr(s, "this project's reading"));
        /* self-contained: no scripts, no external resources */
        CHECK(!strstr(s, "<script") && !strstr(s, " src=") && !strstr(s, "<link") && !strstr(s, "url("));
        const char *h = s;
        int ext = 0;
        while ((h = strstr(h, "http"))) {
            ext += strncmp(h, "http://www.w3.org/2000/svg", 26) != 0;
            h += 4;
        }
        CHECK(ext == 0);
        int open = 0, close = 0;
        for (h = s; (h = strstr(h, "<svg")); h++)
            open++;
        for (h = s; (h = strstr(h, "</svg>")); h++)
            close++;
        CHECK(open == 4 && close == 4);
        /* Sr vs TCr and Sr vs real bits per weight, each with axis labels and a legend of the
         * kinds present only; the iso-TCr bars with a y label; the iso-bpw section */
        CHECK(strstr(s, "id=\"sr-vs-tcr\"") && strstr(s, "id=\"sr-vs-bpw\""));
        CHECK(strstr(s, ">TCr</text>") && strstr(s, ">Sr (mean retention)</text>"));
        CHECK(strstr(s, ">stored bits per weight (linear layers, incl. scales, zeros, masks)</text>"));
        CHECK(strstr(s, ">best Sr of each kind</text>"));
        CHECK(strstr(s, "class=\"key joint\"") && strstr(s, "class=\"key quant\""));
        CHECK(strstr(s, "id=\"iso-bpw\"") && strstr(s, "id=\"iso-tcr-lines\""));
    }
    free(s);
    /* an empty database still gives a valid report */
    pq_sweep_results empty;
    memset(&empty, 0, sizeof empty);
    CHECK(pq_sweep_report_html(ctx, &empty, html) == PQ_OK);
    int64_t idx;
    CHECK(pq_sweep_recommend(ctx, &empty, PQ_SWEEP_BEST_SRCR, 0, &idx) == PQ_ERR_INVALID && idx == -1);
    /* atomic: a report into a missing folder fails and leaves nothing */
    char *nowhere = pq__path_join(dir, "missing/report.html");
    CHECK(pq_sweep_report_html(ctx, &r, nowhere) == PQ_ERR_IO);
    free(nowhere);
    free(html);
    pq_sweep_results_free(&r);
    pq_sweep_db_close(db);
    free(path);
}

/* 1 when fn returns normally in a child process (a crash there does not end this test). */
static int survives(void (*fn)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status = 0;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void free_null_grid(void) {
    pq_sweep_grid_free(NULL);
}
static void free_null_scores(void) {
    pq_sweep_scores_free(NULL, 3);
}
static void free_null_db(void) {
    pq_sweep_db_close(NULL);
}
static void free_null_results(void) {
    pq_sweep_results_free(NULL);
}
static void free_zeroed(void) { /* a zeroed object is empty: freeing it twice is fine */
    pq_sweep_grid g = {0};
    pq_sweep_results r = {0};
    pq_sweep_grid_free(&g);
    pq_sweep_grid_free(&g);
    pq_sweep_results_free(&r);
    pq_sweep_results_free(&r);
}

/* Every public free function of prunequant-sweep.h takes NULL as a no-op. */
static void test_free_null(void) {
    CHECK(survives(free_null_grid));
    CHECK(survives(free_null_scores));
    CHECK(survives(free_null_db));
    CHECK(survives(free_null_results));
    CHECK(survives(free_zeroed));
}

/* The result messages between ranks (sweep_mpi.c) carry every number exactly: a run encoded
 * on one rank and stored by rank 0 reads back bit-identical; "cancelled" removes the row; a
 * malformed message is an error. The codec is the same with and without MPI. */
static void test_messages(pq_ctx *ctx, const char *dir) {
    int rank = -1, size = -1;
    pq__sweep_transport_world(&rank, &size); /* no MPI running here: one process */
    CHECK(rank == 0 && size == 1);
    CHECK(pq__sweep_transport_all_ok(1) == 1);
    pq_sweep_grid g;
    CHECK(expand(ctx, "{\"quant\": \"rtn\", \"bits\": [3, 4]}", &g) == PQ_OK && g.n == 2);
    char *path = pq__path_join(dir, "msg.sqlite");
    pq_sweep_db *db = NULL;
    CHECK(pq_sweep_db_open(ctx, path, &db) == PQ_OK);
    if (!db || g.n != 2) {
        pq_sweep_grid_free(&g);
        free(path);
        return;
    }
    double value[3] = {1.0 / 3, 0.1 + 0.2, 1e-300}, weight[3] = {3, 5, 7};
    pq_sweep_score sc = {.task = "ppl:x.txt",
                         .metric = "ppl",
                         .score = 12.345678901234567,
                         .se = NAN,
                         .base_score = 10.0 / 3,
                         .retention = 2.0 / 7,
                         .higher_is_better = 0,
                         .units = {.kind = PQ_UNITS_PPL, .n = 3, .value = value, .weight = weight}};
    pq_sweep_run run;
    pq__sweep_run_init(&run, &g.configs[1]);
    snprintf(run.status, sizeof run.status, "done");
    run.acr = 0.1 + 0.7, run.bpw = 3.0 / 7, run.bytes = 123456789, run.sr = 0.9 + 1e-16, run.srcr = 1.0 / 9;
    run.seconds = 2.5, run.layers = (char *)"{\"name\": \"q\"}\n", run.scores = &sc, run.n_scores = 1;
    char *msg = pq__sweep_msg_encode(1, &run, run.status);
    int64_t nd = 0, nf = 0;
    CHECK(msg && pq__sweep_msg_store(ctx, &g, db, msg, 1, &nd, &nf) == PQ_OK && nd == 1 && nf == 0);
    free(msg);
    pq_sweep_results res;
    CHECK(pq_sweep_db_load(ctx, db, &res) == PQ_OK && res.n == 1);
    if (res.n == 1) {
        const pq_sweep_run *b = &res.runs[0];
        CHECK(!strcmp(b->hash, g.configs[1].hash) && !strcmp(b->status, "done") && !strcmp(b->recipe, run.recipe));
        CHECK(b->acr == run.acr && b->bpw == run.bpw && b->bytes == run.bytes && b->sr == run.sr &&
              b->srcr == run.srcr && b->tcr == run.tcr && b->layers && !strcmp(b->layers, run.layers));
        CHECK(b->n_scores == 1 && b->scores[0].score == sc.score && isnan(b->scores[0].se) &&
              b->scores[0].base_score == sc.base_score && b->scores[0].retention == sc.retention &&
              b->scores[0].higher_is_better == 0 && !strcmp(b->scores[0].task, "ppl:x.txt"));
        const pq_units *u = b->n_scores == 1 ? &b->scores[0].units : NULL;
        CHECK(u && u->n == 3 && u->value && u->weight && !memcmp(u->value, value, sizeof value) &&
              !memcmp(u->weight, weight, sizeof weight));
    }
    pq_sweep_results_free(&res);
    msg = pq__sweep_msg_encode(1, NULL, "cancelled");
    CHECK(msg && pq__sweep_msg_store(ctx, &g, db, msg, 1, &nd, &nf) == PQ_OK);
    free(msg);
    char st[12];
    CHECK(pq_sweep_db_status(ctx, db, g.configs[1].hash, st) == PQ_OK && st[0] == 0);
    CHECK(pq__sweep_msg_store(ctx, &g, db, "{\"i\": 7, \"status\": \"done\"}", 1, &nd, &nf) == PQ_ERR_INTERNAL);
    CHECK(pq__sweep_msg_store(ctx, &g, db, "not json", 1, &nd, &nf) == PQ_ERR_INTERNAL && nd == 1 && nf == 0);
    pq_sweep_db_close(db);
    pq_sweep_grid_free(&g);
    free(path);
}

int main(void) {
    pq_ctx *ctx = pq_ctx_new();
    char dir[] = "/tmp/pq_test_sweep_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_grid(ctx);
    test_grid_allocate(ctx);
    test_store(ctx, dir);
    test_recommend_report(ctx, dir);
    test_messages(ctx, dir);
    test_free_null();
    pq__rmtree(dir);
    pq_ctx_free(ctx);
    return test_end("test_sweep");
}
