/* prunequant: whole-model compression (the layer-wise sequential pipeline of
 * docs/ALGORITHMS.md §1) and per-layer sparsity / compression statistics.
 *
 * pq_compress_model runs the calibration windows through the model one decoder block at a
 * time: the inputs of every linear layer of a block give its Hessian H = 2 X^T X / N, each
 * linear is compressed with pq_layer_compress, and the block is run again with the
 * compressed weights to give the next block its inputs (true-sequential: each group's
 * inputs are computed once, on the block as compressed so far, and the block's output comes
 * from those partial results: about one pass of the block instead of five). The result is
 * written block by block to a Hugging Face folder (atomically), dense or in the packed format
 * of docs/PACKED.md, which pq_model_load reads back. */
#ifndef PRUNEQUANT_PIPELINE_H
#define PRUNEQUANT_PIPELINE_H

#include "prunequant-compress.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a compress run's time went, and the arithmetic each phase did (floating-point
 * operations counted from the shapes: 2 per multiply-add of the products, n^3/3 per Cholesky
 * factorisation of order n, rows * cols * (cols - 1) per column sweep with error feedback,
 * the Hessians' panel products as run). Seconds are wall clock; total_s includes what no
 * phase names (progress, masks, snapping, reports). */
typedef struct pq_compress_phases {
    double forward_s, hessian_s, factor_s, sweep_s, io_s, total_s;
    double forward_flop, hessian_flop, factor_flop, sweep_flop;
} pq_compress_phases;

typedef struct pq_compress_params {
    pq_layer_params layer;   /* recipe of every compressed linear layer */
    int64_t nsamples;        /* calibration windows (default 32) */
    int64_t seqlen;          /* tokens per window (0 = min(512, model max)) */
    uint64_t seed;           /* window start positions (default 0) */
    int true_sequential;     /* H of each group (qkv, o, gate/up, down) on the block as compressed so far;
                                0 (default): every H from the block as loaded (the GPTQ reference) */
    const char *skip;        /* POSIX ERE on linear names ("model.layers.0.mlp.down_proj"); NULL = none */
    const char *report;      /* JSON-lines report path, or NULL */
    int packed;              /* 2 (default): packed-v2 (an N:M keep pattern stored as an index); 1: packed-v1
                                (always a bitmask); 0: dense */
    pq_dtype dtype;          /* F32 (default), F16 or BF16: tensors that are not packed */
    const char *calib_name;  /* recorded in config.json ("calibration.file") */
    int64_t chunk;           /* sequences per forward chunk (0 = 4) */
    const char *gguf_type;   /* GGUF output: a ggml type (Q4_0 ... Q6_K) or llama-quantize preset (Q4_K_M ...);
                                the out path is then a .gguf file, each linear is rounded onto its type's block
                                grids (the preset's per-tensor mixture) by the recipe's quantizer. NULL: HF folder */
    const char *imatrix_out; /* with or without GGUF: llama.cpp imatrix file of the calibration (NULL: none) */
    const pq_recipe_override *overrides; /* per-linear recipes (borrowed; first match wins, else `layer`;
                                            --skip still wins); each must match a linear and suit its
                                            shape. Not with GGUF output */
    int64_t n_overrides;
    int64_t budget_bytes; /* > 0: the stored linear weights (packed tensors, or .weight as stored) may take
                             at most this many bytes, else the run fails and writes nothing (a recipe made by
                             allocate carries its budget); packed output only */

    /* optional, borrowed [n_layers + 1], zeroed and filled by the run: block l's phases at [l], the rest
     * (calibration embeddings; embeddings, lm_head and metadata written) at [n_layers] */
    pq_compress_phases *phases;
} pq_compress_params;

pq_compress_params pq_compress_params_default(void);

/* Writes the model as one GGUF file of a ggml type or llama-quantize preset (the same names
 * and per-tensor mixture as compress's GGUF output), every weight rounded to nearest on its
 * type's grid; with imatrix_path (llama.cpp's imatrix file, GGUF or .dat) weighted as
 * llama-quantize weighs it. Atomic, like every output. */
pq_status pq_model_save_gguf(pq_ctx *ctx, const pq_model *model, const char *path, const char *gguf_type,
                             const char *imatrix_path);
/* Calibration window length used when seqlen is 0: min(512, the model's context). */
int64_t pq_compress_default_seqlen(const pq_model *model);

/* Compresses model (left unchanged) with calibration tokens[n_tokens] (BOS included by the
 * caller) and writes the result to the folder out_dir, atomically (nothing is left there
 * on failure). The model's tokenizer (SentencePiece-kind as tokenizer.model, BPE as
 * tokenizer.json) goes with it. */
pq_status pq_compress_model(pq_ctx *ctx, const pq_model *model, const int32_t *tokens, int64_t n_tokens,
                            const pq_compress_params *p, const char *out_dir);

/* Per linear layer statistics of a loaded model (decoded weights). */
typedef struct pq_sparsity_entry {
    char name[96]; /* "model.layers.0.self_attn.q_proj" */
    int64_t rows, cols;
    double sparsity;          /* fraction of exact zeros */
    int pattern_n, pattern_m; /* N:M found (0:0 = none): every M-cell of consecutive inputs has >= N zeros */
    int pattern_ok;           /* the pattern holds in every cell (always 1 when one was found) */
    int64_t bytes;            /* bytes stored for this layer (packed tensors incl. scales/zeros/masks) */
    /* the stored bytes part by part (0 where absent; they sum to bytes): b-bit codes, f16 scales,
     * zero points, g_idx, the keep-bitmask, f16 values (pruned, not quantized), an unpacked weight */
    int64_t codes_bytes, scales_bytes, zeros_bytes, g_idx_bytes, mask_bytes, values_bytes, weight_bytes;
    int bits;           /* code width (0: no codes) */
    int64_t kept;       /* weights with a code or a value */
    double mask_bound;  /* bytes: the fewest that can name which weights are kept (log2 C(M, kept) bits per
                           M-cell when every cell keeps the same count, else per row log2 C(cols, kept) +
                           the count); 0 without a mask */
    double bound_bytes; /* information bound: kept codes at their width, the mask at mask_bound, scales,
                           zeros, g_idx and values as stored (bytes when not packed) */
} pq_sparsity_entry;

typedef struct pq_sparsity_report {
    pq_sparsity_entry *layers; /* malloc'ed */
    int64_t n_layers;
    int packed;       /* the model holds packed linears */
    double acr;       /* 1 - stored linear bytes / fp16 linear bytes */
    double bpw;       /* stored linear bits per weight */
    double bound_bpw; /* the information bound (pq_sparsity_entry.bound_bytes) in bits per weight */
} pq_sparsity_report;

pq_status pq_model_sparsity(pq_ctx *ctx, const pq_model *model, pq_sparsity_report *out);
void pq_sparsity_report_free(pq_sparsity_report *r);

#ifdef __cplusplus
}
#endif
#endif /* PRUNEQUANT_PIPELINE_H */
