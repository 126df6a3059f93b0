/* The HTML report: one file, inline CSS and SVG, no scripts or external resources, so that
 * it can be mailed or archived and still render the same. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/common.h"
#include "prunequant-sweep.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = b->cap ? b->cap * 2 : 65536;
        while (nc < b->n + (size_t)k + 1)
            nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
}

static void sb_esc(sbuf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '&': sb_printf(b, "&amp;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default: sb_printf(b, "%c", *s);
        }
    }
}

static void sb_num(sbuf *b, double v, const char *fmt) {
    if (isfinite(v))
        sb_printf(b, fmt, v);
    else
        sb_printf(b, "&ndash;");
}

static int done(const pq_sweep_run *r) {
    return !strcmp(r->status, "done") && isfinite(r->sr) && isfinite(r->tcr);
}

/* "joint", "quant" (quantization only) or "prune" (pruning only) */
static const char *kind(const pq_sweep_run *r) {
    int pruned = r->sparsity > 0, quant = r->bits < 16;
    return pruned && quant ? "joint" : quant ? "quant" : "prune";
}

/* A short human label of a recipe: "sparsegpt 25% + gptq 4b g128 sym act (a)". */
static void label(const pq_sweep_run *r, char *buf, size_t n) {
    cJSON *j = r->recipe ? cJSON_Parse(r->recipe) : NULL;
    const char *pr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "prune"));
    const char *qu = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "quant"));
    if (!j || !pr || !qu) {
        snprintf(buf, n, "%s", r->recipe ? r->recipe : r->hash);
        cJSON_Delete(j);
        return;
    }
    size_t k = 0;
#define PUT(...) k += (size_t)snprintf(buf + k, k < n ? n - k : 0, __VA_ARGS__)
    buf[0] = 0;
    if (strcmp(pr, "none")) {
        const char *pat = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "pattern"));
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "sparsity");
        if (pat)
            PUT("%s %s", pr, pat);
        else
            PUT("%s %.4g%%", pr, cJSON_IsNumber(sp) ? 100 * sp->valuedouble : NAN);
    }
    if (strcmp(qu, "none")) {
        const cJSON *bits = cJSON_GetObjectItemCaseSensitive(j, "bits"),
                    *g = cJSON_GetObjectItemCaseSensitive(j, "group");
        PUT("%s%s %db", k ? " + " : "", qu, cJSON_IsNumber(bits) ? bits->valueint : 0);
        if (cJSON_IsNumber(g) && g->valueint > 0) PUT(" g%d", g->valueint);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "sym"))) PUT(" sym");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "act_order"))) PUT(" act");
    }
    const char *jm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "joint"));
    if (jm) PUT(" (%s)", jm);
#undef PUT
    cJSON_Delete(j);
}

enum { W = 720, H = 420, ML = 60, MR = 20, MT = 20, MB = 50 };

static void axes(sbuf *b, double x0, double x1, double y0, double y1, const char *xl, const char *yl) {
    sb_printf(b, "<g class=\"axes\"><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", ML, H - MB,
              W - MR, H - MB);
    sb_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", ML, MT, ML, H - MB);
    for (int t = 0; t <= 5; t++) {
        double fx = x0 + (x1 - x0) * t / 5, fy = y0 + (y1 - y0) * t / 5;
        double px = ML + (double)(W - ML - MR) * t / 5, py = (H - MB) - (double)(H - MT - MB) * t / 5;
        sb_printf(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.3g</text>", px, H - MB + 15,
                  fx);
        sb_printf(b, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.3g</text>", ML - 5, py + 4,
                  fy);
    }
    sb_printf(b, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">", (ML + W - MR) / 2, H - 12);
    sb_esc(b, xl);
    sb_printf(b,
              "</text><text x=\"14\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" "
              "transform=\"rotate(-90 14 %d)\">",
              (MT + H - MB) / 2, (MT + H - MB) / 2);
    sb_esc(b, yl);
    sb_printf(b, "</text></g>");
}

static int cmp_tcr(const void *a, const void *c) {
    const pq_sweep_run *x = *(pq_sweep_run *const *)a, *y = *(pq_sweep_run *const *)c;
    return (x->tcr > y->tcr) - (x->tcr < y->tcr);
}

