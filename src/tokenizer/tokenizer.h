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
enum {
    PQ_PIECE_NORMAL = 1,
    PQ_PIECE_UNKNOWN = 2,
    PQ_PIECE_CONTROL = 3,
    PQ_PIECE_USER = 4,
    PQ_PIECE_UNUSED = 5,
    PQ_PIECE_BYTE = 6
};

/* Builds an SPM-style tokenizer from pieces (SentencePiece "▁" is turned into " ").
 * types may be NULL (then <0xXX> pieces are bytes, <s></s><unk> control/unknown by id).
 * bos/eos/unk may be -1. add_dummy_prefix: prepend " " to non-empty text (SentencePiece
 * default, llama2.c). Everything is copied. */
pq_status pq__tokenizer_new_spm(pq_ctx *ctx, int64_t n, const char *const *pieces, const size_t *lens,
                                const float *scores, const int32_t *types, int32_t bos, int32_t eos, int32_t unk,
                                int add_dummy_prefix, pq_tokenizer **out);

/* Accessors used by writers (convert): piece bytes with spaces (not "▁"), score, type. */
const char *pq__tokenizer_piece(const pq_tokenizer *t, int32_t id, size_t *len);
float pq__tokenizer_score(const pq_tokenizer *t, int32_t id);
int32_t pq__tokenizer_type(const pq_tokenizer *t, int32_t id);
int32_t pq__tokenizer_unk(const pq_tokenizer *t);
pq__tok_kind pq__tokenizer_kind(const pq_tokenizer *t);
int pq__tokenizer_add_dummy_prefix(const pq_tokenizer *t);

/* Readers for tokenizer files. */
/* A parser of a tokenizer file image (name is for messages). */
typedef pq_status (*pq__tok_parse_fn)(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                                      pq_tokenizer **out);
/* Maps path and parses it with parse. */
pq_status pq__tokenizer_load_with(pq_ctx *ctx, const char *path, pq__tok_parse_fn parse, pq_tokenizer **out);
pq_status pq__tokenizer_load_llama2c(pq_ctx *ctx, const char *path, pq_tokenizer **out);
pq_status pq__tokenizer_load_spm_model(pq_ctx *ctx, const char *path, pq_tokenizer **out);
/* Parses SentencePiece ModelProto bytes (name is for messages). */
pq_status pq__tokenizer_parse_spm_model(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                                        pq_tokenizer **out);
/* Writes a SentencePiece ModelProto (tokenizer.model) atomically. SPM kind only. */
pq_status pq__tokenizer_save_spm_model(pq_ctx *ctx, const pq_tokenizer *t, const char *path);

/* ---- additions (tokenizer module) ---- */

/* Largest max_token_length a llama2.c tokenizer .bin may declare. */
#define PQ_LLAMA2C_MAX_TOKEN_LENGTH 65536

/* Id of the piece with exactly these bytes (spaces, not "▁"), lowest id on duplicates; -1 if none. */
int32_t pq__tokenizer_lookup(const pq_tokenizer *t, const char *s, size_t len);
/* Id of the <0xXX> byte piece for byte, or -1 (no byte fallback for it). */
int32_t pq__tokenizer_byte_id(const pq_tokenizer *t, uint8_t byte);
/* Length in bytes of the longest piece. */
uint32_t pq__tokenizer_max_piece_len(const pq_tokenizer *t);
/* Parses llama2.c tokenizer .bin bytes (name is for messages). The vocabulary size is the number
 * of records; bos=1, eos=2, unk=0 (llama2.c convention); its "\n<s>\n" / "\n</s>\n" pieces
 * become "<s>" / "</s>". */
pq_status pq__tokenizer_parse_llama2c(pq_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                                      pq_tokenizer **out);

/* ---- Hugging Face tokenizer.json (PQ_TOK_BPE, bpe.c) ----
 * BPE with merge ranks: byte-level (GPT-2, Llama-3, Qwen2: Split regex + ByteLevel) or
 * SentencePiece-like (Llama-2, Mistral: Prepend/Replace or Metaspace, byte_fallback). Added tokens
 * are matched in the raw text first (leftmost-longest). For this kind pq__tokenizer_piece returns
 * the vocabulary string exactly as in tokenizer.json (e.g. "\xc4\xa0the", "\xe2\x96\x81the") and
 * the score of a piece is minus the rank of the first merge producing it (0 for base symbols).
 * Regex pre-tokenizers need PCRE2 (compile with PQ_HAVE_PCRE2 and link -lpcre2-8); without it
 * loading such a tokenizer fails with PQ_ERR_UNSUPPORTED. */
typedef struct pq__bpe pq__bpe;

