/* pq_model_sparsity (prunequant-pipeline.h): per linear, the stored sparsity, the N:M
 * pattern it satisfies, its stored bytes part by part and their information bound; ACr and
 * bits per weight over all linears. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "model/model.h"
#include "model/packed.h"
#include "prunequant-pipeline.h"

/* Smallest count of zeros over the cells of M consecutive inputs (-1 if M does not divide cols). */
static int64_t min_cell_zeros(const float *w, int64_t rows, int64_t cols, int M) {
    if (cols % M) return -1;
    int64_t best = M;
    for (int64_t r = 0; r < rows && best > 0; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += M) {
            int64_t z = 0;
            for (int k = 0; k < M; k++)
                z += w[r * cols + c0 + k] == 0.0f;
            if (z < best) best = z;
        }
    return best;
}

/* A model loaded with deferred weights is decoded one linear at a time (the summary of a
 * compress run reads its output so, in the memory of one linear). */
pq_status pq_model_sparsity(pq_ctx *ctx, const pq_model *m, pq_sparsity_report *out) {
    memset(out, 0, sizeof *out);
    const pq__config *c = &m->cfg;
    out->layers = pq__calloc(ctx, (size_t)(PQ_BLOCK_LINEARS * c->n_layers), sizeof *out->layers, "sparsity report");
    if (!out->layers) return ctx->status;
    double stored = 0, fp16 = 0, params = 0, bound = 0;
    for (int64_t l = 0; l < c->n_layers; l++) {
        for (int i = 0; i < PQ_BLOCK_LINEARS; i++) {
            const pq__linear *lin = pq__block_linear_get(&m->blocks[l], i);
            pq_sparsity_entry *e = &out->layers[out->n_layers++];
            pq__linear_name(e->name, sizeof e->name, l, i);
            const int64_t rows = lin->rows, cols = lin->cols, n = rows * cols;
            e->rows = rows;
            e->cols = cols;
            float *own = NULL;
            const float *w = lin->w.kind == PQ_QMAT_F32 ? lin->w.data : NULL;
            if (m->deferred) {
                pq_status st = pq__model_linear_f32(ctx, m, e->name, rows, cols, &own);
                if (st) {
                    pq_sparsity_report_free(out);
                    return st;
                }
                w = own;
            } else if (!w) { /* stored as float16 / bfloat16 / codes: their float32 values */
                if (!(own = pq__malloc(ctx, (size_t)n * sizeof(float), e->name))) {
                    pq_sparsity_report_free(out);
                    return ctx->status;
                }
                pq__qmat_rows_f32(&lin->w, 0, rows, own);
                w = own;
            }
            int64_t z = 0;
            for (int64_t k = 0; k < n; k++)
                z += w[k] == 0.0f;
            e->sparsity = n ? (double)z / (double)n : 0;
            static const int Ms[2] = {4, 8};
            for (int k = 0; k < 2 && !e->pattern_m; k++) {
                int64_t mz = min_cell_zeros(w, rows, cols, Ms[k]);
                if (mz > 0) {
                    e->pattern_n = (int)mz;
                    e->pattern_m = Ms[k];
                    e->pattern_ok = 1;
                }
            }
            free(own);
            e->bytes = (int64_t)pq__linear_stored_bytes(&m->src, e->name, n);
            const int packed = pq__source_has_packed(&m->src, e->name);
            out->packed |= packed;
            stored += (double)e->bytes;
            if (packed) {
                pq__packed_parts pp;
                pq__packed_parts_of(&m->src, e->name, rows, cols, &pp);
                e->codes_bytes = pp.codes, e->scales_bytes = pp.scales, e->zeros_bytes = pp.zeros;
                e->g_idx_bytes = pp.g_idx, e->mask_bytes = pp.mask, e->values_bytes = pp.values;
                e->bits = pp.bits;
                e->kept = pp.kept;
                e->mask_bound = pp.mask_bound_bits / 8;
                e->bound_bytes = (double)pp.kept * pp.bits / 8 + e->mask_bound +
                                 (double)(pp.scales + pp.zeros + pp.g_idx + pp.values);
            } else {
                e->weight_bytes = e->bytes;
                e->kept = n;
                e->bound_bytes = (double)e->bytes;
            }
            bound += e->bound_bytes;
            fp16 += 2.0 * (double)n;
            params += (double)n;
        }
    }
    out->acr = fp16 > 0 ? 1 - stored / fp16 : 0;
    out->bpw = params > 0 ? 8 * stored / params : 0;
    out->bound_bpw = params > 0 ? 8 * bound / params : 0;
    return PQ_OK;
}

void pq_sparsity_report_free(pq_sparsity_report *r) {
    if (!r) return;
    free(r->layers);
    memset(r, 0, sizeof *r);
}
