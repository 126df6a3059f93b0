/* Evaluation stage: metric formulas, MC scoring against a hand-computed log-softmax of
 * pq_model_logits, generative answer extraction, task file errors, cloze maker, KLD and
 * retention of a model against itself. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval/eval.h"
#include "synth.h"
#include "test.h"

/* Straightforward log-softmax of one logits row, in double. */
static double ref_logp(const float *x, int64_t V, int32_t t) {
    double mx = x[0];
    for (int64_t i = 1; i < V; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int64_t i = 0; i < V; i++)
        s += exp((double)x[i] - mx);
    return (double)x[t] - mx - log(s);
}

/* Reference log-likelihood of cont after ctx: one full sequence through pq_model_logits. */
static double ref_ll(pq_ctx *ctx, const pq_model *m, const int32_t *c, int64_t nc, const int32_t *x, int64_t nx,
                     int reference) {
    int64_t n = nc + nx, V = m->cfg.vocab_size;
    int32_t *seq = malloc((size_t)n * sizeof *seq);
    float *lg = malloc((size_t)(n * V) * sizeof *lg);
    memcpy(seq, c, (size_t)nc * sizeof *seq);
    memcpy(seq + nc, x, (size_t)nx * sizeof *seq);
    double s = NAN;
    if (pq_model_logits(ctx, m, seq, 1, n, reference, lg) == PQ_OK) {
        s = 0;
        for (int64_t j = 0; j < nx; j++)
            s += ref_logp(lg + (nc + j - 1) * V, V, x[j]);
    }
    free(seq);
    free(lg);
    return s;
}

static void test_metrics(void) {
    CHECK(pq_metrics_tcr(0.25, 4) == 0.8125);
    CHECK(pq_metrics_tcr(pq_metrics_nm_sparsity(2, 8), 4) == 0.8125);
    CHECK(pq_metrics_tcr(pq_metrics_nm_sparsity(2, 4), 4) == 0.875);
    CHECK(pq_metrics_tcr(0, 3) == 0.8125);
    CHECK(pq_metrics_tcr(0, 4) == 0.75);
    CHECK(pq_metrics_tcr(0.5, 16) == 0.5); /* pruning only: s */
    CHECK(pq_metrics_tcr(0.5, 8) == 0.75); /* iso-TCr with 4-bit */
    CHECK(pq_metrics_tcr(0, 16) == 0.0);
    CHECK(pq_metrics_acr(1000, 1000) == 0.5);
    CHECK(pq_metrics_bpw(1000, 2000) == 4.0);
    CHECK(pq_metrics_chance_norm(0.25, 4) == 0.0);
    CHECK(pq_metrics_chance_norm(0.10, 4) == 0.0);
    CHECK_NEAR(pq_metrics_chance_norm(0.625, 4), 0.5, 1e-15);
    CHECK(pq_metrics_chance_norm(1.0, 2) == 1.0);
    CHECK(pq_metrics_retention(0.3, 0.6, 1) == 0.5);
    CHECK(pq_metrics_retention(20.0, 10.0, 0) == 0.5); /* ppl: base / model */
    CHECK(isnan(pq_metrics_retention(0.3, 0.0, 1)));
    double r[4] = {1.0, 0.5, NAN, 0.75};
    CHECK(pq_metrics_sr(r, 4) == 0.75);
    CHECK(pq_metrics_srcr(0.9, 0, 16) == 0.9); /* dense 16-bit: SrCr = Sr */
    CHECK_NEAR(pq_metrics_srcr(0.8, 0.75, 4), 0.8 / (0.5 * 0.5), 1e-12);
    CHECK_NEAR(pq_metrics_sr_tcr(0.8, 0.25, 4), 0.8 * 0.8125, 1e-15);
    CHECK_NEAR(pq_metrics_binom_stderr(0.5, 101), sqrt(0.25 / 100), 1e-15);
    CHECK(pq_metrics_binom_stderr(1.0, 10) == 0.0);
}

