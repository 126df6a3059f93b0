/* Fitting ggml block parameters (see ggml_types.h): importance weights as llama.cpp forms
 * them, a continuous per-sub-block fit (a scan of scales, each refitted by weighted least
 * squares), then the search over the stored values (f16 scales; K-quants: super-block d /
 * dmin and the integer sub-block codes), every candidate scored by its exact weighted error
 * after rounding to nearest on the grid ggml will decode. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ggml_types.h"

void pq__ggml_weights(const pq__ggml_info *ti, const float *x, const float *qw, int64_t n, float *w) {
    const pq_dtype t = ti->dtype;
    if (t == PQ_DTYPE_Q8_0 || (!qw && !ti->kquant)) {
        for (int64_t i = 0; i < n; i++)
            w[i] = 1.0f;
        return;
    }
    if (!ti->kquant) { /* legacy with imatrix: sigma2 over the whole row */
        float s = 0;
        for (int64_t i = 0; i < n; i++)
            s += x[i] * x[i];
        float sigma2 = s / (float)n;
        for (int64_t i = 0; i < n; i++)
            w[i] = qw[i] * sqrtf(sigma2 + x[i] * x[i]);
        return;
    }
    for (int64_t k = 0; k < n; k += PQ_GGML_QK_K) {
        const float *xb = x + k;
        float *wb = w + k;
        float s = 0;
        for (int i = 0; i < PQ_GGML_QK_K; i++)
            s += xb[i] * xb[i];
        float sigma2 = (t == PQ_DTYPE_Q2_K ? 1 : 2) * s / PQ_GGML_QK_K;
        for (int i = 0; i < PQ_GGML_QK_K; i++) {
            if (qw && t == PQ_DTYPE_Q6_K)
                wb[i] = qw[k + i];
            else if (qw)
                wb[i] = qw[k + i] * sqrtf(sigma2 + xb[i] * xb[i]);
            else if (t == PQ_DTYPE_Q2_K)
                wb[i] = fabsf(xb[i]);
            else if (t == PQ_DTYPE_Q3_K || t == PQ_DTYPE_Q6_K)
                wb[i] = xb[i] * xb[i];
        }
        if (qw || (t != PQ_DTYPE_Q4_K && t != PQ_DTYPE_Q5_K)) continue;
        for (int j = 0; j < PQ_GGML_QK_K; j += 32) {
            float s2 = 0;
            for (int i = 0; i < 32; i++)
                s2 += xb[j + i] * xb[j + i];
            float av = sqrtf(s2 / 32);
            for (int i = 0; i < 32; i++)
                wb[j + i] = av + fabsf(xb[j + i]);
        }
    }
}

/* w * (x - v)^2 for the grid value v nearest to x: the same codes as pq__ggml_grid_round (its
 * nearest of q0-1..q0+1 does not depend on whether q0 came from x/a or x*(1/a): they differ by
 * at most one code, so the reciprocal is exact), values as pq__ggml_grid_value computes them
 * (no contraction in ISO C); zp: a zero-point grid a*(q - z), else an offset grid a*q + b. */
static inline double grid_term(float x, float w, float a, float inv, float b, float zf, float mq, int zp) {
    float t = zp ? x * inv + zf : (x - b) * inv;
    t = t > 0.0f ? t : 0.0f;
    float q0 = rintf(t < mq ? t : mq), qm = q0 > 0 ? q0 - 1 : 0, qp = q0 < mq ? q0 + 1 : mq;
    float vm = zp ? a * (qm - zf) : a * qm + b, v0 = zp ? a * (q0 - zf) : a * q0 + b;
    float vp = zp ? a * (qp - zf) : a * qp + b, v = vm, be = fabsf(x - vm);
    float e0 = fabsf(x - v0), ep = fabsf(x - vp);
    v = e0 < be ? v0 : v, be = e0 < be ? e0 : be; /* ties: the lower code */
    v = ep < be ? vp : v;
    double e = (double)x - v;
    return (double)w * e * e;
}

#define GRID_LANES 8
/* The sum in GRID_LANES partial sums (lane j: the elements i = j mod GRID_LANES, then the lanes
 * in order and the tail): a fixed order that the compiler vectorizes without reassociating, so
 * the result does not depend on the vector width. */
