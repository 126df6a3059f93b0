/* --imatrix-out (pipeline.h): llama.cpp's importance matrix from the pipeline's own calibration,
 * so that llama-quantize can use the same statistics (a fair comparison of roundings). H =
 * 2 X^T X / N (calib.h), so the per-input sum of squares llama.cpp stores is diag(H) N / 2 and
 * its count N, the calibration tokens. With true-sequential stages the inputs are those of the
 * block as compressed so far, as llama-imatrix would see them on the compressed prefix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/imatrix.h"
#include "pipeline/pipeline.h"

pq_status pq__imatrix_record(pq__pipe *P, int64_t l, int i, const float *H, int64_t cols) {
    const double N = (double)(P->p.nsamples * P->p.seqlen);
    float *s = pq__malloc(P->ctx, sizeof(float) * (size_t)cols, "imatrix entry");
    if (!s) return PQ_ERR_NOMEM;
    for (int64_t c = 0; c < cols; c++)
        s[c] = (float)((double)H[c * cols + c] * N / 2.0);
    free(P->imat[l * PQ_BLOCK_LINEARS + i]);
    P->imat[l * PQ_BLOCK_LINEARS + i] = s;
    return PQ_OK;
}

pq_status pq__imatrix_save(pq__pipe *P) {
    const pq__config *c = &P->m->cfg;
    const int64_t n = c->n_layers * PQ_BLOCK_LINEARS, count = P->p.nsamples * P->p.seqlen;
    pq__imatrix_entry *e = pq__calloc(P->ctx, (size_t)n, sizeof *e, "imatrix entries");
    char(*names)[64] = pq__calloc(P->ctx, (size_t)n, sizeof *names, "imatrix names");
    pq_status st = e && names ? PQ_OK : PQ_ERR_NOMEM;
    int64_t k = 0;
    for (int64_t j = 0; j < n && st == PQ_OK; j++) {
        if (!P->imat[j]) continue; /* skipped linears have no statistics */
        char hf[160];
        pq__linear_name(hf, sizeof hf, j / PQ_BLOCK_LINEARS, (int)(j % PQ_BLOCK_LINEARS));
        snprintf(hf + strlen(hf), sizeof hf - strlen(hf), ".weight");
        pq__gguf_name_from_hf(hf, names[k], sizeof names[k]);
        e[k].name = names[k];
        e[k].ncols = pq__linear_dim(c, pq__block_linear[j % PQ_BLOCK_LINEARS].cols);
        e[k].n_mat = 1;
        e[k].sum2 = P->imat[j];
        e[k].counts = &count;
        k++;
    }
    const char *ds[1] = {P->p.calib_name ? P->p.calib_name : "calibration"};
    const pq__imatrix_meta meta = {ds, 1, (uint32_t)P->p.nsamples, (uint32_t)P->p.seqlen};
    if (st == PQ_OK) st = pq__imatrix_write(P->ctx, P->p.imatrix_out, e, k, &meta);
    free(e);
    free(names);
    return st;
}