static void test_scoring_synth(void) {
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, 1);
    pq__config cfg = synth_config(PQ_ARCH_LLAMA, 32, 64, 2, 4, 2, 61);
    pq_model *m = synth_model(ctx, &cfg, 7);
    CHECK_MSG(m != NULL, "%s", pq_ctx_error(ctx));
    if (!m) {
        pq_ctx_free(ctx);
        return;
    }
    const int32_t c[9] = {1, 5, 9, 17, 33, 2, 40, 41, 7};
    const int32_t x0[1] = {12}, x1[3] = {3, 59, 20}, x2[5] = {44, 44, 8, 0, 31}, x3[2] = {60, 6};
    const int32_t *xs[4] = {x0, x1, x2, x3};
    const int64_t lens[4] = {1, 3, 5, 2};
    double ll[4], want[4];
    int greedy[4];
    CHECK(pq__score_shared(ctx, m, c, 9, xs, lens, 4, ll, greedy) == PQ_OK);
    for (int i = 0; i < 4; i++) {
        want[i] = ref_ll(ctx, m, c, 9, xs[i], lens[i], 1);
        CHECK_NEAR(ll[i], want[i], 2e-4 * (1 + fabs(want[i])));
    }
    /* acc picks the largest sum; acc_norm divides by characters */
    int best = 0;
    for (int i = 1; i < 4; i++)
        if (want[i] > want[best]) best = i;
    CHECK(pq__mc_pick(ll, NULL, 4) == best);
    const int64_t chars[4] = {2, 30, 7, 11};
    int bestn = 0;
    for (int i = 1; i < 4; i++)
        if (want[i] / (double)chars[i] > want[bestn] / (double)chars[bestn]) bestn = i;
    CHECK(pq__mc_pick(ll, chars, 4) == bestn);
    /* greedy flag: the argmax continuation of length 1 is greedy, a non-argmax one is not */
    {
        int64_t V = m->cfg.vocab_size;
        float *lg = malloc((size_t)(9 * V) * sizeof *lg);
        CHECK(pq_model_logits(ctx, m, c, 1, 9, 0, lg) == PQ_OK);
        int32_t am = 0, worst = 0;
        for (int32_t i = 1; i < V; i++) {
            if (lg[8 * V + i] > lg[8 * V + am]) am = i;
            if (lg[8 * V + i] < lg[8 * V + worst]) worst = i;
        }
        const int32_t ga[1] = {am}, gw[1] = {worst};
        const int32_t *gs[2] = {ga, gw};
        const int64_t gl[2] = {1, 1};
        double l2[2];
        int g2[2];
        CHECK(pq__score_shared(ctx, m, c, 9, gs, gl, 2, l2, g2) == PQ_OK);
        CHECK(g2[0] == 1 && g2[1] == 0);
        CHECK(l2[0] > l2[1]);
        free(lg);
    }
    /* partial scoring: one continuation after contexts of different lengths */
    const int32_t pc0[4] = {1, 5, 9, 17}, pc1[6] = {1, 5, 9, 18, 22, 23};
    const int32_t *pcs[2] = {pc0, pc1};
    const int64_t pcl[2] = {4, 6};
    double pl[2];
    CHECK(pq__score_partial(ctx, m, pcs, pcl, x1, 3, 2, pl, NULL) == PQ_OK);
    CHECK_NEAR(pl[0], ref_ll(ctx, m, pc0, 4, x1, 3, 1), 2e-4 * (1 + fabs(pl[0])));
    CHECK_NEAR(pl[1], ref_ll(ctx, m, pc1, 6, x1, 3, 1), 2e-4 * (1 + fabs(pl[1])));
    /* too long for the context: a clear error */
    int32_t *big = calloc(300, sizeof *big);
    const int32_t *bx[1] = {x0};
    const int64_t bl[1] = {1};
    CHECK(pq__score_shared(ctx, m, big, 256, bx, bl, 1, ll, NULL) == PQ_ERR_INVALID);
    free(big);
    pq_model_free(m);
    pq_ctx_free(ctx);
}

