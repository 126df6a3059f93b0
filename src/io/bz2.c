/* Whole-file bzip2 decompression (benchmark files ship compressed, e.g. HellaSwag). */
#include <bzlib.h>
#include <stdlib.h>
#include <string.h>

#include "io/bz2.h"

pq_status pq__read_bz2(pq_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    char *in = NULL;
    size_t in_len = 0;
    pq_status st = pq__read_text(ctx, path, max_bytes, &in, &in_len);
    if (st) return st;
    bz_stream s;
    memset(&s, 0, sizeof s);
    if (BZ2_bzDecompressInit(&s, 0, 0) != BZ_OK) {
        free(in);
        return pq__fail(ctx, PQ_ERR_NOMEM, "%s: cannot start bzip2 decompression", path);
    }
    size_t cap = in_len * 4 + 4096, n = 0;
    char *buf = pq__malloc(ctx, cap + 1, "the decompressed text");
    if (!buf) {
        BZ2_bzDecompressEnd(&s);
        free(in);
        return pq__fail_prefix(ctx, PQ_ERR_NOMEM, "%s", path);
    }
    s.next_in = in;
    s.avail_in = (unsigned)in_len;
    int rc = BZ_OK;
    for (;;) {
        if (cap - n < 65536) {
            if (cap >= max_bytes) {
                st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: decompresses past the %zu-byte limit", path, max_bytes);
                break;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                st = pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory allocating %zu bytes for the decompressed text",
                              path, cap * 2 + 1);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        s.next_out = buf + n;
        s.avail_out = (unsigned)(cap - n);
        rc = BZ2_bzDecompress(&s);
        n = cap - s.avail_out;
        if (rc == BZ_STREAM_END) {
            /* concatenated streams (pbzip2) continue with a new header */
            if (s.avail_in == 0) break;
            BZ2_bzDecompressEnd(&s);
            char *next = s.next_in;
            unsigned left = s.avail_in;
            memset(&s, 0, sizeof s);
            if (BZ2_bzDecompressInit(&s, 0, 0) != BZ_OK) {
                rc = BZ_MEM_ERROR;
                break;
            }
            s.next_in = next;
            s.avail_in = left;
            continue;
        }
        if (rc != BZ_OK) break;
        if (s.avail_in == 0 && s.avail_out != 0) {
            rc = BZ_UNEXPECTED_EOF;
            break;
        }
    }
    BZ2_bzDecompressEnd(&s);
    free(in);
    if (st == PQ_OK && rc != BZ_STREAM_END)
        st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: corrupt or truncated bzip2 data (code %d)", path, rc);
    if (st) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return PQ_OK;
}
