/* llama-quantize's per-tensor type mixture (see gguf_mix.h): tensor categories, the preset
 * rules per category, the counters that llama.cpp keeps while it visits the tensors in its
 * own order, and the block-size fallback. */
#include "quant/gguf_mix.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* llama.cpp's LLAMA_FTYPE numbers (llama.h). */
enum {
    FT_F32 = 0,
    FT_F16 = 1,
    FT_Q4_0 = 2,
    FT_Q4_1 = 3,
    FT_Q8_0 = 7,
    FT_Q5_0 = 8,
    FT_Q5_1 = 9,
    FT_Q2_K = 10,
    FT_Q3_K_S = 11,
    FT_Q3_K_M = 12,
    FT_Q3_K_L = 13,
    FT_Q4_K_S = 14,
    FT_Q4_K_M = 15,
    FT_Q5_K_S = 16,
    FT_Q5_K_M = 17,
    FT_Q6_K = 18,
    FT_BF16 = 32
};

static const struct {
    int id;
    const char *name;
    int64_t block;
} TYPES[] = {
    {PQ_MIX_F32, "F32", 1},     {PQ_MIX_F16, "F16", 1},     {PQ_MIX_BF16, "BF16", 1},   {PQ_MIX_Q4_0, "Q4_0", 32},
    {PQ_MIX_Q4_1, "Q4_1", 32},  {PQ_MIX_Q5_0, "Q5_0", 32},  {PQ_MIX_Q5_1, "Q5_1", 32},  {PQ_MIX_Q8_0, "Q8_0", 32},
    {PQ_MIX_Q2_K, "Q2_K", 256}, {PQ_MIX_Q3_K, "Q3_K", 256}, {PQ_MIX_Q4_K, "Q4_K", 256}, {PQ_MIX_Q5_K, "Q5_K", 256},
    {PQ_MIX_Q6_K, "Q6_K", 256},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static const struct {
    const char *name;
    int ftype, type, pure;
} PRESETS[] = {
    {"Q8_0", FT_Q8_0, PQ_MIX_Q8_0, 0},     {"Q6_K", FT_Q6_K, PQ_MIX_Q6_K, 0},
    {"Q5_K_M", FT_Q5_K_M, PQ_MIX_Q5_K, 0}, {"Q5_K_S", FT_Q5_K_S, PQ_MIX_Q5_K, 0},
    {"Q4_K_M", FT_Q4_K_M, PQ_MIX_Q4_K, 0}, {"Q4_K_S", FT_Q4_K_S, PQ_MIX_Q4_K, 0},
    {"Q3_K_L", FT_Q3_K_L, PQ_MIX_Q3_K, 0}, {"Q3_K_M", FT_Q3_K_M, PQ_MIX_Q3_K, 0},
    {"Q3_K_S", FT_Q3_K_S, PQ_MIX_Q3_K, 0}, {"Q2_K", FT_Q2_K, PQ_MIX_Q2_K, 0},
    {"Q5_0", FT_Q5_0, PQ_MIX_Q5_0, 0},     {"Q5_1", FT_Q5_1, PQ_MIX_Q5_1, 0},
    {"Q4_0", FT_Q4_0, PQ_MIX_Q4_0, 0},     {"Q4_1", FT_Q4_1, PQ_MIX_Q4_1, 0},
    {"F16", FT_F16, PQ_MIX_F16, 0},        {"BF16", FT_BF16, PQ_MIX_BF16, 0},
    {"F32", FT_F32, PQ_MIX_F32, 0},        {"Q5_K", FT_Q5_K_M, PQ_MIX_Q5_K, 1},
    {"Q4_K", FT_Q4_K_M, PQ_MIX_Q4_K, 1},   {"Q3_K", FT_Q3_K_M, PQ_MIX_Q3_K, 1},
};

static int name_ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

int pq__gguf_mix_parse(const char *name, int *ftype, int *default_type, int *pure) {
    for (size_t i = 0; name && i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        if (!name_ieq(name, PRESETS[i].name)) continue;
        if (ftype) *ftype = PRESETS[i].ftype;
        if (default_type) *default_type = PRESETS[i].type;
        if (pure) *pure = PRESETS[i].pure;
        return 1;
    }
    return 0;
}

int64_t pq__gguf_mix_block_size(int type) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (TYPES[i].id == type) return TYPES[i].block;
    return 0;
}

const char *pq__gguf_mix_type_name(int type) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (TYPES[i].id == type) return TYPES[i].name;
    return "unknown";
}

static int is_quantized(int type) {
    return pq__gguf_mix_block_size(type) > 1;
}

pq__gguf_mix_params pq__gguf_mix_params_default(void) {
    return (pq__gguf_mix_params){.output_type = -1, .token_embd_type = -1};
}