static void test_extraction(void) {
    char b[256], t[256];
    CHECK(pq__extract_last_number("so she pays $1,234.50 in total.", b, sizeof b) && !strcmp(b, "1234.50"));
    CHECK(pq__extract_last_number("The answer is 18.", b, sizeof b) && !strcmp(b, "18"));
    CHECK(pq__extract_last_number("first 3 then -42", b, sizeof b) && !strcmp(b, "-42"));
    CHECK(pq__extract_last_number("#### 72\n", b, sizeof b) && !strcmp(b, "72"));
    CHECK(!pq__extract_last_number("no digits here", b, sizeof b) && b[0] == 0);
    CHECK(pq__extract_last_number("1, 2, and 3.", b, sizeof b) && !strcmp(b, "3"));
    CHECK(pq__extract_gsm8k_target("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", t, sizeof t) && !strcmp(t, "18"));
    CHECK(pq__extract_gsm8k_target("blah\n#### 1,000", t, sizeof t) && !strcmp(t, "1000"));
    CHECK(pq__answers_equal("18.0", "18"));
    CHECK(pq__answers_equal("1234.50", "1234.5"));
    CHECK(!pq__answers_equal("17", "18"));
    CHECK(!pq__answers_equal("", "18"));
    CHECK(pq__extract_boxed("so $\\boxed{\\frac{1}{2}}$ and then \\boxed{7}", b, sizeof b) && !strcmp(b, "7"));
    CHECK(pq__extract_boxed("thus \\boxed{\\frac{\\sqrt{3}}{2}}.", b, sizeof b) &&
          !strcmp(b, "\\frac{\\sqrt{3}}{2}"));
    CHECK(pq__extract_boxed("\\fbox{x}", b, sizeof b) && !strcmp(b, "x"));
    CHECK(!pq__extract_boxed("\\boxed{unbalanced", b, sizeof b));
    CHECK(!pq__extract_boxed("nothing", b, sizeof b));
    pq__math_normalize("\\dfrac12", b, sizeof b);
    CHECK_MSG(!strcmp(b, "\\frac{1}{2}"), "%s", b);
    pq__math_normalize("x = 5", b, sizeof b);
    CHECK_MSG(!strcmp(b, "5"), "%s", b);
    pq__math_normalize("10\\%", b, sizeof b);
    CHECK_MSG(!strcmp(b, "10"), "%s", b);
    pq__math_normalize("90^\\circ", b, sizeof b);
    CHECK_MSG(!strcmp(b, "90"), "%s", b);
    pq__math_normalize("\\text{(C)}", b, sizeof b);
    CHECK_MSG(!strcmp(b, "(C)"), "%s", b);
    pq__math_normalize("\\left( 3, \\frac{\\pi}{2} \\right)", b, sizeof b);
    pq__math_normalize("(3,\\frac{\\pi}{2})", t, sizeof t);
    CHECK_MSG(!strcmp(b, t), "%s vs %s", b, t);
    pq__math_normalize("5.0", b, sizeof b);
    CHECK_MSG(!strcmp(b, "5"), "%s", b);
    CHECK(pq__exact_match("  (B) \n", "(B)"));
    CHECK(pq__exact_match("true", "True"));
    CHECK(!pq__exact_match("(B) because", "(B)"));
    CHECK(!pq__exact_match("", "(B)"));
}

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(s, f);
        fclose(f);
    }
}

