/* GGUF (v2/v3, little-endian) reader and writer.
 *
 * Reader: pq__gguf_parse validates a whole file held in memory (every length, count, type,
 * offset and size is checked against the buffer) and keeps pointers into it; nothing is
 * copied except keys and tensor names. pq__gguf_to_source turns a parsed Llama/Qwen2 file
 * into a pq__source (config, tensors under canonical HF names, llama/gpt2 tokenizer or the
 * embedded tokenizer.huggingface.json).
 *
 * Writer: collects KVs (copied) and tensors (data borrowed until save), then writes a GGUF
 * v3 file with general.alignment 32 atomically. */
#ifndef PQ_IO_GGUF_H
#define PQ_IO_GGUF_H

#include "common/common.h"
#include "io/source.h"

/* KV value types, as numbered in the file. */
typedef enum pq__gguf_type {
    PQ_GGUF_U8 = 0,
    PQ_GGUF_I8 = 1,
    PQ_GGUF_U16 = 2,
    PQ_GGUF_I16 = 3,
    PQ_GGUF_U32 = 4,
    PQ_GGUF_I32 = 5,
    PQ_GGUF_F32 = 6,
    PQ_GGUF_BOOL = 7,
    PQ_GGUF_STRING = 8,
    PQ_GGUF_ARRAY = 9,
    PQ_GGUF_U64 = 10,
    PQ_GGUF_I64 = 11,
    PQ_GGUF_F64 = 12,
    PQ_GGUF_TYPE_COUNT
} pq__gguf_type;

/* ggml tensor types this library reads and writes (others are refused at parse). */
enum { PQ_GGML_F32 = 0, PQ_GGML_F16 = 1, PQ_GGML_Q4_0 = 2, PQ_GGML_Q8_0 = 8, PQ_GGML_BF16 = 30 };

#define PQ_GGUF_DEFAULT_ALIGNMENT 32

typedef struct pq__gguf_kv {
    char *key; /* owned, NUL-terminated */
    pq__gguf_type type;
    const uint8_t *raw; /* the value as encoded in the file (arrays: from the element type on) */
    size_t raw_size;
    /* arrays only: element type, count and first element */
    pq__gguf_type arr_type;
    uint64_t arr_n;
    const uint8_t *arr;
} pq__gguf_kv;

typedef struct pq__gguf_tensor {
    char *name;         /* owned, NUL-terminated */
    uint32_t ggml_type; /* PQ_GGML_* */
    pq_dtype dtype;
    int n_dims;       /* 1..4 */
    int64_t ne[4];    /* GGUF order: innermost (contiguous) first; unused dims are 1 */
    uint64_t offset;  /* relative to the data section */
    const void *data; /* borrowed: into the parsed buffer */
    size_t nbytes;
} pq__gguf_tensor;

typedef struct pq__gguf {
    char *name;         /* owned: file name used in messages */
    uint32_t version;   /* 2 or 3 */
    const uint8_t *buf; /* borrowed (or from file below when opened by pq__gguf_open) */
    size_t size;
    size_t alignment;   /* general.alignment or 32 */
    size_t data_offset; /* start of the tensor data section */
    pq__gguf_kv *kv;    /* [n_kv] in file order */
    int64_t n_kv;
    pq__gguf_tensor *tensors; /* [n_tensors] in file order */
    int64_t n_tensors;
    /* open-addressing hash tables of indices (-1 = empty) for lookups by key / name */
    int64_t *kv_index, *tensor_index;
    size_t kv_mask, tensor_mask;
    pq__file file; /* owned mapping when opened with pq__gguf_open */
} pq__gguf;

/* Parses size bytes at data (borrowed: must outlive the result). name is used in messages. */
pq_status pq__gguf_parse(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size, pq__gguf **out);
/* Maps (or reads) path and parses it; the result owns the mapping. */
pq_status pq__gguf_open(pq_ctx *ctx, const char *path, int use_mmap, pq__gguf **out);
void pq__gguf_free(pq__gguf *g);

/* Lookups (NULL / -1 if absent). */
const pq__gguf_kv *pq__gguf_find_kv(const pq__gguf *g, const char *key);
int64_t pq__gguf_find_tensor(const pq__gguf *g, const char *name);
const char *pq__gguf_type_name(pq__gguf_type t);
/* Name of a ggml tensor type ("Q4_K", ...) or "unknown". */
const char *pq__ggml_type_name(uint32_t t);
/* Name of a llama.cpp file type (general.file_type, LLAMA_FTYPE_*: 15 -> "Q4_K_M"), or NULL
 * for a number this reader does not know. */
const char *pq__gguf_ftype_name(int64_t ftype);

/* Typed getters: return 1 when found with a usable type, 0 when absent, -1 when present but
 * of another type (or out of range for the result). */