int pq__gguf_mix_fallback(int type, int64_t ncols) {
    int64_t qk = pq__gguf_mix_block_size(type);
    if (qk <= 1 || ncols % qk == 0) return type;
    int r = type; /* the 32-block types have nothing smaller to go to */
    switch (type) {
    case PQ_MIX_Q2_K:
    case PQ_MIX_Q3_K: r = PQ_MIX_Q4_0; break;
    case PQ_MIX_Q4_K: r = PQ_MIX_Q5_0; break;
    case PQ_MIX_Q5_K: r = PQ_MIX_Q5_1; break;
    case PQ_MIX_Q6_K: r = PQ_MIX_Q8_0; break;
    default: break;
    }
    return ncols % pq__gguf_mix_block_size(r) == 0 ? r : PQ_MIX_F16;
}

/* ---------------------------------------------------------------- which tensors */

/* Substrings that keep a tensor out of quantization wherever they occur in its name. */
static const char *const KEEP_SUBSTR[] = {
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
};

/* ggml_n_dims: trailing dims of size 1 do not count. */
static int n_dims(const int64_t ne[4]) {
    for (int i = 3; i >= 1; i--)
        if (ne[i] > 1) return i + 1;
    return 1;
}

/* llama.cpp tests "ends with weight" as rfind("weight") == size - 6, which a 5-character
 * name without "weight" also passes (npos == size - 6 in size_t); kept for the same result. */
static int ends_with_weight(const char *name) {
    size_t n = strlen(name);
    if (n == 5) return strstr(name, "weight") == NULL;
    return n >= 6 && strcmp(name + n - 6, "weight") == 0;
}

int pq__gguf_mix_quantizable(const pq__gguf_mix_tensor *t, int leave_output) {
    const char *name = t->name;
    if (n_dims(t->ne) < 2 || !ends_with_weight(name)) return 0;
    if (leave_output && strcmp(name, "output.weight") == 0) return 0;
    if (strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0) return 0;
    for (size_t i = 0; i < sizeof KEEP_SUBSTR / sizeof KEEP_SUBSTR[0]; i++)
        if (strstr(name, KEEP_SUBSTR[i])) return 0;
    return 1;
}

/* ---------------------------------------------------------------- categories and state */

typedef enum cat {
    C_TOKEN_EMBD,
    C_ATTN_Q,
    C_ATTN_V, /* also attn_qkv and attn_kv_b: llama.cpp's attn_v rules take them first */
    C_ATTN_K,
    C_ATTN_OUTPUT,
    C_FFN_UP,
    C_FFN_GATE,
    C_FFN_DOWN,
    C_OUTPUT,
    C_OTHER
} cat;

static cat category(const char *name) {
    if (strcmp(name, "output.weight") == 0) return C_OUTPUT;
    if (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "per_layer_token_embd.weight") == 0)
        return C_TOKEN_EMBD;
    if (strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight") || strstr(name, "attn_v.weight"))
        return C_ATTN_V;
    if (strstr(name, "attn_k.weight")) return C_ATTN_K;
    if (strstr(name, "attn_q.weight")) return C_ATTN_Q;
    if (strstr(name, "attn_output.weight")) return C_ATTN_OUTPUT;
    if (strstr(name, "ffn_up")) return C_FFN_UP;
    if (strstr(name, "ffn_gate")) return C_FFN_GATE;
    if (strstr(name, "ffn_down")) return C_FFN_DOWN;
    return C_OTHER;
}

typedef struct mix_state {
    int ftype, falcon, is_70b, tied;
    int64_t n_gqa, n_expert, n_layers;
    int64_t n_attn_v, i_attn_v, i_ffn_down; /* counters over the visit order */
    const pq__gguf_mix_params *p;
} mix_state;

/* Block number as llama.cpp reads it (sscanf "blk.%d."): -1 when the name has none. */
static int64_t block_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *s = name + 4;
    while (isspace((unsigned char)*s))
        s++;
    const char *d = s + (*s == '+' || *s == '-');
    if (!isdigit((unsigned char)*d)) return -1;
    return strtoll(s, NULL, 10);
}

/* The model types whose attn_v gets Q5_K for Q3_K / Q4_K (LLM_TYPE_70B in llama.cpp). */
static int is_70b(const pq__gguf_mix_model *m) {
    const char *a = m->arch ? m->arch : "";
    if (strcmp(a, "llama") == 0) return m->n_expert != 8 && m->n_layers == 80 && m->n_head != m->n_head_kv;
    if (strcmp(a, "qwen2") == 0 || strcmp(a, "deci") == 0 || strcmp(a, "olmo") == 0) return m->n_layers == 80;
    if (strcmp(a, "jais2") == 0) return m->n_layers == 68;
    return 0;
}

