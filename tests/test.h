/* Minimal test harness: CHECK records failures and goes on; main returns test_end(). */
#ifndef PQ_TEST_H
#define PQ_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_checks, test_failures;

#define CHECK(cond)                                                                                                  \
    do {                                                                                                             \
        test_checks++;                                                                                               \
        if (!(cond)) {                                                                                               \
            test_failures++;                                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                 \
        }                                                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                                         \
    do {                                                                                                             \
        test_checks++;                                                                                               \
        if (!(cond)) {                                                                                               \
            test_failures++;                                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                                 \
            fprintf(stderr, __VA_ARGS__);                                                                            \
            fputc('\n', stderr);                                                                                     \
        }                                                                                                            \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                                        \
    CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g (tol %g)", (double)(a), (double)(b), (double)(tol))

/* Path to shared data (env PQ_DATA set by ctest), or NULL. */
static inline const char *test_data_dir(void) {
    const char *d = getenv("PQ_DATA");
    return d && *d ? d : NULL;
}

static inline int test_end(const char *name) {
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    if (test_checks == 0) {
        fprintf(stderr, "%s: no checks ran\n", name);
        return 1;
    }
    return test_failures ? 1 : 0;
}

#endif
