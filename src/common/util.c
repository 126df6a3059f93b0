/* Small utilities shared by every stage: clock, strings, growable buffers, quiet scopes and
 * message prefixes (common.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

double pq__now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

char *pq__strdup(pq_ctx *ctx, const char *s, const char *what) {
    const size_t n = strlen(s) + 1;
    char *d = pq__malloc(ctx, n, what);
    if (d) memcpy(d, s, n);
    return d;
}

pq_status pq__buf_reserve(pq_ctx *ctx, pq__buf *b, size_t n, const char *what) {
    if (n > SIZE_MAX - b->len - 1)
        return pq__fail(ctx, PQ_ERR_NOMEM, "size overflow growing the buffer for %s", what);
    const size_t need = b->len + n + 1;
    if (need <= b->cap) return PQ_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : 2 * cap;
    char *p = realloc(b->data, cap);
    if (!p) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for %s", cap, what);
    b->data = p;
    b->cap = cap;
    return PQ_OK;
}

pq_status pq__buf_append(pq_ctx *ctx, pq__buf *b, const void *p, size_t n, const char *what) {
    const pq_status st = pq__buf_reserve(ctx, b, n, what);
    if (st != PQ_OK) return st;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return PQ_OK;
}

pq_status pq__buf_printf(pq_ctx *ctx, pq__buf *b, const char *what, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    pq_status st =
        n < 0 ? pq__fail(ctx, PQ_ERR_INVALID, "%s: bad format", what) : pq__buf_reserve(ctx, b, (size_t)n, what);
    if (st == PQ_OK) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
    return st;
}

void pq__buf_free(pq__buf *b) {
    if (!b) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

char *pq__buf_take(pq__buf *b) {
    char *p = b->data;
    memset(b, 0, sizeof *b);
    return p;
}

void pq__quiet_begin(const pq_ctx *ctx, pq_ctx *q) {
    memset(q, 0, sizeof *q);
    q->n_threads = ctx ? ctx->n_threads : 0;
}

pq_status pq__fail_prefix(pq_ctx *ctx, pq_status st, const char *fmt, ...) {
    if (!ctx) return st;
    char prefix[512], msg[sizeof ctx->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s", ctx->error);
    return pq__fail(ctx, st, "%s: %s", prefix, msg);
}

char *pq__path_join_ctx(pq_ctx *ctx, const char *dir, const char *name) {
    char *p = pq__path_join(dir, name);
    if (!p)
        pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory allocating %zu bytes for the path of %s", dir,
                 strlen(dir) + strlen(name) + 2, name);
    return p;
}
