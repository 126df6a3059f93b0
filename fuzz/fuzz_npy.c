/* Fuzz target: the .npy parser on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pq_ctx *ctx = pq_ctx_new();
    if (!ctx) return 0;
    float *x = NULL;
    int64_t shape[2];
    int ndim;
    if (pq__npy_decode(ctx, "fuzz.npy", data, size, &x, shape, &ndim) == PQ_OK) {
        /* touch every element: the parser promised shape[0] * shape[1] of them */
        volatile float s = 0.0f;
        for (int64_t i = 0; i < shape[0] * shape[1]; i++)
            s += x[i];
        (void)s;
    }
    free(x);
    pq_ctx_free(ctx);
    return 0;
}
