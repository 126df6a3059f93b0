#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---------------------------------------------------------------- interrupts */

/* SIGINT/SIGTERM only set this flag: the progress callback then asks the library to stop,
 * the library removes its temporary output on that failure path, and cli_fail exits 130. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
    interrupted = sig;
}

void cli_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* restarted system calls: a signal must not turn into a read error; the handler is reset
     * after one signal, so that a second Ctrl-C kills at once (its leftovers are removed by
     * the next run on the same output) */
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_interrupted(void) {
    return interrupted != 0;
}

void cli_exit_if_interrupted(const char *cmd) {
    if (!interrupted) return;
    cli_progress_done();
    fprintf(stderr, "prunequant %s: interrupted; nothing written\n", cmd);
    exit(130);
}

/* ---------------------------------------------------------------- progress */

/* One bar at a time: the stage of the highest rank seen (a sweep over its compress runs,
 * a compress over the column sweeps of its linears); the lower stages only move its clock.
 * On a terminal the bar is redrawn in place; otherwise one line every PQ_PROGRESS_INTERVAL
 * seconds (default 10). */
static struct {
    char stage[48];
    int rank, finished, active; /* active: a terminal line is drawn and not ended */
    int64_t done, total, printed_done;
    double t0, last_draw;
} bar;
static double progress_interval = -1;
static long progress_delay_ms = -1;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int stage_rank(const char *stage) {
    if (!strcmp(stage, "write")) return -1; /* the commit's cancel check: never drawn */
    if (!strcmp(stage, "sweep")) return 3;
    if (!strcmp(stage, "compress") || !strcmp(stage, "convert") || !strcmp(stage, "allocate")) return 2;
    if (!strcmp(stage, "gptq") || !strcmp(stage, "sparsegpt")) return 0;
    return 1; /* ppl, kld, evaluation tasks */
}

static const char *stage_unit(const char *stage) {
    static const char *const units[][2] = {{"compress", "blocks"},   {"convert", "tensors"}, {"ppl", "windows"},
                                           {"kld", "windows"},       {"sweep", "configs"},   {"gptq", "columns"},
                                           {"sparsegpt", "columns"}, {"allocate", "linears"}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(stage, units[i][0])) return units[i][1];
    return "items";
}

/* "42s", "1m02s", "3h05m" */
static const char *fmt_dur(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "-");
        return buf;
    }
    long t = (long)(s + 0.5);
    if (t < 60)
        snprintf(buf, n, "%lds", t);
    else if (t < 3600)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    return buf;
}

/* "5/16 blocks, 1m02s elapsed, 0.08/s, ETA 2m10s" */
static void bar_text(char *buf, size_t n, double t) {
    const double el = t - bar.t0, rate = el > 0 ? (double)bar.done / el : 0;
    char e[32], eta[32], r[32];
    fmt_dur(e, sizeof e, el);
    if (bar.done > 0 && rate > 0) {
        snprintf(r, sizeof r, rate < 10 ? "%.2f/s" : "%.0f/s", rate);
        fmt_dur(eta, sizeof eta, (double)(bar.total - bar.done) / rate);
    } else {
        snprintf(r, sizeof r, "-/s");
        snprintf(eta, sizeof eta, "-");
    }
    snprintf(buf, n, "%lld/%lld %s, %s elapsed, %s, ETA %s", (long long)bar.done, (long long)bar.total,
             stage_unit(bar.stage), e, r, eta);
}

