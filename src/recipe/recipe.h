/* The recipe's writers (recipe_json.c): its one-line text (reports, logs) and its JSON in
 * config.json's quantization_config. Parsing and the key rule are in the public API
 * (prunequant-compress.h: pq_recipe_*; recipe.c, layer_params.c). */
#ifndef PQ_RECIPE_H
#define PQ_RECIPE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "prunequant-pipeline.h"

/* "sparsegpt 2:4 + gptq 4b g128 sym joint fused" ("none" when nothing is compressed). */
void pq__recipe_text(const pq_layer_params *p, char *buf, size_t n);

/* Adds "quantization_config" to an HF config object: the recipe, the output format and the
 * calibration (file, windows, seed and the window starts [p->nsamples]); with overrides also
 * "overrides" (their JSON array) and "param_weighted" {"sparsity", "bits"} = weighted[0..1], the
 * sparsity of all linear weights and the bits of the kept ones, so that 1 - (1 - s) q / 16 is
 * the parameter-weighted TCr. Returns 0 where an allocation failed (the object is then
 * incomplete), else 1. */
int pq__recipe_quant_config(cJSON *config, const pq_compress_params *p, const int64_t *starts,
                            const double weighted[2]);
/* The sparsity of the recipe (N/M for a pattern, 0 without pruning) and its bits (16 without
 * quantization). */
double pq__recipe_sparsity(const pq_layer_params *p);
int pq__recipe_bits(const pq_layer_params *p);

#endif
