/* Softmax over attention scores (float32) and log-softmax over logits (double), each with a
 * higher-precision reference (kernels.h). */
#include "kernels/kernels.h"

#include <math.h>

/* The exp loop calls glibc's scalar expf per score (about 7 % of a 512-token prompt of the 1B
 * shape): glibc declares its vector twins (libmvec) only under -ffast-math, and they round
 * differently in the last bits, which compress's calibration forward would carry into its output
 * files. */
void pq__softmax(float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        x[i] /= s; /* division, as llama2.c */
}

/* In double, rounded once to float at the end. */
void pq__softmax_ref(float *x, int64_t n) {
    double mx = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(exp((double)x[i] - mx) / s);
}

pq__lse pq__logsumexp(const float *x, int64_t n) {
    pq__lse r = {.max = x[0], .argmax = 0};
    for (int64_t i = 1; i < n; i++)
        if (x[i] > r.max) {
            r.max = x[i];
            r.argmax = i;
        }
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += exp((double)x[i] - (double)r.max);
    r.sum = s;
    r.lse = log(s) + (double)r.max;
    return r;
}

pq__lse pq__log_softmax(const float *x, int64_t n, double *lp) {
    const pq__lse r = pq__logsumexp(x, n);
    for (int64_t i = 0; i < n; i++)
        lp[i] = (double)x[i] - r.lse;
    return r;
}

/* In long double (x87: 64-bit mantissa), rounded once to double. */
static long double lse_ld(const float *x, int64_t n, pq__lse *r) {
    long double mx = x[0];
    r->argmax = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx) {
            mx = x[i];
            r->argmax = i;
        }
    long double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += expl((long double)x[i] - mx);
    r->max = (float)mx;
    r->sum = (double)s;
    const long double lse = logl(s) + mx;
    r->lse = (double)lse;
    return lse;
}

pq__lse pq__logsumexp_ref(const float *x, int64_t n) {
    pq__lse r;
    lse_ld(x, n, &r);
    return r;
}

pq__lse pq__log_softmax_ref(const float *x, int64_t n, double *lp) {
    pq__lse r;
    const long double lse = lse_ld(x, n, &r);
    for (int64_t i = 0; i < n; i++)
        lp[i] = (double)((long double)x[i] - lse);
    return r;
}
