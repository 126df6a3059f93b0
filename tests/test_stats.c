/* Paired bootstrap (src/eval/bootstrap.c) and the units of the sweep store:
 *  - a model against itself: every interval [1, 1], differences [0, 0];
 *  - two configs that differ in 1 of 300 items: the difference is not distinguishable;
 *  - a clearly worse config: its interval excludes 1 and the difference excludes 0;
 *  - perplexity units (window NLL sums with token weights): the point equals exp(mean NLL);
 *  - the same draws for the same (seed, task, replicate): repeated calls agree bit for bit;
 *  - units survive the SQLite store exactly and pq_sweep_results_intervals pairs them;
 *  - the report calls a 1-in-300-items difference between two stored runs not distinguishable. */
#include <unistd.h>

#include "prunequant-sweep.h"
#include "test.h"

static uint64_t rng = 42;
static double uniform(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static pq_units mc(int64_t n, double p) {
    pq_units u = {PQ_UNITS_MEAN, n, malloc((size_t)n * sizeof(double)), NULL, 0};
    for (int64_t i = 0; i < n; i++)
        u.value[i] = uniform() < p;
    return u;
}

static pq_units copy(const pq_units *a) {
    pq_units u = *a;
    u.value = malloc((size_t)a->n * sizeof(double));
    memcpy(u.value, a->value, (size_t)a->n * sizeof(double));
    if (a->weight) {
        u.weight = malloc((size_t)a->n * sizeof(double));
        memcpy(u.weight, a->weight, (size_t)a->n * sizeof(double));
    }
    return u;
}

static void check_self_and_one_item(pq_ctx *ctx) {
    pq_units base[3], m1[3], m2[3];
    int higher[3] = {1, 1, 0};
    for (int t = 0; t < 2; t++)
        base[t] = mc(300, 0.4 + 0.1 * t);
    base[2] = (pq_units){PQ_UNITS_PPL, 300, malloc(300 * sizeof(double)), malloc(300 * sizeof(double)), 0};
    for (int i = 0; i < 300; i++)
        base[2].value[i] = 511.0 * (1.5 + uniform()), base[2].weight[i] = 511;
    for (int t = 0; t < 3; t++)
        m1[t] = copy(&base[t]), m2[t] = copy(&base[t]);
    const pq_units *pb[3] = {&base[0], &base[1], &base[2]}, *p1[3] = {&m1[0], &m1[1], &m1[2]};
    const pq_units *p2[3] = {&m2[0], &m2[1], &m2[2]};
    double sr, ci[2], d, dci[2];
    CHECK(pq_bootstrap_sr(ctx, 3, p1, pb, higher, NULL, &sr, ci) == PQ_OK);
    CHECK_MSG(sr == 1 && ci[0] == 1 && ci[1] == 1, "self: Sr %.17g [%.17g, %.17g]", sr, ci[0], ci[1]);
    for (int t = 0; t < 3; t++) {
        CHECK(pq_bootstrap_sr(ctx, 1, &p1[t], &pb[t], &higher[t], NULL, &sr, ci) == PQ_OK);
        CHECK_MSG(sr == 1 && ci[0] == 1 && ci[1] == 1, "self task %d: [%g, %g]", t, ci[0], ci[1]);
    }
    CHECK(pq_bootstrap_sr_diff(ctx, 3, p1, p2, pb, higher, NULL, &d, dci) == PQ_OK);
    CHECK_MSG(d == 0 && dci[0] == 0 && dci[1] == 0, "self difference %g [%g, %g]", d, dci[0], dci[1]);
    /* one item of 300 differs (correct in m2 only): not distinguishable */
    for (int i = 0; i < 300; i++)
        if (m2[0].value[i] == 0) {
            m2[0].value[i] = 1;
            break;
        }
    CHECK(pq_bootstrap_sr_diff(ctx, 3, p2, p1, pb, higher, NULL, &d, dci) == PQ_OK);
    CHECK_MSG(d > 0 && dci[0] <= 0 && dci[1] >= 0, "1 item of 300: %g [%g, %g] must cover 0", d, dci[0], dci[1]);
    /* the same call again: the same draws, the same numbers */
    double d2, dci2[2];
    CHECK(pq_bootstrap_sr_diff(ctx, 3, p2, p1, pb, higher, NULL, &d2, dci2) == PQ_OK);
    CHECK(d2 == d && dci2[0] == dci[0] && dci2[1] == dci[1]);
    /* a clearly worse model: 40% of the correct items of task 0 lost, ppl 10% up */
    for (int i = 0; i < 300; i++) {
        if (m1[0].value[i] == 1 && uniform() < 0.4) m1[0].value[i] = 0;
        m1[2].value[i] *= 1.1;
    }
    CHECK(pq_bootstrap_sr(ctx, 3, p1, pb, higher, NULL, &sr, ci) == PQ_OK);
    CHECK_MSG(ci[0] < sr && sr < ci[1] && ci[1] < 1, "worse: Sr %g [%g, %g] must exclude 1", sr, ci[0], ci[1]);
    CHECK(pq_bootstrap_sr_diff(ctx, 3, p1, p2, pb, higher, NULL, &d, dci) == PQ_OK);
    CHECK_MSG(dci[1] < 0, "worse vs base copy: %g [%g, %g] must exclude 0", d, dci[0], dci[1]);
    /* two models' own scores on the same windows (pq_bootstrap_score_diff): ppl 10 % up is a
     * positive difference whose interval excludes 0; against itself exactly 0 */
    CHECK(pq_bootstrap_score_diff(ctx, &m1[2], &m2[2], NULL, &d, dci) == PQ_OK);
    CHECK_MSG(d > 0 && dci[0] > 0 && dci[0] < d && d < dci[1], "ppl difference %g [%g, %g]", d, dci[0], dci[1]);
    CHECK(pq_bootstrap_score_diff(ctx, &m2[2], &m2[2], NULL, &d, dci) == PQ_OK && d == 0 && dci[0] == 0 &&
          dci[1] == 0);
    /* ppl units: the score is exp(sum NLL / sum tokens) */
    double s = 0;
    for (int i = 0; i < 300; i++)
        s += base[2].value[i];
    CHECK_NEAR(pq_units_score(&base[2]), exp(s / (300.0 * 511)), 1e-12);
    /* unpaired units are refused */
    pq_units short_u = mc(299, 0.5);
    const pq_units *ps = &short_u;
    CHECK(pq_bootstrap_sr(ctx, 1, &ps, &pb[0], higher, NULL, &sr, ci) == PQ_ERR_INVALID);
    pq_units_clear(&short_u);
    for (int t = 0; t < 3; t++)
        pq_units_clear(&base[t]), pq_units_clear(&m1[t]), pq_units_clear(&m2[t]);
    pq_units_clear(NULL);
}

/* Units go into the database and come back bit for bit; the intervals pair them with the base. */
static void check_store(pq_ctx *ctx) {
    char dir[] = "/tmp/pq_test_stats_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof path, "%s/s.sqlite", dir);
    pq_sweep_db *db = NULL;
    CHECK(pq_sweep_db_open(ctx, path, &db) == PQ_OK);
    pq_units bu = mc(300, 0.5), cu = copy(&bu);
    for (int i = 0; i < 300; i += 3)
        cu.value[i] = 0;
    const double bscore = pq_units_score(&bu), cscore = pq_units_score(&cu);
    pq_sweep_score bs = {"arc_easy", "acc", bscore, 0, bscore, 1, 1, bu, {NAN, NAN}};
    pq_sweep_score cs = {"arc_easy", "acc", cscore, 0, bscore, cscore / bscore, 1, cu, {NAN, NAN}};
    pq_sweep_run base = {.hash = "base",
                         .recipe = "{}",
                         .status = "done",
                         .bits = 16,
                         .bpw = 16,
                         .sr = 1,
                         .srcr = 1,
                         .scores = &bs,
                         .n_scores = 1,
                         .sr_ci = {NAN, NAN}};
    char layers[] = "{\"name\":\"model.layers.0.mlp.down_proj\",\"error\":1.5,\"sparsity\":0.5}\n";
    pq_sweep_run run = {.hash = "c1",
                        .recipe = "{\"bits\":4}",
                        .status = "done",
                        .bits = 4,
                        .tcr = 0.75,
                        .acr = 0.7,
                        .bpw = 4.75,
                        .sr = cscore / bscore,
                        .srcr = 1,
                        .seconds = 100,
                        .layers = layers,
                        .scores = &cs,
                        .n_scores = 1,
                        .sr_ci = {NAN, NAN}};
    CHECK(pq_sweep_db_put(ctx, db, &base) == PQ_OK);
    CHECK(pq_sweep_db_put(ctx, db, &run) == PQ_OK);
    pq_sweep_results r;
    CHECK(pq_sweep_db_load(ctx, db, &r) == PQ_OK);
    CHECK(r.n == 1 && r.has_base && r.runs[0].n_scores == 1);
    if (r.n == 1 && r.runs[0].n_scores == 1) {
        const pq_units *u = &r.runs[0].scores[0].units;
        CHECK(u->n == 300 && !memcmp(u->value, cu.value, 300 * sizeof(double)));
        CHECK(r.runs[0].layers && !strcmp(r.runs[0].layers, layers) && !r.base.layers);
        CHECK(pq_sweep_results_intervals(ctx, &r, NULL) == PQ_OK);
        const double *ci = r.runs[0].sr_ci;
        CHECK_MSG(ci[0] < r.runs[0].sr && r.runs[0].sr < ci[1] && ci[1] < 1, "stored run: Sr %g [%g, %g]",
                  r.runs[0].sr, ci[0], ci[1]);
        CHECK(r.runs[0].scores[0].retention_ci[0] == ci[0]); /* one task: Sr is its retention */
    }
    pq_sweep_results_free(&r);
    /* a joint and a quantization-only run at one TCr and one bpw whose items differ in 1 of
     * 300: the report calls the difference not distinguishable, in text and JSON */
    pq_units ju = copy(&cu), qu = copy(&cu);
    for (int i = 1; i < 300; i++)
        if (ju.value[i] == 0) {
            ju.value[i] = 1;
            break;
        }
    const double jscore = pq_units_score(&ju);
    pq_sweep_score js = {"arc_easy", "acc", jscore, 0, bscore, jscore / bscore, 1, ju, {NAN, NAN}};
    pq_sweep_score qs = {"arc_easy", "acc", cscore, 0, bscore, cscore / bscore, 1, qu, {NAN, NAN}};
    pq_sweep_run jr = {.hash = "j1",
                       .recipe = "{}",
                       .status = "done",
                       .sparsity = 0.25,
                       .bits = 4,
                       .tcr = 0.8125,
                       .bpw = 4.75,
                       .sr = jscore / bscore,
                       .srcr = 1,
                       .scores = &js,
                       .n_scores = 1,
                       .sr_ci = {NAN, NAN}};
    pq_sweep_run qr = {.hash = "q1",
                       .recipe = "{}",
                       .status = "done",
                       .bits = 3,
                       .tcr = 0.8125,
                       .bpw = 4.8,
                       .sr = cscore / bscore,
                       .srcr = 1,
                       .scores = &qs,
                       .n_scores = 1,
                       .sr_ci = {NAN, NAN}};
    CHECK(pq_sweep_db_put(ctx, db, &jr) == PQ_OK && pq_sweep_db_put(ctx, db, &qr) == PQ_OK);
    CHECK(pq_sweep_db_load(ctx, db, &r) == PQ_OK && pq_sweep_results_intervals(ctx, &r, NULL) == PQ_OK);
    char *text = pq_sweep_report_text(&r), *json = pq_sweep_report_json(&r);
    CHECK_MSG(text && strstr(text, "TCr 0.8125: joint") && strstr(text, "not distinguishable: joint +"), "%s", text);
    CHECK_MSG(text && strstr(text, "bpw 4.75-5.00: joint"), "%s", text);
    CHECK(json && strstr(json, "\"distinguishable\":\tfalse") && strstr(json, "\"difference_ci\""));
    free(text);
    free(json);
    pq_sweep_results_free(&r);
    pq_units_clear(&ju);
    pq_units_clear(&qu);
    pq_sweep_db_close(db);
    pq_units_clear(&bu);
    pq_units_clear(&cu);
    unlink(path);
    char wal[80];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    unlink(wal);
    rmdir(dir);
}

/* An allocated run ("u1.abcdef") against its uniform ("u1") on the same windows: ppl and KLD
 * differences (uniform - allocated) with paired intervals, in the pairs and in the report. */
static void check_alloc_pairs(pq_ctx *ctx) {
    pq_units pb = {PQ_UNITS_PPL, 200, malloc(200 * sizeof(double)), malloc(200 * sizeof(double)), 0};
    for (int i = 0; i < 200; i++)
        pb.value[i] = 255.0 * (1.0 + uniform()), pb.weight[i] = 255;
    pq_units pu = copy(&pb), pa = copy(&pb), ku = mc(200, 0.5), ka = copy(&ku);
    for (int i = 0; i < 200; i++) {
        pu.value[i] *= 1.02, pa.value[i] *= 1.01; /* allocated: half the ppl loss */
        ku.value[i] = 0.02 * (1 + uniform()) * 255, ka.value[i] = 0.5 * ku.value[i]; /* and half the KLD */
    }
    pq_sweep_score bs[1] = {{"ppl:x.txt", "ppl", pq_units_score(&pb), 0, pq_units_score(&pb), 1, 0, pb, {NAN, NAN}}};
    pq_sweep_score us[2] = {{"ppl:x.txt", "ppl", pq_units_score(&pu), 0, bs[0].score, 0.98, 0, pu, {NAN, NAN}},
                            {"kld:x.txt", "kld_mean", pq_units_score(&ku), 0, 0, NAN, 1, ku, {NAN, NAN}}};
    pq_sweep_score as[2] = {{"ppl:x.txt", "ppl", pq_units_score(&pa), 0, bs[0].score, 0.99, 0, pa, {NAN, NAN}},
                            {"kld:x.txt", "kld_mean", pq_units_score(&ka), 0, 0, NAN, 1, ka, {NAN, NAN}}};
    pq_sweep_run runs[2] = {{.hash = "u1",
                             .recipe = "{}",
                             .status = "done",
                             .bits = 4,
                             .sr = 0.98,
                             .bytes = 1000,
                             .scores = us,
                             .n_scores = 2,
                             .sr_ci = {NAN, NAN}},
                            {.hash = "u1.abcdef",
                             .recipe = "{}",
                             .status = "done",
                             .bits = 4.2,
                             .sr = 0.99,
                             .bytes = 999,
                             .scores = as,
                             .n_scores = 2,
                             .sr_ci = {NAN, NAN}}};
    pq_sweep_results r = {.runs = runs, .n = 2, .has_base = 1};
    r.base = (pq_sweep_run){.hash = "base", .status = "done", .scores = bs, .n_scores = 1};
    pq_sweep_alloc_pair *v = NULL;
    int64_t n = 0;
    CHECK(pq_sweep_alloc_pairs(ctx, &r, NULL, &v, &n) == PQ_OK && n == 1);
    if (n == 1) {
        CHECK(v[0].alloc == 1 && v[0].uniform == 0 && !strcmp(v[0].ppl_task, "ppl:x.txt"));
        CHECK_MSG(v[0].ppl_diff > 0 && v[0].ppl_ci[0] > 0 && v[0].kld_diff > 0 && v[0].kld_ci[0] > 0,
                  "ppl %g [%g, %g], kld %g [%g, %g]", v[0].ppl_diff, v[0].ppl_ci[0], v[0].ppl_ci[1], v[0].kld_diff,
                  v[0].kld_ci[0], v[0].kld_ci[1]);
        CHECK(v[0].sr_diff > 0 && v[0].sr_ci[0] > 0);
    }
    free(v);
    char *text = pq_sweep_report_text(&r), *json = pq_sweep_report_json(&r);
    CHECK_MSG(text && strstr(text, "allocated per linear vs uniform") && strstr(text, "ppl") &&
                  strstr(text, "allocated better by"),
              "%s", text ? text : "");
    CHECK(json && strstr(json, "\"allocated\":") && strstr(json, "\"budget_bytes\":\t1000"));
    free(text);
    free(json);
    pq_units_clear(&pb), pq_units_clear(&pu), pq_units_clear(&pa), pq_units_clear(&ku), pq_units_clear(&ka);
}

int main(void) {
    pq_ctx *ctx = pq_ctx_new();
    check_self_and_one_item(ctx);
    check_alloc_pairs(ctx);
    check_store(ctx);
    pq_ctx_free(ctx);
    return test_end("test_stats");
}
