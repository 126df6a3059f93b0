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
    int64_t W = p.ctx > 0 ? p.ctx : 512;
    if (W > base->cfg.max_seq_len) W = base->cfg.max_seq_len;
    if (W > model->cfg.max_seq_len) W = model->cfg.max_seq_len;
    if (W < 2) return pq__fail(ctx, PQ_ERR_INVALID, "kld: window must be at least 2 tokens");
    const int32_t bos = pq_tokenizer_bos(tok);
    if (p.ppl_protocol == PQ_PPL_LLAMACPP && bos < 0)
        return pq__fail(ctx, PQ_ERR_INVALID, "kld: the llamacpp protocol needs a BOS token");

    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    int64_t n = 0;
    pq_status st = pq__read_text(ctx, text_path, (size_t)1 << 31, &text, &len);
    if (st) return st;
    st = pq_tokenize(ctx, tok, text, len, 1, &ids, &n);
    free(text);
    if (st) return st;
    int64_t n_win = n / W;
    if (p.limit > 0 && n_win > p.limit) n_win = p.limit;
    if (n_win < 1) {
        free(ids);
        return pq__fail(ctx, PQ_ERR_INVALID, "kld: %s has %lld tokens, fewer than one window of %lld", text_path,
                        (long long)n, (long long)W);
    }
    const int64_t first = p.ppl_protocol == PQ_PPL_LLAMACPP ? W / 2 : 0;
    const int64_t per_win = W - 1 - first, total = n_win * per_win;
    float *lb = pq__malloc(ctx, (size_t)(W * V) * sizeof(float), "base logits");
    float *lm = lb ? pq__malloc(ctx, (size_t)(W * V) * sizeof(float), "model logits") : NULL;
    double *pb = lm ? pq__malloc(ctx, (size_t)V * 2 * sizeof(double), "log-probs") : NULL;
    double *kl = pb ? pq__malloc(ctx, (size_t)total * sizeof(double), "kld values") : NULL;
    double *dp = kl ? pq__malloc(ctx, (size_t)total * sizeof(double), "delta-p values") : NULL;
    int32_t *win = dp ? pq__malloc(ctx, (size_t)W * sizeof(int32_t), "window") : NULL;
    if (!win) {
        st = ctx->status;
        goto done;
    }
    double *pm = pb + V;
    double s_kl = 0, s_kl2 = 0, s_dp = 0, s_dp2 = 0, s_nb = 0, s_nm = 0, s_d = 0, s_d2 = 0;
    int64_t k = 0, same = 0;
    for (int64_t w = 0; w < n_win && !st; w++) {
        memcpy(win, ids + w * W, (size_t)W * sizeof(int32_t));
        if (p.ppl_protocol == PQ_PPL_LLAMACPP) win[0] = bos;
        if ((st = pq__forward(ctx, base, NULL, win, 1, W, 0, 0, lb))) break;
        if ((st = pq__forward(ctx, model, NULL, win, 1, W, 0, 0, lm))) break;
        const int32_t *truth = ids + w * W;
        for (int64_t j = first; j < W - 1; j++, k++) {
            const int64_t ab = pq__log_softmax(lb + j * V, V, pb).argmax;
            const int64_t am = pq__log_softmax(lm + j * V, V, pm).argmax;
            double d = 0;
            for (int64_t i = 0; i < V; i++) {
                double q = exp(pb[i]);
                if (q > 0) d += q * (pb[i] - pm[i]);
            }
            if (d < 0) d = 0; /* rounding */
            const int32_t t = truth[j + 1];
            const double dpk = exp(pm[t]) - exp(pb[t]);
            kl[k] = d;
            dp[k] = dpk;
            s_kl += d;
            s_kl2 += d * d;
            s_dp += dpk;
            s_dp2 += dpk * dpk;
            same += ab == am;
            s_nb -= pb[t];
            s_nm -= pm[t];
            const double dn = pb[t] - pm[t]; /* nll_model - nll_base */
            s_d += dn;
            s_d2 += dn * dn;
        }
        st = pq__progress(ctx, "kld", w + 1, n_win);
    }
    if (st) goto done;
    const double N = (double)k;
    out->n_tokens = k;
    out->n_windows = n_win;
    out->ctx = W;
    out->mean = s_kl / N;
    /* interval of the mean: windows resampled as blocks (tokens of a window are correlated) */
    {
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
        }
        pq_units_clear(&u);
    }
    double var = k > 1 ? (s_kl2 / N - out->mean * out->mean) * N / (N - 1) : 0;
    out->se = var > 0 ? sqrt(var / N) : 0;
    out->same_top = (double)same / N;
    out->same_top_se = pq_metrics_binom_stderr(out->same_top, k);
    out->dp_mean = s_dp / N;
    var = k > 1 ? (s_dp2 / N - out->dp_mean * out->dp_mean) * N / (N - 1) : 0;
    out->dp_se = var > 0 ? sqrt(var / N) : 0;
    out->dp_rms = sqrt(s_dp2 / N);
    out->ppl_base = exp(s_nb / N);
    out->ppl_model = exp(s_nm / N);
    out->ln_ppl_ratio = s_d / N;
    var = k > 1 ? (s_d2 / N - out->ln_ppl_ratio * out->ln_ppl_ratio) * N / (N - 1) : 0;
    out->ln_ppl_ratio_se = var > 0 ? sqrt(var / N) : 0;
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
    pq_ppl_params pp = pq_ppl_params_default();
    pp.ctx = W;
    pp.protocol = p.ppl_protocol;
    char d[200];
    pq_ppl_protocol_describe(&pp, d, sizeof d);
    snprintf(out->protocol, sizeof out->protocol, "kld (llama.cpp statistics, float32 logits of both models): %s", d);
done:
    free(ids);
    free(lb);
    free(lm);
    free(pb);
    free(kl);
    free(dp);
    free(win);
    return st;
}
