/* prunequant: joint pruning + quantization of transformer LLMs, in C11.
 *
 * Public API. Conventions:
 *  - every fallible function returns a pq_status; the readable message (naming the
 *    file, tensor or line) is kept on the pq_ctx and read with pq_ctx_error();
 *  - the library never prints and never exits; logs and progress go through callbacks;
 *  - every *_free(NULL) is a no-op; "borrowed" pointers live as long as their owner;
 *  - counts are int64_t, byte sizes size_t.
 */
#ifndef PRUNEQUANT_H
#define PRUNEQUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PQ_VERSION "0.1.0"

/* Status codes. This enum only grows. */
typedef enum pq_status {
    PQ_OK = 0,
    PQ_ERR_IO = 1,          /* open/read/write/rename failed */
    PQ_ERR_FORMAT = 2,      /* malformed or truncated file */
    PQ_ERR_NOMEM = 3,       /* allocation failed */
    PQ_ERR_INVALID = 4,     /* bad argument, bad flag value, bad recipe */
    PQ_ERR_UNSUPPORTED = 5, /* well-formed but not supported (dtype, architecture) */
    PQ_ERR_NUMERIC = 6,     /* numerical failure (e.g. Cholesky after max damping) */
    PQ_ERR_CANCELLED = 7,   /* a progress callback asked to stop */
    PQ_ERR_INTERNAL = 8
} pq_status;

const char *pq_status_str(pq_status s);

/* ---------------------------------------------------------------- context */

typedef enum pq_log_level { PQ_LOG_DEBUG = 0, PQ_LOG_INFO = 1, PQ_LOG_WARN = 2, PQ_LOG_ERROR = 3 } pq_log_level;

typedef void (*pq_log_fn)(void *user, pq_log_level level, const char *msg);
/* Progress of a long stage; return non-zero to cancel (the call then returns PQ_ERR_CANCELLED). */
typedef int (*pq_progress_fn)(void *user, const char *stage, int64_t done, int64_t total);

typedef struct pq_ctx pq_ctx;

pq_ctx *pq_ctx_new(void);
void pq_ctx_free(pq_ctx *ctx);
/* Message of the last failure ("" if none). Borrowed, valid until the next call on ctx. */
const char *pq_ctx_error(const pq_ctx *ctx);
/* Threads for kernels and BLAS; n <= 0 means all cores. */
void pq_ctx_set_threads(pq_ctx *ctx, int n);
int pq_ctx_threads(const pq_ctx *ctx);
/* on = 1: prompts (more than four tokens through the model at once) multiply packed 4..8-bit
 * codes with 8-bit activations, as llama.cpp does (AVX-512 VNNI only; faster prompt
 * processing, logits about 1e-3 relative off the float32 product). Default 0: every product
 * at float32 accuracy, so that perplexity and evaluation reflect the stored weights. */
void pq_ctx_set_int8_prompts(pq_ctx *ctx, int on);
/* on = 1: decoding (up to four tokens through the model at once) multiplies packed codes with
 * 8-bit activations, one per column scaled per group (groups of 32, 64, 128, 192 or 256; AVX-512
 * VNNI only), as llama.cpp's Q8 activations do: about a third of the integer work of the exact
 * product, logits about 1e-3 relative off it. Default 0. */
void pq_ctx_set_int8_decode(pq_ctx *ctx, int on);
void pq_ctx_set_log(pq_ctx *ctx, pq_log_fn fn, void *user);
void pq_ctx_set_progress(pq_ctx *ctx, pq_progress_fn fn, void *user);

/* ---------------------------------------------------------------- dtypes */

/* Element types of stored tensors. This enum only grows. */
typedef enum pq_dtype {
    PQ_DTYPE_F32 = 0,
    PQ_DTYPE_F16 = 1,
    PQ_DTYPE_BF16 = 2,
    PQ_DTYPE_Q8_0 = 3, /* ggml block: f16 scale + 32 int8 */
    PQ_DTYPE_Q4_0 = 4, /* ggml block: f16 scale + 16 bytes of nibbles */
    PQ_DTYPE_I8 = 5,
    PQ_DTYPE_U8 = 6,
    PQ_DTYPE_I16 = 7,
    PQ_DTYPE_I32 = 8,
    PQ_DTYPE_I64 = 9,
    PQ_DTYPE_F64 = 10,
    PQ_DTYPE_BOOL = 11,
    /* more ggml block types (layouts in src/kernels/ggml_types.h) */
    PQ_DTYPE_Q4_1 = 12,
    PQ_DTYPE_Q5_0 = 13,
    PQ_DTYPE_Q5_1 = 14,
    PQ_DTYPE_Q2_K = 15,
    PQ_DTYPE_Q3_K = 16,
    PQ_DTYPE_Q4_K = 17,
    PQ_DTYPE_Q5_K = 18,
    PQ_DTYPE_Q6_K = 19,
    PQ_DTYPE_COUNT
} pq_dtype;

