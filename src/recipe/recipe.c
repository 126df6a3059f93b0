/* Which recipe keys act under a recipe: one rule for compress flags, recipe files, layer flags
 * and sweep grids, so that a key without effect is an error everywhere and the defaults that
 * follow from what was given are the same everywhere. */
#include <string.h>

#include "common/common.h"
#include "prunequant-compress.h"

static const char *const key_names[] = {"prune",     "sparsity", "pattern",   "quant",         "bits",
                                        "group",     "sym",      "act_order", "static_groups", "joint",
                                        "keep_mask", "percdamp", "blocksize"};
static const char *const flag_names[] = {"--prune",
                                         "--sparsity",
                                         "--pattern",
                                         "--quant",
                                         "--bits",
                                         "--group",
                                         "--sym",
                                         "--act-order",
                                         "--static-groups",
                                         "--joint",
                                         "--keep-mask/--no-keep-mask",
                                         "--percdamp",
                                         "--blocksize"};
#define N_KEYS ((int)(sizeof key_names / sizeof key_names[0]))

const char *pq_recipe_key_name(unsigned key, int flag) {
    for (int i = 0; i < N_KEYS; i++)
        if (key == 1u << i) return flag ? flag_names[i] : key_names[i];
    return NULL;
}

unsigned pq_recipe_key_parse(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(name, key_names[i])) return 1u << i;
    return 0;
}

void pq_recipe_apply_defaults(pq_layer_params *p, unsigned given) {
    const unsigned qkeys = PQ_KEY_BITS | PQ_KEY_GROUP | PQ_KEY_SYM | PQ_KEY_ACT_ORDER | PQ_KEY_STATIC_GROUPS;
    /* "--prune X" alone prunes only; a quantization key without --quant means the default
     * quantizer (GPTQ), as it does without pruning */
    if (given & PQ_KEY_QUANT) return;
    if (given & qkeys) {
        if (p->quant == PQ_QUANT_NONE) p->quant = PQ_QUANT_GPTQ;
    } else if (p->prune != PQ_PRUNE_NONE) {
        p->quant = PQ_QUANT_NONE;
    }
}

/* Every given key without effect under p (0 when all act); *why (may be NULL) gets the reason
 * of the lowest one. The rules are in key order, so the first match is the lowest key. */
static unsigned unused_keys(const pq_layer_params *p, unsigned given, const char **why) {
    const int pruned = p->prune != PQ_PRUNE_NONE, quant = p->quant != PQ_QUANT_NONE, both = pruned && quant;
    const int obs = p->quant == PQ_QUANT_GPTQ || p->prune == PQ_PRUNE_SPARSEGPT;
    const struct {
        unsigned key;
        int acts;
        const char *why;
    } rule[] = {
        {PQ_KEY_SPARSITY, pruned, "has no effect without pruning: add --prune magnitude|wanda|sparsegpt"},
        {PQ_KEY_PATTERN, pruned, "has no effect without pruning: add --prune magnitude|wanda|sparsegpt"},
        {PQ_KEY_BITS, quant, "has no effect without quantization: add --quant rtn|gptq"},
        {PQ_KEY_GROUP, quant, "has no effect without quantization: add --quant rtn|gptq"},
        {PQ_KEY_SYM, quant, "has no effect without quantization: add --quant rtn|gptq"},
        {PQ_KEY_ACT_ORDER, p->quant == PQ_QUANT_GPTQ, "needs --quant gptq"},
        {PQ_KEY_STATIC_GROUPS, quant && p->group_size > 0, "needs quantization with --group G"},
        {PQ_KEY_JOINT, both, "has no effect unless both --prune and --quant are given"},
        {PQ_KEY_KEEP_MASK, both && p->joint == PQ_JOINT_A,
         "act only in joint mode a (--prune and --quant, --joint a)"},
        {PQ_KEY_PERCDAMP, obs, "has no effect without gptq or sparsegpt"},
        {PQ_KEY_BLOCKSIZE, obs, "has no effect without gptq or sparsegpt"},
    };
    unsigned unused = 0;
    for (size_t i = 0; i < sizeof rule / sizeof rule[0]; i++)
        if ((given & rule[i].key) && !rule[i].acts) {
            if (why && !unused) *why = rule[i].why;
            unused |= rule[i].key;
        }
    return unused;
}

unsigned pq_recipe_unused(const pq_layer_params *p, unsigned given) {
    return unused_keys(p, given, NULL);
}

pq_status pq_recipe_check(pq_ctx *ctx, pq_layer_params *p, unsigned given, int flags) {
    if ((given & PQ_KEY_SPARSITY) && (given & PQ_KEY_PATTERN))
        return pq__fail(ctx, PQ_ERR_INVALID, "give %s or %s, not both", pq_recipe_key_name(PQ_KEY_SPARSITY, flags),
                        pq_recipe_key_name(PQ_KEY_PATTERN, flags));
    pq_recipe_apply_defaults(p, given);
    const char *why = NULL;
    const unsigned all = unused_keys(p, given, &why), k = all & (0u - all); /* the lowest */
    if (k) return pq__fail(ctx, PQ_ERR_INVALID, "%s %s", pq_recipe_key_name(k, flags), why);
    return PQ_OK;
}