static int cmp_srcr(const void *a, const void *c) {
    const pq_sweep_run *x = *(pq_sweep_run *const *)a, *y = *(pq_sweep_run *const *)c;
    double u = isfinite(x->srcr) ? x->srcr : -INFINITY, v = isfinite(y->srcr) ? y->srcr : -INFINITY;
    return (u < v) - (u > v);
}

static void chart_scatter(sbuf *b, const pq_sweep_results *r, const int *on) {
    double x0 = 1, x1 = 0, y1 = 0;
    for (int64_t i = 0; i < r->n; i++)
        if (done(&r->runs[i])) {
            x0 = fmin(x0, r->runs[i].tcr);
            x1 = fmax(x1, r->runs[i].tcr);
            y1 = fmax(y1, r->runs[i].sr);
        }
    if (x0 > x1) x0 = 0, x1 = 1;
    x0 = floor(x0 * 20 - 1e-9) / 20;
    x1 = ceil(x1 * 20 + 1e-9) / 20;
    if (x1 <= x0) x1 = x0 + 0.05;
    y1 = fmax(1.0, ceil(y1 * 10) / 10);
    sb_printf(b,
              "<h2>Semantic retention vs theoretical compression rate</h2>\n"
              "<svg id=\"sr-vs-tcr\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
              "viewBox=\"0 0 %d %d\">",
              W, H, W, H);
    axes(b, x0, x1, 0, y1, "TCr", "Sr");
#define PX(v) (ML + ((v)-x0) / (x1 - x0) * (W - ML - MR))
#define PY(v) ((H - MB) - (v) / y1 * (H - MT - MB))
    pq_sweep_run **fr = malloc((size_t)(r->n ? r->n : 1) * sizeof *fr);
    int64_t nf = 0;
    for (int64_t i = 0; fr && i < r->n; i++)
        if (on[i]) fr[nf++] = &r->runs[i];
    if (fr && nf) {
        qsort(fr, (size_t)nf, sizeof *fr, cmp_tcr);
        sb_printf(b, "<polyline id=\"pareto\" class=\"frontier\" fill=\"none\" stroke=\"#d62728\" "
                     "stroke-width=\"2\" points=\"");
        for (int64_t i = 0; i < nf; i++)
            sb_printf(b, "%.1f,%.1f ", PX(fr[i]->tcr), PY(fr[i]->sr));
        sb_printf(b, "\"/>");
    }
    free(fr);
    for (int64_t i = 0; i < r->n; i++) {
        const pq_sweep_run *c = &r->runs[i];
        if (!done(c)) continue;
        const char *k = kind(c);
        char lab[512];
        label(c, lab, sizeof lab);
        sb_printf(b,
                  "<circle class=\"pt %s%s\" data-hash=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"%s>"
                  "<title>",
                  k, on[i] ? " pareto" : "", c->hash, PX(c->tcr), PY(c->sr),
                  !strcmp(k, "joint")   ? "#1f77b4"
                  : !strcmp(k, "quant") ? "#ff7f0e"
                                        : "#2ca02c",
                  /* frontier points ringed: a one-point frontier draws no line */
                  on[i] ? " stroke=\"#d62728\" stroke-width=\"2.5\"" : "");
        sb_esc(b, lab);
        sb_printf(b, " TCr %.4f Sr %.4f</title></circle>", c->tcr, c->sr);
    }
#undef PX
#undef PY
    sb_printf(b, "</svg>\n<p class=\"legend\"><span style=\"color:#1f77b4\">&#9679; joint</span> "
                 "<span style=\"color:#ff7f0e\">&#9679; quantization only</span> "
                 "<span style=\"color:#2ca02c\">&#9679; pruning only</span> "
                 "<span style=\"color:#d62728\">&#8212; / &#9675; Pareto frontier</span></p>\n");
}

