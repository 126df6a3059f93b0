/* safetensors reading and writing (Hugging Face's tensor file format).
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON (an object mapping
 * tensor names to {"dtype", "shape", "data_offsets": [begin, end]} plus an optional
 * "__metadata__" object of strings), then the data. Offsets are relative to the start of
 * the data. Every number in the header is checked before it is used; a hostile file gives
 * an error naming the file, the tensor and the field, never an out-of-bounds read.
 *
 * Tensors read from a file point into its bytes (no copy), so data may be unaligned when
 * the writer did not pad; consumers convert or copy unaligned data. */
#ifndef PQ_IO_SAFETENSORS_H
#define PQ_IO_SAFETENSORS_H

#include "io/source.h"

/* The reference implementation rejects larger headers; so do we. */
#define PQ_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* Parses a safetensors image of size bytes (name is for messages) and appends every
 * tensor to src, data pointing into data (which must outlive src). Names already in src
 * count as duplicates. On failure src is left as it was. */
pq_status pq__safetensors_parse(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size, pq__source *src);

/* Maps path (kept open by src) and parses it. On failure the file is closed again. */
pq_status pq__safetensors_load_file(pq_ctx *ctx, const char *path, int use_mmap, pq__source *src);

/* One tensor to write. data is borrowed; nbytes must equal numel * element size. */
typedef struct pq__st_entry {
    const char *name;
    pq_dtype dtype;   /* plain types only (no Q8_0/Q4_0) */
    int n_dims;       /* 0..4; 0 = scalar */
    int64_t shape[4]; /* outermost first */
    const void *data;
    size_t nbytes;
    /* Streamed tensors (data NULL): fill writes bytes [off, off + n) of the tensor into dst,
     * called in order with n = chunk (the last piece shorter), so that a tensor larger than
     * the memory one wants to spend on it is produced piece by piece. */
    pq_status (*fill)(pq_ctx *ctx, void *user, size_t off, void *dst, size_t n);
    void *user;
    size_t chunk;
} pq__st_entry;

/* Writes the tensors in order with contiguous offsets to path, atomically (temp file +
 * rename: on failure nothing is left). metadata is NULL or "key", "value", ..., NULL; a
 * "format": "pt" entry is added when the caller gives no "format", because transformers
 * refuses safetensors files without it. */
pq_status pq__safetensors_write(pq_ctx *ctx, const char *path, const pq__st_entry *e, int64_t n,
                                const char *const *metadata);

/* Same bytes as pq__safetensors_write, into a malloc'ed buffer (*out, *len); for tests and
 * the fuzz target's round trip. */
pq_status pq__safetensors_serialize(pq_ctx *ctx, const pq__st_entry *e, int64_t n, const char *const *metadata,
                                    uint8_t **out, size_t *len);

/* Writes dir/model.safetensors when all tensor bytes fit in max_shard_bytes (0 = no
 * limit), else dir/model-0000k-of-0000n.safetensors (tensors in order, a new shard when
 * the next tensor would overflow the current one; a tensor larger than the limit gets a
 * shard of its own) plus dir/model.safetensors.index.json. Each file is written
 * atomically; the caller makes the folder itself atomic (pq__tmpdir_*). */
pq_status pq__safetensors_write_sharded(pq_ctx *ctx, const char *dir, const pq__st_entry *e, int64_t n,
                                        size_t max_shard_bytes, const char *const *metadata);

/* safetensors dtype string ("F32", "BF16", ...) for a plain dtype, NULL for block types;
 * and the reverse (returns 0 on success). */
const char *pq__st_dtype_name(pq_dtype t);
int pq__st_dtype_parse(const char *s, pq_dtype *out);

/* Hash index of the tensor names of a source (open addressing on tensor indices), for
 * duplicate detection and lookups in sources with many tensors. */
typedef struct pq__name_index {
    int64_t *slots; /* [mask + 1], -1 = empty */
    size_t mask;
} pq__name_index;

/* Sizes the table for `expected` names and inserts src's tensors (their names must be
 * distinct). */
pq_status pq__name_index_build(pq_ctx *ctx, const pq__source *src, int64_t expected, pq__name_index *idx);
/* Inserts tensor i of src; returns the index of an earlier tensor with the same name (not
 * inserted then), or -1. The table must have been sized for it. */
int64_t pq__name_index_insert(pq__name_index *idx, const pq__source *src, int64_t i);
/* Index of the tensor called name, or -1. */
int64_t pq__name_index_find(const pq__name_index *idx, const pq__source *src, const char *name);
void pq__name_index_free(pq__name_index *idx);

/* A JSON document built with a sticky failure: the first failed append records its message
 * on ctx (naming `what`) and sets st; later appends are no-ops, so a builder checks st once. */
typedef struct pq__strbuf {
    pq__buf b;
    pq_ctx *ctx;
    const char *what;
    pq_status st;
} pq__strbuf;
void pq__sb_init(pq__strbuf *b, pq_ctx *ctx, const char *what);
void pq__sb_append(pq__strbuf *b, const char *s, size_t n);
void pq__sb_printf(pq__strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a quoted, escaped JSON string. */
void pq__sb_json_string(pq__strbuf *b, const char *s);
void pq__sb_free(pq__strbuf *b);

#endif
