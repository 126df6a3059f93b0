/* KL divergence of a model to its base (llama.cpp --kl-divergence statistics), computed
 * from float32 logits of both models in the same run, window by window: only per-token
 * statistics are kept, never the logits of the whole text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "kernels/kernels.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Percentile of sorted v[n] (linear interpolation between ranks). */
static double pct(const double *v, int64_t n, double p) {
    if (n <= 0) return NAN;
    double r = p / 100.0 * (double)(n - 1);
    int64_t lo = (int64_t)floor(r), hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (r - (double)lo);
}

/* The running sums over the scored tokens. */
typedef struct kld_sums {
    double kl, kl2, dp, dp2, nll_base, nll_model, d, d2;
    int64_t k, same; /* tokens scored; of them, with the same top token */
} kld_sums;

/* The buffers of one run. */
typedef struct kld_bufs {
    float *lb, *lm;  /* [W, V] logits of base and model */
    double *pb;      /* [2 V] log-probs of base, then model */
    double *kl, *dp; /* [total] per-token KL and delta-p */
    int32_t *win;    /* [W] */
} kld_bufs;

/* The window W: --ctx, within both models' contexts. */
static pq_status kld_window(pq_ctx *ctx, const pq_model *base, const pq_model *model, const pq_eval_params *p,
                            int64_t *W) {
    *W = p->ctx > 0 ? p->ctx : 512;
    if (*W > base->cfg.max_seq_len) *W = base->cfg.max_seq_len;
    if (*W > model->cfg.max_seq_len) *W = model->cfg.max_seq_len;
    if (*W < 2) return pq__fail(ctx, PQ_ERR_INVALID, "kld: window must be at least 2 tokens");
    return PQ_OK;
}

static pq_status kld_alloc(pq_ctx *ctx, int64_t W, int64_t V, int64_t total, kld_bufs *b) {
    memset(b, 0, sizeof *b);
    b->lb = pq__malloc(ctx, (size_t)(W * V) * sizeof(float), "base logits");
    b->lm = b->lb ? pq__malloc(ctx, (size_t)(W * V) * sizeof(float), "model logits") : NULL;
    b->pb = b->lm ? pq__malloc(ctx, (size_t)V * 2 * sizeof(double), "log-probs") : NULL;
    b->kl = b->pb ? pq__malloc(ctx, (size_t)total * sizeof(double), "kld values") : NULL;
    b->dp = b->kl ? pq__malloc(ctx, (size_t)total * sizeof(double), "delta-p values") : NULL;
    b->win = b->dp ? pq__malloc(ctx, (size_t)W * sizeof(int32_t), "window") : NULL;
    return b->win ? PQ_OK : ctx->status;
}

static void kld_free(kld_bufs *b) {
    if (!b) return;
    free(b->lb);
    free(b->lm);
    free(b->pb);
    free(b->kl);
    free(b->dp);
    free(b->win);
}

/* One scored position: base and model logits lb, lm [V], the true next token t. */
static void kld_token(kld_bufs *b, const float *lb, const float *lm, int64_t V, int32_t t, kld_sums *s) {
    double *pb = b->pb, *pm = b->pb + V;
    int64_t ab, am;
    ab = pq__log_softmax(lb, V, pb).argmax;
    am = pq__log_softmax(lm, V, pm).argmax;
    double d = 0;
    for (int64_t i = 0; i < V; i++) {
        double q = exp(pb[i]);
        if (q > 0) d += q * (pb[i] - pm[i]);
    }
    if (d < 0) d = 0; /* rounding */
    const double dpk = exp(pm[t]) - exp(pb[t]);
    b->kl[s->k] = d;
    b->dp[s->k] = dpk;
    s->k++;
    s->kl += d;
    s->kl2 += d * d;
    s->dp += dpk;
    s->dp2 += dpk * dpk;
    s->same += ab == am;
    s->nll_base -= pb[t];
    s->nll_model -= pm[t];
    const double dn = pb[t] - pm[t]; /* nll_model - nll_base */
    s->d += dn;
    s->d2 += dn * dn;
}

