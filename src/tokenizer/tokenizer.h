/* Internal tokenizer API. A pq_tokenizer holds a vocabulary of byte strings and scores.
 * SentencePiece-style ("spm": llama2.c .bin, SentencePiece .model, GGUF "llama") encodes
 * like llama2.c's encode(): dummy-prefix space, UTF-8 code points looked up (byte fallback
 * to <0xXX> tokens), then greedy merges of the adjacent pair whose merged piece has the
 * highest score. Pieces are stored with spaces, not U+2581. */
#ifndef PQ_TOKENIZER_H
#define PQ_TOKENIZER_H

#include "common/common.h"

typedef enum pq__tok_kind { PQ_TOK_SPM = 0, PQ_TOK_BPE = 1 } pq__tok_kind;

/* SentencePiece piece types (as in sentencepiece_model.proto). */
enum { PQ_PIECE_NORMAL = 1, PQ_PIECE_UNKNOWN = 2, PQ_PIECE_CONTROL = 3, PQ_PIECE_USER = 4, PQ_PIECE_UNUSED = 5,
       PQ_PIECE_BYTE = 6 };

/* Builds an SPM-style tokenizer from pieces (SentencePiece "▁" is turned into " ").
 * types may be NULL (then <0xXX> pieces are bytes, <s></s><unk> control/unknown by id).
 * bos/eos/unk may be -1. add_dummy_prefix: prepend " " to non-empty text (SentencePiece
 * default, llama2.c). Everything is copied. */
pq_status pq__tokenizer_new_spm(pq_ctx *ctx, int64_t n, const char *const *pieces, const size_t *lens,
                                const float *scores, const int32_t *types, int32_t bos, int32_t eos,
                                int32_t unk, int add_dummy_prefix, pq_tokenizer **out);

/* Accessors used by writers (convert): piece bytes with spaces (not "▁"), score, type. */
const char *pq__tokenizer_piece(const pq_tokenizer *t, int32_t id, size_t *len);
float pq__tokenizer_score(const pq_tokenizer *t, int32_t id);
int32_t pq__tokenizer_type(const pq_tokenizer *t, int32_t id);
int32_t pq__tokenizer_unk(const pq_tokenizer *t);
pq__tok_kind pq__tokenizer_kind(const pq_tokenizer *t);
int pq__tokenizer_add_dummy_prefix(const pq_tokenizer *t);

/* Readers for tokenizer files. */
pq_status pq__tokenizer_load_llama2c(pq_ctx *ctx, const char *path, pq_tokenizer **out);
pq_status pq__tokenizer_load_spm_model(pq_ctx *ctx, const char *path, pq_tokenizer **out);
/* Parses SentencePiece ModelProto bytes (name is for messages). */
pq_status pq__tokenizer_parse_spm_model(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                                        pq_tokenizer **out);
/* Writes a SentencePiece ModelProto (tokenizer.model) atomically. SPM kind only. */
pq_status pq__tokenizer_save_spm_model(pq_ctx *ctx, const pq_tokenizer *t, const char *path);

#endif
