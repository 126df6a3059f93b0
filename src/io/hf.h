/* Hugging Face model folders (config.json + safetensors weights + tokenizer files), and the
 * shape check every loader runs on a filled pq__source. pq__hf_load is declared in
 * io/source.h. */
#ifndef PQ_IO_HF_H
#define PQ_IO_HF_H

#include "io/source.h"

/* Checks src->cfg for consistency (positive sizes, heads % kv_heads == 0) and that every
 * tensor the forward pass needs is present with the shape the config implies:
 * embed, per layer norms, q/k/v/o, gate/up/down (q/k/v biases when cfg.qkv_bias), the
 * final norm, and lm_head unless cfg.tied (an lm_head present in a tied model must still
 * have the right shape). Integer and bool tensors are rejected. The message names the
 * first missing or mis-shaped tensor. */
pq_status pq__source_check_llama(pq_ctx *ctx, const pq__source *src);

/* Writes a transformers-style config.json for cfg to path, atomically. torch_dtype is the
 * weight dtype as transformers spells it ("float32", "float16", "bfloat16"), or NULL to
 * leave it out. The weights written beside it must use the HF RoPE layout (rotate_half);
 * converting from cfg.rope_halfsplit == 0 is the caller's job. */
pq_status pq__hf_write_config(pq_ctx *ctx, const pq__config *cfg, const char *path, const char *torch_dtype);

/* Architecture class name written to / expected in config.json ("LlamaForCausalLM", ...). */
const char *pq__hf_arch_class(pq__arch a);

#endif