/* Both models over n_win windows of W tokens of ids; positions from first on are scored. */
static pq_status kld_windows(pq_ctx *ctx, const pq_model *base, const pq_model *model, const int32_t *ids,
                             int64_t n_win, int64_t W, int64_t first, int32_t bos, int llamacpp, kld_bufs *b,
                             kld_sums *s) {
    const int64_t V = base->cfg.vocab_size;
    pq_status st = PQ_OK;
    for (int64_t w = 0; w < n_win && !st; w++) {
        memcpy(b->win, ids + w * W, (size_t)W * sizeof(int32_t));
        if (llamacpp) b->win[0] = bos;
        if ((st = pq__forward(ctx, base, NULL, b->win, 1, W, 0, 0, b->lb))) break;
        if ((st = pq__forward(ctx, model, NULL, b->win, 1, W, 0, 0, b->lm))) break;
        const int32_t *truth = ids + w * W;
        for (int64_t j = first; j < W - 1; j++)
            kld_token(b, b->lb + j * V, b->lm + j * V, V, truth[j + 1], s);
        st = pq__progress(ctx, "kld", w + 1, n_win);
    }
    return st;
}

/* The interval of the mean: windows resampled as blocks (tokens of a window are correlated). */
static void kld_mean_ci(pq_ctx *ctx, const double *kl, int64_t k, int64_t n_win, pq_kld_result *out) {
    const int64_t per = k / n_win;
    pq_units u = {PQ_UNITS_MEAN, n_win, pq__malloc(ctx, (size_t)n_win * sizeof(double), "kld blocks"),
                  pq__malloc(ctx, (size_t)n_win * sizeof(double), "kld blocks"), 0};
    out->mean_ci[0] = out->mean_ci[1] = NAN;
    if (u.value && u.weight) {
        for (int64_t w = 0; w < n_win; w++) {
            double s = 0;
            for (int64_t j = 0; j < per; j++)
                s += kl[w * per + j];
            u.value[w] = s;
            u.weight[w] = (double)per;
        }
        pq_bootstrap_score(ctx, &u, NULL, out->mean_ci);
        out->units = u; /* kept: models scored on the same windows are compared window by window */
    } else {
        pq_units_clear(&u);
    }
}

/* Standard error of a mean from the sums of x and x^2 over N values. */
static double mean_se(double sum, double sum2, double N) {
    const double mean = sum / N;
    const double var = N > 1 ? (sum2 / N - mean * mean) * N / (N - 1) : 0;
    return var > 0 ? sqrt(var / N) : 0;
}

/* Percentiles of the sorted per-token values. */
static void kld_percentiles(double *kl, double *dp, int64_t k, pq_kld_result *out) {
    qsort(kl, (size_t)k, sizeof *kl, cmp_double);
    qsort(dp, (size_t)k, sizeof *dp, cmp_double);
    out->min = kl[0];
    out->max = kl[k - 1];
    out->p999 = pct(kl, k, 99.9);
    out->p99 = pct(kl, k, 99);
    out->p95 = pct(kl, k, 95);
    out->p90 = pct(kl, k, 90);
    out->median = pct(kl, k, 50);
    out->p10 = pct(kl, k, 10);
    out->p05 = pct(kl, k, 5);
    out->p01 = pct(kl, k, 1);
    out->dp_p999 = pct(dp, k, 99.9);
    out->dp_p99 = pct(dp, k, 99);
    out->dp_p95 = pct(dp, k, 95);
    out->dp_p90 = pct(dp, k, 90);
    out->dp_median = pct(dp, k, 50);
    out->dp_p10 = pct(dp, k, 10);
    out->dp_p05 = pct(dp, k, 5);
    out->dp_p01 = pct(dp, k, 1);
}

