#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static int progress_active;
static double progress_last;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_log(void *user, pq_log_level level, const char *msg) {
    int quiet = *(int *)user;
    if (level == PQ_LOG_DEBUG || (quiet && level < PQ_LOG_WARN)) return;
    cli_progress_done();
    static const char *const tag[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "prunequant: %s: %s\n", tag[level], msg);
}

static int on_progress(void *user, const char *stage, int64_t done, int64_t total) {
    int quiet = *(int *)user;
    if (quiet || !isatty(2)) return 0;
    double t = now_s();
    if (done < total && t - progress_last < 0.1) return 0;
    progress_last = t;
    int width = 30, fill = total > 0 ? (int)(width * done / total) : 0;
    fprintf(stderr, "\r%-10s [%.*s%*s] %lld/%lld", stage, fill, "##############################", width - fill, "",
            (long long)done, (long long)total);
    progress_active = 1;
    if (done >= total) cli_progress_done();
    return 0;
}

void cli_progress_done(void) {
    if (progress_active) fputc('\n', stderr);
    progress_active = 0;
}

static int quiet_flags[2] = {0, 1};

pq_ctx *cli_ctx_new(int threads, int quiet) {
    pq_ctx *ctx = pq_ctx_new();
    if (!ctx) {
        fprintf(stderr, "prunequant: out of memory\n");
        exit(1);
    }
    pq_ctx_set_threads(ctx, threads);
    pq_ctx_set_log(ctx, on_log, &quiet_flags[quiet ? 1 : 0]);
    pq_ctx_set_progress(ctx, on_progress, &quiet_flags[quiet ? 1 : 0]);
    return ctx;
}

int cli_fail(const char *cmd, pq_ctx *ctx) {
    cli_progress_done();
    const char *msg = pq_ctx_error(ctx);
    fprintf(stderr, "prunequant %s: %s\n", cmd, msg && *msg ? msg : "failed");
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "prunequant %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'prunequant %s --help')\n", cmd);
    return 2;
}

char *cli_read_file(const char *cmd, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "prunequant %s: %s: cannot open: %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        fprintf(stderr, "prunequant %s: %s: read failed\n", cmd, path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int cli_parse_i64(const char *cmd, const char *flag, const char *s, int64_t min, int64_t max, int64_t *out) {
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < min || v > max)
        return cli_usage_error(cmd, "%s: expected an integer in [%lld, %lld], got '%s'", flag, (long long)min,
                               (long long)max, s ? s : "");
    *out = v;
    return 0;
}

int cli_parse_f64(const char *cmd, const char *flag, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v >= min && v <= max))
        return cli_usage_error(cmd, "%s: expected a number in [%g, %g], got '%s'", flag, min, max, s ? s : "");
    *out = v;
    return 0;
}
