/* The HTML report: one file, inline CSS and SVG, no scripts or external resources, so that
 * it can be mailed or archived and still render the same. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/common.h"
#include "common/json.h"
#include "prunequant-sweep.h"
#include "sweep/sweep_mpi.h"

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
    if (strchr(r->hash, '.')) return "allocated"; /* per-linear recipes: neither joint nor uniform */
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
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(j, "overrides"); /* an allocation: its base, then */
    if (cJSON_IsArray(ov)) PUT(" + %d overrides, %.4g bits/kept weight", cJSON_GetArraySize(ov), r->bits);
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

static int cmp_bpw(const void *a, const void *c) {
    const pq_sweep_run *x = *(pq_sweep_run *const *)a, *y = *(pq_sweep_run *const *)c;
    return (x->bpw > y->bpw) - (x->bpw < y->bpw);
}

static int cmp_srcr(const void *a, const void *c) {
    const pq_sweep_run *x = *(pq_sweep_run *const *)a, *y = *(pq_sweep_run *const *)c;
    double u = isfinite(x->srcr) ? x->srcr : -INFINITY, v = isfinite(y->srcr) ? y->srcr : -INFINITY;
    return (u < v) - (u > v);
}

static const char *kind_color(const char *k) {
    return !strcmp(k, "joint")       ? "#1f77b4"
           : !strcmp(k, "quant")     ? "#ff7f0e"
           : !strcmp(k, "allocated") ? "#9467bd"
                                     : "#2ca02c";
}

/* A legend of the kinds present only. */
static void legend(sbuf *b, const pq_sweep_results *r, int frontier) {
    static const char *const kinds[4] = {"joint", "quant", "prune", "allocated"};
    static const char *const names[4] = {"joint", "quantization only", "pruning only", "allocated per linear"};
    sb_printf(b, "<p class=\"legend\">");
    for (int k = 0; k < 4; k++) {
        int present = 0;
        for (int64_t i = 0; i < r->n && !present; i++)
            present = done(&r->runs[i]) && !strcmp(kind(&r->runs[i]), kinds[k]);
        if (present)
            sb_printf(b, "<span class=\"key %s\" style=\"color:%s\">&#9679; %s</span> ", kinds[k],
                      kind_color(kinds[k]), names[k]);
    }
    if (frontier) sb_printf(b, "<span style=\"color:#d62728\">&#8212; / &#9675; Pareto frontier</span> ");
    sb_printf(b, "<span>| bars: 95%% paired bootstrap interval of Sr</span></p>\n");
}

/* Sr against TCr (by_bpw 0) or against stored bits per weight (1), with interval bars. The
 * frontier is the best Sr for the compression: higher TCr, or fewer bits per weight. */
