/* Large work arrays (kernels.h). */
#include "kernels/kernels.h"

void *pq__big_malloc(pq_ctx *ctx, size_t n, const char *what) {
    size_t size;
    void *p = pq__huge_alloc(n, &size);
    if (!p) pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}
