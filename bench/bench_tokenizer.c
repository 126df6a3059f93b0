/* Tokenizer throughput: encodes TinyStories validation text (794 KB) with the 512-piece
 * stories260K vocabulary and the 32000-piece Llama 2 vocabulary and prints MB/s.
 * Usage: bench_tokenizer [data-dir [more tokenizer files, e.g. a tokenizer.json]]
 * (data-dir defaults to $PQ_DATA, i.e. shared/data) */
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench(pq_ctx *ctx, const char *dir, const char *rel, const char *text, size_t len) {
    char path[2048];
    if (dir)
        snprintf(path, sizeof path, "%s/%s", dir, rel);
    else
        snprintf(path, sizeof path, "%s", rel);
    pq_tokenizer *t = NULL;
    double t0 = now();
    if (pq_tokenizer_load(ctx, path, &t) != PQ_OK) {
        fprintf(stderr, "%s\n", pq_ctx_error(ctx));
        return 1;
    }
    const double load_s = now() - t0;
    double best = 1e30;
    int64_t n = 0;
    for (int rep = 0; rep < 3; rep++) {
        int32_t *ids = NULL;
        t0 = now();
        if (pq_tokenize(ctx, t, text, len, 1, &ids, &n) != PQ_OK) {
            fprintf(stderr, "%s\n", pq_ctx_error(ctx));
            pq_tokenizer_free(t);
            return 1;
        }
        const double dt = now() - t0;
        if (dt < best) best = dt;
        free(ids);
    }
    const double mb = (double)len / 1e6;
    printf("%-40s vocab %6lld  load %7.2f ms  encode %8.1f ms  %9lld tokens  %6.2f MB/s  %.3f s/MB\n", rel,
           (long long)pq_tokenizer_n_vocab(t), load_s * 1e3, best * 1e3, (long long)n, mb / best, best / mb);
    pq_tokenizer_free(t);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : getenv("PQ_DATA");
    if (!dir || !*dir) {
        fprintf(stderr, "usage: %s DATA_DIR   (or set PQ_DATA to shared/data)\n", argv[0]);
        return 2;
    }
    pq_ctx *ctx = pq_ctx_new();
    char path[2048];
    snprintf(path, sizeof path, "%s/text/tinystories/tinystories_val.txt", dir);
    char *text = NULL;
    size_t len = 0;
    if (!ctx || pq__read_text(ctx, path, (size_t)1 << 30, &text, &len) != PQ_OK) {
        fprintf(stderr, "%s\n", ctx ? pq_ctx_error(ctx) : "out of memory");
        pq_ctx_free(ctx);
        return 1;
    }
    printf("text: %s (%zu bytes)\n", path, len);
    int rc = bench(ctx, dir, "models/stories260K/tok512.bin", text, len);
    rc |= bench(ctx, dir, "models/llama2-tokenizer/tokenizer.bin", text, len);
    rc |= bench(ctx, dir, "models/babyllama-tok105/tok105.model", text, len);
    for (int i = 2; i < argc; i++)
        rc |= bench(ctx, NULL, argv[i], text, len);
    free(text);
    pq_ctx_free(ctx);
    return rc;
}