static void chart_scatter(sbuf *b, const pq_sweep_results *r, const int *on, int by_bpw) {
    double x0 = INFINITY, x1 = -INFINITY, y1 = 0;
#define XV(c) (by_bpw ? (c)->bpw : (c)->tcr)
    for (int64_t i = 0; i < r->n; i++)
        if (done(&r->runs[i]) && isfinite(XV(&r->runs[i]))) {
            x0 = fmin(x0, XV(&r->runs[i]));
            x1 = fmax(x1, XV(&r->runs[i]));
            y1 = fmax(y1, isfinite(r->runs[i].sr_ci[1]) ? r->runs[i].sr_ci[1] : r->runs[i].sr);
        }
    const double step = by_bpw ? 0.5 : 0.05;
    if (x0 > x1) x0 = 0, x1 = 1;
    x0 = floor(x0 / step - 1e-9) * step;
    x1 = ceil(x1 / step + 1e-9) * step;
    if (x1 <= x0) x1 = x0 + step;
    y1 = fmax(1.0, ceil(y1 * 10) / 10);
    sb_printf(b,
              "<h2>Semantic retention vs %s</h2>\n"
              "<svg id=\"%s\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
              "viewBox=\"0 0 %d %d\">",
              by_bpw ? "real bits per weight" : "theoretical compression rate", by_bpw ? "sr-vs-bpw" : "sr-vs-tcr", W,
              H, W, H);
    axes(b, x0, x1, 0, y1, by_bpw ? "stored bits per weight (linear layers, incl. scales, zeros, masks)" : "TCr",
         "Sr (mean retention)");
#define PX(v) (ML + ((v)-x0) / (x1 - x0) * (W - ML - MR))
#define PY(v) ((H - MB) - (v) / y1 * (H - MT - MB))
    pq_sweep_run **fr = malloc((size_t)(r->n ? r->n : 1) * sizeof *fr);
    int64_t nf = 0;
    for (int64_t i = 0; fr && i < r->n; i++)
        if (on[i] && isfinite(XV(&r->runs[i]))) fr[nf++] = &r->runs[i];
    if (fr && nf) {
        qsort(fr, (size_t)nf, sizeof *fr, by_bpw ? cmp_bpw : cmp_tcr);
        sb_printf(b,
                  "<polyline id=\"pareto%s\" class=\"frontier\" fill=\"none\" stroke=\"#d62728\" "
                  "stroke-width=\"2\" points=\"",
                  by_bpw ? "-bpw" : "");
        for (int64_t i = 0; i < nf; i++)
            sb_printf(b, "%.1f,%.1f ", PX(XV(fr[i])), PY(fr[i]->sr));
        sb_printf(b, "\"/>");
    }
    free(fr);
    for (int64_t i = 0; i < r->n; i++) {
        const pq_sweep_run *c = &r->runs[i];
        if (!done(c) || !isfinite(XV(c))) continue;
        const char *k = kind(c);
        char lab[512];
        label(c, lab, sizeof lab);
        if (isfinite(c->sr_ci[0]))
            sb_printf(b, "<line class=\"errbar\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>",
                      PX(XV(c)), PY(c->sr_ci[0]), PX(XV(c)), PY(c->sr_ci[1]), kind_color(k));
        sb_printf(b,
                  "<circle class=\"pt %s%s\" data-hash=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"%s>"
                  "<title>",
                  k, on[i] ? " pareto" : "", c->hash, PX(XV(c)), PY(c->sr), kind_color(k),
                  /* frontier points ringed: a one-point frontier draws no line */
                  on[i] ? " stroke=\"#d62728\" stroke-width=\"2.5\"" : "");
        sb_esc(b, lab);
        sb_printf(b, " TCr %.4f bpw %.3f Sr %.4f [%.4f, %.4f]</title></circle>", c->tcr, c->bpw, c->sr, c->sr_ci[0],
                  c->sr_ci[1]);
        if (on[i]) {                               /* Pareto points are labelled on the chart, the others on hover */
            const int right = PX(XV(c)) > W - 160; /* near the right edge: the label goes to the left */
            sb_printf(b, "<text class=\"ptlabel\" x=\"%.1f\" y=\"%.1f\" font-size=\"10\"%s>",
                      PX(XV(c)) + (right ? -7 : 7), PY(c->sr) - 6, right ? " text-anchor=\"end\"" : "");
            sb_esc(b, lab);
            sb_printf(b, "</text>");
        }
    }
#undef PX
#undef PY
#undef XV
    sb_printf(b, "</svg>\n");
    legend(b, r, 1);
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

/* ---------------------------------------------------------------- comparisons
 * Joint against quantization only, at equal theoretical compression (iso-TCr: TCr within
 * 1e-9) and at equal real bytes (iso-bpw: stored bits per weight in buckets of BPW_BUCKET),
 * the best Sr of each kind, with the paired interval of the difference. */
#define BPW_BUCKET 0.25

typedef struct comparison {
    int by_bpw; /* 0: iso-TCr, 1: iso-bpw */
    double at;  /* the TCr, or the bucket's lower bpw */
    const pq_sweep_run *joint, *quant;
    double diff, ci[2]; /* Sr(joint) - Sr(quant) and its interval (NAN: no units) */
} comparison;

static int in_bucket(const pq_sweep_run *c, double at, int by_bpw) {
    return by_bpw ? isfinite(c->bpw) && floor(c->bpw / BPW_BUCKET + 1e-9) * BPW_BUCKET == at
                  : fabs(c->tcr - at) <= 1e-9;
}

static const pq_sweep_run *best_in(const pq_sweep_results *r, double at, int by_bpw, const char *k) {
    const pq_sweep_run *best = NULL;
    for (int64_t i = 0; i < r->n; i++) {
        const pq_sweep_run *c = &r->runs[i];
        if (done(c) && in_bucket(c, at, by_bpw) && !strcmp(kind(c), k) && (!best || c->sr > best->sr)) best = c;
    }
    return best;
}

/* Every bucket with both kinds, iso-TCr first, each ascending; *n set. malloc'ed. */
static comparison *comparisons(const pq_sweep_results *r, int64_t *n) {
    *n = 0;
    comparison *v = malloc((size_t)(2 * r->n + 1) * sizeof *v);
    if (!v) return NULL;
    pq_ctx quiet; /* a comparison without an interval is still shown */
    pq__quiet_begin(NULL, &quiet);
    for (int by = 0; by < 2; by++) {
        double at[512];
        int na = 0;
        for (int64_t i = 0; i < r->n && na < 512; i++) {
            const pq_sweep_run *c = &r->runs[i];
            if (!done(c) || (by && !isfinite(c->bpw))) continue;
            const double a = by ? floor(c->bpw / BPW_BUCKET + 1e-9) * BPW_BUCKET : c->tcr;
            int found = 0;
            for (int g = 0; g < na && !found; g++)
                found = by ? at[g] == a : fabs(at[g] - a) <= 1e-9;
            if (!found) at[na++] = a;
        }
        for (int i = 1; i < na; i++)
            for (int j = i; j > 0 && at[j - 1] > at[j]; j--) {
                const double t = at[j];
                at[j] = at[j - 1];
                at[j - 1] = t;
            }
        for (int g = 0; g < na; g++) {
            const pq_sweep_run *j = best_in(r, at[g], by, "joint"), *q = best_in(r, at[g], by, "quant");
            if (!j || !q) continue;
            comparison *c = &v[(*n)++];
            c->by_bpw = by, c->at = at[g], c->joint = j, c->quant = q;
            if (pq_sweep_compare(&quiet, r, j - r->runs, q - r->runs, NULL, &c->diff, c->ci) != PQ_OK)
                c->diff = j->sr - q->sr, c->ci[0] = c->ci[1] = NAN;
        }
    }
    return v;
}

/* "joint wins by 3.4% [1.2%, 5.6%]", "not distinguishable: joint +0.3% [-1.1%, 1.8%]", or
 * without units "joint wins by 3.4% (no interval: no per-item results)" */
static void verdict(char *buf, size_t n, const comparison *c) {
    const double q = c->quant->sr, pct = 100.0 * c->diff / q;
    if (!isfinite(c->ci[0])) {
        snprintf(buf, n, "%s by %.1f%% (no interval: the database has no per-item results)",
                 c->diff > 0   ? "joint wins"
                 : c->diff < 0 ? "quantization wins"
                               : "tie",
                 fabs(pct));
        return;
    }
    const double lo = 100.0 * c->ci[0] / q, hi = 100.0 * c->ci[1] / q;
    if (c->ci[0] <= 0 && c->ci[1] >= 0)
        snprintf(buf, n, "not distinguishable: joint %+.1f%% [%+.1f%%, %+.1f%%]", pct, lo, hi);
    else
        snprintf(buf, n, "%s by %.1f%% [%.1f%%, %.1f%%]", c->diff > 0 ? "joint wins" : "quantization wins", fabs(pct),
                 c->diff > 0 ? lo : -hi, c->diff > 0 ? hi : -lo);
}

/* The labels of both runs and the verdict of a comparison. */
static void comparison_text(const comparison *c, char lj[512], char lq[512], char vd[160]) {
    label(c->joint, lj, 512);
    label(c->quant, lq, 512);
    verdict(vd, 160, c);
}

/* Per TCr (configs within 1e-9), the best Sr of each kind side by side. */
static void chart_iso(sbuf *b, const pq_sweep_results *r) {
    double tcr[256];
    const int ng = tcr_groups(r, tcr, 256);
    static const char *const kinds[3] = {"joint", "quant", "prune"};
    static const char *const colors[3] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
    double y1 = 1;
    for (int64_t i = 0; i < r->n; i++)
        if (done(&r->runs[i]))
            y1 = fmax(y1,
                      ceil(fmax(r->runs[i].sr, isfinite(r->runs[i].sr_ci[1]) ? r->runs[i].sr_ci[1] : 0) * 10) / 10);
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
            const double bx = gx + 27.0 * k + 12.5;
            if (isfinite(best->sr_ci[0])) {
                const double y_lo = (H - MB) - best->sr_ci[0] / y1 * (H - MT - MB);
                const double y_hi = (H - MB) - best->sr_ci[1] / y1 * (H - MT - MB);
                sb_printf(b,
                          "<line class=\"errbar\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>",
                          bx, y_lo, bx, y_hi);
            }
            sb_printf(
                b, "<text class=\"value\" x=\"%.1f\" y=\"%.1f\" font-size=\"9\" text-anchor=\"middle\">%.3f</text>",
                bx, (H - MB) - h - 3, best->sr);
        }
        sb_printf(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.4g</text></g>", gx + 40,
                  H - MB + 15, tcr[g]);
    }
    sb_printf(b, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">TCr</text>", w / 2, H - 12);
    sb_printf(
        b,
        "<text x=\"14\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 14 %d)\">best Sr "
        "of each kind</text></svg>\n",
        (MT + H - MB) / 2, (MT + H - MB) / 2);
    legend(b, r, 0);
}