/* The distinct TCr of the done runs (within 1e-9), ascending; at most max. */
static int tcr_groups(const pq_sweep_results *r, double *tcr, int max) {
    int ng = 0;
    for (int64_t i = 0; i < r->n && ng < max; i++) {
        if (!done(&r->runs[i])) continue;
        int found = 0;
        for (int g = 0; g < ng && !found; g++)
            found = fabs(tcr[g] - r->runs[i].tcr) <= 1e-9;
        if (!found) tcr[ng++] = r->runs[i].tcr;
    }
    for (int i = 1; i < ng; i++) /* insertion sort: few groups */
        for (int j = i; j > 0 && tcr[j - 1] > tcr[j]; j--) {
            double t = tcr[j];
            tcr[j] = tcr[j - 1];
            tcr[j - 1] = t;
        }
    return ng;
}

/* The done run of kind k ("joint", "quant", "prune"; NULL = any) with the best Sr at TCr t. */
static const pq_sweep_run *best_of(const pq_sweep_results *r, double t, const char *k) {
    const pq_sweep_run *best = NULL;
    for (int64_t i = 0; i < r->n; i++) {
        const pq_sweep_run *c = &r->runs[i];
        if (done(c) && fabs(c->tcr - t) <= 1e-9 && (!k || !strcmp(kind(c), k)) && (!best || c->sr > best->sr))
            best = c;
    }
    return best;
}

/* Per TCr (configs within 1e-9), the best Sr of each kind side by side. */
static void chart_iso(sbuf *b, const pq_sweep_results *r) {
    double tcr[256];
    const int ng = tcr_groups(r, tcr, 256);
    static const char *const kinds[3] = {"joint", "quant", "prune"};
    static const char *const colors[3] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
    double y1 = 1;
    for (int64_t i = 0; i < r->n; i++)
        if (done(&r->runs[i])) y1 = fmax(y1, ceil(r->runs[i].sr * 10) / 10);
    int w = ML + MR + (ng ? ng : 1) * 100;
    if (w < 400) w = 400;
    sb_printf(b,
              "<h2>Iso-TCr groups: joint vs quantization only (best Sr per kind)</h2>\n"
              "<svg id=\"iso-tcr\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
              "viewBox=\"0 0 %d %d\">",
              w, H, w, H);
    sb_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", ML, H - MB, w - MR, H - MB);
    for (int t = 0; t <= 5; t++) {
        double py = (H - MB) - (double)(H - MT - MB) * t / 5;
        sb_printf(b, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.3g</text>", ML - 5, py + 4,
                  y1 * t / 5);
    }
    for (int g = 0; g < ng; g++) {
        double gx = ML + 100.0 * g + 10;
        sb_printf(b, "<g class=\"group\" data-tcr=\"%.10g\">", tcr[g]);
        for (int k = 0; k < 3; k++) {
            const pq_sweep_run *best = best_of(r, tcr[g], kinds[k]);
            if (!best) continue;
            double h = best->sr / y1 * (H - MT - MB);
            char lab[512];
            label(best, lab, sizeof lab);
            sb_printf(b,
                      "<rect class=\"bar %s\" data-hash=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"25\" height=\"%.1f\" "
                      "fill=\"%s\"><title>",
                      kinds[k], best->hash, gx + 27.0 * k, (H - MB) - h, h, colors[k]);
            sb_esc(b, lab);
            sb_printf(b, " Sr %.4f</title></rect>", best->sr);
        }
        sb_printf(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.4g</text></g>", gx + 40,
                  H - MB + 15, tcr[g]);
    }
    sb_printf(b, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">TCr</text></svg>\n", w / 2, H - 12);
}

static void chart_ranking(sbuf *b, const pq_sweep_results *r) {
    pq_sweep_run **v = malloc((size_t)(r->n ? r->n : 1) * sizeof *v);
    int64_t n = 0;
    for (int64_t i = 0; v && i < r->n; i++)
        if (done(&r->runs[i]) && isfinite(r->runs[i].srcr)) v[n++] = &r->runs[i];
    if (v) qsort(v, (size_t)n, sizeof *v, cmp_srcr);
    if (n > 40) n = 40;
    double mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, v[i]->srcr);
    if (mx <= 0) mx = 1;
    int h = 40 + (int)n * 18;
    sb_printf(b,
              "<h2>SrCr ranking (top %lld)</h2>\n<svg id=\"srcr-ranking\" class=\"chart\" "
              "xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">",
              (long long)n, W + 200, h, W + 200, h);
    for (int64_t i = 0; i < n; i++) {
        char lab[512];
        label(v[i], lab, sizeof lab);
        double bw = v[i]->srcr / mx * (W - 120);
        sb_printf(b,
                  "<g class=\"rank\" data-hash=\"%s\"><rect class=\"bar %s\" x=\"10\" y=\"%lld\" width=\"%.1f\" "
                  "height=\"14\" fill=\"#1f77b4\"/><text x=\"%.1f\" y=\"%lld\" font-size=\"11\">%.4f ",
                  v[i]->hash, kind(v[i]), (long long)(10 + i * 18), bw, 15 + bw, (long long)(21 + i * 18),
                  v[i]->srcr);
        sb_esc(b, lab);
        sb_printf(b, "</text></g>");
    }
    sb_printf(b, "</svg>\n");
    free(v);
}

