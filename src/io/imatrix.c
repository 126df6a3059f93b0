/* llama.cpp imatrix files: GGUF writer, GGUF + legacy reader (see imatrix.h). */
#include "io/imatrix.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"

#define NAME_MAX_LEN 55 /* + ".in_sum2" stays under llama.cpp's 64-byte tensor names */

/* ---------------------------------------------------------------- writer */

static int entry_cmp(const void *a, const void *b) {
    return strcmp((*(const pq__imatrix_entry *const *)a)->name, (*(const pq__imatrix_entry *const *)b)->name);
}

static pq_status check_entry(pq_ctx *ctx, const char *path, const pq__imatrix_entry *e) {
    const char *nm = e->name ? e->name : "";
    size_t nl = strlen(nm);
    if (nl == 0 || nl > NAME_MAX_LEN)
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: imatrix entry name '%s' must be 1..%d bytes", path, nm,
                        NAME_MAX_LEN);
    const int64_t nm_ = e->n_mat > 1 ? e->n_mat : 1;
    if (e->ncols <= 0 || e->n_mat < 0 || nm_ > INT64_MAX / e->ncols || !e->sum2 || !e->counts)
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: imatrix entry '%s': bad shape or missing data", path, nm);
    for (int64_t i = 0; i < nm_ * e->ncols; i++)
        if (!(e->sum2[i] >= 0.0f) || !isfinite(e->sum2[i]))
            return pq__fail(ctx, PQ_ERR_INVALID, "%s: imatrix entry '%s': sum %lld is %g (must be finite, >= 0)",
                            path, nm, (long long)i, (double)e->sum2[i]);
    for (int64_t j = 0; j < nm_; j++)
        if (e->counts[j] < 0)
            return pq__fail(ctx, PQ_ERR_INVALID, "%s: imatrix entry '%s': negative count", path, nm);
    return PQ_OK;
}

/* Sorted pointers to the entries; fails on a bad or duplicate entry. */
static pq_status sort_entries(pq_ctx *ctx, const char *path, const pq__imatrix_entry *e, int64_t n,
                              const pq__imatrix_entry ***out) {
    const pq__imatrix_entry **s = malloc((size_t)(n > 0 ? n : 1) * sizeof *s);
    if (!s) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    pq_status st = PQ_OK;
    for (int64_t i = 0; i < n && st == PQ_OK; i++) {
        s[i] = &e[i];
        st = check_entry(ctx, path, &e[i]);
    }
    if (st == PQ_OK) qsort(s, (size_t)n, sizeof *s, entry_cmp);
    for (int64_t i = 1; i < n && st == PQ_OK; i++)
        if (strcmp(s[i - 1]->name, s[i]->name) == 0)
            st = pq__fail(ctx, PQ_ERR_INVALID, "%s: imatrix entry '%s' given twice", path, s[i]->name);
    if (st) {
        free(s);
        return st;
    }
    *out = s;
    return PQ_OK;
}