static inline double grid_sum(const float *restrict x, const float *restrict w, int n, float a, float b, float zf,
                              float mq, int zp) {
    const float inv = 1.0f / a;
    double acc[GRID_LANES] = {0};
    int i = 0;
    for (; i + GRID_LANES <= n; i += GRID_LANES)
        for (int j = 0; j < GRID_LANES; j++)
            acc[j] += grid_term(x[i + j], w[i + j], a, inv, b, zf, mq, zp);
    double s = 0;
    for (int j = 0; j < GRID_LANES; j++)
        s += acc[j];
    for (; i < n; i++)
        s += grid_term(x[i], w[i], a, inv, b, zf, mq, zp);
    return s;
}

/* Weighted error of x[n] rounded to nearest on g (w: [n], never NULL here). */
static double grid_err(const pq__ggml_grid *g, const float *restrict x, const float *restrict w, int n) {
    const float a = g->a, b = g->b, zf = (float)g->z, mq = (float)g->maxq;
    if (!(a != 0.0f) || !isfinite(a)) { /* every element on code z */
        double s = 0;
        for (int i = 0; i < n; i++) {
            double e = (double)x[i] - pq__ggml_grid_value(g, g->z);
            s += (double)w[i] * e * e;
        }
        return s;
    }
    return g->z ? grid_sum(x, w, n, a, b, zf, mq, 1) : grid_sum(x, w, n, a, b, zf, mq, 0);
}

/* ---------------------------------------------------------------- continuous fit */

#define REAL_COARSE 5 /* step of the coarse scan of the stretch t */

/* Error of the real grid value = s*k + b (k in [kmin, kmax]) with rounding to nearest;
 * optionally the least-squares (s, b) for those k (b fixed at 0 when sym). Float sums over
 * one sub-block (<= 32 elements) are ample for ranking candidates and let the loop
 * vectorize; the f16 search below scores exactly. */
static double real_err(const float *restrict x, const float *restrict w, int n, int kmin, int kmax, double s,
                       double b, int sym, double *s_ls, double *b_ls) {
    const float sf = (float)s, bf = (float)b, inv = s != 0 ? (float)(1.0 / s) : 0.0f;
    const float lo = (float)kmin, hi = (float)kmax;
    /* GRID_LANES partial sums of each, in a fixed order (see grid_sum): the loop vectorizes */
    float le[GRID_LANES] = {0}, lw[GRID_LANES] = {0}, lk[GRID_LANES] = {0}, lkk[GRID_LANES] = {0};
    float lx[GRID_LANES] = {0}, lkx[GRID_LANES] = {0};
    int i = 0;
    for (; i + GRID_LANES <= n; i += GRID_LANES)
        for (int j = 0; j < GRID_LANES; j++) {
            const float xi = x[i + j], wi = w[i + j];
            float k = rintf((xi - bf) * inv);
            k = k < lo ? lo : k > hi ? hi : k;
            const float e = xi - (sf * k + bf);
            le[j] += wi * e * e, lw[j] += wi, lk[j] += wi * k, lkk[j] += wi * k * k, lx[j] += wi * xi;
            lkx[j] += wi * k * xi;
        }
    float err = 0, sw = 0, sk = 0, skk = 0, sx = 0, skx = 0;
    for (int j = 0; j < GRID_LANES; j++)
        err += le[j], sw += lw[j], sk += lk[j], skk += lkk[j], sx += lx[j], skx += lkx[j];
    for (; i < n; i++) {
        float k = rintf((x[i] - bf) * inv);
        k = k < lo ? lo : k > hi ? hi : k;
        float e = x[i] - (sf * k + bf), wi = w[i];
        err += wi * e * e;
        sw += wi, sk += wi * k, skk += wi * k * k, sx += wi * x[i], skx += wi * k * x[i];
    }
    if (s_ls) {
        *s_ls = s, *b_ls = b;
        double det = (double)sw * skk - (double)sk * sk;
        if (sym && skk > 0)
            *s_ls = (double)skx / skk;
        else if (!sym && det > 1e-6 * (double)sw * skk) {
            *s_ls = ((double)sw * skx - (double)sk * sx) / det;
            *b_ls = ((double)skk * sx - (double)sk * skx) / det;
        }
    }
    return err;
}