static void tables(sbuf *b, const pq_sweep_results *r, const int *on) {
    sb_printf(b, "<h2>Runs</h2>\n<table id=\"runs\"><tr><th>hash</th><th>recipe</th><th>status</th><th>TCr</th>"
                 "<th>ACr</th><th>bpw</th><th>bytes</th><th>Sr</th><th>SrCr</th><th>Sr&middot;TCr</th>"
                 "<th>seconds</th><th>Pareto</th></tr>\n");
    for (int64_t i = 0; i < r->n; i++) {
        const pq_sweep_run *c = &r->runs[i];
        sb_printf(b, "<tr class=\"%s\"><td><code>%s</code></td><td class=\"recipe\"><code>", c->status, c->hash);
        sb_esc(b, c->recipe);
        sb_printf(b, "</code></td><td>");
        sb_esc(b, c->status);
        if (c->error) {
            sb_printf(b, ": ");
            sb_esc(b, c->error);
        }
        sb_printf(b, "</td><td>");
        sb_num(b, c->tcr, "%.4f");
        sb_printf(b, "</td><td>");
        sb_num(b, c->acr, "%.4f");
        sb_printf(b, "</td><td>");
        sb_num(b, c->bpw, "%.3f");
        sb_printf(b, "</td><td>%lld</td><td>", (long long)c->bytes);
        sb_num(b, c->sr, "%.4f");
        sb_printf(b, "</td><td>");
        sb_num(b, c->srcr, "%.4f");
        sb_printf(b, "</td><td>");
        sb_num(b, c->sr * c->tcr, "%.4f");
        sb_printf(b, "</td><td>");
        sb_num(b, c->seconds, "%.1f");
        sb_printf(b, "</td><td>%s</td></tr>\n", on[i] ? "yes" : "");
    }
    sb_printf(b, "</table>\n");
    /* per-task tables: one per task, base first */
    const pq_sweep_run *ref = r->has_base ? &r->base : NULL;
    char(*tasks)[96] = NULL;
    int64_t nt = 0, cap = 0;
    for (int64_t i = -1; i < r->n; i++) {
        const pq_sweep_run *c = i < 0 ? ref : &r->runs[i];
        for (int64_t s = 0; c && s < c->n_scores; s++) {
            int found = 0;
            for (int64_t t = 0; t < nt && !found; t++)
                found = !strcmp(tasks[t], c->scores[s].task);
            if (found) continue;
            if (nt == cap) {
                cap = cap ? 2 * cap : 8;
                char(*q)[96] = realloc(tasks, (size_t)cap * sizeof *tasks);
                if (!q) {
                    b->oom = 1;
                    free(tasks);
                    return;
                }
                tasks = q;
            }
            memcpy(tasks[nt++], c->scores[s].task, 96);
        }
    }
    sb_printf(b, "<h2>Per-task results</h2>\n");
    for (int64_t t = 0; t < nt; t++) {
        sb_printf(b, "<h3>");
        sb_esc(b, tasks[t]);
        sb_printf(b, "</h3>\n<table class=\"task\"><tr><th>config</th><th>metric</th><th>score</th><th>stderr</th>"
                     "<th>base</th><th>retention</th></tr>\n");
        for (int64_t i = -1; i < r->n; i++) {
            const pq_sweep_run *c = i < 0 ? ref : &r->runs[i];
            for (int64_t s = 0; c && s < c->n_scores; s++) {
                const pq_sweep_score *sc = &c->scores[s];
                if (strcmp(sc->task, tasks[t])) continue;
                sb_printf(b, "<tr><td><code>%s</code></td><td>", c->hash);
                sb_esc(b, sc->metric);
                sb_printf(b, "</td><td>");
                sb_num(b, sc->score, "%.4f");
                sb_printf(b, "</td><td>");
                sb_num(b, sc->se, "%.4f");
                sb_printf(b, "</td><td>");
                sb_num(b, sc->base_score, "%.4f");
                sb_printf(b, "</td><td>");
                sb_num(b, sc->retention, "%.4f");
                sb_printf(b, "</td></tr>\n");
            }
        }
        sb_printf(b, "</table>\n");
    }
    free(tasks);
}