/* Pre-tokenizer regexes of common byte-level BPE vocabularies (GGUF tokenizer.ggml.pre). */
#define PQ_REGEX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define PQ_REGEX_LLAMA3                                                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"         \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define PQ_REGEX_QWEN2                                                                                               \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"              \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Vocabulary-only tokenizer of the given kind (new_spm is kind SPM; BPE keeps pieces verbatim). */
pq_status pq__tokenizer_new_vocab(pq_ctx *ctx, pq__tok_kind kind, int64_t n, const char *const *pieces,
                                  const size_t *lens, const float *scores, const int32_t *types, int32_t bos,
                                  int32_t eos, int32_t unk, int add_dummy_prefix, pq_tokenizer **out);
/* Byte-level BPE (GGUF tokenizer.ggml.model "gpt2"): pieces in GPT-2 byte-to-unicode spelling,
 * merges as "left right" strings in rank order, pre-tokenizer regex (NULL: PQ_REGEX_GPT2).
 * types may be NULL. bos/eos/unk may be -1. */
pq_status pq__tokenizer_new_bpe(pq_ctx *ctx, int64_t n, const char *const *pieces, const size_t *lens,
                                const int32_t *types, const char *const *merges, int64_t n_merges, const char *regex,
                                int32_t bos, int32_t eos, int32_t unk, int add_bos, pq_tokenizer **out);
/* Loads tokenizer.json (and tokenizer_config.json next to it, if present, for bos/eos/add_bos_token). */
pq_status pq__tokenizer_load_hf_json(pq_ctx *ctx, const char *path, pq_tokenizer **out);
/* Parses tokenizer.json text; config_json (tokenizer_config.json text) may be NULL. name is for messages. */
pq_status pq__tokenizer_parse_hf_json(pq_ctx *ctx, const char *name, const char *json, size_t len,
                                      const char *config_json, size_t config_len, pq_tokenizer **out);
/* Whether the tokenizer's own configuration asks for BOS (1 for SentencePiece/llama2.c). */
int pq__tokenizer_add_bos_default(const pq_tokenizer *t);
/* Merges of a BPE tokenizer (rank order); 0 for SPM. */
int64_t pq__tokenizer_n_merges(const pq_tokenizer *t);
int pq__tokenizer_merge(const pq_tokenizer *t, int64_t rank, int32_t *left, int32_t *right);

/* ---- writers (tokenizer_save.c, convert) ---- */

/* Regex of a GGUF tokenizer.ggml.pre name ("gpt-2", "llama-bpe", "qwen2" and aliases), or NULL. */
const char *pq__bpe_pre_regex(const char *name, size_t len);
/* GGUF tokenizer.ggml.pre under which a gpt2 vocabulary (tokens, merges, token types) reproduces
 * this BPE tokenizer exactly, or NULL (SentencePiece-like, normalizers, other decoders ...). */
const char *pq__tokenizer_gguf_pre(const pq_tokenizer *t);
/* The tokenizer.json text a BPE tokenizer was parsed from (borrowed), or NULL. */
const char *pq__tokenizer_hf_json(const pq_tokenizer *t, size_t *len);
int pq__tokenizer_ignore_merges(const pq_tokenizer *t);
int pq__tokenizer_byte_fallback(const pq_tokenizer *t);
/* llama.cpp ignores merges for whole words in vocabularies of pre-tokenizer "llama-bpe". */
void pq__tokenizer_set_ignore_merges(pq_tokenizer *t, int on);
/* Writes tokenizer.json and tokenizer_config.json (bos/eos token, add_bos_token) into dir, a BPE
 * tokenizer only: the text it was parsed from verbatim, else one generated from the vocabulary and
 * merges (byte-level pipeline named by pq__tokenizer_gguf_pre). */
pq_status pq__tokenizer_save_hf(pq_ctx *ctx, const pq_tokenizer *t, const char *dir);
/* The tokenizer of a Hugging Face model folder dir: tokenizer.json + tokenizer_config.json for
 * BPE (pq__tokenizer_save_hf), tokenizer.model for SentencePiece kinds. */
pq_status pq__tokenizer_save_dir(pq_ctx *ctx, const pq_tokenizer *t, const char *dir);

/* 1 if no piece contains the last byte of piece a followed by the first byte of piece b: no merge
 * can ever join tokens a and b, so text on either side can be merged independently. */
int pq__tokenizer_barrier(const pq_tokenizer *t, int32_t a, int32_t b);

/* Construction helpers and hooks between tokenizer.c and bpe.c. */
void pq__tokenizer_set_special(pq_tokenizer *t, int32_t bos, int32_t eos, int32_t unk, int add_bos_default);
void pq__tokenizer_set_score(pq_tokenizer *t, int32_t id, float score);
void pq__tokenizer_attach_bpe(pq_tokenizer *t, pq__bpe *bpe); /* takes ownership */
const pq__bpe *pq__tokenizer_bpe(const pq_tokenizer *t);
void pq__bpe_free(pq__bpe *b);
pq_status pq__bpe_encode(pq_ctx *ctx, const pq_tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                         int64_t *n_ids);
const char *pq__bpe_piece_text(const pq_tokenizer *t, int32_t prev, int32_t id, size_t *len);

#endif