/* One sub-block's continuous search: value = s*k + b, k integer in [kmin, kmax]. */
typedef void (*visit_fn)(void *u, double s, double b);
typedef struct real_fit {
    const float *x, *w;
    int n, kmin, kmax, sym, nonpos_b;
    float lo, hi, mx;  /* range (lo <= 0 when nonpos_b), element of largest magnitude */
    double best, s, b; /* best error so far and its (s, b) */
    visit_fn visit;
    void *u;
} real_fit;

/* Candidate (end, t): the range stretched by 0.05*t codes; affine: cut by cl = end/3 steps
 * at the low end and ch = end%3 at the high end (clipping outliers of low importance);
 * sym: the largest element on code kmax (end 1) or kmin (end 0). Rounding and least
 * squares then alternate. Returns the candidate's best error. */
static double real_try(real_fit *f, int end, int t) {
    double s0, b0 = f->sym ? 0 : f->lo, s1, b1, own = INFINITY;
    if (f->sym) {
        double k = (end ? f->kmax : f->kmin) + 0.05 * t;
        if (fabs(k) < 0.5) return INFINITY;
        s0 = f->mx / k;
    } else {
        double cl = end / 3, ch = end % 3;
        if (cl + ch >= f->kmax - f->kmin) return INFINITY;
        s0 = (f->hi - f->lo) / ((f->kmax - f->kmin) + 0.05 * t + cl + ch);
        b0 = f->lo + cl * s0;
        if (f->nonpos_b && b0 > 0) b0 = 0;
    }
    for (int it = 0; it < 3; it++) {
        double e = real_err(f->x, f->w, f->n, f->kmin, f->kmax, s0, b0, f->sym, &s1, &b1);
        own = e < own ? e : own;
        if (e < f->best) f->best = e, f->s = s0, f->b = b0;
        if (f->visit && e <= 1.05 * f->best) f->visit(f->u, s0, b0); /* near-best ones only */
        if (f->nonpos_b && b1 > 0) b1 = 0;
        if (s1 == s0 && b1 == b0) break;
        s0 = s1, b0 = b1;
    }
    return own;
}

/* Best real (scale, offset) for one sub-block; sym: b = 0; nonpos_b: b <= 0 (K-quant mins).
 * The error is smooth enough in the stretch t that a coarse scan (every 5th t) and a fine
 * one around each end's best coarse t find what the exhaustive scan of 61 t found. */
static void fit_real(const float *x, const float *w, int n, int kmin, int kmax, int sym, int nonpos_b, double *s_out,
                     double *b_out, visit_fn visit, void *u) {
    real_fit f = {.x = x,
                  .w = w,
                  .n = n,
                  .kmin = kmin,
                  .kmax = kmax,
                  .sym = sym,
                  .nonpos_b = nonpos_b,
                  .lo = x[0],
                  .hi = x[0],
                  .visit = visit,
                  .u = u};
    float amax = 0;
    for (int i = 0; i < n; i++) {
        f.lo = x[i] < f.lo ? x[i] : f.lo, f.hi = x[i] > f.hi ? x[i] : f.hi;
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), f.mx = x[i];
    }
    if (nonpos_b && f.lo > 0) f.lo = 0;
    *s_out = 0, *b_out = sym ? 0 : f.lo;
    if (sym ? amax == 0 : f.hi == f.lo) return;
    f.best = real_err(x, w, n, kmin, kmax, 0, *b_out, sym, NULL, NULL), f.s = 0, f.b = *b_out;
    for (int end = 0; end < (sym ? 2 : 9); end++) {
        double eb = INFINITY;
        int tb = 0;
        for (int t = -30; t <= 30; t += REAL_COARSE) {
            double e = real_try(&f, end, t);
            if (e < eb) eb = e, tb = t;
        }
        if (eb == INFINITY) continue;
        for (int t = tb - REAL_COARSE + 1; t < tb + REAL_COARSE; t++)
            if (t != tb && t >= -30 && t <= 30) real_try(&f, end, t);
    }
    *s_out = f.s, *b_out = f.b;
}

/* ---------------------------------------------------------------- legacy blocks */

static uint16_t f16_step(uint16_t h, int k) { /* k ulps away from h, towards larger magnitude */
    int v = (int)(h & 0x7fff) + k;
    if (v < 0 || v >= 0x7c00) return h;
    return (uint16_t)((h & 0x8000) | v);
}