pq_status pq__imatrix_write(pq_ctx *ctx, const char *path, const pq__imatrix_entry *e, int64_t n,
                            const pq__imatrix_meta *meta) {
    const pq__imatrix_meta none = {0};
    if (!meta) meta = &none;
    if (n < 1) return pq__fail(ctx, PQ_ERR_INVALID, "%s: an imatrix needs at least one entry", path);
    const pq__imatrix_entry **s = NULL;
    pq_status st = sort_entries(ctx, path, e, n, &s);
    if (st) return st;
    float **counts = calloc((size_t)n, sizeof *counts); /* the f32 copies of the counts */
    pq__gguf_writer *w = NULL;
    if (!counts) st = pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    if (st == PQ_OK) st = pq__gguf_writer_new(ctx, &w);
    if (st == PQ_OK) {
        pq__gguf_writer_add_str(w, "general.type", "imatrix");
        pq__gguf_writer_add_arr_str(w, "imatrix.datasets", meta->datasets, NULL, meta->n_datasets);
        pq__gguf_writer_add_u32(w, "imatrix.chunk_count", meta->chunk_count);
        pq__gguf_writer_add_u32(w, "imatrix.chunk_size", meta->chunk_size);
    }
    for (int64_t i = 0; i < n && st == PQ_OK; i++) {
        const int64_t nm = s[i]->n_mat > 1 ? s[i]->n_mat : 1;
        if (!(counts[i] = malloc((size_t)nm * sizeof(float)))) {
            st = pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        for (int64_t j = 0; j < nm; j++)
            counts[i][j] = (float)s[i]->counts[j];
        char name[NAME_MAX_LEN + 16];
        const int64_t sh_sum[2] = {nm, s[i]->ncols}, sh_cnt[2] = {nm, 1};
        snprintf(name, sizeof name, "%s.in_sum2", s[i]->name);
        pq__gguf_writer_add_tensor(w, name, PQ_DTYPE_F32, 2, sh_sum, s[i]->sum2,
                                   (size_t)(nm * s[i]->ncols) * sizeof(float));
        snprintf(name, sizeof name, "%s.counts", s[i]->name);
        pq__gguf_writer_add_tensor(w, name, PQ_DTYPE_F32, 2, sh_cnt, counts[i], (size_t)nm * sizeof(float));
    }
    if (st == PQ_OK) st = pq__gguf_writer_save(ctx, w, path);
    pq__gguf_writer_free(w);
    for (int64_t i = 0; counts && i < n; i++)
        free(counts[i]);
    free(counts);
    free(s);
    return st;
}

/* ---------------------------------------------------------------- reader: common */

void pq__imatrix_free(pq__imatrix *im) {
    if (!im) return;
    for (int64_t i = 0; i < im->n; i++) {
        free(im->items[i].name);
        free(im->items[i].sum2);
        free(im->items[i].counts);
        free(im->items[i].importance);
    }
    free(im->items);
    for (int64_t i = 0; i < im->n_datasets; i++)
        free(im->datasets[i]);
    free(im->datasets);
    free(im);
}

static int item_cmp(const void *a, const void *b) {
    return strcmp(((const pq__imatrix_item *)a)->name, ((const pq__imatrix_item *)b)->name);
}

const pq__imatrix_item *pq__imatrix_find(const pq__imatrix *im, const char *name) {
    if (!im || !name || im->n == 0) return NULL;
    pq__imatrix_item key = {.name = (char *)name};
    return bsearch(&key, im->items, (size_t)im->n, sizeof key, item_cmp);
}

static char *dup_n(const void *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Allocates an item's arrays; name is taken over (freed on failure). */
static int item_alloc(pq__imatrix_item *it, char *name, int64_t ncols, int64_t n_mat) {
    *it = (pq__imatrix_item){.name = name, .ncols = ncols, .n_mat = n_mat};
    size_t nv = (size_t)(ncols * n_mat);
    it->sum2 = malloc(nv * sizeof(float));
    it->importance = malloc(nv * sizeof(float));
    it->counts = malloc((size_t)n_mat * sizeof(int64_t));
    return name && it->sum2 && it->importance && it->counts;
}

static void item_release(pq__imatrix_item *it) {
    free(it->name);
    free(it->sum2);
    free(it->counts);
    free(it->importance);
    *it = (pq__imatrix_item){0};
}

/* llama-quantize refuses an imatrix with a non-finite value. */
static pq_status check_finite(pq_ctx *ctx, const char *path, const pq__imatrix *im) {
    for (int64_t i = 0; i < im->n; i++)
        for (int64_t j = 0; j < im->items[i].ncols * im->items[i].n_mat; j++)
            if (!isfinite(im->items[i].importance[j]))
                return pq__fail(ctx, PQ_ERR_FORMAT, "%s: imatrix entry '%s' has a non-finite value", path,
                                im->items[i].name);
    return PQ_OK;
}

/* ---------------------------------------------------------------- reader: GGUF */

static const char SUF_SUM[] = ".in_sum2", SUF_CNT[] = ".counts";

/* Length of the base name if name ends in suf, else 0. */
static size_t base_len(const char *name, const char *suf) {
    size_t n = strlen(name), s = strlen(suf);
    return n > s && strcmp(name + n - s, suf) == 0 ? n - s : 0;
}

static pq_status gguf_meta(pq_ctx *ctx, const char *path, const pq__gguf *g, pq__imatrix *im) {
    const pq__gguf_kv *ds = pq__gguf_find_kv(g, "imatrix.datasets");
    int64_t cc = 0, cs = 0;
    int has_cc = pq__gguf_find_kv(g, "imatrix.chunk_count") != NULL;
    int has_cs = pq__gguf_find_kv(g, "imatrix.chunk_size") != NULL;
    if (!ds || !has_cc || !has_cs)
        return pq__fail(ctx, PQ_ERR_FORMAT,
                        "%s: missing imatrix metadata (imatrix.datasets, chunk_count, chunk_size)", path);
    const pq__gguf_kv *a = pq__gguf_find_kv(g, "imatrix.chunk_count"), *b = pq__gguf_find_kv(g, "imatrix.chunk_size");
    if (a->type != PQ_GGUF_U32 || b->type != PQ_GGUF_U32 || pq__gguf_get_int(g, "imatrix.chunk_count", &cc) != 1 ||
        pq__gguf_get_int(g, "imatrix.chunk_size", &cs) != 1)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: imatrix.chunk_count and imatrix.chunk_size must be u32", path);
    im->chunk_count = cc;
    im->chunk_size = cs;
    if (ds->type != PQ_GGUF_ARRAY || ds->arr_type != PQ_GGUF_STRING || ds->arr_n == 0) return PQ_OK;
    const char **p = NULL;
    size_t *l = NULL;
    pq_status st = pq__gguf_array_strings(ctx, g, ds, &p, &l);
    if (st) return st;
    im->datasets = calloc((size_t)ds->arr_n, sizeof *im->datasets);
    if (!im->datasets) st = pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    for (uint64_t i = 0; st == PQ_OK && i < ds->arr_n; i++, im->n_datasets++)
        if (!(im->datasets[i] = dup_n(p[i], l[i]))) st = pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    free(p);
    free(l);
    return st;
}

/* Fills one item from its two tensors; the importance as llama-quantize's load_imatrix. */
static pq_status gguf_item(pq_ctx *ctx, const char *path, const pq__gguf_tensor *sum, const pq__gguf_tensor *cnt,
                           size_t blen, pq__imatrix_item *it) {
    if (sum->ggml_type != PQ_GGML_F32 || cnt->ggml_type != PQ_GGML_F32)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: sums and counts for %.*s must be F32", path, (int)blen, sum->name);
    int64_t nval = (int64_t)(sum->nbytes / 4), ncnt = (int64_t)(cnt->nbytes / 4);
    if (ncnt < 1 || nval < 1 || nval % ncnt)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %.*s: %lld sums do not split into %lld counts", path, (int)blen,
                        sum->name, (long long)nval, (long long)ncnt);
    if (!item_alloc(it, dup_n(sum->name, blen), nval / ncnt, ncnt)) {
        item_release(it);
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    }
    memcpy(it->sum2, sum->data, (size_t)nval * 4);
    const int64_t ne0 = it->ncols;
    for (int64_t j = 0; j < ncnt; j++) {
        float c;
        memcpy(&c, (const uint8_t *)cnt->data + 4 * j, 4);
        it->counts[j] = isfinite(c) ? (int64_t)lroundf(c) : 0;
        const float cf = (float)it->counts[j];
        for (int64_t i = 0; i < ne0; i++)
            it->importance[j * ne0 + i] = cf > 0.0f ? it->sum2[j * ne0 + i] / cf : 1.0f;
    }
    return PQ_OK;
}

static pq_status read_gguf(pq_ctx *ctx, const char *path, const uint8_t *buf, size_t size, pq__imatrix *im) {
    pq__gguf *g = NULL;
    pq_status st = pq__gguf_parse(ctx, path, buf, size, &g);
    if (st) return st;
    if (g->n_tensors < 1) st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: no data in the imatrix file", path);
    if (st == PQ_OK) st = gguf_meta(ctx, path, g, im);
    if (st == PQ_OK && !(im->items = calloc((size_t)g->n_tensors, sizeof *im->items)))
        st = pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    char name[256];
    for (int64_t i = 0; i < g->n_tensors && st == PQ_OK; i++) {
        const pq__gguf_tensor *t = &g->tensors[i];
        size_t bs = base_len(t->name, SUF_SUM), bc = base_len(t->name, SUF_CNT), bl = bs ? bs : bc;
        if (!bl) continue; /* llama.cpp ignores other tensors */
        if (bl >= sizeof name - 16) {
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor name '%s' too long", path, t->name);
            break;
        }
        snprintf(name, sizeof name, "%.*s%s", (int)bl, t->name, bs ? SUF_CNT : SUF_SUM);
        int64_t other = pq__gguf_find_tensor(g, name);
        if (other < 0) {
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: mismatched sums and counts for %.*s", path, (int)bl, t->name);
            break;
        }
        if (!bs) continue; /* each pair once: from its sums */
        st = gguf_item(ctx, path, t, &g->tensors[other], bl, &im->items[im->n]);
        if (st == PQ_OK) im->n++;
    }
    pq__gguf_free(g);
    return st;
}

/* ---------------------------------------------------------------- reader: legacy */

typedef struct rd {
    const uint8_t *p;
    size_t left;
} rd;

static int rd_i32(rd *r, int32_t *v) {
    if (r->left < 4) return 0;
    memcpy(v, r->p, 4);
    r->p += 4;
    r->left -= 4;
    return 1;
}

/* One entry; a later entry of the same name replaces an earlier one (std::map in llama.cpp). */
static pq_status legacy_entry(pq_ctx *ctx, const char *path, rd *r, int32_t k, pq__imatrix *im) {
    int32_t len = 0, ncall = 0, nval = 0;
    if (!rd_i32(r, &len) || len < 0 || (size_t)len > r->left)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: failed reading name for entry %d", path, k + 1);
    char *name = dup_n(r->p, (size_t)len); /* like llama.cpp, the name ends at a NUL byte */
    r->p += len;
    r->left -= (size_t)len;
    if (!rd_i32(r, &ncall) || !rd_i32(r, &nval) || nval < 1 || (size_t)nval > r->left / 4) {
        free(name);
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: failed reading the values of entry %d", path, k + 1);
    }
    pq__imatrix_item it;
    if (!item_alloc(&it, name, nval, 1)) {
        item_release(&it);
        return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    }
    memcpy(it.sum2, r->p, (size_t)nval * 4);
    r->p += (size_t)nval * 4;
    r->left -= (size_t)nval * 4;
    it.counts[0] = ncall;
    for (int32_t i = 0; i < nval; i++)
        it.importance[i] = ncall > 0 ? it.sum2[i] / (float)ncall : it.sum2[i];
    for (int64_t i = 0; i < im->n; i++)
        if (strcmp(im->items[i].name, it.name) == 0) {
            item_release(&im->items[i]);
            im->items[i] = it;
            return PQ_OK;
        }
    im->items[im->n++] = it;
    return PQ_OK;
}

static pq_status read_legacy(pq_ctx *ctx, const char *path, const uint8_t *buf, size_t size, pq__imatrix *im) {
    rd r = {buf, size};
    int32_t n = 0;
    if (!rd_i32(&r, &n) || n < 1) return pq__fail(ctx, PQ_ERR_FORMAT, "%s: no data in the imatrix file", path);
    if ((size_t)n > size / 12) /* every entry takes at least 12 bytes */
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: %d imatrix entries cannot fit in %zu bytes", path, n, size);
    if (!(im->items = calloc((size_t)n, sizeof *im->items))) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    im->legacy = 1;
    for (int32_t k = 0; k < n; k++) {
        pq_status st = legacy_entry(ctx, path, &r, k, im);
        if (st) return st;
    }
    int32_t chunks = 0, len = 0; /* the optional tail: chunk count, then the dataset */
    if (rd_i32(&r, &chunks)) im->chunk_count = chunks;
    if (rd_i32(&r, &len) && len > 0 && (size_t)len <= r.left) {
        if (!(im->datasets = malloc(sizeof *im->datasets)) || !(im->datasets[0] = dup_n(r.p, (size_t)len)))
            return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
        im->n_datasets = 1;
    }
    return PQ_OK;
}

pq_status pq__imatrix_read(pq_ctx *ctx, const char *path, pq__imatrix **out) {
    *out = NULL;
    pq__file f;
    pq_status st = pq__file_open(ctx, path, 1, &f);
    if (st) return st;
    pq__imatrix *im = calloc(1, sizeof *im);
    if (!im)
        st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory");
    else if (f.size >= 4 && memcmp(f.data, "GGUF", 4) == 0)
        st = read_gguf(ctx, path, f.data, f.size, im);
    else
        st = read_legacy(ctx, path, f.data, f.size, im);
    pq__file_close(&f);
    if (st == PQ_OK) {
        qsort(im->items, (size_t)im->n, sizeof *im->items, item_cmp);
        st = check_finite(ctx, path, im);
    }
    if (st) {
        pq__imatrix_free(im);
        return st;
    }
    *out = im;
    return PQ_OK;
}