static void comparisons_html(sbuf *b, const pq_sweep_results *r) {
    int64_t n = 0;
    comparison *cmp = comparisons(r, &n);
    char method[200];
    pq_bootstrap_describe(NULL, method, sizeof method);
    for (int by = 0; by < 2; by++) {
        sb_printf(b,
                  by ? "<h2>Iso-bpw: joint vs quantization only at equal real bytes (%.2f-bpw buckets)</h2>\n<ul "
                       "id=\"iso-bpw\">"
                     : "<h2>Iso-TCr: joint vs quantization only</h2>\n<ul id=\"iso-tcr-lines\">",
                  BPW_BUCKET);
        int64_t shown = 0;
        for (int64_t i = 0; cmp && i < n; i++) {
            const comparison *c = &cmp[i];
            if (c->by_bpw != by) continue;
            char lj[512], lq[512], vd[160];
            comparison_text(c, lj, lq, vd);
            sb_printf(b, by ? "<li>bpw %.2f&ndash;%.2f: " : "<li>TCr %.4f: ", c->at, c->at + BPW_BUCKET);
            sb_printf(b, "joint ");
            sb_esc(b, lj);
            sb_printf(b, " Sr %.4f vs quantization only ", c->joint->sr);
            sb_esc(b, lq);
            sb_printf(b, " Sr %.4f: <strong>", c->quant->sr);
            sb_esc(b, vd);
            sb_printf(b, "</strong></li>\n");
            shown++;
        }
        if (!shown)
            sb_printf(b, "<li>no %s holds both a joint and a quantization-only run</li>", by ? "bucket" : "TCr");
        sb_printf(b, "</ul>\n");
    }
    sb_printf(b, "<p>Intervals: ");
    sb_esc(b, method);
    sb_printf(b, ". A difference whose interval covers 0 is reported as not distinguishable.</p>\n");
    free(cmp);
}

/* "allocated better by X [lo, hi]" / "not distinguishable: X [lo, hi]" for uniform - allocated
 * (a distance or a perplexity: positive is better for the allocation). */
static void alloc_verdict(char *buf, size_t n, double d, const double ci[2], const char *fmt) {
    char a[32], lo[32], hi[32];
    snprintf(a, sizeof a, fmt, fabs(d));
    if (!isfinite(d)) {
        snprintf(buf, n, "-");
        return;
    }
    if (!isfinite(ci[0])) {
        snprintf(buf, n, "%s by %s (no interval)", d > 0 ? "allocated better" : "uniform better", a);
        return;
    }
    snprintf(lo, sizeof lo, fmt, ci[0]);
    snprintf(hi, sizeof hi, fmt, ci[1]);
    if (ci[0] <= 0 && ci[1] >= 0)
        snprintf(buf, n, "not distinguishable: %s%s [%s, %s]", d < 0 ? "-" : "", a, lo, hi);
    else
        snprintf(buf, n, "%s by %s [%s, %s]", d > 0 ? "allocated better" : "uniform better", a, lo, hi);
}

