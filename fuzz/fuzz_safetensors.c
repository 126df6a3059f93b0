/* Fuzz target for the safetensors reader: parses the input from memory into a fresh
 * source; when it parses, writes the tensors back out and checks that the new image
 * parses to the same tensors (the writer must accept whatever the reader accepts). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static void round_trip(const pq__source *src) {
    pq__st_entry *e = calloc((size_t)src->n_tensors + 1, sizeof *e);
    if (!e) return;
    for (int64_t i = 0; i < src->n_tensors; i++) {
        const pq__tensor *t = &src->tensors[i];
        e[i].name = t->name;
        e[i].dtype = t->dtype;
        e[i].n_dims = t->n_dims;
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        e[i].data = t->data;
        e[i].nbytes = t->nbytes;
    }
    pq_ctx *ctx = pq_ctx_new();
    uint8_t *img = NULL;
    size_t len = 0;
    if (ctx && pq__safetensors_serialize(ctx, e, src->n_tensors, NULL, &img, &len) == PQ_OK) {
        pq__source again;
        pq__source_init(&again);
        if (pq__safetensors_parse(ctx, "fuzz-again", img, len, &again) != PQ_OK) abort();
        if (again.n_tensors != src->n_tensors) abort();
        for (int64_t i = 0; i < src->n_tensors; i++) {
            const pq__tensor *a = &src->tensors[i], *b = &again.tensors[i];
            if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->n_dims != b->n_dims ||
                a->nbytes != b->nbytes || memcmp(a->shape, b->shape, (size_t)a->n_dims * sizeof a->shape[0]) ||
                (a->nbytes && memcmp(a->data, b->data, a->nbytes)))
                abort();
        }
        pq__source_free(&again);
    }
    /* serialize itself may fail only on memory or on a re-written header past the limit */
    free(img);
    pq_ctx_free(ctx);
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pq_ctx *ctx = pq_ctx_new();
    if (!ctx) return 0;
    pq__source src;
    pq__source_init(&src);
    if (pq__safetensors_parse(ctx, "fuzz", data, size, &src) == PQ_OK)
        round_trip(&src);
    else if (!pq_ctx_error(ctx)[0])
        abort(); /* every failure must say why */
    pq__source_free(&src);
    pq_ctx_free(ctx);
    return 0;
}