pq_status pq_sweep_report_html(pq_ctx *ctx, const pq_sweep_results *r, const char *path) {
    sbuf b = {0};
    int *on = calloc((size_t)(r->n ? r->n : 1), sizeof *on);
    if (!on) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    pq_sweep_pareto(r, on);
    int64_t n_done = 0;
    for (int64_t i = 0; i < r->n; i++)
        n_done += done(&r->runs[i]);
    sb_printf(
        &b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>prunequant sweep report</title>\n<style>\n"
            "body{font-family:sans-serif;margin:2em;max-width:1100px}"
            "table{border-collapse:collapse;margin:0.5em 0;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
            "tr.failed{color:#a00}code{font-size:12px}td.recipe code{word-break:break-all}svg.chart{border:1px solid "
            "#eee;display:block}\n"
            "</style>\n</head>\n<body>\n<h1>prunequant sweep report</h1>\n");
    sb_printf(&b, "<h2>Protocol</h2>\n<table id=\"protocol\"><tr><th>model</th><td>");
    sb_esc(&b, r->model ? r->model : "?");
    sb_printf(&b, "</td></tr><tr><th>calibration</th><td>");
    sb_esc(&b, r->calib ? r->calib : "?");
    sb_printf(&b, "</td></tr><tr><th>tasks</th><td>");
    sb_esc(&b, r->tasks ? r->tasks : "?");
    sb_printf(&b, "</td></tr><tr><th>evaluation</th><td>");
    sb_esc(&b, r->protocol ? r->protocol : "?");
    sb_printf(&b,
              "</td></tr><tr><th>configurations</th><td>%lld done of %lld</td></tr></table>\n"
              "<p>TCr = 1 - (1 - s) q / 16; ACr = 1 - stored linear bytes / fp16 linear bytes; "
              "Sr = mean task retention (score / base, base / ppl for perplexity); "
              "SrCr = Sr / (sqrt(1 - s) &middot; log2(q) / log2(16)) is <em>this project's reading</em> of the "
              "paper's metric (its equation is unpublished); Sr&middot;TCr is given as a plain alternative.</p>\n",
              (long long)n_done, (long long)r->n);
    chart_scatter(&b, r, on);
    chart_iso(&b, r);
    chart_ranking(&b, r);
    tables(&b, r, on);
    sb_printf(&b, "</body>\n</html>\n");
    free(on);
    if (b.oom) {
        free(b.p);
        return pq__fail(ctx, PQ_ERR_NOMEM, "report: out of memory");
    }
    pq__atomic a;
    /* open and commit clean up after themselves on failure; a failed write needs abort */
    pq_status st = pq__atomic_open(ctx, path, &a);
    if (st == PQ_OK) {
        st = pq__atomic_write(ctx, &a, b.p, b.n);
        if (st == PQ_OK)
            st = pq__atomic_commit(ctx, &a);
        else
            pq__atomic_abort(&a);
    }
    free(b.p);
    return st;
}

/* ---------------------------------------------------------------- text table */

static int cmp_run_sr_desc(const void *a, const void *c) {
    const pq_sweep_run *x = *(pq_sweep_run *const *)a, *y = *(pq_sweep_run *const *)c;
    return (x->sr < y->sr) - (x->sr > y->sr);
}

/* Columns of the text table: every (task, metric) of the runs, in order of appearance. */
typedef struct {
    const char *task, *metric;
} column;