const char *pq_dtype_name(pq_dtype t);
/* Parses "f32", "F16", "bf16" ... ; returns 0 on success. */
int pq_dtype_parse(const char *name, pq_dtype *out);

/* ---------------------------------------------------------------- tokenizer */

typedef struct pq_tokenizer pq_tokenizer;

/* Loads a tokenizer file: llama2.c tokenizer .bin, SentencePiece .model (protobuf),
 * or (tokenizer issue) tokenizer.json. The kind is detected from the contents. */
pq_status pq_tokenizer_load(pq_ctx *ctx, const char *path, pq_tokenizer **out);
void pq_tokenizer_free(pq_tokenizer *tok);
int64_t pq_tokenizer_n_vocab(const pq_tokenizer *tok);
int32_t pq_tokenizer_bos(const pq_tokenizer *tok); /* -1 if none */
int32_t pq_tokenizer_eos(const pq_tokenizer *tok); /* -1 if none */
/* Encodes text (len bytes). *ids is malloc'ed, caller frees with free(). */
pq_status pq_tokenize(pq_ctx *ctx, const pq_tokenizer *tok, const char *text, size_t len, int add_bos, int32_t **ids,
                      int64_t *n_ids);
/* Text of token id when it follows token prev (prev = -1 at start); the leading space of
 * the first piece after BOS is dropped (SentencePiece convention). The returned bytes are
 * borrowed (valid until the next call with the same buf) and may be written into buf
 * (at least 8 bytes) for byte tokens. */
const char *pq_token_to_piece(const pq_tokenizer *tok, int32_t prev, int32_t id, char *buf, size_t *len);

/* Bytes of text[len] that are not part of valid UTF-8 (bad lead bytes, truncated or overlong
 * sequences, surrogates, code points past U+10FFFF); *first (may be NULL) gets the offset of
 * the first one. Tokenizers map such bytes to byte tokens (byte fallback) or <unk>, so text
 * files are checked and the count reported before they are used. */
size_t pq_text_invalid_utf8(const char *text, size_t len, size_t *first);

/* ---------------------------------------------------------------- model */

typedef struct pq_model pq_model;

typedef struct pq_load_params {
    const char *tokenizer_path; /* overrides or supplies the tokenizer; NULL = from the model */
    int use_mmap;               /* default 1: the files mapped read-only (nothing copied; the
                                   pages of tensors re-laid or converted at load released).
                                   0: each file read whole into memory, from 4 MiB on of large
                                   (2 MiB) pages advised MADV_HUGEPAGE: a slower start and the
                                   whole file resident, faster decoding (fewer TLB misses than
                                   the mapping's 4 KiB pages) */
    int defer_weights;          /* default 0. 1: the large weights (embeddings, lm_head, block
                                   linears) are checked but not made ready to run at load;
                                   only pq_compress_model and pq_model_sparsity (one linear
                                   decoded at a time) accept such a model; compress converts
                                   one block at a time, so a bf16 model is compressed in the
                                   memory of one f32 block instead of the whole model in f32 */
} pq_load_params;

pq_load_params pq_load_params_default(void);

/* Loads a llama2.c .bin, a GGUF file, or a Hugging Face folder (config.json + safetensors). */
pq_status pq_model_load(pq_ctx *ctx, const char *path, const pq_load_params *params, pq_model **out);
void pq_model_free(pq_model *model);

typedef struct pq_model_info {
    char format[16]; /* "llama2c", "gguf", "hf" */
    char arch[32];   /* "llama", "mistral", "qwen2" */
    int64_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, max_seq_len;
    double rope_theta, norm_eps;
    int tied_embeddings, qkv_bias;
    int rope_halfsplit; /* 1 = HF rotate_half, 0 = interleaved pairs (llama2.c/GGUF) */
    int64_t n_params;
    size_t file_bytes;   /* bytes of the model files on disk */
    size_t weight_bytes; /* bytes of the weights as stored */
    char dtypes[128];    /* e.g. "F32:48" or "F16:291 F32:65" */
    int has_tokenizer;
    char file_type[24];    /* GGUF: general.file_type by llama.cpp's name ("Q4_K_M"); else "" */
    int64_t n_ggml_blocks; /* tensors stored in ggml block types (Q8_0 ... Q6_K) */
    int64_t n_packed;      /* linears stored packed (prunequant codes + scales [+ mask]) */
    int64_t n_linears;     /* linear layers of the blocks */
    int64_t n_native;      /* of them, multiplied as stored: packed codes (memory-mapped; act-order
                              groups re-laid in memory), float32 / float16 / bfloat16 rows
                              (memory-mapped), GGUF Q4_0 / Q5_0 / Q8_0 (their codes and scales
                              re-laid in memory); the others (K-quants, Q4_1 / Q5_1, prune-only
                              packed linears, unaligned float32) are converted to float at load */
    char kernels[16];      /* the kernel path this CPU runs: "avx512", "avx2", "portable" */
    int64_t n_tensors;     /* tensors in the file(s); see pq_model_tensor */
} pq_model_info;