/* Allocated runs against the runs whose bytes were their budgets, as a table. */
static void allocations_html(sbuf *b, const pq_sweep_results *r) {
    pq_ctx quiet;
    pq__quiet_begin(NULL, &quiet);
    pq_sweep_alloc_pair *v = NULL;
    int64_t n = 0;
    if (pq_sweep_alloc_pairs(&quiet, r, NULL, &v, &n) != PQ_OK || !n) return;
    sb_printf(b, "<h2>Allocated per linear vs uniform at the uniform's real bytes</h2>\n<table id=\"allocated\">"
                 "<tr><th>uniform</th><th>bpw</th><th>allocated</th><th>bpw</th><th>ppl</th><th>KLD</th>"
                 "<th>Sr</th></tr>\n");
    for (int64_t i = 0; i < n; i++) {
        const pq_sweep_alloc_pair *c = &v[i];
        const pq_sweep_run *u = &r->runs[c->uniform], *a = &r->runs[c->alloc];
        char lu[512], vp[128], vk[128];
        label(u, lu, sizeof lu);
        alloc_verdict(vp, sizeof vp, c->ppl_diff, c->ppl_ci, "%.4f");
        alloc_verdict(vk, sizeof vk, c->kld_diff, c->kld_ci, "%.5f");
        sb_printf(b, "<tr><td>");
        sb_esc(b, lu);
        sb_printf(b, "</td><td>%.4f</td><td><code>%s</code></td><td>%.4f</td><td>%.4f &rarr; %.4f<br><small>", u->bpw,
                  a->hash, a->bpw, c->ppl[0], c->ppl[1]);
        sb_esc(b, vp);
        sb_printf(b, "</small></td><td>%.5f &rarr; %.5f<br><small>", c->kld[0], c->kld[1]);
        sb_esc(b, vk);
        sb_printf(b, "</small></td><td>%.4f &rarr; %.4f</td></tr>\n", u->sr, a->sr);
    }
    sb_printf(b, "</table>\n<p>Differences are uniform &minus; allocated on the same windows, with paired bootstrap "
                 "intervals; the allocation's budget is the uniform run's stored bytes.</p>\n");
    free(v);
}

/* The bits (and the N:M pattern) of a report line, "" when it has none (older reports). */
static void cell_recipe(const cJSON *o, char *buf, size_t n) {
    const cJSON *bits = cJSON_GetObjectItemCaseSensitive(o, "bits"),
                *g = cJSON_GetObjectItemCaseSensitive(o, "group");
    const char *pat = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "pattern"));
    buf[0] = 0;
    if (!cJSON_IsNumber(bits)) return;
    if (bits->valuedouble >= 16)
        snprintf(buf, n, "%s%sf16", pat ? pat : "", pat ? " " : "");
    else
        snprintf(buf, n, "%s%s%.0fb g%.0f", pat ? pat : "", pat ? " " : "", bits->valuedouble,
                 cJSON_IsNumber(g) ? g->valuedouble : -1);
}

/* Per-layer view of each run from compress's report: block x linear, the cell's colour is the
 * layer error tr(dW H dW^T) on a log scale relative to the run's largest, its text the error,
 * the stored sparsity and the linear's bits, group and pattern (which differ across linears
 * under an allocated recipe). */
static void layer_heatmaps(sbuf *b, const pq_sweep_results *r) {
    static const char *const lin[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    int any = 0;
    for (int64_t i = 0; i < r->n && !any; i++)
        any = r->runs[i].layers != NULL;
    if (!any) return;
    sb_printf(b, "<h2>Per-layer view (layer error and sparsity, block &times; linear)</h2>\n<div id=\"layers\">\n");
    for (int64_t i = 0; i < r->n; i++) {
        const pq_sweep_run *c = &r->runs[i];
        if (!c->layers) continue;
        enum { MAXB = 256 };
        double err[MAXB][7], sp[MAXB][7], emax = 0, emin = INFINITY;
        char rc[MAXB][7][32];
        int nb = 0;
        memset(rc, 0, sizeof rc);
        for (int k = 0; k < MAXB; k++)
            for (int j = 0; j < 7; j++)
                err[k][j] = sp[k][j] = NAN;
        for (const char *line = c->layers; *line;) {
            const size_t len = strcspn(line, "\n");
            cJSON *o = cJSON_ParseWithLength(line, len);
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "name"));
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error"),
                        *q = cJSON_GetObjectItemCaseSensitive(o, "sparsity");
            int blk = -1;
            if (name && sscanf(name, "model.layers.%d.", &blk) == 1 && blk >= 0 && blk < MAXB) {
                const char *dot = strrchr(name, '.');
                for (int j = 0; j < 7; j++)
                    if (dot && !strcmp(dot + 1, lin[j])) {
                        err[blk][j] = cJSON_IsNumber(e) ? e->valuedouble : NAN;
                        sp[blk][j] = cJSON_IsNumber(q) ? q->valuedouble : NAN;
                        cell_recipe(o, rc[blk][j], sizeof rc[blk][j]);
                        if (isfinite(err[blk][j]) && err[blk][j] > 0) {
                            emax = fmax(emax, err[blk][j]);
                            emin = fmin(emin, err[blk][j]);
                        }
                    }
                if (blk + 1 > nb) nb = blk + 1;
            }
            cJSON_Delete(o);
            line += len + (line[len] == '\n');
        }
        char lab[512];
        label(c, lab, sizeof lab);
        sb_printf(b, "<details class=\"heatmap\" data-hash=\"%s\"><summary>", c->hash);
        sb_esc(b, lab);
        sb_printf(b, " (Sr %.4f)</summary>\n<table class=\"heat\"><tr><th>block</th>", c->sr);
        for (int j = 0; j < 7; j++)
            sb_printf(b, "<th>%s</th>", lin[j]);
        sb_printf(b, "</tr>\n");
        const double span = emax > emin ? log10(emax / emin) : 1;
        for (int k = 0; k < nb; k++) {
            sb_printf(b, "<tr><th>%d</th>", k);
            for (int j = 0; j < 7; j++) {
                if (!isfinite(err[k][j])) {
                    sb_printf(b, "<td>&ndash;</td>");
                    continue;
                }
                const double t = err[k][j] > 0 && emax > 0 ? fmax(0, fmin(1, log10(err[k][j] / emin) / span)) : 0;
                /* white (smallest error) to red (largest) */
                sb_printf(b,
                          "<td style=\"background:rgb(255,%d,%d)\" title=\"error %.4g, sparsity %.4f\">%.3g<br>"
                          "<small>%.0f%%</small>",
                          (int)(255 - 175 * t), (int)(255 - 200 * t), err[k][j], sp[k][j], err[k][j], 100 * sp[k][j]);
                if (rc[k][j][0]) {
                    sb_printf(b, "<br><small class=\"bits\">");
                    sb_esc(b, rc[k][j]);
                    sb_printf(b, "</small>");
                }
                sb_printf(b, "</td>");
            }
            sb_printf(b, "</tr>\n");
        }
        sb_printf(b, "</table></details>\n");
    }
    sb_printf(b, "<p>Cells: tr((W-Q) H (W-Q)<sup>T</sup>) of each linear as compressed (colour: log scale "
                 "within the run), below it the stored sparsity and the linear's bits, group and N:M pattern.</p>"
                 "</div>\n");
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

