/* Fuzz target: GGUF parsing from memory, then the typed getters and the conversion into a
 * pq__source (config, tensor names, tokenizer). Everything is freed before returning. */
#include <stdint.h>
#include <stdlib.h>

#include "io/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise_getters(pq_ctx *ctx, const pq__gguf *g) {
    for (int64_t i = 0; i < g->n_kv; i++) {
        const pq__gguf_kv *kv = &g->kv[i];
        const char *s;
        size_t len;
        int64_t iv;
        double dv;
        int bv;
        pq__gguf_get_str(g, kv->key, &s, &len);
        pq__gguf_get_int(g, kv->key, &iv);
        pq__gguf_get_float(g, kv->key, &dv);
        pq__gguf_get_bool(g, kv->key, &bv);
        if (kv->type != PQ_GGUF_ARRAY || kv->arr_n > (1u << 20)) continue;
        if (kv->arr_type == PQ_GGUF_STRING) {
            const char **ptrs;
            size_t *lens;
            if (pq__gguf_array_strings(ctx, g, kv, &ptrs, &lens) == PQ_OK) {
                volatile size_t sum = 0;
                for (uint64_t j = 0; j < kv->arr_n; j++)
                    if (lens[j]) sum += (uint8_t)ptrs[j][lens[j] - 1];
                (void)sum;
            }
            free(ptrs);
            free(lens);
        } else {
            float *f = malloc((size_t)kv->arr_n * sizeof *f + 1);
            int32_t *n = malloc((size_t)kv->arr_n * sizeof *n + 1);
            if (f) pq__gguf_array_f32(kv, f);
            if (n) pq__gguf_array_i32(kv, n);
            free(f);
            free(n);
        }
    }
    /* touch the first and last byte of every tensor: must lie inside the input */
    volatile uint8_t acc = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const uint8_t *p = g->tensors[i].data;
        acc ^= p[0] ^ p[g->tensors[i].nbytes - 1];
        char buf[160];
        pq__gguf_name_to_hf(g->tensors[i].name, buf, sizeof buf);
        if (pq__gguf_find_tensor(g, g->tensors[i].name) != i) abort();
    }
    (void)acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pq_ctx *ctx = pq_ctx_new();
    if (!ctx) return 0;
    pq__gguf *g = NULL;
    if (pq__gguf_parse(ctx, "fuzz.gguf", data, size, &g) == PQ_OK) {
        exercise_getters(ctx, g);
        pq__source src;
        pq__source_init(&src);
        pq__gguf_to_source(ctx, g, &src);
        pq__source_free(&src);
        pq__gguf_free(g);
    } else if (!pq_ctx_error(ctx)[0]) {
        abort(); /* every failure must carry a message */
    }
    pq_ctx_free(ctx);
    return 0;
}
