/* The blocked GEMM of qmat.h: Y [n, rows] = X [n, cols] W^T through packed panels.
 *
 *   A = X packed once, MR tokens x KC columns per panel ([kc][MR], zero-padded rows);
 *   for each KC block of columns (outermost: its A panels stay in L2 across row panels),
 *     each thread walks its own row panels: the NR weight rows decoded to float32 into a
 *     [kc][NR] B panel (per thread, KC x NR floats), then the microkernel adds every MR x NR
 *     tile of tokens x rows into Y.
 * Threads own disjoint row ranges of Y, so no two write the same element; the sum over a row
 * runs over KC blocks in order, the same for every thread count. */
#include <omp.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "kernels/qmat_impl.h"

enum { MR_PORT = 4, NR_PORT = 16 };

static void ukernel_portable(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int m, int nr) {
    float c[MR_PORT][NR_PORT] = {{0}};
    for (int64_t k = 0; k < kc; k++)
        for (int i = 0; i < MR_PORT; i++)
            for (int j = 0; j < NR_PORT; j++)
                c[i][j] += A[k * MR_PORT + i] * B[k * NR_PORT + j];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < nr; j++)
            C[i * ldc + j] += c[i][j];
}

void pq__qmat_bpack_portable(const pq__qmat *w, int64_t r0, int nr, int64_t c0, int64_t kc, float *B, int NR) {
    float row[PQ_GEMM_KC];
    for (int j = 0; j < NR; j++) {
        if (j < nr) pq__qmat_decode_seg(w, r0 + j, c0, kc, row);
        for (int64_t k = 0; k < kc; k++)
            B[k * NR + j] = j < nr ? row[k] : 0.0f;
    }
}

typedef struct gemm_plan {
    int MR, NR;
    pq__ukernel_fn ukernel;
    pq__bpack_fn bpack;
} gemm_plan;

static gemm_plan plan_for(pq__isa isa) {
    if (isa == PQ_ISA_AVX512)
        return (gemm_plan){PQ_GEMM_MR_AVX512, PQ_GEMM_NR_AVX512, pq__qmat_ukernel_avx512, pq__qmat_bpack_avx512};
    if (isa == PQ_ISA_AVX2)
        return (gemm_plan){PQ_GEMM_MR_AVX2, PQ_GEMM_NR_AVX2, pq__qmat_ukernel_avx2, pq__qmat_bpack_avx2};
    return (gemm_plan){MR_PORT, NR_PORT, ukernel_portable, pq__qmat_bpack_portable};
}

/* A panel of token block tb and column block starting at k0 (kc columns). */
static float *a_panel(float *Ap, int64_t n_tb, int MR, int64_t k0, int64_t tb, int64_t kc) {
    return Ap + k0 * n_tb * MR + tb * kc * MR;
}

static void pack_a(const float *x, int64_t n, int64_t K, int MR, int64_t n_tb, int64_t tb, float *Ap) {
    for (int64_t k0 = 0; k0 < K; k0 += PQ_GEMM_KC) {
        const int64_t kc = K - k0 < PQ_GEMM_KC ? K - k0 : PQ_GEMM_KC;
        float *dst = a_panel(Ap, n_tb, MR, k0, tb, kc);
        for (int i = 0; i < MR; i++) {
            const int64_t t = tb * MR + i;
            const float *src = x + t * K + k0;
            for (int64_t k = 0; k < kc; k++)
                dst[k * MR + i] = t < n ? src[k] : 0.0f;
        }
    }
}

int pq__qmat_gemm(pq_ctx *ctx, const pq__qmat *w, const float *x, const float *b, float *y, int64_t n, int n_threads,
                  pq__isa isa) {
    const gemm_plan P = plan_for(isa);
    const int64_t K = w->cols, R = w->rows, n_tb = (n + P.MR - 1) / P.MR, n_panels = (R + P.NR - 1) / P.NR;
    const int nt = n_threads > 0 ? n_threads : 1;
    void *own_a, *own_b;
    float *Ap = pq__qmat_work(ctx, PQ_SCRATCH_PANELS, (size_t)(n_tb * P.MR * K) * sizeof(float), &own_a);
    float *Bp =
        Ap ? pq__qmat_work(ctx, PQ_SCRATCH_WORK, (size_t)(PQ_GEMM_KC * P.NR * nt) * sizeof(float) + 64, &own_b)
           : NULL;
    if (!Bp) {
        free(own_a);
        return -1;
    }
    memset(y, 0, (size_t)(n * R) * sizeof(float));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (int64_t tb = 0; tb < n_tb; tb++)
            pack_a(x, n, K, P.MR, n_tb, tb, Ap);
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t p0 = n_panels * t / T, p1 = n_panels * (t + 1) / T;
        float *B = Bp + (size_t)(PQ_GEMM_KC * P.NR * t);
        for (int64_t k0 = 0; k0 < K; k0 += PQ_GEMM_KC) {
            const int64_t kc = K - k0 < PQ_GEMM_KC ? K - k0 : PQ_GEMM_KC;
            for (int64_t p = p0; p < p1; p++) {
                const int nr = R - p * P.NR < P.NR ? (int)(R - p * P.NR) : P.NR;
                P.bpack(w, p * P.NR, nr, k0, kc, B, P.NR);
                for (int64_t tb = 0; tb < n_tb; tb++) {
                    const int m = n - tb * P.MR < P.MR ? (int)(n - tb * P.MR) : P.MR;
                    P.ukernel(kc, a_panel(Ap, n_tb, P.MR, k0, tb, kc), B, y + tb * P.MR * R + p * P.NR, R, m, nr);
                }
            }
        }
    }
    free(own_a);
    free(own_b);
    if (b)
        for (int64_t i = 0; i < n; i++)
            for (int64_t r = 0; r < R; r++)
                y[i * R + r] += b[r];
    return 0;
}
