/* Compression rates and retention metrics (docs/ALGORITHMS.md §7). */
#include <math.h>

#include "eval/eval.h"

double pq_metrics_tcr(double s, double q) {
    return 1.0 - (1.0 - s) * q / 16.0;
}

double pq_metrics_nm_sparsity(int n, int m) {
    return m > 0 ? (double)n / (double)m : 0.0;
}

double pq_metrics_acr(size_t bytes, int64_t n_weights) {
    return n_weights > 0 ? 1.0 - (double)bytes / (2.0 * (double)n_weights) : NAN;
}

double pq_metrics_bpw(size_t bytes, int64_t n_weights) {
    return n_weights > 0 ? 8.0 * (double)bytes / (double)n_weights : NAN;
}

double pq_metrics_retention(double score, double base, int higher_is_better) {
    if (!isfinite(score) || !isfinite(base)) return NAN;
    if (higher_is_better) return base > 0 ? score / base : NAN;
    return score > 0 ? base / score : NAN;
}

double pq_metrics_chance_norm(double raw, int k) {
    if (k <= 1) return raw;
    double c = 1.0 / k, v = (raw - c) / (1.0 - c);
    return v > 0 ? v : 0.0;
}

double pq_metrics_sr(const double *r, int64_t n) {
    double s = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(r[i])) {
            s += r[i];
            k++;
        }
    return k ? s / (double)k : NAN;
}

double pq_metrics_srcr(double sr, double s, double q) {
    double d = sqrt(1.0 - s) * log2(q) / log2(16.0);
    return d > 0 ? sr / d : NAN;
}

double pq_metrics_sr_tcr(double sr, double s, double q) {
    return sr * pq_metrics_tcr(s, q);
}

double pq_metrics_binom_stderr(double p, int64_t n) {
    if (n <= 1) return 0.0;
    double v = p * (1.0 - p) / (double)(n - 1);
    return v > 0 ? sqrt(v) : 0.0;
}
