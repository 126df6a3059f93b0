/* llama2.c tokenizer .bin: int32 max_token_length, then per token {f32 score, int32 len, bytes}
 * until the end of the file. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

pq_status pq__tokenizer_parse_llama2c(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                                      pq_tokenizer **out) {
    *out = NULL;
    pq__reader r = {data, size, 0};
    int32_t max_len;
    if (!pq__rd_i32(&r, &max_len))
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: llama2.c tokenizer: truncated header (max_token_length)", name);
    if (max_len < 1 || max_len > PQ_LLAMA2C_MAX_TOKEN_LENGTH)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: llama2.c tokenizer: max_token_length %d out of range 1..%d", name,
                        max_len, PQ_LLAMA2C_MAX_TOKEN_LENGTH);
    /* pass 1: validate every record and count them, so that pass 2 cannot fail */
    int64_t n = 0;
    while (r.pos < r.size) {
        float score;
        int32_t len;
        const uint8_t *bytes;
        if (!pq__rd_f32(&r, &score) || !pq__rd_i32(&r, &len))
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: llama2.c tokenizer: token %lld: truncated record (score, len)",
                            name, (long long)n);
        if (len < 0)
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: llama2.c tokenizer: token %lld: negative len %d", name,
                            (long long)n, len);
        if (len > max_len)
            return pq__fail(ctx, PQ_ERR_FORMAT,
                            "%s: llama2.c tokenizer: token %lld: len %d exceeds max_token_length %d", name,
                            (long long)n, len, max_len);
        if (!pq__rd_bytes(&r, (size_t)len, &bytes))
            return pq__fail(ctx, PQ_ERR_FORMAT,
                            "%s: llama2.c tokenizer: token %lld: len %d runs past the end of the file (%zu bytes)",
                            name, (long long)n, len, size);
        if (++n > INT32_MAX / 4) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: llama2.c tokenizer: too many tokens", name);
    }
    if (n == 0) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: llama2.c tokenizer: no tokens", name);

    const char **pieces = pq__calloc(ctx, (size_t)n, sizeof *pieces, "tokenizer pieces");
    size_t *lens = pieces ? pq__calloc(ctx, (size_t)n, sizeof *lens, "tokenizer lengths") : NULL;
    float *scores = lens ? pq__calloc(ctx, (size_t)n, sizeof *scores, "tokenizer scores") : NULL;
    if (!scores) {
        free(pieces);
        free(lens);
        return PQ_ERR_NOMEM;
    }
    r.pos = 4;
    for (int64_t i = 0; i < n; i++) {
        int32_t len;
        const uint8_t *bytes;
        pq__rd_f32(&r, &scores[i]);
        pq__rd_i32(&r, &len);
        pq__rd_bytes(&r, (size_t)len, &bytes);
        pieces[i] = (const char *)bytes;
        lens[i] = (size_t)len;
    }
    /* llama2.c's tokenizer.py exports BOS/EOS as "\n<s>\n" / "\n</s>\n"; use the SentencePiece
     * spelling so that writers (tokenizer.model, GGUF) get the usual control pieces */
    static const char *const wrapped[2] = {"\n<s>\n", "\n</s>\n"};
    for (int k = 0; k < 2; k++) {
        const int64_t id = k + 1;
        const size_t wl = strlen(wrapped[k]);
        if (id < n && lens[id] == wl && memcmp(pieces[id], wrapped[k], wl) == 0) {
            pieces[id] += 1;
            lens[id] -= 2;
        }
    }
    pq_status st =
        pq__tokenizer_new_spm(ctx, n, pieces, lens, scores, NULL, n > 1 ? 1 : -1, n > 2 ? 2 : -1, 0, 1, out);
    free(pieces);
    free(lens);
    free(scores);
    /* new_spm messages do not name the file */
    if (st != PQ_OK && st != PQ_ERR_NOMEM) return pq__fail_prefix(ctx, st, "%s: llama2.c tokenizer", name);
    return st;
}

pq_status pq__tokenizer_load_llama2c(pq_ctx *ctx, const char *path, pq_tokenizer **out) {
    return pq__tokenizer_load_with(ctx, path, pq__tokenizer_parse_llama2c, out);
}
