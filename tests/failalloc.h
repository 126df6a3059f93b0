/* Fail-each-allocation harness: failalloc_run runs a body with its k-th allocation failing,
 * for k = 1, 2, ... until a run makes fewer than k allocations (so every allocation of the
 * body has failed once), and checks that each failed run returns an error status with a
 * message (never PQ_OK, never a crash) and leaves no allocation behind.
 *
 * Include in exactly one file of a test program (it defines malloc, calloc, realloc, free,
 * posix_memalign, strdup and strndup). Only allocations made by this executable's own code
 * (the library is linked in statically) or by cJSON are failed and tracked, so OpenBLAS, the
 * OpenMP runtime and libc keep working. Under AddressSanitizer the calls are forwarded to
 * its allocator (__interceptor_*), so LeakSanitizer and the checks of freed memory still see
 * every block; elsewhere they go to glibc's __libc_* functions.
 *
 * A failed run may also return PQ_OK where the failed allocation was optional (best-effort
 * cleanup, a fallback); the body then checks its result after failalloc_stop().
 *
 * FAILALLOC_VERBOSE=1 in the environment prints every failed run (k, the failed call's
 * address for addr2line, status, message) and a summary per entry. */
#ifndef PQ_TEST_FAILALLOC_H
#define PQ_TEST_FAILALLOC_H

#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prunequant.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define FA_REAL(f) __interceptor_##f
extern void *__interceptor_memalign(size_t, size_t);
#define FA_MEMALIGN __interceptor_memalign
#else
#define FA_REAL(f) __libc_##f
extern void *__libc_memalign(size_t, size_t);
#define FA_MEMALIGN __libc_memalign
#endif
extern void *FA_REAL(malloc)(size_t);
extern void *FA_REAL(calloc)(size_t, size_t);
extern void *FA_REAL(realloc)(void *, size_t);
extern void FA_REAL(free)(void *);
extern char __executable_start, etext;

/* The hooks run before AddressSanitizer has mapped its shadow memory (its start-up calls
 * malloc): they must not be instrumented. */
#if defined(__SANITIZE_ADDRESS__)
#define FA_HOOK __attribute__((no_sanitize("address", "undefined")))
#else
#define FA_HOOK
#endif

/* The body under test: calls one entry point with ctx and frees what it returned. Its status
 * is checked; setup (inputs, expected values) belongs outside, before failalloc_run. */
typedef pq_status (*failalloc_fn)(pq_ctx *ctx, void *user);

/* Live blocks allocated by tracked callers during a run: open addressing, 0 = empty,
 * 1 = removed. 2^18 slots; a run that needs more sets fa_overflow (the check fails). */
#define FA_SLOTS (1u << 18)
static uintptr_t fa_slot[FA_SLOTS];
static long fa_used, fa_live, fa_count, fa_fail_at = -1;
static int fa_track, fa_overflow, fa_failed;
static const void *fa_fail_caller; /* return address of the failed call */
static void *fa_bt[24];            /* its stack, to find the executable's code behind a cJSON call */
static int fa_bt_n;
static char fa_lock_flag;
static uintptr_t fa_lib_lo[4], fa_lib_hi[4];
static int fa_n_libs = -1;

FA_HOOK static void fa_lock(void) {
    while (__atomic_test_and_set(&fa_lock_flag, __ATOMIC_ACQUIRE))
        ;
}
FA_HOOK static void fa_unlock(void) {
    __atomic_clear(&fa_lock_flag, __ATOMIC_RELEASE);
}

