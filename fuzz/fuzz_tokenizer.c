/* Fuzz target: the input is parsed as a llama2.c tokenizer .bin, as a SentencePiece ModelProto
 * and, if it starts with '{', as a tokenizer.json (all from memory); whatever parses is used to
 * encode and decode a short text with multi-byte, invalid UTF-8 and NUL bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static void exercise(pq_ctx *ctx, const pq_tokenizer *t) {
    static const char text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 \xe2\x96\x81<s>\xff\x80\x80\x80\x80 \0end  "
                               "a-b ab <m> e\xcc\x81 </s>\n\n 123's";
    int32_t *ids = NULL;
    int64_t n = 0;
    if (pq_tokenize(ctx, t, text, sizeof text - 1, 1, &ids, &n) == PQ_OK) {
        char buf[16];
        int32_t prev = -1;
        for (int64_t i = 0; i < n; i++) {
            size_t len;
            const char *p = pq_token_to_piece(t, prev, ids[i], buf, &len);
            volatile char sink = len ? p[len - 1] : 0;
            (void)sink;
            prev = ids[i];
        }
    }
    free(ids);
    size_t len;
    const int64_t nv = pq_tokenizer_n_vocab(t);
    (void)pq__tokenizer_piece(t, (int32_t)(nv - 1), &len);
    (void)pq__tokenizer_lookup(t, "a", 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pq_ctx *ctx = pq_ctx_new();
    if (!ctx) return 0;
    pq_tokenizer *t = NULL;
    if (pq__tokenizer_parse_llama2c(ctx, "fuzz.bin", data, size, &t) == PQ_OK) exercise(ctx, t);
    pq_tokenizer_free(t);
    t = NULL;
    if (pq__tokenizer_parse_spm_model(ctx, "fuzz.model", data, size, &t) == PQ_OK) exercise(ctx, t);
    pq_tokenizer_free(t);
    t = NULL;
    if (size && data[0] == '{' &&
        pq__tokenizer_parse_hf_json(ctx, "fuzz.json", (const char *)data, size, NULL, 0, &t) == PQ_OK)
        exercise(ctx, t);
    pq_tokenizer_free(t);
    pq_ctx_free(ctx);
    return 0;
}