static int use_more_bits(int64_t i, int64_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* ---------------------------------------------------------------- rules per category */

static int rule_output(const mix_state *s, int type, const pq__gguf_mix_tensor *t) {
    if (s->p->output_type >= 0) return s->p->output_type;
    if (s->falcon || t->ne[0] % pq__gguf_mix_block_size(type) != 0) return PQ_MIX_Q8_0;
    return type == PQ_MIX_Q8_0 ? type : PQ_MIX_Q6_K;
}

static int rule_attn_v(mix_state *s, int type) {
    const int ft = s->ftype;
    if (ft == FT_Q2_K)
        type = s->n_gqa >= 4 ? PQ_MIX_Q4_K : PQ_MIX_Q3_K;
    else if (ft == FT_Q3_K_M)
        type = s->i_attn_v < 2 ? PQ_MIX_Q5_K : PQ_MIX_Q4_K;
    else if (ft == FT_Q3_K_L)
        type = PQ_MIX_Q5_K;
    else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(s->i_attn_v, s->n_attn_v))
        type = PQ_MIX_Q6_K;
    else if (ft == FT_Q4_K_S && s->i_attn_v < 4)
        type = PQ_MIX_Q5_K;
    /* 70B: 8 heads share attn_v, which is 8x smaller than attn_q: more bits cost little */
    if (s->is_70b && (type == PQ_MIX_Q3_K || type == PQ_MIX_Q4_K)) type = PQ_MIX_Q5_K;
    if (s->n_expert == 8) type = PQ_MIX_Q8_0;
    s->i_attn_v++;
    return type;
}

static int rule_ffn_down(const mix_state *s, int type, int64_t i, int64_t n) {
    const int ft = s->ftype, umb = use_more_bits(i, n);
    switch (ft) {
    case FT_Q2_K: return PQ_MIX_Q3_K;
    case FT_Q3_K_M: return i < n / 16 ? PQ_MIX_Q5_K : !s->falcon || umb ? PQ_MIX_Q4_K : PQ_MIX_Q3_K;
    case FT_Q3_K_L: return s->falcon ? PQ_MIX_Q4_K : PQ_MIX_Q5_K;
    case FT_Q4_K_M:
        if (s->falcon) return i < n / 16 ? PQ_MIX_Q6_K : umb ? PQ_MIX_Q5_K : PQ_MIX_Q4_K;
        return umb ? PQ_MIX_Q6_K : type;
    case FT_Q5_K_M: return umb ? PQ_MIX_Q6_K : type;
    case FT_Q4_K_S: return !s->falcon && i < n / 8 ? PQ_MIX_Q5_K : type;
    case FT_Q4_0:
    case FT_Q5_0:
        /* llama.cpp guards the first ffn_down layers only when an imatrix is given */
        if (s->p->has_imatrix && i < n / 8) return ft == FT_Q4_0 ? PQ_MIX_Q4_1 : PQ_MIX_Q5_1;
        return type;
    default: return type;
    }
}

static int rule_attn_output(const mix_state *s, int type) {
    const int ft = s->ftype;
    if (s->falcon) return ft == FT_Q3_K_L ? PQ_MIX_Q4_K : type;
    if (s->n_expert == 8)
        return ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_Q4_K_S || ft == FT_Q4_K_M ? PQ_MIX_Q5_K
                                                                                                         : type;
    if (ft == FT_Q2_K) return PQ_MIX_Q3_K;
    if (ft == FT_Q3_K_M) return PQ_MIX_Q4_K;
    if (ft == FT_Q3_K_L) return PQ_MIX_Q5_K;
    return type;
}

/* The mixture for one quantizable tensor (llama_tensor_get_type_impl for these ftypes). */
static pq_status mixture(pq_ctx *ctx, mix_state *s, const pq__gguf_mix_tensor *t, int type, int *out) {
    const cat c = category(t->name);
    if (c == C_OUTPUT || (s->tied && c == C_TOKEN_EMBD)) {
        type = rule_output(s, type, t);
    } else if (c == C_TOKEN_EMBD) {
        if (s->p->token_embd_type >= 0) type = s->p->token_embd_type;
    } else if (c == C_ATTN_V) {
        type = rule_attn_v(s, type);
    } else if (c == C_ATTN_K) {
        if (s->n_expert == 8) type = PQ_MIX_Q8_0;
    } else if (c == C_FFN_DOWN) {
        int64_t i = s->i_ffn_down, n = s->n_layers;
        if (s->n_expert > 1) { /* experts are not stored in layer order: the name says */
            i = block_of(t->name);
            if (i < 0 || i >= n)
                return pq__fail(ctx, PQ_ERR_INVALID, "%s: no block number in [0, %lld) for a MoE ffn_down tensor",
                                t->name, (long long)n);
        }
        type = rule_ffn_down(s, type, i, n);
        s->i_ffn_down++;
    } else if (c == C_ATTN_OUTPUT) {
        type = rule_attn_output(s, type);
    }
    *out = type;
    return PQ_OK;
}