/* The statistics of the scored tokens. */
static void kld_stats(pq_ctx *ctx, const kld_sums *s, kld_bufs *b, int64_t n_win, int64_t W, pq_kld_result *out) {
    const int64_t k = s->k;
    const double N = (double)k;
    out->n_tokens = k;
    out->n_windows = n_win;
    out->ctx = W;
    out->mean = s->kl / N;
    kld_mean_ci(ctx, b->kl, k, n_win, out);
    out->se = mean_se(s->kl, s->kl2, N);
    out->same_top = (double)s->same / N;
    out->same_top_se = pq_metrics_binom_stderr(out->same_top, k);
    out->dp_mean = s->dp / N;
    out->dp_se = mean_se(s->dp, s->dp2, N);
    out->dp_rms = sqrt(s->dp2 / N);
    out->ppl_base = exp(s->nll_base / N);
    out->ppl_model = exp(s->nll_model / N);
    out->ln_ppl_ratio = s->d / N;
    out->ln_ppl_ratio_se = mean_se(s->d, s->d2, N);
    kld_percentiles(b->kl, b->dp, k, out);
}

pq_status pq_eval_kld(pq_ctx *ctx, const pq_model *base, const pq_model *model, const char *text_path,
                      const pq_eval_params *params, pq_kld_result *out) {
    pq_eval_params p = params ? *params : pq_eval_params_default();
    memset(out, 0, sizeof *out);
    snprintf(out->file, sizeof out->file, "%s", text_path);
    const int64_t V = base->cfg.vocab_size;
    if (model->cfg.vocab_size != V)
        return pq__fail(ctx, PQ_ERR_INVALID, "kld: vocabularies differ (base %lld, model %lld tokens)", (long long)V,
                        (long long)model->cfg.vocab_size);
    const pq_tokenizer *tok = pq_model_tokenizer(base);
    if (!tok) tok = pq_model_tokenizer(model);
    if (!tok) return pq__fail(ctx, PQ_ERR_INVALID, "kld: no tokenizer (give --base-tokenizer or --tokenizer)");
    int64_t W;
    pq_status st = kld_window(ctx, base, model, &p, &W);
    if (st) return st;
    const int32_t bos = pq_tokenizer_bos(tok);
    const int llamacpp = p.ppl_protocol == PQ_PPL_LLAMACPP;
    if (llamacpp && bos < 0) return pq__fail(ctx, PQ_ERR_INVALID, "kld: the llamacpp protocol needs a BOS token");
    int32_t *ids = NULL;
    int64_t n = 0;
    if ((st = pq__read_tokens(ctx, tok, text_path, &ids, &n))) return st;
    int64_t n_win = n / W;
    if (p.limit > 0 && n_win > p.limit) n_win = p.limit;
    if (n_win < 1) {
        free(ids);
        return pq__fail(ctx, PQ_ERR_INVALID, "kld: %s has %lld tokens, fewer than one window of %lld", text_path,
                        (long long)n, (long long)W);
    }
    const int64_t first = llamacpp ? W / 2 : 0;
    kld_bufs b;
    kld_sums s;
    memset(&s, 0, sizeof s);
    st = kld_alloc(ctx, W, V, n_win * (W - 1 - first), &b);
    if (!st) st = kld_windows(ctx, base, model, ids, n_win, W, first, bos, llamacpp, &b, &s);
    if (!st) {
        kld_stats(ctx, &s, &b, n_win, W, out);
        pq_ppl_params pp = pq_ppl_params_default();
        pp.ctx = W;
        pp.protocol = p.ppl_protocol;
        char d[200];
        pq_ppl_protocol_describe(&pp, d, sizeof d);
        snprintf(out->protocol, sizeof out->protocol, "kld (llama.cpp statistics, float32 logits of both models): %s",
                 d);
    }
    free(ids);
    kld_free(&b);
    return st;
}