pq_status pq_model_get_info(const pq_model *model, pq_model_info *info);

/* One stored tensor as the file has it. */
typedef struct pq_tensor_info {
    const char *name; /* borrowed; the model's (Hugging Face) name: "model.layers.0.mlp.up_proj.weight" */
    pq_dtype dtype;
    int n_dims;
    int64_t shape[4]; /* outermost first: a linear is [out, in] */
    size_t nbytes;    /* bytes as stored */
} pq_tensor_info;

/* Tensor i (0 <= i < info.n_tensors) of the model's file(s), in file order. */
pq_status pq_model_tensor(const pq_model *model, int64_t i, pq_tensor_info *out);
/* Borrowed tokenizer of the model, or NULL. */
const pq_tokenizer *pq_model_tokenizer(const pq_model *model);

/* Logits for n_seq sequences of n_tok tokens each, positions 0..n_tok-1.
 * tokens [n_seq * n_tok], logits [n_seq * n_tok, vocab]. reference != 0 uses the
 * naive reference path (slow; for tests). */
pq_status pq_model_logits(pq_ctx *ctx, const pq_model *model, const int32_t *tokens, int64_t n_seq, int64_t n_tok,
                          int reference, float *logits);

/* ---------------------------------------------------------------- generation */

typedef struct pq_gen_params {
    int64_t n_predict; /* new tokens to generate (default 256) */
    float temperature; /* 0 = greedy (ties to the lowest id) */
    float top_p;       /* nucleus sampling threshold, default 0.9; >= 1 disables */
    uint64_t seed;     /* RNG seed (llama2.c xorshift) */
} pq_gen_params;

pq_gen_params pq_gen_params_default(void);

/* Called for every generated token; return non-zero to stop. */
typedef int (*pq_token_fn)(void *user, int32_t id, const char *piece, size_t len);

/* Runs the prompt (must be non-empty, usually starting with BOS), then samples until
 * n_predict tokens, BOS/EOS, or the context limit. */
pq_status pq_generate(pq_ctx *ctx, const pq_model *model, const int32_t *prompt, int64_t n_prompt,
                      const pq_gen_params *params, pq_token_fn on_token, void *user);

/* ---------------------------------------------------------------- perplexity */

typedef enum pq_ppl_protocol {
    PQ_PPL_GPTQ = 0,    /* non-overlapping windows of ctx tokens, every predicted token scored */
    PQ_PPL_LLAMACPP = 1 /* windows of ctx, BOS at position 0, second half scored */
} pq_ppl_protocol;

typedef struct pq_ppl_params {
    int64_t ctx; /* window length (default 512; clamped to the model's limit) */
    pq_ppl_protocol protocol;
    int64_t max_tokens; /* use at most this many text tokens (0 = all) */
    int64_t batch;      /* windows per forward call (default 4) */
    double *window_nll; /* optional output [n_windows = min(n_tokens, max_tokens) / ctx]: the summed
                           NLL of each window's scored tokens (for paired statistics); NULL = off */
} pq_ppl_params;

typedef struct pq_ppl_result {
    double ppl, nll_mean, nll_stderr;
    int64_t tokens_scored, n_windows, n_text_tokens, ctx;
    pq_ppl_protocol protocol;
} pq_ppl_result;

pq_ppl_params pq_ppl_params_default(void);
const char *pq_ppl_protocol_name(pq_ppl_protocol p);
/* Describes the protocol in one line, e.g. "gptq: ctx 512, non-overlapping, all tokens scored". */
void pq_ppl_protocol_describe(const pq_ppl_params *p, char *buf, size_t n);
pq_status pq_perplexity(pq_ctx *ctx, const pq_model *model, const int32_t *tokens, int64_t n_tokens,
                        const pq_ppl_params *params, pq_ppl_result *out);

/* ---------------------------------------------------------------- conversion */

typedef enum pq_format { PQ_FORMAT_HF = 0, PQ_FORMAT_GGUF = 1 } pq_format;

/* Writes the model (tokenizer included) as a HF folder or a GGUF file, atomically: the
 * output appears complete under `path` or not at all. Weights in dtype F32/F16/BF16. */
pq_status pq_model_save(pq_ctx *ctx, const pq_model *model, pq_format format, const char *path, pq_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif /* PRUNEQUANT_H */