FA_HOOK static size_t fa_hash(uintptr_t p) {
    return (size_t)(((uint64_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 46) & (FA_SLOTS - 1);
}

FA_HOOK static void fa_insert(void *p) {
    if (!p) return;
    fa_lock();
    if (fa_used >= (long)(FA_SLOTS / 4 * 3)) {
        fa_overflow = 1;
    } else {
        size_t h = fa_hash((uintptr_t)p);
        while (fa_slot[h] > 1)
            h = (h + 1) & (FA_SLOTS - 1);
        if (fa_slot[h] == 0) fa_used++;
        fa_slot[h] = (uintptr_t)p;
        fa_live++;
    }
    fa_unlock();
}

FA_HOOK static void fa_remove(void *p) {
    if (!p) return;
    fa_lock();
    for (size_t h = fa_hash((uintptr_t)p); fa_slot[h]; h = (h + 1) & (FA_SLOTS - 1))
        if (fa_slot[h] == (uintptr_t)p) {
            fa_slot[h] = 1;
            fa_live--;
            break;
        }
    fa_unlock();
}

static int fa_find_lib(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libcjson") || fa_n_libs >= 4) return 0;
    for (int i = 0; i < info->dlpi_phnum && fa_n_libs < 4; i++)
        if (info->dlpi_phdr[i].p_type == PT_LOAD && (info->dlpi_phdr[i].p_flags & PF_X)) {
            fa_lib_lo[fa_n_libs] = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            fa_lib_hi[fa_n_libs] = fa_lib_lo[fa_n_libs] + info->dlpi_phdr[i].p_memsz;
            fa_n_libs++;
        }
    return 0;
}

/* A caller whose allocations are failed and tracked: this executable or cJSON. */
FA_HOOK static int fa_tracked_caller(const void *caller) {
    const char *c = (const char *)caller;
    if (c >= &__executable_start && c < &etext) return 1;
    for (int i = 0; i < fa_n_libs; i++)
        if ((uintptr_t)c >= fa_lib_lo[i] && (uintptr_t)c < fa_lib_hi[i]) return 1;
    return 0;
}

/* 1: cJSON's allocations are tracked (leaks) but not failed: for an entry whose cJSON paths
 * another entry covers, to keep the test's time down (say which in the test). */
static int failalloc_exe_only;

/* 1: this allocation fails. 0: it goes ahead; *track says whether to record the block. */
FA_HOOK static int fa_should_fail(const void *caller, int *track) {
    *track = 0;
    if (!__atomic_load_n(&fa_track, __ATOMIC_RELAXED) || !fa_tracked_caller(caller)) return 0;
    *track = 1;
    if (failalloc_exe_only && !((const char *)caller >= &__executable_start && (const char *)caller < &etext))
        return 0;
    const long at = __atomic_load_n(&fa_fail_at, __ATOMIC_RELAXED);
    if (at < 0) return 0;
    if (__atomic_add_fetch(&fa_count, 1, __ATOMIC_RELAXED) != at) return 0;
    __atomic_store_n(&fa_failed, 1, __ATOMIC_RELAXED);
    fa_fail_caller = caller;
    fa_bt_n = backtrace(fa_bt, 24);
    return 1;
}

FA_HOOK static void *fa_alloc(size_t n, const void *caller) {
    int track;
    if (fa_should_fail(caller, &track)) return NULL;
    void *p = FA_REAL(malloc)(n);
    if (track) fa_insert(p);
    return p;
}

FA_HOOK void *malloc(size_t n) {
    return fa_alloc(n, __builtin_return_address(0));
}

FA_HOOK void *calloc(size_t a, size_t b) {
    int track;
    if (fa_should_fail(__builtin_return_address(0), &track)) return NULL;
    void *p = FA_REAL(calloc)(a, b);
    if (track) fa_insert(p);
    return p;
}

FA_HOOK void *realloc(void *old, size_t n) {
    int track;
    if (fa_should_fail(__builtin_return_address(0), &track)) return NULL;
    void *p = FA_REAL(realloc)(old, n);
    if (p || n == 0) fa_remove(old);
    if (track) fa_insert(p);
    return p;
}

FA_HOOK void free(void *p) {
    fa_remove(p);
    FA_REAL(free)(p);
}

FA_HOOK int posix_memalign(void **out, size_t align, size_t n) {
    int track;
    if (fa_should_fail(__builtin_return_address(0), &track)) return ENOMEM;
    *out = FA_MEMALIGN(align, n);
    if (track) fa_insert(*out);
    return *out ? 0 : ENOMEM;
}

FA_HOOK char *strdup(const char *s) {
    const size_t n = strlen(s) + 1;
    char *p = fa_alloc(n, __builtin_return_address(0));
    if (p) memcpy(p, s, n);
    return p;
}

FA_HOOK char *strndup(const char *s, size_t max) {
    const size_t n = strnlen(s, max);
    char *p = fa_alloc(n + 1, __builtin_return_address(0));
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* 1 when the current run of the body has had an allocation failed (for checks in the body
 * that only hold when the entry succeeded, or only when it failed). */
static inline int failalloc_injected(void) {
    return __atomic_load_n(&fa_failed, __ATOMIC_RELAXED);
}

/* Where a failed call came from, for addr2line: "exe" (offset from the executable's start)
 * or "libcjson". */
static const char *fa_lib_of(const void *caller) {
    const char *c = (const char *)caller;
    return c >= &__executable_start && c < &etext ? "exe" : "exe, through libcjson";
}
static unsigned long fa_offset_of(const void *caller) {
    const char *c = (const char *)caller;
    /* a cJSON call: report the executable's frame that called cJSON */
    int seen = 0;
    for (int i = 0; i < fa_bt_n && !(c >= &__executable_start && c < &etext); i++) {
        const char *f = (const char *)fa_bt[i];
        if (f == c) seen = 1;
        if (seen && f >= &__executable_start && f < &etext) return (unsigned long)(f - &__executable_start);
    }
    if (c >= &__executable_start && c < &etext) return (unsigned long)(c - &__executable_start);
    for (int i = 0; i < fa_n_libs; i++)
        if ((uintptr_t)c >= fa_lib_lo[i] && (uintptr_t)c < fa_lib_hi[i])
            return (unsigned long)((uintptr_t)c - fa_lib_lo[i]);
    return 0;
}

/* Ends the failing part of the run: what the body does next (checking the entry's result)
 * allocates normally; its blocks are still tracked. */
static inline void failalloc_stop(void) {
    __atomic_store_n(&fa_fail_at, -1, __ATOMIC_SEQ_CST);
}

static void fa_quiet_log(void *user, pq_log_level level, const char *msg) {
    (void)user;
    (void)level;
    (void)msg;
}

/* One run with allocation fail_at failing (-1: none); returns the body's status, the error
 * message in msg, and the blocks left allocated (after pq_ctx_free) in *leaked. */
static pq_status fa_run_once(failalloc_fn fn, void *user, int threads, long fail_at, char *msg, size_t msg_n,
                             long *leaked) {
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, threads);
    pq_ctx_set_log(ctx, fa_quiet_log, NULL);
    memset(fa_slot, 0, sizeof fa_slot);
    fa_used = fa_live = fa_count = 0;
    fa_overflow = fa_failed = 0;
    __atomic_store_n(&fa_fail_at, fail_at, __ATOMIC_RELAXED);
    __atomic_store_n(&fa_track, 1, __ATOMIC_SEQ_CST);
    const pq_status st = fn(ctx, user);
    __atomic_store_n(&fa_fail_at, -1, __ATOMIC_SEQ_CST);
    snprintf(msg, msg_n, "%s", pq_ctx_error(ctx));
    pq_ctx_free(ctx); /* still tracking: a message or cache the ctx owns is no leak */
    __atomic_store_n(&fa_track, 0, __ATOMIC_SEQ_CST);
    *leaked = fa_overflow ? -1 : fa_live;
    return st;
}

/* Runs fn with its k-th tracked allocation failing for k = 1, 2, ... (at most max_k runs),
 * each in a fresh pq_ctx with `threads` threads. First one run without failures, which must
 * succeed (this also lets one-time initialisation happen outside the counted runs). A failed
 * run must return an error status with a message, or PQ_OK where the failed allocation was
 * optional (best-effort cleanup, a fallback): the body then checks its result is right, as
 * in a run without failures. No run may leave a block allocated. Returns the number of runs
 * that had an allocation failed. */
static long failalloc_run(const char *name, failalloc_fn fn, void *user, int threads, long max_k) {
    if (fa_n_libs < 0) {
        fa_n_libs = 0;
#if defined(__SANITIZE_ADDRESS__)
        __lsan_disable(); /* what the dynamic loader keeps for libgcc_s is no leak */
#endif
        fa_bt_n = backtrace(fa_bt, 24); /* loads libgcc_s now, not in a hook */
#if defined(__SANITIZE_ADDRESS__)
        __lsan_enable();
#endif
        dl_iterate_phdr(fa_find_lib, NULL);
    }
    const int verbose = getenv("FAILALLOC_VERBOSE") && *getenv("FAILALLOC_VERBOSE") == '1';
    char msg[1024];
    long leaked;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pq_status st = fa_run_once(fn, user, threads, -1, msg, sizeof msg, &leaked);
    CHECK_MSG(st == PQ_OK && leaked == 0, "%s: the run without failures gave status %d (%s), %ld blocks left", name,
              st, msg, leaked);
    if (st != PQ_OK) return 0;
    long failed = 0, absorbed = 0, bad = 0, k;
    for (k = 1; k <= max_k; k++) {
        st = fa_run_once(fn, user, threads, k, msg, sizeof msg, &leaked);
        if (!fa_failed) { /* fewer than k allocations: every one has failed once */
            CHECK_MSG(st == PQ_OK && leaked == 0, "%s: the run with no failure left gave status %d (%s), %ld blocks",
                      name, st, msg, leaked);
            break;
        }
        failed++;
        absorbed += st == PQ_OK;
        const int ok = (st == PQ_OK || msg[0]) && leaked == 0;
        if (verbose || (!ok && bad < 5))
            fprintf(stderr,
                    "%s: allocation %ld failed (called from %s+%#lx): status %d, message '%s', %ld blocks left%s\n",
                    name, k, fa_lib_of(fa_fail_caller), fa_offset_of(fa_fail_caller), st, msg, leaked,
                    leaked < 0 ? " (too many to track)" : "");
        bad += !ok;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (verbose)
        fprintf(stderr, "%s: %ld allocations failed in turn, %ld of them without effect on the status (%.1f s)\n",
                name, failed, absorbed, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    CHECK_MSG(k <= max_k, "%s: still allocating after %ld runs", name, max_k);
    CHECK_MSG(failed > 0 && bad == 0, "%s: %ld failed allocations, %ld mishandled", name, failed, bad);
    return failed;
}

#endif