char *pq_sweep_report_text(const pq_sweep_results *r) {
    sbuf b = {0};
    double tcr[256];
    const int ng = tcr_groups(r, tcr, 256);
    pq_sweep_run **v = malloc((size_t)(r->n ? r->n : 1) * sizeof *v);
    column col[32];
    int nc = 0;
    if (!v) return NULL;
    for (int64_t i = -1; i < r->n; i++) {
        const pq_sweep_run *c = i < 0 ? (r->has_base ? &r->base : NULL) : &r->runs[i];
        for (int64_t s = 0; c && s < c->n_scores && nc < 32; s++) {
            int found = 0;
            for (int k = 0; k < nc && !found; k++)
                found = !strcmp(col[k].task, c->scores[s].task) && !strcmp(col[k].metric, c->scores[s].metric);
            if (!found) col[nc++] = (column){c->scores[s].task, c->scores[s].metric};
        }
    }
    sb_printf(&b, "iso-TCr table: Sr = mean retention over the tasks (%s); per task: retention, or the raw value "
                  "where there is none (kld mean, same-top rate)\n",
              r->tasks ? r->tasks : "?");
    if (r->protocol) sb_printf(&b, "protocol: %s\n", r->protocol);
    sb_printf(&b, "%-7s %-6s %-44s %7s %7s %7s %6s", "TCr", "kind", "config", "Sr", "SrCr", "ACr", "bpw");
    for (int k = 0; k < nc; k++) { /* "ppl:/a/b/heldout.txt" -> "ppl:heldout.txt" */
        const char *t = col[k].task, *colon = strchr(t, ':'), *slash = strrchr(t, '/');
        char h[128];
        if (colon && slash && slash > colon)
            snprintf(h, sizeof h, "%.*s:%s", (int)(colon - t), t, slash + 1);
        else
            snprintf(h, sizeof h, "%s", t);
        sb_printf(&b, "  %-18.18s", h);
    }
    sb_printf(&b, "\n");
    for (int g = 0; g < ng; g++) {
        int64_t n = 0;
        for (int64_t i = 0; i < r->n; i++)
            if (done(&r->runs[i]) && fabs(r->runs[i].tcr - tcr[g]) <= 1e-9) v[n++] = &r->runs[i];
        qsort(v, (size_t)n, sizeof *v, cmp_run_sr_desc);
        for (int64_t i = 0; i < n; i++) {
            char lab[512];
            label(v[i], lab, sizeof lab);
            sb_printf(&b, "%-7.4f %-6s %-44.44s %7.4f %7.4f %7.4f %6.3f", tcr[g], kind(v[i]), lab, v[i]->sr,
                      v[i]->srcr, v[i]->acr, v[i]->bpw);
            for (int k = 0; k < nc; k++) {
                double x = NAN;
                for (int64_t s = 0; s < v[i]->n_scores; s++) {
                    const pq_sweep_score *sc = &v[i]->scores[s];
                    if (!strcmp(sc->task, col[k].task) && !strcmp(sc->metric, col[k].metric))
                        x = isfinite(sc->retention) ? sc->retention : sc->score;
                }
                sb_printf(&b, "  %-18.4f", x);
            }
            sb_printf(&b, "\n");
        }
    }
    sb_printf(&b, "\njoint vs quantization only (best Sr of each at every TCr):\n");
    for (int g = 0; g < ng; g++) {
        const pq_sweep_run *j = best_of(r, tcr[g], "joint"), *q = best_of(r, tcr[g], "quant");
        char lj[512], lq[512];
        if (j) label(j, lj, sizeof lj);
        if (q) label(q, lq, sizeof lq);
        if (j && q)
            sb_printf(&b, "  TCr %.4f: joint %.4f (%s) vs quantization only %.4f (%s): %s by %.4f (%+.1f%%)\n", tcr[g],
                      j->sr, lj, q->sr, lq, j->sr > q->sr ? "joint wins" : j->sr < q->sr ? "quantization wins" : "tie",
                      fabs(j->sr - q->sr), 100.0 * (j->sr - q->sr) / q->sr);
        else if (j || q)
            sb_printf(&b, "  TCr %.4f: only %s runs (best Sr %.4f, %s)\n", tcr[g], j ? "joint" : "quantization",
                      j ? j->sr : q->sr, j ? lj : lq);
    }
    free(v);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p ? b.p : strdup("");
}