static void bar_draw(double t, int force) {
    char text[160];
    if (isatty(2)) {
        if (!force && t - bar.last_draw < 0.1) return;
        bar.last_draw = t;
        const int width = 24;
        int fill = bar.total > 0 ? (int)(width * bar.done / bar.total) : 0;
        if (fill > width) fill = width;
        bar_text(text, sizeof text, t);
        fprintf(stderr, "\r%-10s [%.*s%*s] %s\033[K", bar.stage, fill, "########################", width - fill, "",
                text);
        bar.active = 1;
        if (bar.finished) cli_progress_done();
        return;
    }
    if (progress_interval < 0) {
        const char *v = getenv("PQ_PROGRESS_INTERVAL");
        char *end;
        double x = v && *v ? strtod(v, &end) : 10;
        progress_interval = v && *v && !*end && x >= 0 ? x : 10;
    }
    if (bar.finished || t - bar.last_draw < progress_interval) return;
    if (progress_interval == 0 && bar.done == bar.printed_done) return; /* every step, once */
    bar.last_draw = t;
    bar.printed_done = bar.done;
    bar_text(text, sizeof text, t);
    fprintf(stderr, "prunequant: %s %s\n", bar.stage, text);
}

static void on_log(void *user, pq_log_level level, const char *msg) {
    int quiet = *(int *)user;
    if (level == PQ_LOG_DEBUG || (quiet && level < PQ_LOG_WARN)) return;
    cli_progress_done();
    static const char *const tag[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "prunequant: %s: %s\n", tag[level], msg);
}

static int on_progress(void *user, const char *stage, int64_t done, int64_t total) {
    return cli_progress(*(int *)user, stage, done, total);
}

int cli_progress(int quiet, const char *stage, int64_t done, int64_t total) {
    if (interrupted) return 1;
    if (progress_delay_ms < 0) {
        const char *v = getenv("PQ_PROGRESS_DELAY_MS");
        progress_delay_ms = v ? strtol(v, NULL, 10) : 0;
        if (progress_delay_ms < 0) progress_delay_ms = 0;
    }
    if (progress_delay_ms > 0) { /* testing knob: slows every step so that a test can interrupt it */
        struct timespec ts = {progress_delay_ms / 1000, progress_delay_ms % 1000 * 1000000L};
        nanosleep(&ts, NULL);
        if (interrupted) return 1;
    }
    if (quiet) return 0;
    const int rank = stage_rank(stage);
    if (rank < 0) return 0;
    const double t = now_s();
    const int same = !strcmp(stage, bar.stage);
    if (!bar.stage[0] || bar.finished || rank > bar.rank || (rank == bar.rank && !same) ||
        (same && done < bar.done)) {
        /* a new bar (or the same stage started again, as in a sweep's next config) */
        cli_progress_done();
        snprintf(bar.stage, sizeof bar.stage, "%s", stage);
        bar.rank = rank;
        bar.finished = 0;
        bar.t0 = bar.last_draw = t;
        bar.printed_done = -1;
        bar.done = done;
        bar.total = total;
    } else if (same) {
        bar.done = done;
        bar.total = total;
    }
    if (!strcmp(stage, bar.stage)) bar.finished = total > 0 && done >= total;
    bar_draw(t, bar.finished);
    return 0;
}

void cli_progress_done(void) {
    if (bar.active) fputc('\n', stderr);
    bar.active = 0;
}

static int quiet_flags[2] = {0, 1};

pq_ctx *cli_ctx_new(int threads, int quiet) {
    pq_ctx *ctx = pq_ctx_new();
    if (!ctx) {
        fprintf(stderr, "prunequant: out of memory creating a context\n");
        exit(1);
    }
    pq_ctx_set_threads(ctx, threads);
    pq_ctx_set_log(ctx, on_log, &quiet_flags[quiet ? 1 : 0]);
    pq_ctx_set_progress(ctx, on_progress, &quiet_flags[quiet ? 1 : 0]);
    return ctx;
}

int cli_fail(const char *cmd, pq_ctx *ctx) {
    cli_exit_if_interrupted(cmd);
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
        return cli_usage_error(cmd, "%s: must be an integer %lld..%lld (got '%s')", flag, (long long)min,
                               (long long)max, s ? s : "");
    *out = v;
    return 0;
}

int cli_parse_f64(const char *cmd, const char *flag, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v >= min && v <= max))
        return cli_usage_error(cmd, "%s: must be a number in [%g, %g] (got '%s')", flag, min, max, s ? s : "");
    *out = v;
    return 0;
}
