#include "kernels/mask.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

int64_t pq__prune_count(int64_t n, double s) {
    const double k = floor((double)n * s + 1e-6);
    return k < 0 ? 0 : k > (double)n ? n : (int64_t)k;
}

int64_t pq__prune_count_ref(int64_t n, double s) {
    const int64_t k = (int64_t)((double)n * s);
    return k < 0 ? 0 : k > n ? n : k;
}

/* Maps float bits to uint32 keys with the same order (negatives flipped). */
static inline uint32_t fkey(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static inline float keyf(uint32_t k) {
    const uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float pq__select_kth(const float *x, int64_t n, int64_t k, int64_t *n_less, uint32_t *scratch) {
    /* Three radix levels (11, 11, 10 bits): the first histograms all keys and keeps the
     * bucket holding rank k; the others only look at the keys of that bucket. */
    static const int shift[3] = {21, 10, 0};
    static const uint32_t width[3] = {2048, 2048, 1024};
    uint32_t hist[2048];
    int64_t less = 0, m = 0;
    uint32_t prefix = 0;
    for (int level = 0; level < 3; level++) {
        memset(hist, 0, sizeof hist);
        const uint32_t wmask = width[level] - 1;
        if (level == 0) {
            for (int64_t i = 0; i < n; i++)
                hist[fkey(x[i]) >> shift[0]]++;
        } else {
            for (int64_t i = 0; i < m; i++)
                hist[(scratch[i] >> shift[level]) & wmask]++;
        }
        uint32_t b = 0;
        int64_t before = 0;
        while (before + hist[b] <= k)
            before += hist[b++];
        k -= before;
        less += before;
        prefix |= b << shift[level];
        /* keep the keys of bucket b for the next level */
        int64_t out = 0;
        if (level == 0) {
            for (int64_t i = 0; i < n; i++) {
                const uint32_t key = fkey(x[i]);
                if ((key >> shift[0]) == b) scratch[out++] = key;
            }
        } else if (level == 1) {
            for (int64_t i = 0; i < m; i++)
                if (((scratch[i] >> shift[1]) & wmask) == b) scratch[out++] = scratch[i];
        }
        m = out;
    }
    *n_less = less;
    return keyf(prefix);
}

void pq__mask_k_smallest(const float *x, int64_t n, int64_t k, uint8_t *keep, uint32_t *scratch) {
    if (k <= 0) {
        memset(keep, 1, (size_t)n);
        return;
    }
    if (k >= n) {
        memset(keep, 0, (size_t)n);
        return;
    }
    int64_t less;
    const float t = pq__select_kth(x, n, k - 1, &less, scratch);
    const uint32_t tk = fkey(t);
    int64_t ties = k - less; /* elements equal to t still to prune, in index order */
    for (int64_t i = 0; i < n; i++) {
        const uint32_t key = fkey(x[i]);
        int prune = key < tk;
        if (key == tk && ties > 0) {
            prune = 1;
            ties--;
        }
        keep[i] = (uint8_t)!prune;
    }
}

void pq__mask_le_kth(const float *x, int64_t n, int64_t k, uint8_t *keep, uint32_t *scratch) {
    if (k >= n) k = n - 1;
    int64_t less;
    const uint32_t tk = fkey(pq__select_kth(x, n, k, &less, scratch));
    for (int64_t i = 0; i < n; i++)
        keep[i] = (uint8_t)(fkey(x[i]) > tk);
}

void pq__mask_nm_cell(const float *s, int m, int nprune, uint8_t *keep, uint32_t *scratch) {
    if (m > 64) {
        pq__mask_k_smallest(s, m, nprune, keep, scratch);
        return;
    }
    for (int c = 0; c < m; c++) {
        const uint32_t kc = fkey(s[c]);
        int rank = 0;
        for (int d = 0; d < m; d++) {
            const uint32_t kd = fkey(s[d]);
            rank += kd < kc || (kd == kc && d < c);
        }
        keep[c] = (uint8_t)(rank >= nprune);
    }
}

/* The rows' cells side by side: key[k * T + r] holds the order key of score (k, r), and each
 * rank counts the keys below it (ties: lower index first), pq__mask_nm_cell's rule, one lane
 * per row. M is a constant in the common cells (unrolled compares). */
static inline void nm_rows(const float *x, int64_t xs, const float *v, const int M, int nprune, int64_t T,
                           uint8_t *keep, int64_t ks, uint32_t *key) {
    for (int k = 0; k < M; k++) {
        const float vk = v[k];
        const float *xk = x + k * xs;
        uint32_t *kk = key + k * T;
#pragma omp simd
        for (int64_t r = 0; r < T; r++)
            kk[r] = fkey(xk[r] * xk[r] * vk * vk);
    }
    for (int c = 0; c < M; c++) {
        const uint32_t *kc = key + c * T;
        uint8_t *kp = keep + c * ks;
#pragma omp simd
        for (int64_t r = 0; r < T; r++) {
            int rank = 0;
            for (int d = 0; d < M; d++)
                rank += d < c ? key[d * T + r] <= kc[r] : key[d * T + r] < kc[r];
            kp[r] = (uint8_t)(rank >= nprune);
        }
    }
}

void pq__mask_nm_rows(const float *x, int64_t xs, const float *v, int m, int nprune, int64_t T, uint8_t *keep,
                      int64_t ks, uint32_t *key) {
    if (m == 4)
        nm_rows(x, xs, v, 4, nprune, T, keep, ks, key);
    else if (m == 8)
        nm_rows(x, xs, v, 8, nprune, T, keep, ks, key);
    else
        nm_rows(x, xs, v, m, nprune, T, keep, ks, key);
}

pq_status pq__prune_oneshot_mask(pq_ctx *ctx, const float *W, int64_t rows, int64_t cols, const float *colscale,
                                 double sparsity, int prune_n, int prune_m, uint8_t *keep, int n_threads) {
    const int nt = n_threads > 0 ? n_threads : 1;
    const int64_t k = pq__prune_count(cols, sparsity);
    float *score = pq__malloc(ctx, sizeof(float) * (size_t)(cols * nt), "pruning scores");
    uint32_t *scratch = pq__malloc(ctx, sizeof(uint32_t) * (size_t)(cols * nt), "pruning scratch");
    if (!score || !scratch) {
        free(score);
        free(scratch);
        return PQ_ERR_NOMEM;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const int t = omp_get_thread_num();
        float *s = score + t * cols;
        uint32_t *tmp = scratch + t * cols;
        const float *w = W + r * cols;
        for (int64_t c = 0; c < cols; c++)
            s[c] = fabsf(w[c]) * (colscale ? colscale[c] : 1.0f);
        if (prune_m > 0) {
            for (int64_t c = 0; c < cols; c += prune_m)
                pq__mask_nm_cell(s + c, prune_m, prune_n, keep + r * cols + c, tmp);
        } else {
            pq__mask_k_smallest(s, cols, k, keep + r * cols, tmp);
        }
    }
    free(score);
    free(scratch);
    return PQ_OK;
}
