/* Large work arrays (kernels.h). */
#include "kernels/kernels.h"

#include <stdlib.h>
#include <sys/mman.h>

void *pq__big_malloc(pq_ctx *ctx, size_t n, const char *what) {
    const size_t huge = (size_t)2 << 20;
    if (n < 2 * huge) return pq__malloc(ctx, n, what);
    void *p = NULL;
    if (posix_memalign(&p, huge, n) != 0) {
        pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes (2 MiB aligned) for %s", n, what);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    return p;
}
