/* Per-tensor type mixture of a quantized GGUF file: the choice llama-quantize of llama.cpp
 * v0.4.0 (commit 5b4ebc5, src/llama-quant.cpp) makes for every tensor of a model, written
 * from the rules read in that source (no code of it is copied).
 *
 * Names (case-insensitive, as llama-quantize parses them):
 * - presets, llama-quantize's ftypes with its default options: Q8_0, Q6_K, Q5_K_M, Q5_K_S,
 *   Q4_K_M, Q4_K_S, Q3_K_L, Q3_K_M, Q3_K_S, Q2_K, Q5_0, Q5_1, Q4_0, Q4_1 (also F16, BF16,
 *   F32). The mixture: output.weight (and token_embd.weight when there is no output.weight:
 *   tied) in Q6_K (Q8_0 for Q8_0; Q8_0 when its rows do not split into the default type's
 *   blocks), attn_v / ffn_down / attn_output bumped per preset and layer (use_more_bits),
 *   the rest in the preset's default type.
 * - plain types Q5_K, Q4_K, Q3_K: every quantizable tensor in that type ("pure"), which is
 *   llama-quantize --pure with the *_M ftype of that type. NOTE: llama-quantize itself reads
 *   "Q4_K" as an alias of the Q4_K_M preset; prunequant does not.
 * - params.pure applies the pure rule to any name (e.g. pure Q4_0 puts output.weight in Q4_0).
 * In every case a tensor whose rows (ne[0]) do not split into blocks of the chosen type falls
 * back: Q2_K, Q3_K -> Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; a 32-block type stays;
 * and if the fallback still does not divide, F16.
 *
 * Never quantized (keep their input type): tensors with fewer than 2 dims (as ggml counts
 * them: trailing ne of 1 do not count), names not ending in "weight", norms ("_norm.weight"),
 * output.weight under leave_output, MoE gates (ffn_gate_inp), position / token-type
 * embeddings and the other small tensors llama-quantize lists (conv1d, altup, rel_pos, ...). */
#ifndef PQ_QUANT_GGUF_MIX_H
#define PQ_QUANT_GGUF_MIX_H

#include "common/common.h"

/* ggml tensor type ids (as numbered in ggml.h and in GGUF files). */
enum {
    PQ_MIX_F32 = 0,
    PQ_MIX_F16 = 1,
    PQ_MIX_Q4_0 = 2,
    PQ_MIX_Q4_1 = 3,
    PQ_MIX_Q5_0 = 6,
    PQ_MIX_Q5_1 = 7,
    PQ_MIX_Q8_0 = 8,
    PQ_MIX_Q2_K = 10,
    PQ_MIX_Q3_K = 11,
    PQ_MIX_Q4_K = 12,
    PQ_MIX_Q5_K = 13,
    PQ_MIX_Q6_K = 14,
    PQ_MIX_BF16 = 30
};

/* What the rules read of the model (llama.cpp's hparams). */
typedef struct pq__gguf_mix_model {
    const char *arch;          /* general.architecture: "llama", "qwen2", ... ("falcon" has own rules) */
    int64_t n_layers;          /* block_count (divides the ffn_down layers into eighths / sixteenths) */
    int64_t n_head, n_head_kv; /* of layer 0: n_gqa = n_head / n_head_kv (0 if n_head_kv is 0) */
    int64_t n_expert;          /* 0 or 1: dense */
} pq__gguf_mix_model;

/* One tensor of the file, in any order (the plan visits them in llama.cpp's order:
 * non-block tensors first, then by block number, each group by name). */
typedef struct pq__gguf_mix_tensor {
    const char *name; /* GGUF name: "blk.3.attn_v.weight", "token_embd.weight", ... */
    int64_t ne[4];    /* GGUF order: ne[0] = row length (input features); unused dims 1 */
    int type;         /* its type in the input file: kept when the tensor is not quantized */
} pq__gguf_mix_tensor;

/* llama-quantize's options that change the mixture. */
typedef struct pq__gguf_mix_params {
    int pure;            /* --pure: no mixture, every quantizable tensor in the default type */
    int has_imatrix;     /* --imatrix given: Q4_0 / Q5_0 put the first n_layers/8 ffn_down in Q4_1 / Q5_1 */
    int leave_output;    /* --leave-output-tensor: output.weight keeps its type */
    int output_type;     /* --output-tensor-type (a PQ_MIX_* id) or -1 */
    int token_embd_type; /* --token-embedding-type (a PQ_MIX_* id) or -1 */
} pq__gguf_mix_params;

/* pure 0, no imatrix, output quantized, no type overrides: llama-quantize's defaults. */
pq__gguf_mix_params pq__gguf_mix_params_default(void);

/* Parses a name (see above). *ftype: llama.cpp's LLAMA_FTYPE (general.file_type that
 * llama-quantize writes; *_M for the plain K types); *default_type: PQ_MIX_*; *pure: 1 for
 * the plain K types. Any output may be NULL. Returns 0 for an unknown name. */
int pq__gguf_mix_parse(const char *name, int *ftype, int *default_type, int *pure);

/* Block size (elements per block) of a PQ_MIX_* type: 1 for float types, 0 when unknown. */
int64_t pq__gguf_mix_block_size(int type);
/* Name ("Q4_K") of a PQ_MIX_* type, or "unknown". */
const char *pq__gguf_mix_type_name(int type);

/* The type a tensor with rows of ncols elements gets instead of type (the fallback above);
 * type itself when ncols divides into its blocks. */
int pq__gguf_mix_fallback(int type, int64_t ncols);

/* Whether llama-quantize quantizes this tensor at all (name + dims rule above). */
int pq__gguf_mix_quantizable(const pq__gguf_mix_tensor *t, int leave_output);

/* types_out [n]: the ggml type of each tensor t [n] (same order) under preset. p may be NULL
 * (defaults). Fails with PQ_ERR_INVALID for an unknown preset or override type, and for MoE
 * models (n_expert > 1) whose ffn tensors name no valid block. */
pq_status pq__gguf_mix_plan(pq_ctx *ctx, const char *preset, const pq__gguf_mix_params *p,
                            const pq__gguf_mix_model *m, const pq__gguf_mix_tensor *t, int64_t n, int *types_out);

#endif
