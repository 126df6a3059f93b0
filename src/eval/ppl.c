/* Perplexity under the GPTQ protocol (non-overlapping windows, every predicted token) and
 * the llama.cpp protocol (BOS at each window start, second half scored). NLL is summed in
 * double from float32 log-softmax. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "kernels/kernels.h"
#include "model/model.h"

pq_ppl_params pq_ppl_params_default(void) {
    pq_ppl_params p = {512, PQ_PPL_GPTQ, 0, 4, NULL};
    return p;
}

const char *pq_ppl_protocol_name(pq_ppl_protocol p) {
    return p == PQ_PPL_LLAMACPP ? "llamacpp" : "gptq";
}

void pq_ppl_protocol_describe(const pq_ppl_params *p, char *buf, size_t n) {
    if (p->protocol == PQ_PPL_LLAMACPP)
        snprintf(buf, n, "llamacpp: ctx %lld, BOS at each window start, second half of each window scored",
                 (long long)p->ctx);
    else
        snprintf(buf, n, "gptq: ctx %lld, non-overlapping windows, every predicted token scored", (long long)p->ctx);
}

/* -log softmax(logits)[target] in double. */
static double token_nll(const float *logits, int64_t V, int32_t target) {
    return pq__logsumexp(logits, V).lse - (double)logits[target];
}

pq_status pq_perplexity(pq_ctx *ctx, const pq_model *m, const int32_t *tokens, int64_t n_tokens,
                        const pq_ppl_params *params, pq_ppl_result *out) {
    pq_ppl_params p = params ? *params : pq_ppl_params_default();
    memset(out, 0, sizeof *out);
    const int64_t V = m->cfg.vocab_size;
    if (p.max_tokens > 0 && n_tokens > p.max_tokens) n_tokens = p.max_tokens;
    if (p.ctx <= 1) return pq__fail(ctx, PQ_ERR_INVALID, "ppl: ctx must be at least 2");
    if (p.ctx > m->cfg.max_seq_len)
        return pq__fail(ctx, PQ_ERR_INVALID, "ppl: ctx %lld exceeds the model's context of %lld", (long long)p.ctx,
                        (long long)m->cfg.max_seq_len);
    if (n_tokens < p.ctx)
        return pq__fail(ctx, PQ_ERR_INVALID, "ppl: text has %lld tokens, fewer than one window of %lld",
                        (long long)n_tokens, (long long)p.ctx);
    if (p.batch <= 0) p.batch = 1;
    const int32_t bos = m->tok ? pq_tokenizer_bos(m->tok) : m->cfg.bos_id;
    if (p.protocol == PQ_PPL_LLAMACPP && bos < 0)
        return pq__fail(ctx, PQ_ERR_INVALID, "ppl: the llamacpp protocol needs a BOS token");
    const int64_t n_win = n_tokens / p.ctx;
    const int64_t first = p.protocol == PQ_PPL_LLAMACPP ? p.ctx / 2 : 0;
    int32_t *win = pq__malloc(ctx, (size_t)(p.batch * p.ctx) * sizeof(int32_t), "ppl windows");
    float *logits = win ? pq__malloc(ctx, (size_t)(p.batch * p.ctx * V) * sizeof(float), "ppl logits") : NULL;
    if (!logits) {
        free(win);
        return ctx->status;
    }
    double sum = 0, sum2 = 0;
    int64_t count = 0;
    pq_status st = PQ_OK;
    for (int64_t w0 = 0; w0 < n_win && st == PQ_OK; w0 += p.batch) {
        const int64_t nb = (n_win - w0 < p.batch) ? n_win - w0 : p.batch;
        memcpy(win, tokens + w0 * p.ctx, (size_t)(nb * p.ctx) * sizeof(int32_t));
        if (p.protocol == PQ_PPL_LLAMACPP)
            for (int64_t b = 0; b < nb; b++)
                win[b * p.ctx] = bos;
        if ((st = pq__forward(ctx, m, NULL, win, nb, p.ctx, 0, 0, logits))) break;
        for (int64_t b = 0; b < nb; b++) {
            const int32_t *truth = tokens + (w0 + b) * p.ctx;
            double wsum = 0;
            for (int64_t j = first; j < p.ctx - 1; j++) {
                double nll = token_nll(logits + (b * p.ctx + j) * V, V, truth[j + 1]);
                sum += nll; /* token by token, as always: the ppl does not depend on window_nll */
                wsum += nll;
                sum2 += nll * nll;
                count++;
            }
            if (p.window_nll) p.window_nll[w0 + b] = wsum;
        }
        st = pq__progress(ctx, "ppl", w0 + nb, n_win);
    }
    free(win);
    free(logits);
    if (st) return st;
    out->nll_mean = sum / (double)count;
    double var = sum2 / (double)count - out->nll_mean * out->nll_mean;
    out->nll_stderr = count > 1 && var > 0 ? sqrt(var / (double)(count - 1)) : 0;
    out->ppl = exp(out->nll_mean);
    out->tokens_scored = count;
    out->n_windows = n_win;
    out->n_text_tokens = n_tokens;
    out->ctx = p.ctx;
    out->protocol = p.protocol;
    return PQ_OK;
}

pq_status pq__read_tokens(pq_ctx *ctx, const pq_tokenizer *tok, const char *path, int32_t **ids, int64_t *n) {
    char *text = NULL;
    size_t len = 0;
    pq_status st = pq__read_text(ctx, path, (size_t)1 << 31, &text, &len);
    if (st) return st;
    st = pq_tokenize(ctx, tok, text, len, 1, ids, n);
    free(text);
    return st;
}