/* Best f16 (d, m) within r ulps of the real (s, b); keeps *p when nothing is better. */
static void legacy_near(const pq__ggml_info *ti, const float *x, const float *w, double s, double b, int r,
                        pq__ggml_params *p, double *best) {
    const int sym = ti->z != 0;
    uint16_t d0 = pq__f32_to_f16((float)s), m0 = pq__f32_to_f16((float)b);
    pq__ggml_params c = *p;
    for (int i = -r; i <= r; i++)
        for (int j = sym ? 0 : -r; j <= (sym ? 0 : r); j++) {
            c.d = f16_step(d0, i);
            c.dmin = sym ? 0 : f16_step(m0, j);
            pq__ggml_grid g;
            pq__ggml_grid_of(ti, &c, 0, &g);
            double e = grid_err(&g, x, w, ti->block);
            if (e < *best) *best = e, *p = c;
        }
}

typedef struct legacy_ctx {
    const pq__ggml_info *ti;
    const float *x, *w;
    pq__ggml_params *p;
    double *best;
} legacy_ctx;
/* Every real candidate of the scan is tried on f16: the best real one need not be the best
 * after the f16 rounding of its scale and min. */
static void legacy_visit(void *u, double s, double b) {
    legacy_ctx *c = u;
    legacy_near(c->ti, c->x, c->w, s, b, 1, c->p, c->best);
}

static void fit_legacy(const pq__ggml_info *ti, const float *x, const float *w, pq__ggml_params *p) {
    const int n = ti->block, sym = ti->z != 0;
    double s, b, best = INFINITY;
    memset(p, 0, sizeof *p);
    legacy_ctx lc = {.ti = ti, .x = x, .w = w, .p = p, .best = &best};
    fit_real(x, w, n, -ti->z, ti->maxq - ti->z, sym, 0, &s, &b, legacy_visit, &lc);
    legacy_near(ti, x, w, s, b, 3, p, &best);
    /* refinement: least squares on the codes of the best f16 grid, then its neighbourhood */
    for (int it = 0; it < 4; it++) {
        pq__ggml_grid g;
        pq__ggml_grid_of(ti, p, 0, &g);
        double sw = 0, sk = 0, skk = 0, sx = 0, skx = 0;
        for (int i = 0; i < n; i++) {
            double wi = w[i], k = pq__ggml_grid_round(&g, x[i], NULL) - ti->z;
            sw += wi, sk += wi * k, skk += wi * k * k, sx += wi * x[i], skx += wi * k * x[i];
        }
        double det = sw * skk - sk * sk, s1 = s, b1 = 0;
        if (sym && skk > 0)
            s1 = skx / skk;
        else if (!sym && det > 1e-12 * sw * skk)
            s1 = (sw * skx - sk * sx) / det, b1 = (skk * sx - sk * skx) / det;
        else
            break;
        double before = best;
        legacy_near(ti, x, w, s1, b1, 2, p, &best);
        if (!(best < before)) break;
    }
}

/* ---------------------------------------------------------------- K-quant super-blocks */

typedef struct kfit {
    const pq__ggml_info *ti;
    const float *x, *w;  /* [256] */
    double s[16], m[16]; /* real sub-block scales and mins (value = s*k - m) */
    int nsub;
} kfit;

/* Best sub-block codes for fixed d / dmin: each sub-block independently, codes near the
 * real ones. Returns the total error; p->sc/mn filled. */
static double kfit_codes(const kfit *f, pq__ggml_params *p) {
    const pq__ggml_info *ti = f->ti;
    const int sym = ti->z != 0, sub = ti->sub;
    float d = pq__f16_to_f32(p->d), dm = pq__f16_to_f32(p->dmin);
    double total = 0;
    for (int j = 0; j < f->nsub; j++) {
        int c0 = d != 0 ? (int)lrint(f->s[j] / d) : 0, m0 = (!sym && dm != 0) ? (int)lrint(f->m[j] / dm) : 0;
        double best = INFINITY;
        int bc = 0, bm = 0;
        for (int dc = -1; dc <= 1; dc++)
            for (int dmn = sym ? 0 : -1; dmn <= (sym ? 0 : 1); dmn++) {
                int c = c0 + dc, m = m0 + dmn;
                c = c < ti->sc_min ? ti->sc_min : c > ti->sc_max ? ti->sc_max : c;
                m = m < 0 ? 0 : m > ti->mn_max ? ti->mn_max : m;
                p->sc[j] = (int16_t)c, p->mn[j] = (int16_t)m;
                pq__ggml_grid g;
                pq__ggml_grid_of(ti, p, j, &g);
                double e = grid_err(&g, f->x + j * sub, f->w + j * sub, sub);
                if (e < best) best = e, bc = c, bm = m;
            }
        p->sc[j] = (int16_t)bc, p->mn[j] = (int16_t)bm;
        total += best;
    }
    return total;
}