/* "</td><td>" and v in a new cell. */
static void sb_cell_num(sbuf *b, double v, const char *fmt) {
    sb_printf(b, "</td><td>");
    sb_num(b, v, fmt);
}

static void runs_table(sbuf *b, const pq_sweep_results *r, const int *on) {
    sb_printf(b,
              "<h2>Runs</h2>\n<table id=\"runs\"><tr><th>hash</th><th>recipe</th><th>status</th><th>TCr</th>"
              "<th>ACr</th><th>bpw</th><th>bytes</th><th>Sr [95%% interval]</th><th>SrCr</th><th>Sr&middot;TCr</th>"
              "<th>seconds</th><th>Pareto</th></tr>\n");
    for (int64_t i = 0; i < r->n; i++) {
        const pq_sweep_run *c = &r->runs[i];
        char lab[512];
        label(c, lab, sizeof lab);
        sb_printf(b, "<tr class=\"%s\"><td><code>%s</code></td><td class=\"recipe\" title=\"", c->status, c->hash);
        sb_esc(b, c->recipe); /* the exact recipe on hover, a readable one in the cell */
        sb_printf(b, "\">");
        sb_esc(b, lab);
        sb_printf(b, "</td><td>");
        sb_esc(b, c->status);
        if (c->error) {
            sb_printf(b, ": ");
            sb_esc(b, c->error);
        }
        sb_cell_num(b, c->tcr, "%.4f");
        sb_cell_num(b, c->acr, "%.4f");
        sb_cell_num(b, c->bpw, "%.3f");
        sb_printf(b, "</td><td>%lld", (long long)c->bytes);
        sb_cell_num(b, c->sr, "%.4f");
        if (isfinite(c->sr_ci[0])) sb_printf(b, " [%.4f, %.4f]", c->sr_ci[0], c->sr_ci[1]);
        sb_cell_num(b, c->srcr, "%.4f");
        sb_cell_num(b, c->sr * c->tcr, "%.4f");
        sb_cell_num(b, c->seconds, "%.1f");
        sb_printf(b, "</td><td>%s</td></tr>\n", on[i] ? "yes" : "");
    }
    sb_printf(b, "</table>\n");
}

/* Every task of the runs, base first, in order of appearance (*nt set; malloc'ed). */
static char (*task_names(const pq_sweep_results *r, int64_t *nt))[96] {
    const pq_sweep_run *ref = r->has_base ? &r->base : NULL;
    char(*tasks)[96] = NULL;
    int64_t cap = 0;
    *nt = 0;
    for (int64_t i = -1; i < r->n; i++) {
        const pq_sweep_run *c = i < 0 ? ref : &r->runs[i];
        for (int64_t s = 0; c && s < c->n_scores; s++) {
            int found = 0;
            for (int64_t t = 0; t < *nt && !found; t++)
                found = !strcmp(tasks[t], c->scores[s].task);
            if (found) continue;
            if (*nt == cap) {
                cap = cap ? 2 * cap : 8;
                char(*q)[96] = realloc(tasks, (size_t)cap * sizeof *tasks);
                if (!q) {
                    free(tasks);
                    *nt = -1;
                    return NULL;
                }
                tasks = q;
            }
            memcpy(tasks[(*nt)++], c->scores[s].task, 96);
        }
    }
    return tasks;
}

/* One task's table: every run's score of it, base first. */
static void task_table(sbuf *b, const pq_sweep_results *r, const char *task) {
    const pq_sweep_run *ref = r->has_base ? &r->base : NULL;
    sb_printf(b, "<h3>");
    sb_esc(b, task);
    sb_printf(b, "</h3>\n<table class=\"task\"><tr><th>config</th><th>metric</th><th>score</th><th>stderr</th>"
                 "<th>base</th><th>retention [95%% interval]</th></tr>\n");
    for (int64_t i = -1; i < r->n; i++) {
        const pq_sweep_run *c = i < 0 ? ref : &r->runs[i];
        for (int64_t s = 0; c && s < c->n_scores; s++) {
            const pq_sweep_score *sc = &c->scores[s];
            if (strcmp(sc->task, task)) continue;
            sb_printf(b, "<tr><td><code>%s</code></td><td>", c->hash);
            sb_esc(b, sc->metric);
            sb_cell_num(b, sc->score, "%.4f");
            sb_cell_num(b, sc->se, "%.4f");
            sb_cell_num(b, sc->base_score, "%.4f");
            sb_cell_num(b, sc->retention, "%.4f");
            if (isfinite(sc->retention_ci[0]))
                sb_printf(b, " [%.4f, %.4f]", sc->retention_ci[0], sc->retention_ci[1]);
            sb_printf(b, "</td></tr>\n");
        }
    }
    sb_printf(b, "</table>\n");
}

