#include "io/source.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <string.h>

#include "io/packed_names.h"

const char *pq__arch_name(pq__arch a) {
    switch (a) {
    case PQ_ARCH_LLAMA: return "llama";
    case PQ_ARCH_MISTRAL: return "mistral";
    case PQ_ARCH_QWEN2: return "qwen2";
    }
    return "?";
}

int64_t pq__tensor_numel(const pq__tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++)
        n *= t->shape[i];
    return n;
}

void pq__source_init(pq__source *s) {
    memset(s, 0, sizeof *s);
}

void pq__source_free(pq__source *s) {
    if (!s) return;
    for (int64_t i = 0; i < s->n_tensors; i++) {
        free(s->tensors[i].name);
        free(s->tensors[i].owned);
    }
    free(s->tensors);
    for (int i = 0; i < s->n_files; i++)
        pq__file_close(&s->files[i]);
    pq_tokenizer_free(s->tok);
    free(s->path);
    memset(s, 0, sizeof *s);
}

pq__tensor *pq__source_add(pq_ctx *ctx, pq__source *s, const char *name, pq_dtype dtype, int n_dims,
                           const int64_t *shape, const void *data, size_t nbytes) {
    if (n_dims < 0 || n_dims > 4) {
        pq__fail(ctx, PQ_ERR_FORMAT, "tensor %s: %d dimensions (at most 4 supported)", name, n_dims);
        return NULL;
    }
    if (s->n_tensors == s->cap_tensors) {
        int64_t cap = s->cap_tensors ? 2 * s->cap_tensors : 64;
        pq__tensor *nt = realloc(s->tensors, (size_t)cap * sizeof *nt);
        if (!nt) {
            pq__fail(ctx, PQ_ERR_NOMEM, "tensor %s: out of memory allocating %zu bytes for the tensor list", name,
                     (size_t)cap * sizeof *nt);
            return NULL;
        }
        s->tensors = nt;
        s->cap_tensors = cap;
    }
    pq__tensor *t = &s->tensors[s->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = pq__strdup(ctx, name, "its name");
    if (!t->name) {
        pq__fail_prefix(ctx, PQ_ERR_NOMEM, "tensor %s", name);
        return NULL;
    }
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++)
        t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = nbytes;
    s->n_tensors++;
    return t;
}

const pq__tensor *pq__source_find(const pq__source *s, const char *name) {
    for (int64_t i = 0; i < s->n_tensors; i++)
        if (!strcmp(s->tensors[i].name, name)) return &s->tensors[i];
    return NULL;
}

int pq__source_has_packed(const pq__source *s, const char *base) {
    char n[200];
    snprintf(n, sizeof n, "%s.weight", base);
    if (pq__source_find(s, n)) return 0;
    snprintf(n, sizeof n, "%s.qcodes", base);
    if (pq__source_find(s, n)) return 1;
    snprintf(n, sizeof n, "%s.values", base);
    return pq__source_find(s, n) != NULL;
}

pq_status pq__source_add_file(pq_ctx *ctx, pq__source *s, const char *path, int use_mmap, pq__file **out) {
    if (s->n_files >= PQ_SOURCE_MAX_FILES)
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: more than %d weight files", path, PQ_SOURCE_MAX_FILES);
    pq_status st = pq__file_open(ctx, path, use_mmap, &s->files[s->n_files]);
    if (st != PQ_OK) return st;
    *out = &s->files[s->n_files++];
    return PQ_OK;
}

size_t pq__source_file_bytes(const pq__source *s) {
    size_t n = 0;
    for (int i = 0; i < s->n_files; i++)
        n += s->files[i].size;
    return n;
}

void pq__source_release(const pq__source *s, const void *p, size_t n) {
    const uint8_t *b = p;
    for (int i = 0; i < s->n_files; i++) {
        const pq__file *f = &s->files[i];
        if (!f->mapped || b < f->data || b + n > f->data + f->size) continue;
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t lo = ((uintptr_t)b + page - 1) & ~(page - 1), hi = ((uintptr_t)b + n) & ~(page - 1);
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* private read-only file map: reread on access */
        return;
    }
}

const char *pq__detect_format(const char *path) {
    if (pq__is_dir(path)) return "hf";
    FILE *f = fopen(path, "rb");
    if (f) {
        char m[4] = {0};
        size_t n = fread(m, 1, 4, f);
        fclose(f);
        if (n == 4 && !memcmp(m, "GGUF", 4)) return "gguf";
    }
    return "llama2c";
}
