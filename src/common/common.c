#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <omp.h>

const char *pq_status_str(pq_status s) {
    switch (s) {
    case PQ_OK: return "ok";
    case PQ_ERR_IO: return "I/O error";
    case PQ_ERR_FORMAT: return "malformed file";
    case PQ_ERR_NOMEM: return "out of memory";
    case PQ_ERR_INVALID: return "invalid argument";
    case PQ_ERR_UNSUPPORTED: return "unsupported";
    case PQ_ERR_NUMERIC: return "numerical failure";
    case PQ_ERR_CANCELLED: return "cancelled";
    case PQ_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

struct pq__scratch {
    void *p[PQ_SCRATCH_SLOTS];
    size_t n[PQ_SCRATCH_SLOTS];
};

pq_ctx *pq_ctx_new(void) {
    pq_ctx *ctx = calloc(1, sizeof *ctx);
    return ctx;
}

void pq_ctx_free(pq_ctx *ctx) {
    if (ctx && ctx->scratch)
        for (int i = 0; i < PQ_SCRATCH_SLOTS; i++)
            free(ctx->scratch->p[i]);
    if (ctx) free(ctx->scratch);
    free(ctx);
}

void *pq__huge_alloc(size_t n, size_t *size) {
    const size_t huge = (size_t)2 << 20, align = n >= 2 * huge ? huge : 64;
    *size = (n + align - 1) / align * align;
    void *p = NULL;
    if (posix_memalign(&p, align, *size ? *size : align) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == huge) madvise(p, *size, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    return p;
}

void *pq__scratch(pq_ctx *ctx, int slot, size_t n) {
    if (!ctx->scratch && !(ctx->scratch = calloc(1, sizeof *ctx->scratch))) {
        pq__fail(ctx, PQ_ERR_NOMEM, "out of memory for work buffers");
        return NULL;
    }
    struct pq__scratch *s = ctx->scratch;
    if (s->n[slot] >= n && s->p[slot]) return s->p[slot];
    free(s->p[slot]);
    s->p[slot] = NULL, s->n[slot] = 0;
    size_t size;
    if (!(s->p[slot] = pq__huge_alloc(n, &size))) {
        pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes of work buffers", n);
        return NULL;
    }
    s->n[slot] = size;
    return s->p[slot];
}

const char *pq_ctx_error(const pq_ctx *ctx) {
    return ctx ? ctx->error : "";
}

void pq_ctx_set_threads(pq_ctx *ctx, int n) {
    ctx->n_threads = n;
}

/* the flags of kernels/qmat.h: 1 prompts, 2 decoding */
void pq_ctx_set_int8_prompts(pq_ctx *ctx, int on) {
    ctx->int8_act = on ? ctx->int8_act | 1 : ctx->int8_act & ~1;
}

void pq_ctx_set_int8_decode(pq_ctx *ctx, int on) {
    ctx->int8_act = on ? ctx->int8_act | 2 : ctx->int8_act & ~2;
}

int pq_ctx_threads(const pq_ctx *ctx) {
    return pq__threads(ctx);
}

int pq__threads(const pq_ctx *ctx) {
    if (ctx && ctx->n_threads > 0) return ctx->n_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void pq_ctx_set_log(pq_ctx *ctx, pq_log_fn fn, void *user) {
    ctx->log_fn = fn;
    ctx->log_user = user;
}

void pq_ctx_set_progress(pq_ctx *ctx, pq_progress_fn fn, void *user) {
    ctx->progress_fn = fn;
    ctx->progress_user = user;
}

pq_status pq__fail(pq_ctx *ctx, pq_status status, const char *fmt, ...) {
    if (!ctx) return status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    va_end(ap);
    /* one line: fold any newline a caller let through */
    for (char *p = ctx->error; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    ctx->status = status;
    return status;
}

void pq__log(pq_ctx *ctx, pq_log_level level, const char *fmt, ...) {
    if (!ctx || !ctx->log_fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ctx->log_fn(ctx->log_user, level, buf);
}

pq_status pq__progress(pq_ctx *ctx, const char *stage, int64_t done, int64_t total) {
    if (!ctx || !ctx->progress_fn) return PQ_OK;
    if (ctx->progress_fn(ctx->progress_user, stage, done, total))
        return pq__fail(ctx, PQ_ERR_CANCELLED, "%s: cancelled", stage);
    return PQ_OK;
}

int pq__mul_ok(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

void *pq__malloc(pq_ctx *ctx, size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *pq__calloc(pq_ctx *ctx, size_t count, size_t size, const char *what) {
    size_t n;
    if (!pq__mul_ok(count, size, &n)) {
        pq__fail(ctx, PQ_ERR_NOMEM, "size overflow allocating %zu x %zu bytes for %s", count, size, what);
        return NULL;
    }
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

/* ---------------------------------------------------------------- files */

pq_status pq__file_open(pq_ctx *ctx, const char *path, int use_mmap, pq__file *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pq__fail(ctx, PQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pq__fail(ctx, PQ_ERR_IO, "%s: not a regular file", path);
    }
    out->path = strdup(path);
    out->size = (size_t)st.st_size;
    if (!out->path) {
        close(fd);
        return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    }
    if (out->size == 0) {
        close(fd);
        out->data = (const uint8_t *)"";
        return PQ_OK;
    }
    if (use_mmap) {
        void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            close(fd);
            out->data = p;
            out->mapped = 1;
            return PQ_OK;
        }
    }
    size_t cap;
    uint8_t *buf = pq__huge_alloc(out->size, &cap); /* read into memory of large pages */
    if (!buf) {
        close(fd);
        free(out->path);
        out->path = NULL;
        return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, out->size);
    }
    size_t got = 0;
    while (got < out->size) {
        ssize_t r = read(fd, buf + got, out->size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            close(fd);
            free(buf);
            free(out->path);
            out->path = NULL;
            return pq__fail(ctx, PQ_ERR_IO, "%s: read failed", path);
        }
        got += (size_t)r;
    }
    close(fd);
    out->data = buf;
    return PQ_OK;
}

void pq__file_close(pq__file *f) {
    if (!f) return;
    if (f->data && f->size) {
        if (f->mapped)
            munmap((void *)f->data, f->size);
        else
            free((void *)f->data);
    }
    free(f->path);
    memset(f, 0, sizeof *f);
}

pq_status pq__read_text(pq_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    if (pq__is_dir(path)) return pq__fail(ctx, PQ_ERR_IO, "%s: is a directory, not a file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return pq__fail(ctx, PQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max_bytes) {
                free(buf);
                fclose(f);
                return pq__fail(ctx, PQ_ERR_FORMAT, "%s: larger than the %zu-byte limit", path, max_bytes);
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return pq__fail(ctx, PQ_ERR_IO, "%s: read failed", path);
    }
    if (n > max_bytes) {
        free(buf);
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: larger than the %zu-byte limit", path, max_bytes);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return PQ_OK;
}

char *pq__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int pq__is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int pq__file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *tmp_name(const char *path) {
    size_t n = strlen(path) + 32;
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s.tmp.%ld", path, (long)getpid());
    return t;
}

/* "a/b/c/" -> "a/b" (malloc'ed; "." without a slash, "/" for the root); *base points into
 * *copy at the last component ("c"). */
static char *split_path(const char *path, char **copy, const char **base) {
    char *c = strdup(path);
    if (!c) return NULL;
    size_t n = strlen(c);
    while (n > 1 && c[n - 1] == '/')
        c[--n] = 0;
    char *slash = strrchr(c, '/');
    char *parent;
    if (!slash) {
        parent = strdup(".");
        *base = c;
    } else {
        *base = slash + 1;
        size_t k = (size_t)(slash - c);
        while (k > 1 && c[k - 1] == '/')
            k--;
        parent = k ? strndup(c, k) : strdup("/");
    }
    if (!parent) {
        free(c);
        return NULL;
    }
    *copy = c;
    return parent;
}

/* An existing folder may be replaced by a folder output only when it is empty or is an
 * earlier output (holds config.json): a typo in --out must not delete someone's folder. */
static int replaceable_dir(const char *path) {
    char *cfg = pq__path_join(path, "config.json");
    int ok = cfg && pq__file_exists(cfg);
    free(cfg);
    if (ok) return 1;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

pq_status pq__check_output_path(pq_ctx *ctx, const char *path, int is_dir) {
    if (!path || !*path) return pq__fail(ctx, PQ_ERR_INVALID, "no output path given");
    char *copy = NULL;
    const char *base = NULL;
    char *parent = split_path(path, &copy, &base);
    if (!parent) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    struct stat st;
    pq_status rc = PQ_OK;
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        rc = pq__fail(ctx, PQ_ERR_INVALID, "%s: not a name for an output", path);
    else if (stat(parent, &st) != 0)
        rc = pq__fail(ctx, PQ_ERR_IO, "%s: cannot write: folder %s %s", path, parent,
                      errno == ENOENT ? "does not exist" : strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        rc = pq__fail(ctx, PQ_ERR_IO, "%s: cannot write: %s is not a folder", path, parent);
    else if (access(parent, W_OK | X_OK) != 0)
        rc = pq__fail(ctx, PQ_ERR_IO, "%s: cannot write: folder %s is not writable (%s)", path, parent,
                      strerror(errno));
    else if (stat(path, &st) == 0) {
        if (is_dir && !S_ISDIR(st.st_mode))
            rc = pq__fail(ctx, PQ_ERR_IO, "%s: exists and is not a folder", path);
        else if (is_dir && !replaceable_dir(path))
            rc = pq__fail(ctx, PQ_ERR_IO,
                          "%s: exists and is neither empty nor an earlier output (no config.json); not replaced",
                          path);
        else if (!is_dir && S_ISDIR(st.st_mode))
            rc = pq__fail(ctx, PQ_ERR_IO, "%s: is a folder, not a file", path);
    }
    free(parent);
    free(copy);
    return rc;
}

void pq__remove_stale_siblings(pq_ctx *ctx, const char *path) {
    char *copy = NULL;
    const char *base = NULL;
    char *parent = split_path(path, &copy, &base);
    if (!parent) return;
    DIR *d = *base ? opendir(parent) : NULL;
    /* names first, removal after: the folder is not changed while it is read */
    char **names = NULL;
    size_t n = 0, cap = 0;
    const size_t bl = strlen(base);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *s = e->d_name;
        if (strncmp(s, base, bl) || (strncmp(s + bl, ".tmp.", 5) && strncmp(s + bl, ".old.", 5))) continue;
        const char *digits = s + bl + 5;
        if (!isdigit((unsigned char)*digits)) continue;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (*end || errno || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to know */
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 4;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn) break;
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(s))) break;
        n++;
    }
    if (d) closedir(d);
    for (size_t i = 0; i < n; i++) {
        char *full = pq__path_join(parent, names[i]);
        const int old = strncmp(names[i] + bl, ".old.", 5) == 0;
        struct stat st;
        if (full && old && lstat(path, &st) != 0 && rename(full, path) == 0) {
            /* the process died between moving the earlier output aside and renaming the new
             * one into place: the earlier output is put back */
            pq__log(ctx, PQ_LOG_INFO, "%s: restored from %s, left by process %s that is gone", path, full,
                    names[i] + bl + 5);
        } else if (full) {
            pq__rmtree(full);
            pq__log(ctx, PQ_LOG_INFO, "removed %s, left by process %s that is gone", full, names[i] + bl + 5);
        }
        free(full);
        free(names[i]);
    }
    free(names);
    free(parent);
    free(copy);
}

/* Asks the progress callback, once the bytes are written, whether to go on: a cancel that
 * arrived while writing leaves nothing behind. */
static pq_status commit_check(pq_ctx *ctx, const char *path) {
    if (ctx && ctx->progress_fn && ctx->progress_fn(ctx->progress_user, "write", 1, 1))
        return pq__fail(ctx, PQ_ERR_CANCELLED, "%s: cancelled; nothing written", path);
    return PQ_OK;
}

#define PQ_DIRECT_PIECE ((size_t)8 << 20) /* bytes per direct write (a multiple of any block size) */

/* Opens a's temporary file: for large outputs (Linux) with O_DIRECT and a staging buffer where
 * the file system takes it, else (or if that fails) as a buffered FILE. */
static pq_status atomic_open(pq_ctx *ctx, const char *path, pq__atomic *a, int large) {
    memset(a, 0, sizeof *a);
    a->path = strdup(path);
    a->tmp = tmp_name(path);
    if (!a->path || !a->tmp) {
        pq__atomic_abort(a);
        return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    }
    pq__remove_stale_siblings(ctx, path);
#if defined(__linux__) && defined(O_DIRECT)
    void *buf = NULL;
    if (large && posix_memalign(&buf, 4096, PQ_DIRECT_PIECE) == 0) {
        const int fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0666);
        if (fd >= 0) {
            a->direct = 1, a->fd = fd, a->buf = buf;
            return PQ_OK;
        }
        free(buf);
    }
#else
    (void)large;
#endif
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        pq_status st = pq__fail(ctx, PQ_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        pq__atomic_abort(a);
        return st;
    }
    return PQ_OK;
}

pq_status pq__atomic_open(pq_ctx *ctx, const char *path, pq__atomic *a) {
    return atomic_open(ctx, path, a, 0);
}

pq_status pq__atomic_open_large(pq_ctx *ctx, const char *path, pq__atomic *a) {
    return atomic_open(ctx, path, a, 1);
}

#if defined(__linux__) && defined(O_DIRECT)
/* The file's later writes buffered (a->direct 2): 0, or the errno of the failure. */
static int direct_off(pq__atomic *a) {
    a->direct = 2;
    const int fl = fcntl(a->fd, F_GETFL);
    return fl < 0 || fcntl(a->fd, F_SETFL, fl & ~O_DIRECT) != 0 ? errno : 0;
}

/* All n bytes of p at the file's end; a file system that refuses a direct write (EINVAL, or
 * EOPNOTSUPP from some stacked ones) gets the same bytes as an ordinary one, and every later
 * write too. */
static int direct_write(pq__atomic *a, const uint8_t *p, size_t n) {
    while (n) {
        const ssize_t w = write(a->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EINVAL || errno == EOPNOTSUPP) && a->direct == 1) {
            const int err = direct_off(a);
            if (err) return err;
            continue;
        }
        if (w <= 0) return w < 0 ? errno : EIO;
        p += w, n -= (size_t)w;
    }
    return 0;
}
#endif

int pq__atomic_put(pq__atomic *a, const void *data, size_t n) {
#if defined(__linux__) && defined(O_DIRECT)
    if (a->direct) {
        const uint8_t *p = data;
        while (n) {
            const size_t k = n < PQ_DIRECT_PIECE - a->fill ? n : PQ_DIRECT_PIECE - a->fill;
            memcpy(a->buf + a->fill, p, k);
            a->fill += k, p += k, n -= k;
            if (a->fill == PQ_DIRECT_PIECE) {
                const int err = direct_write(a, a->buf, a->fill);
                if (err) return err;
                a->fill = 0;
            }
        }
        return 0;
    }
#endif
    if (!n || fwrite(data, 1, n, a->f) == n) return 0;
    return errno ? errno : EIO;
}

void pq__atomic_writeback(pq__atomic *a) {
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
    if (a->direct == 1) return; /* on the disk already */
    if (a->direct) {
        (void)sync_file_range(a->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        return;
    }
    if (fflush(a->f) == 0) (void)sync_file_range(fileno(a->f), 0, 0, SYNC_FILE_RANGE_WRITE);
#else
    (void)a;
#endif
}

/* Flushes and closes the file (either mode): 0, or the errno of the first failure. */
static int atomic_close(pq__atomic *a) {
    int err = 0;
#if defined(__linux__) && defined(O_DIRECT)
    if (a->direct) {
        /* the tail is not a whole piece: an ordinary write at the (aligned) end */
        if (a->fill && a->direct == 1) err = direct_off(a);
        if (!err && a->fill) err = direct_write(a, a->buf, a->fill);
        if (!err && fsync(a->fd) != 0) err = errno;
        if (close(a->fd) != 0 && !err) err = errno;
        free(a->buf);
        a->buf = NULL;
        a->direct = 0;
        return err;
    }
#endif
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0) err = errno ? errno : EIO;
    if (fclose(a->f) != 0 && !err) err = errno ? errno : EIO;
    a->f = NULL;
    return err;
}

pq_status pq__atomic_write(pq_ctx *ctx, pq__atomic *a, const void *data, size_t n) {
    const int err = pq__atomic_put(a, data, n);
    return err ? pq__fail(ctx, PQ_ERR_IO, "%s: write failed: %s", a->path, strerror(err)) : PQ_OK;
}

pq_status pq__atomic_commit(pq_ctx *ctx, pq__atomic *a) {
    const int err = atomic_close(a);
    if (err) {
        pq_status st = pq__fail(ctx, PQ_ERR_IO, "%s: write failed: %s", a->path, strerror(err));
        pq__atomic_abort(a);
        return st;
    }
    pq_status cst = commit_check(ctx, a->path);
    if (cst) {
        pq__atomic_abort(a);
        return cst;
    }
    if (rename(a->tmp, a->path) != 0) {
        pq_status st = pq__fail(ctx, PQ_ERR_IO, "%s: rename failed: %s", a->path, strerror(errno));
        pq__atomic_abort(a);
        return st;
    }
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
    return PQ_OK;
}

void pq__atomic_abort(pq__atomic *a) {
    if (a->f) fclose(a->f);
    if (a->direct) close(a->fd);
    free(a->buf);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
}

pq_status pq__tmpdir_create(pq_ctx *ctx, const char *path, char **tmp_out) {
    char *t = tmp_name(path);
    if (!t) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
    pq__remove_stale_siblings(ctx, path);
    pq__rmtree(t);
    if (mkdir(t, 0755) != 0) {
        pq_status st = pq__fail(ctx, PQ_ERR_IO, "%s: cannot create the folder beside it: %s", path, strerror(errno));
        free(t);
        return st;
    }
    *tmp_out = t;
    return PQ_OK;
}

pq_status pq__tmpdir_commit(pq_ctx *ctx, const char *tmp, const char *path) {
    pq_status cst = commit_check(ctx, path);
    if (cst) return cst; /* the caller removes tmp, as on any failure */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return pq__fail(ctx, PQ_ERR_IO, "%s: exists and is not a folder", path);
        /* move the old output aside first so that path is never half-written */
        char *old = malloc(strlen(path) + 32);
        if (!old) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory", path);
        sprintf(old, "%s.old.%ld", path, (long)getpid());
        pq__rmtree(old);
        if (rename(path, old) != 0) {
            free(old);
            return pq__fail(ctx, PQ_ERR_IO, "%s: cannot replace: %s", path, strerror(errno));
        }
        if (rename(tmp, path) != 0) {
            pq_status s = pq__fail(ctx, PQ_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
            if (rename(old, path) != 0) { /* best effort restore */
            }
            free(old);
            return s;
        }
        pq__rmtree(old);
        free(old);
        return PQ_OK;
    }
    if (rename(tmp, path) != 0) return pq__fail(ctx, PQ_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
    return PQ_OK;
}

void pq__rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char *c = pq__path_join(path, e->d_name);
                if (c) pq__rmtree(c);
                free(c);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* ---------------------------------------------------------------- half precision */

static float from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static uint32_t to_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

float pq__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ff;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return from_bits(bits);
}

uint16_t pq__f32_to_f16(float f) {
    const uint32_t x = to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff);
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int32_t e = exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into exponent: fine */
    return (uint16_t)half;
}

float pq__bf16_to_f32(uint16_t h) {
    return from_bits((uint32_t)h << 16);
}

uint16_t pq__f32_to_bf16(float f) {
    uint32_t x = to_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---------------------------------------------------------------- dtypes */

static const char *const dtype_names[PQ_DTYPE_COUNT] = {"F32",  "F16",  "BF16", "Q8_0", "Q4_0", "I8",   "U8",
                                                        "I16",  "I32",  "I64",  "F64",  "BOOL", "Q4_1", "Q5_0",
                                                        "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"};

const char *pq_dtype_name(pq_dtype t) {
    return (unsigned)t < PQ_DTYPE_COUNT ? dtype_names[t] : "?";
}

int pq_dtype_parse(const char *name, pq_dtype *out) {
    for (int i = 0; i < PQ_DTYPE_COUNT; i++)
        if (!strcasecmp(name, dtype_names[i])) {
            *out = (pq_dtype)i;
            return 0;
        }
    return -1;
}

/* ---------------------------------------------------------------- readers */

int pq__rd_bytes(pq__reader *r, size_t n, const uint8_t **v) {
    if (r->pos > r->size || n > r->size - r->pos) return 0;
    *v = r->p + r->pos;
    r->pos += n;
    return 1;
}
int pq__rd_u8(pq__reader *r, uint8_t *v) {
    const uint8_t *b;
    if (!pq__rd_bytes(r, 1, &b)) return 0;
    *v = b[0];
    return 1;
}
int pq__rd_u32(pq__reader *r, uint32_t *v) {
    const uint8_t *b;
    if (!pq__rd_bytes(r, 4, &b)) return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}
int pq__rd_i32(pq__reader *r, int32_t *v) {
    uint32_t u;
    if (!pq__rd_u32(r, &u)) return 0;
    memcpy(v, &u, 4);
    return 1;
}
int pq__rd_u64(pq__reader *r, uint64_t *v) {
    uint32_t lo, hi;
    if (r->pos > r->size || r->size - r->pos < 8) return 0;
    pq__rd_u32(r, &lo);
    pq__rd_u32(r, &hi);
    *v = (uint64_t)hi << 32 | lo;
    return 1;
}
int pq__rd_f32(pq__reader *r, float *v) {
    uint32_t u;
    if (!pq__rd_u32(r, &u)) return 0;
    memcpy(v, &u, 4);
    return 1;
}

uint64_t pq__fnv1a(const void *data, size_t n, uint64_t h) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
