/* The layer recipe's parameters: defaults, method names, N:M patterns and the one set of
 * ranges every caller validates against (prunequant-compress.h). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "prunequant-compress.h"
#include "common/common.h"
#include "linalg/linalg.h"

pq_layer_params pq_layer_params_default(void) {
    pq_layer_params p;
    memset(&p, 0, sizeof p);
    p.prune = PQ_PRUNE_NONE;
    p.sparsity = 0.5;
    p.quant = PQ_QUANT_GPTQ;
    p.bits = 4;
    p.group_size = -1;
    p.percdamp = 0.01;
    p.blocksize = 128;
    p.joint = PQ_JOINT_A;
    p.keep_mask = 1; /* a recipe's pattern and sparsity hold in the output (mode a re-masks) */
    p.error_mode = PQ_ERROR_AUTO;
    return p;
}

static const char *const prune_names[] = {"none", "magnitude", "wanda", "sparsegpt"};
static const char *const quant_names[] = {"none", "rtn", "gptq"};
static const char *const joint_names[] = {"a", "b", "fused"};

const char *pq_prune_method_name(pq_prune_method m) {
    return (unsigned)m < 4 ? prune_names[m] : "?";
}
const char *pq_quant_method_name(pq_quant_method m) {
    return (unsigned)m < 3 ? quant_names[m] : "?";
}
const char *pq_joint_mode_name(pq_joint_mode m) {
    return (unsigned)m < 3 ? joint_names[m] : "?";
}

static int parse_name(const char *s, const char *const *names, int n) {
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}
int pq_prune_method_parse(const char *s, pq_prune_method *out) {
    const int i = parse_name(s, prune_names, 4);
    if (i < 0) return -1;
    *out = (pq_prune_method)i;
    return 0;
}
int pq_quant_method_parse(const char *s, pq_quant_method *out) {
    const int i = parse_name(s, quant_names, 3);
    if (i < 0) return -1;
    *out = (pq_quant_method)i;
    return 0;
}
int pq_joint_mode_parse(const char *s, pq_joint_mode *out) {
    const int i = parse_name(s, joint_names, 3);
    if (i < 0) return -1;
    *out = (pq_joint_mode)i;
    return 0;
}

pq_status pq_pattern_parse(pq_ctx *ctx, const char *s, int *n, int *m) {
    long a = -1, b = -1;
    int used = 0;
    if (!s || sscanf(s, "%ld:%ld%n", &a, &b, &used) != 2 || s[used] != '\0' || s[0] < '0' || s[0] > '9' || a < 0 ||
        b < 0 || a > INT_MAX || b > INT_MAX || !strchr("0123456789", *(strchr(s, ':') + 1)))
        return pq__fail(ctx, PQ_ERR_INVALID, "bad pattern '%s' (expected N:M, e.g. 2:4)", s ? s : "");
    *n = (int)a;
    *m = (int)b;
    return PQ_OK;
}

pq_status pq_layer_params_validate(pq_ctx *ctx, const pq_layer_params *p, int64_t cols) {
    if ((unsigned)p->prune > PQ_PRUNE_SPARSEGPT)
        return pq__fail(ctx, PQ_ERR_INVALID, "unknown prune method %d", p->prune);
    if ((unsigned)p->quant > PQ_QUANT_GPTQ) return pq__fail(ctx, PQ_ERR_INVALID, "unknown quant method %d", p->quant);
    if ((unsigned)p->joint > PQ_JOINT_FUSED) return pq__fail(ctx, PQ_ERR_INVALID, "unknown joint mode %d", p->joint);
    if ((unsigned)p->error_mode > PQ_ERROR_NONE)
        return pq__fail(ctx, PQ_ERR_INVALID, "unknown error mode %d", p->error_mode);
    const int pattern = p->prune_n != 0 || p->prune_m != 0;
    if (p->prune != PQ_PRUNE_NONE) {
        if (pattern) {
            if (!(p->prune_n > 0 && p->prune_n < p->prune_m))
                return pq__fail(ctx, PQ_ERR_INVALID, "pattern %d:%d: N:M needs 0 < N < M", p->prune_n, p->prune_m);
            if (cols > 0 && cols % p->prune_m != 0)
                return pq__fail(ctx, PQ_ERR_INVALID, "pattern %d:%d: M = %d does not divide cols = %lld", p->prune_n,
                                p->prune_m, p->prune_m, (long long)cols);
        } else if (!(p->sparsity >= 0.0 && p->sparsity < 1.0)) {
            return pq__fail(ctx, PQ_ERR_INVALID, "sparsity must be in [0, 1) (got %g)", p->sparsity);
        }
    }
    if (p->quant != PQ_QUANT_NONE) {
        if (p->bits < 2 || p->bits > 8) return pq__fail(ctx, PQ_ERR_INVALID, "bits must be 2..8 (got %d)", p->bits);
        if (p->group_size != -1 && p->group_size <= 0)
            return pq__fail(ctx, PQ_ERR_INVALID, "group size must be -1 (per row) or positive (got %lld)",
                            (long long)p->group_size);
        if (cols > 0 && p->group_size > 0 && cols % p->group_size != 0)
            return pq__fail(ctx, PQ_ERR_INVALID, "group size %lld does not divide cols = %lld",
                            (long long)p->group_size, (long long)cols);
    }
    if (!(p->percdamp >= 0.0 && p->percdamp <= PQ_MAX_PERCDAMP))
        return pq__fail(ctx, PQ_ERR_INVALID, "percdamp must be in [0, %g] (got %g)", PQ_MAX_PERCDAMP, p->percdamp);
    if (p->blocksize < 1)
        return pq__fail(ctx, PQ_ERR_INVALID, "blocksize must be >= 1 (got %lld)", (long long)p->blocksize);
    if (p->prune != PQ_PRUNE_NONE && p->quant != PQ_QUANT_NONE && p->joint == PQ_JOINT_FUSED) {
        if (p->quant != PQ_QUANT_GPTQ)
            return pq__fail(ctx, PQ_ERR_INVALID, "joint mode fused is one GPTQ sweep: it needs quant gptq");
        if (p->reference && p->group_size != -1)
            return pq__fail(ctx, PQ_ERR_INVALID, "reference fused mode (SparseGPT) supports no groups");
        if (p->reference && p->act_order)
            return pq__fail(ctx, PQ_ERR_INVALID, "reference fused mode (SparseGPT) supports no act-order");
        if (pattern && p->act_order && p->prune == PQ_PRUNE_SPARSEGPT)
            return pq__fail(ctx, PQ_ERR_INVALID,
                            "act-order cannot be combined with an N:M pattern in fused mode (cells are consecutive "
                            "original columns)");
    }
    return PQ_OK;
}