static void tables(sbuf *b, const pq_sweep_results *r, const int *on) {
    runs_table(b, r, on);
    int64_t nt = 0;
    char(*tasks)[96] = task_names(r, &nt);
    if (nt < 0) {
        b->oom = 1;
        return;
    }
    sb_printf(b, "<h2>Per-task results</h2>\n");
    for (int64_t t = 0; t < nt; t++)
        task_table(b, r, tasks[t]);
    free(tasks);
}

pq_status pq_sweep_report_html(pq_ctx *ctx, const pq_sweep_results *r, const char *path) {
    sbuf b = {0};
    int *on = pq__calloc(ctx, (size_t)(r->n ? r->n : 1), sizeof *on, "the Pareto flags of the runs");
    if (!on) return ctx->status;
    pq_sweep_pareto(r, on);
    int64_t n_done = 0;
    for (int64_t i = 0; i < r->n; i++)
        n_done += done(&r->runs[i]);
    sb_printf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                  "<title>prunequant sweep report</title>\n<style>\n"
                  "body{font-family:sans-serif;margin:2em;max-width:1100px}"
                  "table{border-collapse:collapse;margin:0.5em 0;font-size:13px}"
                  "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
                  "tr.failed{color:#a00}code{font-size:12px}table.heat "
                  "td{text-align:center;font-size:11px;min-width:4em}td.recipe "
                  "code{word-break:break-all}svg.chart{border:1px solid "
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
    chart_scatter(&b, r, on, 0);
    chart_iso(&b, r);
    /* the frontier in real bytes: no other run with fewer (or equal) bits and more Sr */
    int *on_bpw = calloc((size_t)(r->n ? r->n : 1), sizeof *on_bpw);
    for (int64_t i = 0; on_bpw && i < r->n; i++) {
        const pq_sweep_run *a = &r->runs[i];
        on_bpw[i] = done(a) && isfinite(a->bpw);
        for (int64_t j = 0; j < r->n && on_bpw[i]; j++) {
            const pq_sweep_run *c = &r->runs[j];
            if (j != i && done(c) && isfinite(c->bpw) &&
                ((c->bpw <= a->bpw && c->sr > a->sr) || (c->bpw < a->bpw && c->sr >= a->sr)))
                on_bpw[i] = 0;
        }
    }
    if (on_bpw) chart_scatter(&b, r, on_bpw, 1);
    free(on_bpw);
    comparisons_html(&b, r);
    chart_ranking(&b, r);
    allocations_html(&b, r);
    layer_heatmaps(&b, r);
    tables(&b, r, on);
    sb_printf(&b, "</body>\n</html>\n");
    free(on);
    if (b.oom) {
        free(b.p);
        return pq__fail(ctx, PQ_ERR_NOMEM, "report: out of memory growing the HTML of %s beyond %zu bytes", path,
                        b.cap);
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

/* Every (task, metric) of the runs, base first, in order of appearance; at most max. */
static int text_columns(const pq_sweep_results *r, column *col, int max) {
    int nc = 0;
    for (int64_t i = -1; i < r->n; i++) {
        const pq_sweep_run *c = i < 0 ? (r->has_base ? &r->base : NULL) : &r->runs[i];
        for (int64_t s = 0; c && s < c->n_scores && nc < max; s++) {
            int found = 0;
            for (int k = 0; k < nc && !found; k++)
                found = !strcmp(col[k].task, c->scores[s].task) && !strcmp(col[k].metric, c->scores[s].metric);
            if (!found) col[nc++] = (column){c->scores[s].task, c->scores[s].metric};
        }
    }
    return nc;
}

static void text_header(sbuf *b, const pq_sweep_results *r, const column *col, int nc) {
    sb_printf(b,
              "iso-TCr table: Sr = mean retention over the tasks (%s); per task: retention [95%% interval], or the "
              "raw value "
              "where there is none (kld mean, same-top rate)\n",
              r->tasks ? r->tasks : "?");
    if (r->protocol) sb_printf(b, "protocol: %s\n", r->protocol);
    sb_printf(b, "%-7s %-6s %-44s %7s %-17s %7s %7s %6s", "TCr", "kind", "config", "Sr", "Sr 95% interval", "SrCr",
              "ACr", "bpw");
    for (int k = 0; k < nc; k++) { /* "ppl:/a/b/heldout.txt" -> "ppl:heldout.txt" */
        const char *t = col[k].task, *colon = strchr(t, ':'), *slash = strrchr(t, '/');
        char h[128];
        if (colon && slash && slash > colon)
            snprintf(h, sizeof h, "%.*s:%s", (int)(colon - t), t, slash + 1);
        else
            snprintf(h, sizeof h, "%s", t);
        sb_printf(b, "  %-24.24s", h);
    }
    sb_printf(b, "\n");
}

/* One row of the table: run c at TCr tcr, with its cell per column. */
static void text_row(sbuf *b, double tcr, const pq_sweep_run *c, const column *col, int nc) {
    char lab[512];
    label(c, lab, sizeof lab);
    char ci[48] = "-";
    if (isfinite(c->sr_ci[0])) snprintf(ci, sizeof ci, "[%.4f, %.4f]", c->sr_ci[0], c->sr_ci[1]);
    sb_printf(b, "%-7.4f %-6s %-44.44s %7.4f %-17s %7.4f %7.4f %6.3f", tcr, kind(c), lab, c->sr, ci, c->srcr, c->acr,
              c->bpw);
    for (int k = 0; k < nc; k++) {
        char cell[64] = "-";
        for (int64_t s = 0; s < c->n_scores; s++) {
            const pq_sweep_score *sc = &c->scores[s];
            if (strcmp(sc->task, col[k].task) || strcmp(sc->metric, col[k].metric)) continue;
            if (isfinite(sc->retention) && isfinite(sc->retention_ci[0]))
                snprintf(cell, sizeof cell, "%.4f [%.3f,%.3f]", sc->retention, sc->retention_ci[0],
                         sc->retention_ci[1]);
            else
                snprintf(cell, sizeof cell, "%.4f", isfinite(sc->retention) ? sc->retention : sc->score);
        }
        sb_printf(b, "  %-24s", cell);
    }
    sb_printf(b, "\n");
}

/* The joint vs quantization-only comparisons, at equal TCr (by = 0) and at equal bytes (1). */
static void text_comparisons(sbuf *b, const pq_sweep_results *r, const double *tcr, int ng, const comparison *cmp,
                             int64_t nc2, int by) {
    sb_printf(b,
              by ? "\njoint vs quantization only at equal real bytes (best Sr of each per %.2f-bpw bucket):\n"
                 : "\njoint vs quantization only (best Sr of each at every TCr):\n",
              BPW_BUCKET);
    for (int g = 0; !by && g < ng; g++) { /* a TCr with one kind only says so */
        const pq_sweep_run *j = best_of(r, tcr[g], "joint"), *q = best_of(r, tcr[g], "quant");
        char l1[512];
        if ((j != NULL) == (q != NULL)) continue;
        label(j ? j : q, l1, sizeof l1);
        sb_printf(b, "  TCr %.4f: only %s runs (best Sr %.4f, %s)\n", tcr[g], j ? "joint" : "quantization",
                  j ? j->sr : q->sr, l1);
    }
    int64_t shown = 0;
    for (int64_t i = 0; cmp && i < nc2; i++)
        shown += cmp[i].by_bpw == by;
    if (by && !shown) sb_printf(b, "  no bucket holds both a joint and a quantization-only run\n");
    for (int64_t i = 0; cmp && i < nc2; i++) {
        const comparison *c = &cmp[i];
        if (c->by_bpw != by) continue;
        char lj[512], lq[512], vd[160];
        comparison_text(c, lj, lq, vd);
        if (by)
            sb_printf(b, "  bpw %.2f-%.2f: joint %.4f (%s, %.3f bpw) vs quantization only %.4f (%s, %.3f bpw): %s\n",
                      c->at, c->at + BPW_BUCKET, c->joint->sr, lj, c->joint->bpw, c->quant->sr, lq, c->quant->bpw,
                      vd);
        else
            sb_printf(b, "  TCr %.4f: joint %.4f (%s) vs quantization only %.4f (%s): %s\n", c->at, c->joint->sr, lj,
                      c->quant->sr, lq, vd);
    }
}

/* Allocated runs against the runs whose bytes were their budgets. */
static void text_allocations(sbuf *b, const pq_sweep_results *r) {
    pq_ctx quiet;
    pq__quiet_begin(NULL, &quiet);
    pq_sweep_alloc_pair *v = NULL;
    int64_t n = 0;
    if (pq_sweep_alloc_pairs(&quiet, r, NULL, &v, &n) != PQ_OK || !n) return;
    sb_printf(b,
              "\nallocated per linear vs uniform at the uniform's real bytes (differences uniform - allocated):\n");
    for (int64_t i = 0; i < n; i++) {
        const pq_sweep_alloc_pair *c = &v[i];
        const pq_sweep_run *u = &r->runs[c->uniform], *a = &r->runs[c->alloc];
        char lu[512], vp[128], vk[128];
        label(u, lu, sizeof lu);
        alloc_verdict(vp, sizeof vp, c->ppl_diff, c->ppl_ci, "%.4f");
        alloc_verdict(vk, sizeof vk, c->kld_diff, c->kld_ci, "%.5f");
        sb_printf(b, "  %s (%.4f bpw, %lld bytes) vs allocated %s (%.4f bpw, %lld bytes):\n", lu, u->bpw,
                  (long long)u->bytes, a->hash, a->bpw, (long long)a->bytes);
        sb_printf(b, "    ppl %.4f vs %.4f: %s\n    KLD %.5f vs %.5f: %s\n    Sr %.4f vs %.4f (difference %+.4f",
                  c->ppl[0], c->ppl[1], vp, c->kld[0], c->kld[1], vk, u->sr, a->sr, c->sr_diff);
        if (isfinite(c->sr_ci[0])) sb_printf(b, " [%+.4f, %+.4f]", c->sr_ci[0], c->sr_ci[1]);
        sb_printf(b, ")\n");
    }
    free(v);
}

char *pq_sweep_report_text(const pq_sweep_results *r) {
    sbuf b = {0};
    double tcr[256];
    const int ng = tcr_groups(r, tcr, 256);
    pq_sweep_run **v = malloc((size_t)(r->n ? r->n : 1) * sizeof *v);
    if (!v) return NULL;
    column col[32];
    const int nc = text_columns(r, col, 32);
    text_header(&b, r, col, nc);
    for (int g = 0; g < ng; g++) { /* each TCr, best Sr first */
        int64_t n = 0;
        for (int64_t i = 0; i < r->n; i++)
            if (done(&r->runs[i]) && fabs(r->runs[i].tcr - tcr[g]) <= 1e-9) v[n++] = &r->runs[i];
        qsort(v, (size_t)n, sizeof *v, cmp_run_sr_desc);
        for (int64_t i = 0; i < n; i++)
            text_row(&b, tcr[g], v[i], col, nc);
    }
    int64_t nc2 = 0;
    comparison *cmp = comparisons(r, &nc2);
    char method[200];
    pq_bootstrap_describe(NULL, method, sizeof method);
    for (int by = 0; by < 2; by++)
        text_comparisons(&b, r, tcr, ng, cmp, nc2, by);
    text_allocations(&b, r);
    sb_printf(&b, "intervals: %s; a difference whose interval covers 0 is not distinguishable from noise\n", method);
    free(cmp);
    free(v);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p ? b.p : strdup("");
}

/* ---------------------------------------------------------------- JSON */

static cJSON *run_json(const pq_sweep_run *c) {
    cJSON *o = cJSON_CreateObject();
    char lab[512];
    label(c, lab, sizeof lab);
    cJSON_AddStringToObject(o, "config", c->hash);
    cJSON_AddStringToObject(o, "label", lab);
    cJSON_AddStringToObject(o, "kind", kind(c));
    cJSON_AddStringToObject(o, "status", c->status);
    if (c->error) cJSON_AddStringToObject(o, "reason", c->error);
    pq__json_add_num(o, "tcr", c->tcr);
    pq__json_add_num(o, "acr", c->acr);
    pq__json_add_num(o, "bpw", c->bpw);
    pq__json_add_num(o, "sr", c->sr);
    pq__json_add_interval(o, "sr_ci", c->sr_ci);
    pq__json_add_num(o, "srcr", c->srcr);
    cJSON *t = cJSON_AddObjectToObject(o, "tasks");
    for (int64_t i = 0; t && i < c->n_scores; i++) {
        const pq_sweep_score *sc = &c->scores[i];
        cJSON *e = cJSON_CreateObject();
        pq__sweep_score_json(e, sc);
        pq__json_add_interval(e, "retention_ci", sc->retention_ci);
        cJSON_AddNumberToObject(e, "units", (double)sc->units.n);
        cJSON_AddItemToObject(t, sc->task, e);
    }
    return o;
}

/* {"uniform": v[0], "allocated": v[1], "difference": uniform - allocated, "difference_ci"} */
static void diff_json(cJSON *o, const char *key, const double v[2], double d, const double ci[2]) {
    cJSON *e = cJSON_AddObjectToObject(o, key);
    if (!e) return;
    pq__json_add_num(e, "uniform", v[0]);
    pq__json_add_num(e, "allocated", v[1]);
    pq__json_add_num(e, "difference", d);
    pq__json_add_interval(e, "difference_ci", ci);
    cJSON_AddBoolToObject(e, "distinguishable", isfinite(ci[0]) && (ci[0] > 0 || ci[1] < 0));
}

/* "allocated": each allocated run against the run whose bytes were its budget. */
static void allocations_json(cJSON *root, const pq_sweep_results *r) {
    pq_ctx quiet;
    pq__quiet_begin(NULL, &quiet);
    pq_sweep_alloc_pair *v = NULL;
    int64_t n = 0;
    cJSON *a = cJSON_AddArrayToObject(root, "allocated");
    if (!a || pq_sweep_alloc_pairs(&quiet, r, NULL, &v, &n) != PQ_OK) return;
    for (int64_t i = 0; i < n; i++) {
        const pq_sweep_alloc_pair *c = &v[i];
        const pq_sweep_run *u = &r->runs[c->uniform], *al = &r->runs[c->alloc];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddItemToArray(a, o);
        cJSON_AddStringToObject(o, "config", al->hash);
        cJSON_AddStringToObject(o, "uniform", u->hash);
        cJSON_AddNumberToObject(o, "budget_bytes", (double)u->bytes);
        cJSON_AddNumberToObject(o, "bytes", (double)al->bytes);
        pq__json_add_num(o, "uniform_bpw", u->bpw);
        pq__json_add_num(o, "bpw", al->bpw);
        cJSON_AddStringToObject(o, "ppl_task", c->ppl_task);
        diff_json(o, "ppl", c->ppl, c->ppl_diff, c->ppl_ci);
        diff_json(o, "kld", c->kld, c->kld_diff, c->kld_ci);
        const double sr[2] = {u->sr, al->sr}, neg[2] = {-c->sr_ci[1], -c->sr_ci[0]};
        diff_json(o, "sr", sr, -c->sr_diff, neg);
    }
    free(v);
}

char *pq_sweep_report_json(const pq_sweep_results *r) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    char method[200];
    pq_bootstrap_describe(NULL, method, sizeof method);
    cJSON_AddStringToObject(root, "model", r->model ? r->model : "");
    cJSON_AddStringToObject(root, "tasks", r->tasks ? r->tasks : "");
    cJSON_AddStringToObject(root, "protocol", r->protocol ? r->protocol : "");
    cJSON_AddStringToObject(root, "interval_method", method);
    cJSON *runs = cJSON_AddArrayToObject(root, "runs");
    for (int64_t i = 0; runs && i < r->n; i++)
        cJSON_AddItemToArray(runs, run_json(&r->runs[i]));
    int64_t n = 0;
    comparison *cmp = comparisons(r, &n);
    cJSON *lists[2] = {cJSON_AddArrayToObject(root, "iso_tcr"), cJSON_AddArrayToObject(root, "iso_bpw")};
    for (int64_t i = 0; cmp && i < n; i++) {
        const comparison *c = &cmp[i];
        cJSON *o = cJSON_CreateObject();
        char vd[160];
        verdict(vd, sizeof vd, c);
        pq__json_add_num(o, c->by_bpw ? "bpw_from" : "tcr", c->at);
        if (c->by_bpw) pq__json_add_num(o, "bpw_to", c->at + BPW_BUCKET);
        cJSON_AddStringToObject(o, "joint", c->joint->hash);
        cJSON_AddStringToObject(o, "quant", c->quant->hash);
        pq__json_add_num(o, "joint_sr", c->joint->sr);
        pq__json_add_num(o, "quant_sr", c->quant->sr);
        pq__json_add_num(o, "difference", c->diff);
        pq__json_add_interval(o, "difference_ci", c->ci);
        cJSON_AddBoolToObject(o, "distinguishable", isfinite(c->ci[0]) && (c->ci[0] > 0 || c->ci[1] < 0));
        cJSON_AddStringToObject(o, "verdict", vd);
        cJSON_AddItemToArray(lists[c->by_bpw], o);
    }
    free(cmp);
    allocations_json(root, r);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}
