/* Internal helpers shared by every stage: the context, error reporting, memory-mapped
 * files, atomic output, half-precision conversion. Not part of the public API. */
#ifndef PQ_COMMON_H
#define PQ_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>

#include "prunequant.h"

struct pq_ctx {
    pq_status status;
    char error[1024];
    int n_threads;
    int int8_act;                /* PQ_QMAT_INT8_* flags: pq_ctx_set_int8_prompts / _decode */
    struct pq__scratch *scratch; /* work buffers kept between calls (pq__scratch) */
    pq_log_fn log_fn;
    void *log_user;
    pq_progress_fn progress_fn;
    void *progress_user;
};

/* Records the failure on ctx (message printf-style, one line) and returns status. */
pq_status pq__fail(pq_ctx *ctx, pq_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Logs a message through the ctx callback (no-op without one). */
void pq__log(pq_ctx *ctx, pq_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Reports progress; returns PQ_ERR_CANCELLED (with message) if the callback asks to stop. */
pq_status pq__progress(pq_ctx *ctx, const char *stage, int64_t done, int64_t total);
/* Threads to use (resolved: >= 1). */
int pq__threads(const pq_ctx *ctx);

/* Work buffers of the forward pass and its products, kept on the context and reused from call to
 * call (a prompt's products would otherwise fault in fresh pages each time): slot's buffer of at
 * least n bytes, 64-byte aligned (2 MiB and transparent huge pages past 4 MiB), contents
 * undefined; NULL with a message on ctx when out of memory. A slot serves one caller at a time;
 * the buffers go with pq_ctx_free. */
enum { PQ_SCRATCH_ACT = 0, PQ_SCRATCH_PANELS = 1, PQ_SCRATCH_WORK = 2, PQ_SCRATCH_SLOTS = 3 };
void *pq__scratch(pq_ctx *ctx, int slot, size_t n);

/* n bytes (rounded up to *size), 64-byte aligned; from 4 MiB on 2 MiB aligned and advised
 * MADV_HUGEPAGE, so that long streams over them take few TLB entries and first touch faults
 * in few pages. NULL when out of memory. free() releases them. */
void *pq__huge_alloc(size_t n, size_t *size);

/* Allocation that reports failure on ctx; sizes are checked for overflow. */
void *pq__malloc(pq_ctx *ctx, size_t n, const char *what);
void *pq__calloc(pq_ctx *ctx, size_t count, size_t size, const char *what);
/* Multiplies with overflow check: returns 0 on overflow. */
int pq__mul_ok(size_t a, size_t b, size_t *out);

/* A read-only mapping of a whole file (or, when mmap is off, a copy in pq__huge_alloc's memory). */
typedef struct pq__file {
    char *path; /* owned copy */
    const uint8_t *data;
    size_t size;
    int mapped; /* 1: munmap on close; 0: free */
} pq__file;

pq_status pq__file_open(pq_ctx *ctx, const char *path, int use_mmap, pq__file *out);
void pq__file_close(pq__file *f);
/* Reads a whole (small) file into a NUL-terminated heap buffer. */
pq_status pq__read_text(pq_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *len);

/* Checks an output path before any work, so that a bad --out fails at once and names the
 * path the caller gave: its parent folder exists, is a folder and is writable; path, if it
 * exists, is a folder (is_dir) or not a folder (!is_dir). */
pq_status pq__check_output_path(pq_ctx *ctx, const char *path, int is_dir);
/* Removes "<path>.tmp.<pid>" and "<path>.old.<pid>" siblings left by processes that are gone
 * (killed outright: SIGKILL, power loss), logging each at info level. Called by
 * pq__atomic_open and pq__tmpdir_create; a live process's siblings are left alone. */
void pq__remove_stale_siblings(pq_ctx *ctx, const char *path);

/* Atomic output: pq__atomic_open creates "<path>.tmp.<pid>" for writing; pq__atomic_commit
 * flushes, fsyncs and renames it onto path; pq__atomic_abort removes it. The commits check
 * for cancellation (the progress callback, stage "write") before the rename: an interrupted
 * run leaves nothing behind even when the signal came while the bytes were written. */
typedef struct pq__atomic {
    FILE *f;
    char *path, *tmp;
    /* pq__atomic_open_large on Linux: the file (f NULL) written in whole aligned pieces of buf */
    int direct, fd;
    uint8_t *buf;
    size_t fill;
} pq__atomic;
pq_status pq__atomic_open(pq_ctx *ctx, const char *path, pq__atomic *a);
/* The same for large outputs written only through pq__atomic_write / put (never a->f): on
 * Linux the bytes go to the disk without the page cache (O_DIRECT, in aligned 8 MiB pieces
 * from a staging buffer, the tail at the commit), so writing gigabytes neither allocates
 * them as cache nor waits for the cache's write-back at the fsync. A file system that refuses
 * direct writes gets ordinary ones (same bytes). Elsewhere: pq__atomic_open. */
pq_status pq__atomic_open_large(pq_ctx *ctx, const char *path, pq__atomic *a);
pq_status pq__atomic_commit(pq_ctx *ctx, pq__atomic *a);
void pq__atomic_abort(pq__atomic *a);
/* Writes n bytes; reports failure naming the file. */
pq_status pq__atomic_write(pq_ctx *ctx, pq__atomic *a, const void *data, size_t n);
/* The same without ctx (safe on another thread): 0, or the errno of the failure. */
int pq__atomic_put(pq__atomic *a, const void *data, size_t n);
/* Starts the disk writes of what was written so far (Linux: sync_file_range, not waiting), so
 * that the commit's fsync of a large file finds most of it written. Errors surface there. */
void pq__atomic_writeback(pq__atomic *a);

/* Temporary sibling folder for atomic folder output: "<path>.tmp.<pid>", created empty. */
pq_status pq__tmpdir_create(pq_ctx *ctx, const char *path, char **tmp_out);
/* Replaces path by tmp (removing an existing output folder first). */
pq_status pq__tmpdir_commit(pq_ctx *ctx, const char *tmp, const char *path);
/* Recursively removes a temporary folder (best effort). */
void pq__rmtree(const char *path);
/* Joins dir and name into a malloc'ed string (NULL on OOM). */
char *pq__path_join(const char *dir, const char *name);
/* pq__path_join that records a failure on ctx ("<dir>: out of memory allocating N bytes for
 * the path of <name>"). */
char *pq__path_join_ctx(pq_ctx *ctx, const char *dir, const char *name);
int pq__is_dir(const char *path);
int pq__file_exists(const char *path);

/* Half precision. */
float pq__f16_to_f32(uint16_t h);
uint16_t pq__f32_to_f16(float f);
float pq__bf16_to_f32(uint16_t h);
uint16_t pq__f32_to_bf16(float f);

/* Little-endian readers with bounds (return 0 if out of range). */
typedef struct pq__reader {
    const uint8_t *p;
    size_t size, pos;
} pq__reader;
int pq__rd_u8(pq__reader *r, uint8_t *v);
int pq__rd_u32(pq__reader *r, uint32_t *v);
int pq__rd_i32(pq__reader *r, int32_t *v);
int pq__rd_u64(pq__reader *r, uint64_t *v);
int pq__rd_f32(pq__reader *r, float *v);
int pq__rd_bytes(pq__reader *r, size_t n, const uint8_t **v);

/* FNV-1a 64-bit, for content hashes and hash tables. */
uint64_t pq__fnv1a(const void *data, size_t n, uint64_t h);
#define PQ_FNV_INIT 0xcbf29ce484222325ULL

/* ---- small utilities (src/common/util.c) */

/* Monotonic clock in seconds (for durations, never for dates). */
double pq__now(void);
/* Heap copy of s; on failure records "out of memory allocating N bytes for <what>" on ctx. */
char *pq__strdup(pq_ctx *ctx, const char *s, const char *what);

/* A growable byte buffer, always NUL-terminated after its len bytes once anything is in it.
 * Zero-initialise; pq__buf_free releases (and allows reuse). */
typedef struct pq__buf {
    char *data;
    size_t len, cap;
} pq__buf;
/* Room for at least n more bytes (+ the NUL); reports failure naming what on ctx. */
pq_status pq__buf_reserve(pq_ctx *ctx, pq__buf *b, size_t n, const char *what);
pq_status pq__buf_append(pq_ctx *ctx, pq__buf *b, const void *p, size_t n, const char *what);
pq_status pq__buf_printf(pq_ctx *ctx, pq__buf *b, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pq__buf_free(pq__buf *b);
/* Hands the bytes over to the caller (NULL when empty) and resets b. */
char *pq__buf_take(pq__buf *b);

/* A quiet scope: a copy of ctx with no log or progress callback and its own message, for
 * attempts whose failure is not an error of the caller (trying a tokenizer candidate,
 * reading an optional file). Read the attempt's message from q->error if it matters. */
void pq__quiet_begin(const pq_ctx *ctx, pq_ctx *q);

/* Prefixes the message already on ctx (a callee's failure) with a printf-style context,
 * "<prefix>: <message>", and returns st. For callees whose messages do not name the file. */
pq_status pq__fail_prefix(pq_ctx *ctx, pq_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