static void test_task_files(const char *tmp) {
    pq_ctx *ctx = pq_ctx_new();
    pq_eval_params p = pq_eval_params_default();
    char path[512], spec[600], file[1024];
    int64_t n = -1;
    snprintf(path, sizeof path, "%s/good.jsonl", tmp);
    write_file(path, "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 1}\n\n"
                     "{\"context\": \"b\", \"choices\": [\"x\", \"y\", \"z\"], \"gold\": 0}\n");
    snprintf(spec, sizeof spec, "mc:%s", path);
    CHECK(pq_eval_task_count(ctx, spec, &p, &n, file, sizeof file) == PQ_OK && n == 2);
    CHECK(!strcmp(file, path));
    p.limit = 1;
    CHECK(pq_eval_task_count(ctx, spec, &p, &n, NULL, 0) == PQ_OK && n == 1);
    p.limit = 0;
    static const char *const bad[] = {
        "{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 0}\n{\"context\": \"a\", \"choices\": [\"x\"], "
        "\"gold\": 0}\n{oops\n",
        "{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 0}\n{\"context\": \"a\", \"choices\": [\"x\"], "
        "\"gold\": 0}\n{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 4}\n",
        "{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 0}\n{\"context\": \"a\", \"choices\": [\"x\"], "
        "\"gold\": 0}\n{\"choices\": [\"x\"], \"gold\": 0}\n",
    };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/bad%d.jsonl", tmp, i);
        write_file(path, bad[i]);
        snprintf(spec, sizeof spec, "mc:%s", path);
        CHECK(pq_eval_task_count(ctx, spec, &p, &n, NULL, 0) == PQ_ERR_FORMAT);
        char want[600];
        snprintf(want, sizeof want, "%s:3:", path);
        CHECK_MSG(strstr(pq_ctx_error(ctx), want) != NULL, "%s", pq_ctx_error(ctx));
    }
    snprintf(path, sizeof path, "%s/bad.gen.jsonl", tmp);
    write_file(path,
               "{\"prompt\": \"p\", \"answer\": \"a\", \"stop\": [\"\\n\"]}\n{\"prompt\": \"p\", \"stop\": 3}\n");
    snprintf(spec, sizeof spec, "gen:%s", path);
    CHECK(pq_eval_task_count(ctx, spec, &p, &n, NULL, 0) == PQ_ERR_FORMAT);
    CHECK_MSG(strstr(pq_ctx_error(ctx), ":2:") != NULL, "%s", pq_ctx_error(ctx));
    CHECK(pq_eval_task_count(ctx, "no_such_task", &p, &n, NULL, 0) == PQ_ERR_INVALID);
    CHECK(pq_eval_task_count(ctx, "mc:/nonexistent/x.jsonl", &p, &n, NULL, 0) == PQ_ERR_IO);

    /* few-shot prefixes: deterministic, exclude the item itself */
    pq__task t;
    snprintf(path, sizeof path, "%s/fs.jsonl", tmp);
    write_file(path, "{\"context\": \"Q0\", \"choices\": [\"a0\", \"b0\"], \"gold\": 0}\n"
                     "{\"context\": \"Q1\", \"choices\": [\"a1\", \"b1\"], \"gold\": 1}\n"
                     "{\"context\": \"Q2\", \"choices\": [\"a2\", \"b2\"], \"gold\": 0}\n");
    snprintf(spec, sizeof spec, "mc:%s", path);
    pq_status lst = pq__task_load(ctx, spec, NULL, NULL, 0, &t);
    CHECK(lst == PQ_OK);
    if (lst == PQ_OK) {
        CHECK(t.n_items == 3);
        char *f0 = pq__task_fewshot(&t, 1, 2, 5), *f1 = pq__task_fewshot(&t, 1, 2, 5),
             *f2 = pq__task_fewshot(&t, 0, 0, 5);
        CHECK(f0 && f1 && !strcmp(f0, f1));
        CHECK(f0 && !strstr(f0, "Q1") && strstr(f0, "Q0 a0\n\n") && strstr(f0, "Q2 a2\n\n"));
        CHECK(f2 && f2[0] == 0);
        free(f0);
        free(f1);
        free(f2);
        pq__task_free(&t);
    }
    pq_ctx_free(ctx);
}

