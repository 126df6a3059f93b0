/* A loaded checkpoint before it becomes a model: the architecture config plus a list of
 * named tensors pointing into memory-mapped files. Every format reader (llama2.c, GGUF,
 * safetensors/HF) fills one of these; src/model builds the pq_model from it.
 *
 * Tensor names are canonical Hugging Face Llama names:
 *   model.embed_tokens.weight                      [vocab, dim]
 *   model.layers.N.input_layernorm.weight          [dim]
 *   model.layers.N.self_attn.{q,k,v}_proj.weight   [heads*head_dim | kv_heads*head_dim, dim]
 *   model.layers.N.self_attn.{q,k,v}_proj.bias     optional (Qwen2)
 *   model.layers.N.self_attn.o_proj.weight         [dim, heads*head_dim]
 *   model.layers.N.post_attention_layernorm.weight [dim]
 *   model.layers.N.mlp.{gate,up}_proj.weight       [hidden, dim]
 *   model.layers.N.mlp.down_proj.weight            [dim, hidden]
 *   model.norm.weight                              [dim]
 *   lm_head.weight                                 [vocab, dim] (absent when tied)
 * Shapes are outermost first (row-major, as in PyTorch). q/k rows are in the file's own
 * RoPE convention, recorded in cfg.rope_halfsplit; they are not permuted at load. */
#ifndef PQ_IO_SOURCE_H
#define PQ_IO_SOURCE_H

#include "common/common.h"

typedef enum pq__arch { PQ_ARCH_LLAMA = 0, PQ_ARCH_MISTRAL = 1, PQ_ARCH_QWEN2 = 2 } pq__arch;

typedef struct pq__config {
    pq__arch arch;
    int64_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, max_seq_len;
    float norm_eps;
    float rope_theta;
    int rope_halfsplit; /* 1: HF rotate_half pairs (i, i+hd/2); 0: interleaved (2i, 2i+1) */
    int tied;           /* lm_head shares the embedding */
    int qkv_bias;
    /* rope_scaling from HF config.json: 0 none, 1 "llama3", 2 "linear" */
    int rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int64_t rope_orig_max_pos;
    int32_t bos_id, eos_id; /* from the model's metadata, -1 if not given */
    /* the recipe a prunequant-compressed folder declares (config.json quantization_config):
     * declared_sparsity (fraction; N/M for a pattern) and declared_bits (16 = not quantized);
     * declared_bits 0 = no declaration; a recipe with per-linear overrides declares its
     * parameter-weighted sparsity and bits ("param_weighted"), so bits may be fractional */
    double declared_sparsity;
    double declared_bits;
} pq__config;

const char *pq__arch_name(pq__arch a);

typedef struct pq__tensor {
    char *name; /* owned */
    pq_dtype dtype;
    int n_dims;
    int64_t shape[4]; /* outermost first */
    const void *data; /* borrowed from a pq__file (or from owned below) */
    size_t nbytes;
    void *owned; /* non-NULL if data was allocated for this tensor */
} pq__tensor;

int64_t pq__tensor_numel(const pq__tensor *t);

#define PQ_SOURCE_MAX_FILES 64

typedef struct pq_tokenizer pq_tokenizer;

typedef struct pq__source {
    char format[16]; /* "llama2c", "gguf", "hf" */
    char *path;      /* owned: the path the user gave */
    pq__config cfg;
    pq__tensor *tensors;
    int64_t n_tensors, cap_tensors;
    pq__file files[PQ_SOURCE_MAX_FILES];
    int n_files;
    pq_tokenizer *tok;  /* owned, may be NULL: tokenizer embedded in / beside the model */
    char file_type[24]; /* GGUF general.file_type by name ("Q4_K_M"), "" when absent */
} pq__source;

void pq__source_init(pq__source *s);
void pq__source_free(pq__source *s);
/* Appends a tensor (name copied). Returns NULL on OOM (message set). */
pq__tensor *pq__source_add(pq_ctx *ctx, pq__source *s, const char *name, pq_dtype dtype, int n_dims,
                           const int64_t *shape, const void *data, size_t nbytes);
const pq__tensor *pq__source_find(const pq__source *s, const char *name);
/* Adds a mapped file to the source (the source closes it). */
pq_status pq__source_add_file(pq_ctx *ctx, pq__source *s, const char *path, int use_mmap, pq__file **out);
size_t pq__source_file_bytes(const pq__source *s);
/* Drops the resident pages wholly inside [p, p + n) when that range lies in a memory-mapped
 * file of s (the kernel rereads them from the file on the next access); a no-op for data
 * that was read into memory. Keeps the resident size of a streamed pass at what it uses. */
void pq__source_release(const pq__source *s, const void *p, size_t n);

/* Format readers. Each fills an initialised source; on failure the message names the file
 * and the field. The tokenizer is loaded when the file embeds one (GGUF) or when a known
 * tokenizer file sits beside the model (HF folder: tokenizer.model / tokenizer.json). */
pq_status pq__llama2c_load(pq_ctx *ctx, const char *path, int use_mmap, pq__source *src);
pq_status pq__gguf_load(pq_ctx *ctx, const char *path, int use_mmap, pq__source *src);
pq_status pq__hf_load(pq_ctx *ctx, const char *dir, int use_mmap, pq__source *src);

/* Detects the format of path: "hf" for a folder, "gguf" for GGUF magic, "llama2c"
 * otherwise. */
const char *pq__detect_format(const char *path);

#endif