/* Tries super-block scale h (f16 bits) for d (which = 0) or dmin (1); keeps it if better. */
static void kfit_try(const kfit *f, pq__ggml_params *best, double *best_e, int which, uint16_t h) {
    pq__ggml_params c = *best;
    if (which)
        c.dmin = h;
    else
        c.d = h;
    double e = kfit_codes(f, &c);
    if (e < *best_e) *best_e = e, *best = c;
}

static void fit_kquant(const pq__ggml_info *ti, const float *x, const float *w, pq__ggml_params *p) {
    kfit f = {.ti = ti, .x = x, .w = w, .nsub = ti->block / ti->sub};
    const int sym = ti->z != 0;
    double smax = 0, mmax = 0;
    for (int j = 0; j < f.nsub; j++) {
        double s, b;
        fit_real(x + j * ti->sub, w + j * ti->sub, ti->sub, -ti->z, ti->maxq - ti->z, sym, 1, &s, &b, NULL, NULL);
        f.s[j] = s, f.m[j] = -b;
        if (fabs(s) > fabs(smax)) smax = s;
        if (-b > mmax) mmax = -b;
    }
    memset(p, 0, sizeof *p);
    double best_e = kfit_codes(&f, p);
    /* candidates: the largest real scale (min) mapped onto the ends of the code range */
    for (int round = 0; round < 2; round++) {
        for (int which = 0; which < (sym ? 1 : 2); which++) {
            double top = which ? mmax : smax;
            if (top == 0) continue;
            for (int t = 0; t <= 8; t++) {
                int ends = sym ? 2 : 1;
                for (int e = 0; e < ends; e++) {
                    double hi = which ? ti->mn_max : (e ? ti->sc_min : ti->sc_max);
                    double k = hi > 0 ? hi - 0.5 * t : hi + 0.5 * t;
                    if (fabs(k) < 1) continue;
                    kfit_try(&f, p, &best_e, which, pq__f32_to_f16((float)(top / k)));
                }
            }
            uint16_t h0 = which ? p->dmin : p->d;
            for (int u = -2; u <= 2; u++)
                if (u) kfit_try(&f, p, &best_e, which, f16_step(h0, u));
        }
    }
}

void pq__ggml_fit_row(const pq__ggml_info *ti, const float *x, const float *w, int64_t n, pq__ggml_params *p) {
    float ones[PQ_GGML_QK_K]; /* w NULL: the inner loops always weigh (no branch per element) */
    for (int i = 0; i < PQ_GGML_QK_K; i++)
        ones[i] = 1.0f;
    for (int64_t k = 0; k < n / ti->block; k++) {
        const float *xb = x + k * ti->block, *wb = w ? w + k * ti->block : ones;
        if (ti->kquant)
            fit_kquant(ti, xb, wb, &p[k]);
        else
            fit_legacy(ti, xb, wb, &p[k]);
    }
}

void pq__ggml_round_row(const pq__ggml_info *ti, const pq__ggml_params *p, const float *x, int64_t n, uint8_t *codes,
                        float *deq) {
    for (int64_t i = 0; i < n; i += ti->sub) {
        pq__ggml_grid g;
        pq__ggml_grid_at(ti, p, i, &g);
        for (int64_t e = i; e < i + ti->sub; e++) {
            float v;
            codes[e] = (uint8_t)pq__ggml_grid_round(&g, x[e], &v);
            if (deq) deq[e] = v;
        }
    }
}

int pq__ggml_quantize_row(const pq__ggml_info *ti, const float *x, const float *w, int64_t n, void *dst) {
    pq__ggml_params *p = malloc((size_t)(n / ti->block) * sizeof *p);
    uint8_t *codes = malloc((size_t)n);
    if (!p || !codes) {
        free(p);
        free(codes);
        return 0;
    }
    pq__ggml_fit_row(ti, x, w, n, p);
    pq__ggml_round_row(ti, p, x, n, codes, NULL);
    pq__ggml_encode_row(ti, p, codes, n, dst);
    free(p);
    free(codes);
    return 1;
}