static void test_cloze(const char *tmp) {
    pq_ctx *ctx = pq_ctx_new();
    char text[512], out1[512], out2[512];
    snprintf(text, sizeof text, "%s/story.txt", tmp);
    write_file(text, "Tom had a red ball. He threw it high! \"Catch it,\" said Mom. The ball fell.\n\n"
                     "Sue liked cats. She had three cats. They were soft.\n\n\n"
                     "One day it rained. The sun came back? Everyone went out.\n\n"
                     "Lonely.\n");
    snprintf(out1, sizeof out1, "%s/c1.jsonl", tmp);
    snprintf(out2, sizeof out2, "%s/c2.jsonl", tmp);
    pq_cloze_params cp = pq_cloze_params_default();
    cp.n_choices = 3;
    cp.seed = 3;
    int64_t n1 = 0, n2 = 0;
    CHECK_MSG(pq_tasks_make_cloze(ctx, text, out1, &cp, &n1) == PQ_OK, "%s", pq_ctx_error(ctx));
    CHECK(pq_tasks_make_cloze(ctx, text, out2, &cp, &n2) == PQ_OK);
    CHECK(n1 == 3 && n2 == 3); /* one item per passage with two sentences */
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    CHECK(pq__read_text(ctx, out1, 1 << 20, &a, &la) == PQ_OK);
    CHECK(pq__read_text(ctx, out2, 1 << 20, &b, &lb) == PQ_OK);
    CHECK(a && b && la == lb && !memcmp(a, b, la));
    int lines = 0;
    for (char *s = a ? strtok(a, "\n") : NULL; s; s = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(s);
        const cJSON *ch = cJSON_GetObjectItem(o, "choices"), *g = cJSON_GetObjectItem(o, "gold");
        const cJSON *c = cJSON_GetObjectItem(o, "context");
        CHECK(cJSON_IsString(c) && cJSON_IsArray(ch) && cJSON_GetArraySize(ch) == 3 && cJSON_IsNumber(g));
        if (cJSON_IsArray(ch) && cJSON_GetArraySize(ch) == 3 && cJSON_IsNumber(g)) {
            int gi = g->valueint;
            const char *truth = cJSON_GetArrayItem(ch, gi)->valuestring;
            /* the true sentence continues the context's passage */
            CHECK_MSG(
                (strstr("Tom had a red ball. He threw it high! \"Catch it,\" said Mom. The ball fell.", truth) &&
                 strstr("Tom had a red ball. He threw it high! \"Catch it,\" said Mom. The ball fell.",
                        c->valuestring)) ||
                    (strstr("Sue liked cats. She had three cats. They were soft.", truth) &&
                     strstr("Sue liked cats. She had three cats. They were soft.", c->valuestring)) ||
                    (strstr("One day it rained. The sun came back? Everyone went out.", truth) &&
                     strstr("One day it rained. The sun came back? Everyone went out.", c->valuestring)),
                "%s | %s", c->valuestring, truth);
            for (int i = 0; i < 3; i++)
                for (int j = i + 1; j < 3; j++)
                    CHECK(strcmp(cJSON_GetArrayItem(ch, i)->valuestring, cJSON_GetArrayItem(ch, j)->valuestring));
        }
        cJSON_Delete(o);
        lines++;
    }
    CHECK(lines == 3);
    free(a);
    free(b);
    cp.n_choices = 1;
    CHECK(pq_tasks_make_cloze(ctx, text, out1, &cp, &n1) == PQ_ERR_INVALID);
    pq_ctx_free(ctx);
}