#define PQ_GGUF_FOUND 1
#define PQ_GGUF_MISSING 0
#define PQ_GGUF_BADTYPE (-1)
/* String value: not NUL-terminated, borrowed from the buffer. */
int pq__gguf_get_str(const pq__gguf *g, const char *key, const char **s, size_t *len);
/* Any integer type (u64 above INT64_MAX -> BADTYPE). */
int pq__gguf_get_int(const pq__gguf *g, const char *key, int64_t *v);
/* f32 / f64, or any integer type. */
int pq__gguf_get_float(const pq__gguf *g, const char *key, double *v);
int pq__gguf_get_bool(const pq__gguf *g, const char *key, int *v);
int pq__gguf_get_array(const pq__gguf *g, const char *key, const pq__gguf_kv **kv);
/* Whether the string value of key equals s. */
int pq__gguf_str_eq(const pq__gguf *g, const char *key, const char *s);

/* Array element access. Numeric arrays convert to float / int32 (ints out of int32 range,
 * non-numeric element types -> 0 returned, dst partly written). dst holds kv->arr_n values. */
int pq__gguf_array_f32(const pq__gguf_kv *kv, float *dst);
int pq__gguf_array_i32(const pq__gguf_kv *kv, int32_t *dst);
/* Pointers to the elements of a string array (into the buffer, not NUL-terminated) and
 * their lengths; both malloc'ed, caller frees. */
pq_status pq__gguf_array_strings(pq_ctx *ctx, const pq__gguf *g, const pq__gguf_kv *kv, const char ***ptrs,
                                 size_t **lens);

/* ggml type <-> pq_dtype (F32/F16/BF16 and the ggml block types of quant/ggml_types.h); return 0 when there is no
 * match. */
int pq__gguf_dtype_from_ggml(uint32_t ggml_type, pq_dtype *out);
int pq__gguf_ggml_from_dtype(pq_dtype dtype, uint32_t *out);

/* Tensor names: GGUF (llama.cpp) <-> canonical HF ("blk.3.attn_q.weight" <->
 * "model.layers.3.self_attn.q_proj.weight"). Return 1 on success, 0 if the name is not
 * known or buf (n bytes) is too small. */
int pq__gguf_name_from_hf(const char *hf, char *buf, size_t n);
int pq__gguf_name_to_hf(const char *gguf, char *buf, size_t n);

/* Fills an initialised source from a parsed file: format, cfg, tensors (pointing into g's
 * buffer, which must outlive src) and the tokenizer. pq__gguf_load maps path into the
 * source and calls this. */
pq_status pq__gguf_to_source(pq_ctx *ctx, const pq__gguf *g, pq__source *src);

/* ---------------------------------------------------------------- writer */

typedef struct pq__gguf_writer pq__gguf_writer;

pq_status pq__gguf_writer_new(pq_ctx *ctx, pq__gguf_writer **out);
void pq__gguf_writer_free(pq__gguf_writer *w);

/* KVs are copied, in call order. The first failure (out of memory, duplicate key, bad
 * argument) is remembered and reported by save; later adds are then ignored.
 * general.alignment is owned by the writer (always 32): adding it is ignored. */
void pq__gguf_writer_add_str(pq__gguf_writer *w, const char *key, const char *v);
void pq__gguf_writer_add_u32(pq__gguf_writer *w, const char *key, uint32_t v);
void pq__gguf_writer_add_i32(pq__gguf_writer *w, const char *key, int32_t v);
void pq__gguf_writer_add_u64(pq__gguf_writer *w, const char *key, uint64_t v);
void pq__gguf_writer_add_f32(pq__gguf_writer *w, const char *key, float v);
void pq__gguf_writer_add_bool(pq__gguf_writer *w, const char *key, int v);
/* lens may be NULL (NUL-terminated strings). */
void pq__gguf_writer_add_arr_str(pq__gguf_writer *w, const char *key, const char *const *v, const size_t *lens,
                                 int64_t n);
void pq__gguf_writer_add_arr_f32(pq__gguf_writer *w, const char *key, const float *v, int64_t n);
void pq__gguf_writer_add_arr_i32(pq__gguf_writer *w, const char *key, const int32_t *v, int64_t n);
/* Copies a KV of any type from a parsed file. */
void pq__gguf_writer_add_kv(pq__gguf_writer *w, const pq__gguf_kv *kv);
/* Tensor with shape outermost first (as in pq__tensor); data is borrowed until save and
 * nbytes must equal the size of the shape in dtype (F32/F16/BF16 or a ggml block type: pre-encoded blocks). */
void pq__gguf_writer_add_tensor(pq__gguf_writer *w, const char *name, pq_dtype dtype, int n_dims,
                                const int64_t *shape, const void *data, size_t nbytes);
/* Writes a GGUF v3 file atomically (temp file + rename; nothing left behind on failure). */
pq_status pq__gguf_writer_save(pq_ctx *ctx, pq__gguf_writer *w, const char *path);

#endif
