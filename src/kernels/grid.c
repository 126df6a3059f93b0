#include "kernels/grid.h"

#include <string.h>

void pq__grid_from_range(pq__grid_kind kind, int bits, float xmin, float xmax, float *scale, uint8_t *zero) {
    const float maxq = (float)((1 << bits) - 1);
    if (kind != PQ_GRID_ASYM) {
        /* reference: xmax = max(|xmin|, xmax); xmin = -xmax only if xmin < 0 */
        xmax = -xmin > xmax ? -xmin : xmax;
        if (xmin < 0.0f) xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    const float s = (xmax - xmin) / maxq;
    *scale = s;
    if (kind == PQ_GRID_ASYM) {
        float z = rintf(-xmin / s);
        z = z < 0.0f ? 0.0f : z > maxq ? maxq : z;
        *zero = (uint8_t)z;
    } else {
        *zero = (uint8_t)(1 << (bits - 1));
    }
}

/* Candidate scales of the MSE-searched symmetric grid, as multiples of the no-clip scale;
 * the reference scale is candidate 0. */
#define MSE_STEPS 8

void pq__grid_fit_tile(pq__grid_kind kind, int bits, const float *const *cols, const uint8_t *const *keep, int64_t nc,
                       int64_t T, float *scale, uint8_t *zero) {
    float mn[PQ_TILE], mx[PQ_TILE];
    for (int64_t r = 0; r < T; r++)
        mn[r] = mx[r] = 0.0f;
    for (int64_t c = 0; c < nc; c++) {
        const float *v = cols[c];
        if (keep) {
            const uint8_t *k = keep[c];
#pragma omp simd
            for (int64_t r = 0; r < T; r++) {
                const float x = k[r] ? v[r] : 0.0f;
                mn[r] = x < mn[r] ? x : mn[r];
                mx[r] = x > mx[r] ? x : mx[r];
            }
        } else {
#pragma omp simd
            for (int64_t r = 0; r < T; r++) {
                mn[r] = v[r] < mn[r] ? v[r] : mn[r];
                mx[r] = v[r] > mx[r] ? v[r] : mx[r];
            }
        }
    }
    if (kind != PQ_GRID_SYM_MSE) {
        for (int64_t r = 0; r < T; r++)
            pq__grid_from_range(kind, bits, mn[r], mx[r], &scale[r], &zero[r]);
        return;
    }
    /* Symmetric with a searched scale: zero fixed at 2^(b-1), so codes span
     * [-z, maxq - z] * scale. Candidates: the reference scale, then the smallest scale that
     * clips nothing, shrunk in 5% steps; the first with the least squared error wins. */
    const float maxq = (float)((1 << bits) - 1), z = (float)(1 << (bits - 1));
    float cand[MSE_STEPS + 1][PQ_TILE], err[MSE_STEPS + 1][PQ_TILE];
    for (int64_t r = 0; r < T; r++) {
        uint8_t zr;
        pq__grid_from_range(PQ_GRID_SYM_REF, bits, mn[r], mx[r], &cand[0][r], &zr);
        float nc_scale = -mn[r] / z;
        if (mx[r] / (maxq - z) > nc_scale) nc_scale = mx[r] / (maxq - z);
        for (int i = 0; i < MSE_STEPS; i++)
            cand[i + 1][r] = nc_scale > 0.0f ? nc_scale * (1.0f - 0.05f * (float)i) : cand[0][r];
        for (int i = 0; i <= MSE_STEPS; i++)
            err[i][r] = 0.0f;
    }
    for (int64_t c = 0; c < nc; c++) {
        const float *v = cols[c];
        const uint8_t *k = keep ? keep[c] : NULL;
        for (int i = 0; i <= MSE_STEPS; i++) {
            const float *s = cand[i];
            float *e = err[i];
#pragma omp simd
            for (int64_t r = 0; r < T; r++) {
                float code;
                const float d = v[r] - pq__quantize(v[r], s[r], z, maxq, &code);
                e[r] += (k && !k[r]) ? 0.0f : d * d;
            }
        }
    }
    for (int64_t r = 0; r < T; r++) {
        int best = 0;
        for (int i = 1; i <= MSE_STEPS; i++)
            if (err[i][r] < err[best][r]) best = i;
        scale[r] = cand[best][r];
        zero[r] = (uint8_t)z;
    }
}

/* The reference: one row at a time, each step written out; the same float operations in the
 * same order per row as the tiled version, so the two agree bit for bit. */
void pq__grid_fit_tile_ref(pq__grid_kind kind, int bits, const float *const *cols, const uint8_t *const *keep,
                           int64_t nc, int64_t T, float *scale, uint8_t *zero) {
    const float maxq = (float)((1 << bits) - 1), z = (float)(1 << (bits - 1));
    for (int64_t r = 0; r < T; r++) {
        float mn = 0.0f, mx = 0.0f; /* the range always includes 0 */
        for (int64_t c = 0; c < nc; c++) {
            if (keep && !keep[c][r]) continue;
            const float x = cols[c][r];
            if (x < mn) mn = x;
            if (x > mx) mx = x;
        }
        if (kind != PQ_GRID_SYM_MSE) {
            pq__grid_from_range(kind, bits, mn, mx, &scale[r], &zero[r]);
            continue;
        }
        float best_scale = 0.0f, best_err = 0.0f;
        for (int i = 0; i <= MSE_STEPS; i++) {
            float s;
            uint8_t zr;
            pq__grid_from_range(PQ_GRID_SYM_REF, bits, mn, mx, &s, &zr); /* candidate 0 */
            float no_clip = -mn / z;
            if (mx / (maxq - z) > no_clip) no_clip = mx / (maxq - z);
            if (i > 0 && no_clip > 0.0f) s = no_clip * (1.0f - 0.05f * (float)(i - 1));
            float err = 0.0f;
            for (int64_t c = 0; c < nc; c++) {
                if (keep && !keep[c][r]) continue;
                float code;
                const float d = cols[c][r] - pq__quantize(cols[c][r], s, z, maxq, &code);
                err += d * d;
            }
            if (i == 0 || err < best_err) {
                best_scale = s;
                best_err = err;
            }
        }
        scale[r] = best_scale;
        zero[r] = (uint8_t)z;
    }
}