/* Text-level scoring, generation, KLD and retention on stories260K (needs PQ_DATA). */
static void test_real_model(const char *data, const char *tmp) {
    char mp[512], tp[512], text[512];
    snprintf(mp, sizeof mp, "%s/models/stories260K/stories260K.bin", data);
    snprintf(tp, sizeof tp, "%s/models/stories260K/tok512.bin", data);
    snprintf(text, sizeof text, "%s/text/tinystories/tinystories_val.txt", data);
    if (access(mp, R_OK) || access(tp, R_OK) || access(text, R_OK)) {
        printf("stories260K not found under %s: skipping the real-model checks\n", data);
        return;
    }
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, 1);
    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = tp;
    pq_model *m = NULL, *m2 = NULL;
    CHECK(pq_model_load(ctx, mp, &lp, &m) == PQ_OK);
    CHECK(pq_model_load(ctx, mp, &lp, &m2) == PQ_OK);
    if (!m || !m2) goto out;
    {
        /* text-level MC against a hand computation over tokenize(context + " " + choice) */
        const char *context = "Lily went to the park with her mom. She saw a big red ball.";
        const char *choices[3] = {"She ran to get it.", "The moon is made of cheese and rockets.", "Lily"};
        double ll[3];
        int64_t chars[3];
        CHECK(pq__score_mc_text(ctx, m, context, choices, 3, ll, chars, NULL) == PQ_OK);
        const pq_tokenizer *tok = pq_model_tokenizer(m);
        int32_t *cids = NULL;
        int64_t nc = 0;
        CHECK(pq_tokenize(ctx, tok, context, strlen(context), 1, &cids, &nc) == PQ_OK);
        for (int i = 0; i < 3; i++) {
            char whole[512];
            snprintf(whole, sizeof whole, "%s %s", context, choices[i]);
            int32_t *w = NULL;
            int64_t nw = 0;
            CHECK(pq_tokenize(ctx, tok, whole, strlen(whole), 1, &w, &nw) == PQ_OK);
            CHECK(nw > nc);
            double want = ref_ll(ctx, m, w, nc, w + nc, nw - nc, 0);
            CHECK_NEAR(ll[i], want, 1e-4 * (1 + fabs(want)));
            CHECK(chars[i] == 1 + (int64_t)strlen(choices[i]));
            free(w);
        }
        free(cids);
        /* the sensible continuation beats the absurd one */
        CHECK(ll[0] > ll[1]);

        /* generation stops before the stop string */
        char *gen = NULL;
        const char *stops[1] = {"."};
        CHECK(pq__generate_text(ctx, m, "Once upon a time", stops, 1, 64, &gen) == PQ_OK);
        CHECK(gen && !strchr(gen, '.') && strlen(gen) > 0);
        free(gen);

        /* KLD of a model to itself: 0, same top 100% */
        pq_eval_params p = pq_eval_params_default();
        p.ctx = 128;
        p.limit = 3;
        pq_kld_result k;
        CHECK_MSG(pq_eval_kld(ctx, m, m2, text, &p, &k) == PQ_OK, "%s", pq_ctx_error(ctx));
        CHECK(k.n_tokens == 3 * 127);
        CHECK(fabs(k.mean) <= 1e-6 && k.p999 <= 1e-6 && k.max <= 1e-6);
        CHECK(k.same_top == 1.0);
        CHECK(fabs(k.dp_mean) <= 1e-9 && fabs(k.ln_ppl_ratio) <= 1e-9);
        CHECK(k.ppl_base > 1 && k.ppl_base < 20 && k.ppl_base == k.ppl_model);
        /* per-window units for paired comparisons: a model against itself differs by exactly 0 */
        double kd = 1, kci[2] = {1, 1};
        CHECK(k.units.n == 3 && k.units.weight && k.units.weight[0] == 127);
        CHECK(pq_bootstrap_score_diff(ctx, &k.units, &k.units, NULL, &kd, kci) == PQ_OK && kd == 0 && kci[0] == 0 &&
              kci[1] == 0);
        pq_units_clear(&k.units);

        /* a run against itself: retention exactly 1, Sr 1; second run reads the cache */
        char mc[512], cache[512], tasks[1800];
        snprintf(mc, sizeof mc, "%s/self.jsonl", tmp);
        snprintf(cache, sizeof cache, "%s/cache", tmp);
        write_file(mc,
                   "{\"context\": \"Tom had a dog.\", \"choices\": [\"The dog was happy.\", \"Red.\"], \"gold\": 0}\n"
                   "{\"context\": \"Sue saw a cat.\", \"choices\": [\"It barked at the moon.\", \"The cat was "
                   "soft.\"], \"gold\": 1}\n"
                   "{\"context\": \"They went to the park.\", \"choices\": [\"They played on the swings.\", "
                   "\"Numbers are big.\"], \"gold\": 0}\n");
        snprintf(tasks, sizeof tasks, "mc:%s,ppl:%s,kld:%s", mc, text, text);
        p.cache_dir = cache;
        p.limit = 2;
        for (int run = 0; run < 2; run++) {
            pq_eval_report *r = NULL;
            CHECK_MSG(pq_eval_run(ctx, m, mp, m2, mp, tasks, &p, NULL, &r) == PQ_OK, "%s", pq_ctx_error(ctx));
            if (!r) break;
            CHECK(r->n_tasks == 2 && r->has_kld);
            for (int64_t i = 0; i < r->n_tasks; i++) {
                CHECK(r->tasks[i].retention == 1.0);
                CHECK(r->tasks[i].base_cached == run);
            }
            CHECK(r->metrics.sr == 1.0 && r->metrics.n_retention == 2);
            CHECK(r->metrics.sparsity == 0 && r->metrics.bits == 16 && r->metrics.tcr == 0);
            CHECK(r->metrics.srcr == 1.0);
            CHECK(r->kld.mean <= 1e-6 && r->kld.same_top == 1.0);
            char *js = pq_eval_report_json(r);
            cJSON *j = js ? cJSON_Parse(js) : NULL;
            const cJSON *tk = cJSON_GetObjectItem(j, "tasks"), *kl = cJSON_GetObjectItem(j, "kld");
            const cJSON *mt = cJSON_GetObjectItem(j, "metrics");
            const cJSON *t0 = tk ? tk->child : NULL;
            CHECK(t0 && cJSON_IsString(cJSON_GetObjectItem(t0, "metric")) &&
                  cJSON_IsNumber(cJSON_GetObjectItem(t0, "score")) &&
                  cJSON_IsNumber(cJSON_GetObjectItem(t0, "stderr")) &&
                  cJSON_IsNumber(cJSON_GetObjectItem(t0, "base_score")) &&
                  cJSON_IsNumber(cJSON_GetObjectItem(t0, "retention")) &&
                  cJSON_IsString(cJSON_GetObjectItem(t0, "protocol")));
            CHECK(cJSON_IsNumber(cJSON_GetObjectItem(kl, "mean")) &&
                  cJSON_IsNumber(cJSON_GetObjectItem(kl, "same_top")) &&
                  cJSON_IsNumber(cJSON_GetObjectItem(kl, "p99")) &&
                  cJSON_IsNumber(cJSON_GetObjectItem(kl, "median")));
            static const char *const keys[] = {"tcr", "acr", "bpw", "sparsity", "bits", "sr", "srcr"};
            for (int i = 0; i < 7; i++)
                CHECK_MSG(cJSON_IsNumber(cJSON_GetObjectItem(mt, keys[i])), "%s", keys[i]);
            cJSON_Delete(j);
            free(js);
            pq_eval_report_free(r);
        }
        /* kld without a base is an error, not a crash */
        pq_eval_report *r = NULL;
        CHECK(pq_eval_run(ctx, m, mp, NULL, NULL, tasks, &p, NULL, &r) == PQ_ERR_INVALID && r == NULL);
    }
out:
    pq_model_free(m);
    pq_model_free(m2);
    pq_ctx_free(ctx);
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

static void free_null_report(void) {
    pq_eval_report_free(NULL);
}
static void free_null_units(void) {
    pq_units_clear(NULL);
}
static void free_null_task(void) {
    pq__task_free(NULL);
}
static void free_zeroed(void) { /* a zeroed object is empty: freeing it twice is fine */
    pq_units u = {0};
    pq__task t;
    memset(&t, 0, sizeof t);
    pq_units_clear(&u);
    pq_units_clear(&u);
    pq__task_free(&t);
    pq__task_free(&t);
}

/* Every public free function of prunequant-eval.h (and the task's) takes NULL as a no-op. */
static void test_free_null(void) {
    CHECK(survives(free_null_report));
    CHECK(survives(free_null_units));
    CHECK(survives(free_null_task));
    CHECK(survives(free_zeroed));
}

int main(void) {
    char tmp[] = "/tmp/pq_test_eval_XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_metrics();
    test_free_null();
    test_scoring_synth();
    test_extraction();
    test_task_files(tmp);
    test_cloze(tmp);
    const char *data = test_data_dir();
    if (data) test_real_model(data, tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return test_end("test_eval");
}