/* ---------------------------------------------------------------- the plan */

typedef struct order_item {
    int64_t idx, block;
    const char *name;
} order_item;

/* llama.cpp's weights_map order: by block number (-1 first), then by name (bytewise). */
static int order_cmp(const void *a, const void *b) {
    const order_item *x = a, *y = b;
    if (x->block != y->block) return x->block < y->block ? -1 : 1;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

static pq_status check_args(pq_ctx *ctx, const char *preset, const pq__gguf_mix_params *p, int *ftype, int *type,
                            int *pure) {
    if (!pq__gguf_mix_parse(preset, ftype, type, pure))
        return pq__fail(ctx, PQ_ERR_INVALID, "unknown GGUF type or preset '%s'", preset ? preset : "(null)");
    if (p->output_type >= 0 && !pq__gguf_mix_block_size(p->output_type))
        return pq__fail(ctx, PQ_ERR_INVALID, "unknown output tensor type %d", p->output_type);
    if (p->token_embd_type >= 0 && !pq__gguf_mix_block_size(p->token_embd_type))
        return pq__fail(ctx, PQ_ERR_INVALID, "unknown token embedding type %d", p->token_embd_type);
    return PQ_OK;
}

/* One tensor (llama_tensor_get_type): overrides, then the mixture, then the fallback. */
static pq_status plan_one(pq_ctx *ctx, mix_state *s, const pq__gguf_mix_tensor *t, int def, int pure, int *out) {
    const pq__gguf_mix_params *p = s->p;
    const cat c = category(t->name);
    if (!pq__gguf_mix_quantizable(t, p->leave_output)) {
        *out = t->type;
        return PQ_OK;
    }
    if (p->token_embd_type >= 0 && c == C_TOKEN_EMBD) { /* taken as given: no fallback */
        *out = p->token_embd_type;
        return PQ_OK;
    }
    if (p->output_type >= 0 && c == C_OUTPUT) {
        *out = p->output_type;
        return PQ_OK;
    }
    int type = def;
    if (is_quantized(def)) {
        if (!pure) {
            pq_status st = mixture(ctx, s, t, type, &type);
            if (st) return st;
        }
        type = pq__gguf_mix_fallback(type, t->ne[0]);
    }
    *out = type;
    return PQ_OK;
}

pq_status pq__gguf_mix_plan(pq_ctx *ctx, const char *preset, const pq__gguf_mix_params *p,
                            const pq__gguf_mix_model *m, const pq__gguf_mix_tensor *t, int64_t n, int *types_out) {
    const pq__gguf_mix_params defaults = pq__gguf_mix_params_default();
    if (!p) p = &defaults;
    int ftype = 0, def = 0, pure = 0;
    pq_status st = check_args(ctx, preset, p, &ftype, &def, &pure);
    if (st) return st;
    mix_state s = {.ftype = ftype,
                   .falcon = m->arch && strcmp(m->arch, "falcon") == 0,
                   .is_70b = is_70b(m),
                   .tied = 1,
                   .n_gqa = m->n_head_kv > 0 ? m->n_head / m->n_head_kv : 0,
                   .n_expert = m->n_expert > 1 ? m->n_expert : 1,
                   .n_layers = m->n_layers,
                   .p = p};
    /* "tied" means no output.weight at all; attn_v-like tensors are counted over the whole file */
    for (int64_t i = 0; i < n; i++) {
        const cat c = category(t[i].name);
        if (c == C_OUTPUT) s.tied = 0;
        if (c == C_ATTN_V) s.n_attn_v++;
    }
    order_item *ord = malloc((size_t)(n > 0 ? n : 1) * sizeof *ord);
    if (!ord) return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory (GGUF type plan of %lld tensors)", (long long)n);
    for (int64_t i = 0; i < n; i++)
        ord[i] = (order_item){.idx = i, .block = block_of(t[i].name), .name = t[i].name};
    qsort(ord, (size_t)n, sizeof *ord, order_cmp);
    for (int64_t k = 0; k < n && st == PQ_OK; k++)
        st = plan_one(ctx, &s, &t[ord[k].idx], def, pure || p->pure, &types_out[ord[k].idx]);
    free(ord);
    return st;
}
