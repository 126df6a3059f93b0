/* Hugging Face model folders: config.json, model.safetensors (or shards listed in
 * model.safetensors.index.json), tokenizer.json or tokenizer.model. Tensor names in these folders are the
 * canonical names of io/source.h already, and q/k rows use the rotate_half RoPE layout. */
#include "kernels/dtype.h"
#include "io/hf.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/packed_names.h"
#include "io/safetensors.h"

#define HF_JSON_LIMIT ((size_t)16 << 20)
/* Every size in a config is bounded so that products of two of them fit in int64_t. */
#define HF_MAX_DIM ((int64_t)INT32_MAX)

static const struct {
    const char *cls, *model_type;
    pq__arch arch;
} hf_arches[] = {
    {"LlamaForCausalLM", "llama", PQ_ARCH_LLAMA},
    {"MistralForCausalLM", "mistral", PQ_ARCH_MISTRAL},
    {"Qwen2ForCausalLM", "qwen2", PQ_ARCH_QWEN2},
};
#define N_HF_ARCHES ((int)(sizeof hf_arches / sizeof hf_arches[0]))

const char *pq__hf_arch_class(pq__arch a) {
    for (int i = 0; i < N_HF_ARCHES; i++)
        if (hf_arches[i].arch == a) return hf_arches[i].cls;
    return "?";
}

static const char *hf_model_type(pq__arch a) {
    for (int i = 0; i < N_HF_ARCHES; i++)
        if (hf_arches[i].arch == a) return hf_arches[i].model_type;
    return "?";
}

/* ---------------------------------------------------------------- config.json reading */

typedef struct cfg_reader {
    pq_ctx *ctx;
    const char *path; /* for messages */
} cfg_reader;

static int is_absent(const cJSON *v) {
    return !v || cJSON_IsNull(v);
}

/* A positive number field: an integer <= HF_MAX_DIM (integer) or a finite float; def when
 * absent or null and not required. prefix names the enclosing object in messages. */
static pq_status get_positive(const cfg_reader *r, const cJSON *obj, const char *prefix, const char *key,
                              int required, double def, int integer, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (is_absent(v)) {
        if (required) return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field '%s%s': missing", r->path, prefix, key);
        *out = def;
        return PQ_OK;
    }
    if (!cJSON_IsNumber(v))
        return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field '%s%s': not a number", r->path, prefix, key);
    double d = v->valuedouble;
    if (integer) {
        if (!(d > 0) || d != floor(d))
            return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field '%s%s': %g is not a positive integer", r->path, prefix,
                            key, d);
        if (d > (double)HF_MAX_DIM)
            return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field '%s%s': %g is too large", r->path, prefix, key, d);
    } else if (!(d > 0) || !isfinite((float)d)) {
        return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field '%s%s': %g is not a positive number", r->path, prefix, key,
                        d);
    }
    *out = d;
    return PQ_OK;
}

/* def is exact in a double: every default is far below 2^53 */
static pq_status get_pos_int(const cfg_reader *r, const cJSON *obj, const char *prefix, const char *key, int required,
                             int64_t def, int64_t *out) {
    double d;
    pq_status st = get_positive(r, obj, prefix, key, required, (double)def, 1, &d);
    if (st == PQ_OK) *out = (int64_t)d;
    return st;
}

static pq_status get_pos_float(const cfg_reader *r, const cJSON *obj, const char *prefix, const char *key,
                               int required, double def, float *out) {
    double d;
    pq_status st = get_positive(r, obj, prefix, key, required, def, 0, &d);
    if (st == PQ_OK) *out = (float)d;
    return st;
}

static pq_status get_bool(const cfg_reader *r, const cJSON *obj, const char *key, int def, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (is_absent(v)) {
        *out = def;
    } else if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
    } else if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) {
        *out = v->valuedouble == 1;
    } else {
        return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field '%s': not a boolean", r->path, key);
    }
    return PQ_OK;
}

/* bos/eos ids: an integer, or a list whose first element is used (eos in Llama 3 is a
 * list); anything else means "not given". */
static int32_t get_token_id(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsArray(v)) v = v->child;
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > INT32_MAX || d != floor(d)) return -1;
    return (int32_t)d;
}

static pq_status parse_rope_scaling(const cfg_reader *r, const cJSON *root, pq__config *c) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    c->rope_scaling = 0;
    c->rope_factor = 1.0f;
    c->rope_low_freq_factor = c->rope_high_freq_factor = 0.0f;
    c->rope_orig_max_pos = 0;
    if (is_absent(rs)) return PQ_OK;
    if (!cJSON_IsObject(rs))
        return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field 'rope_scaling': not an object or null", r->path);
    /* transformers renamed "type" to "rope_type"; both occur in the wild */
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (is_absent(type)) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (is_absent(type))
        return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field 'rope_scaling.rope_type': missing", r->path);
    if (!cJSON_IsString(type))
        return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field 'rope_scaling.rope_type': not a string", r->path);
    const char *t = type->valuestring;
    const char *p = "rope_scaling.";
    pq_status st;
    if (!strcmp(t, "default")) return PQ_OK;
    if (!strcmp(t, "linear")) {
        c->rope_scaling = 2;
        return get_pos_float(r, rs, p, "factor", 1, 1.0, &c->rope_factor);
    }
    if (!strcmp(t, "llama3")) {
        c->rope_scaling = 1;
        if ((st = get_pos_float(r, rs, p, "factor", 1, 1.0, &c->rope_factor)) != PQ_OK) return st;
        if ((st = get_pos_float(r, rs, p, "low_freq_factor", 1, 1.0, &c->rope_low_freq_factor)) != PQ_OK) return st;
        if ((st = get_pos_float(r, rs, p, "high_freq_factor", 1, 1.0, &c->rope_high_freq_factor)) != PQ_OK) return st;
        if ((st = get_pos_int(r, rs, p, "original_max_position_embeddings", 1, 0, &c->rope_orig_max_pos)) != PQ_OK)
            return st;
        /* the llama3 formula divides by (high - low) */
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return pq__fail(r->ctx, PQ_ERR_FORMAT,
                            "%s: field 'rope_scaling.high_freq_factor': must exceed low_freq_factor", r->path);
        return PQ_OK;
    }
    return pq__fail(r->ctx, PQ_ERR_UNSUPPORTED,
                    "%s: field 'rope_scaling.rope_type': '%.60s' is not supported (default, linear, llama3)", r->path,
                    t);
}

/* architectures[0] -> c->arch. */
static pq_status parse_arch(const cfg_reader *r, const cJSON *root, pq__config *c) {
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const char *cls = NULL;
    if (cJSON_IsArray(archs) && cJSON_IsString(archs->child)) {
        cls = archs->child->valuestring;
    } else if (!is_absent(archs)) {
        return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field 'architectures': not a list of strings", r->path);
    } else {
        return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field 'architectures': missing", r->path);
    }
    int found = 0;
    for (int i = 0; i < N_HF_ARCHES; i++)
        if (!strcmp(cls, hf_arches[i].cls)) {
            c->arch = hf_arches[i].arch;
            found = 1;
        }
    if (!found)
        return pq__fail(r->ctx, PQ_ERR_UNSUPPORTED,
                        "%s: architecture '%.80s' is not supported (LlamaForCausalLM, MistralForCausalLM, "
                        "Qwen2ForCausalLM)",
                        r->path, cls);
    return PQ_OK;
}

/* quantization_config: only prunequant's own, whose declared recipe is recorded. */
static pq_status parse_quant_config(const cfg_reader *r, const cJSON *root, pq__config *c) {
    /* checkpoints quantized by other tools keep packed tensors under other names */
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    const cJSON *qm = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    /* ... except prunequant's own (packed-v1/v2, io/packed_names.h), which the model loader decodes */
    if (qc && !(cJSON_IsString(qm) && !strcmp(qm->valuestring, "prunequant")))
        return pq__fail(r->ctx, PQ_ERR_UNSUPPORTED,
                        "%s: field 'quantization_config': pre-quantized checkpoints are not supported", r->path);
    if (!qc) return PQ_OK;
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(qc, "sparsity");
    const cJSON *qq = cJSON_GetObjectItemCaseSensitive(qc, "quant");
    const cJSON *qb = cJSON_GetObjectItemCaseSensitive(qc, "bits");
    const int quantized = cJSON_IsString(qq) && strcmp(qq->valuestring, "none");
    if (!cJSON_IsNumber(sp) || sp->valuedouble < 0 || sp->valuedouble >= 1 || !cJSON_IsString(qq) ||
        (quantized && (!cJSON_IsNumber(qb) || qb->valuedouble < 2 || qb->valuedouble > 8)))
        return pq__fail(r->ctx, PQ_ERR_FORMAT,
                        "%s: field 'quantization_config': 'sparsity', 'quant' or 'bits' missing or out of range",
                        r->path);
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(qc, "prune");
    c->declared_sparsity = cJSON_IsString(pm) && !strcmp(pm->valuestring, "none") ? 0.0 : sp->valuedouble;
    c->declared_bits = quantized ? (int)qb->valuedouble : 16;
    /* per-linear overrides: the parameter-weighted sparsity and bits of what was applied */
    const cJSON *pw = cJSON_GetObjectItemCaseSensitive(qc, "param_weighted");
    if (!pw) return PQ_OK;
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(pw, "sparsity"),
                *wb = cJSON_GetObjectItemCaseSensitive(pw, "bits");
    if (!cJSON_IsNumber(ws) || !(ws->valuedouble >= 0 && ws->valuedouble < 1) || !cJSON_IsNumber(wb) ||
        !(wb->valuedouble >= 2 && wb->valuedouble <= 16))
        return pq__fail(
            r->ctx, PQ_ERR_FORMAT,
            "%s: field 'quantization_config.param_weighted': 'sparsity' or 'bits' missing or out of range", r->path);
    c->declared_sparsity = ws->valuedouble;
    c->declared_bits = wb->valuedouble;
    return PQ_OK;
}

/* The sizes: dim, hidden, layers, heads (and their consistency), vocab, context. */
static pq_status parse_sizes(const cfg_reader *r, const cJSON *root, pq__config *c) {
    pq_status st;
    if ((st = get_pos_int(r, root, "", "hidden_size", 1, 0, &c->dim)) != PQ_OK) return st;
    if ((st = get_pos_int(r, root, "", "intermediate_size", 1, 0, &c->hidden_dim)) != PQ_OK) return st;
    if ((st = get_pos_int(r, root, "", "num_hidden_layers", 1, 0, &c->n_layers)) != PQ_OK) return st;
    if ((st = get_pos_int(r, root, "", "num_attention_heads", 1, 0, &c->n_heads)) != PQ_OK) return st;
    if ((st = get_pos_int(r, root, "", "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads)) != PQ_OK) return st;
    if (c->n_heads % c->n_kv_heads)
        return pq__fail(r->ctx, PQ_ERR_FORMAT,
                        "%s: field 'num_key_value_heads': %" PRId64 " does not divide num_attention_heads %" PRId64,
                        r->path, c->n_kv_heads, c->n_heads);
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (is_absent(hd) && c->dim % c->n_heads)
        return pq__fail(r->ctx, PQ_ERR_FORMAT,
                        "%s: field 'head_dim': missing, and hidden_size %" PRId64
                        " is not a multiple of num_attention_heads %" PRId64,
                        r->path, c->dim, c->n_heads);
    if ((st = get_pos_int(r, root, "", "head_dim", 0, c->dim / c->n_heads, &c->head_dim)) != PQ_OK) return st;
    if (c->head_dim % 2)
        return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: field 'head_dim': %" PRId64 " is odd (RoPE rotates pairs)",
                        r->path, c->head_dim);
    if ((st = get_pos_int(r, root, "", "vocab_size", 1, 0, &c->vocab_size)) != PQ_OK) return st;
    return get_pos_int(r, root, "", "max_position_embeddings", 0, 2048, &c->max_seq_len);
}

/* Sliding-window attention equals full attention within the window, so limiting the
 * context to the window keeps every result exact. */
static pq_status parse_sliding_window(const cfg_reader *r, const cJSON *root, pq__config *c) {
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    int use_sw = c->arch == PQ_ARCH_MISTRAL;
    pq_status st;
    if (c->arch == PQ_ARCH_QWEN2 && (st = get_bool(r, root, "use_sliding_window", 0, &use_sw)) != PQ_OK) return st;
    if (use_sw && cJSON_IsNumber(sw) && sw->valuedouble >= 1 && sw->valuedouble < (double)c->max_seq_len) {
        int64_t w = (int64_t)sw->valuedouble;
        pq__log(r->ctx, PQ_LOG_WARN,
                "%s: sliding_window %" PRId64 ": context limited to %" PRId64 " (was %" PRId64 ")", r->path, w, w,
                c->max_seq_len);
        c->max_seq_len = w;
    }
    return PQ_OK;
}

/* Fills c from the parsed config.json. */
static pq_status parse_config(const cfg_reader *r, const cJSON *root, pq__config *c) {
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(root)) return pq__fail(r->ctx, PQ_ERR_FORMAT, "%s: not a JSON object", r->path);
    pq_status st;
    if ((st = parse_arch(r, root, c)) != PQ_OK) return st;
    if ((st = parse_quant_config(r, root, c)) != PQ_OK) return st;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (cJSON_IsString(act) && strcmp(act->valuestring, "silu") && strcmp(act->valuestring, "swish"))
        return pq__fail(r->ctx, PQ_ERR_UNSUPPORTED, "%s: field 'hidden_act': '%.40s' is not supported (silu)",
                        r->path, act->valuestring);
    if ((st = parse_sizes(r, root, c)) != PQ_OK) return st;
    if ((st = get_pos_float(r, root, "", "rms_norm_eps", 0, 1e-6, &c->norm_eps)) != PQ_OK) return st;
    if ((st = get_pos_float(r, root, "", "rope_theta", 0, 10000.0, &c->rope_theta)) != PQ_OK) return st;
    if ((st = get_bool(r, root, "tie_word_embeddings", 0, &c->tied)) != PQ_OK) return st;
    if (c->arch == PQ_ARCH_QWEN2) {
        c->qkv_bias = 1; /* Qwen2 always has q/k/v biases (and no flag for them) */
    } else if (c->arch == PQ_ARCH_LLAMA) {
        if ((st = get_bool(r, root, "attention_bias", 0, &c->qkv_bias)) != PQ_OK) return st;
    }
    if ((st = parse_rope_scaling(r, root, c)) != PQ_OK) return st;
    c->bos_id = get_token_id(root, "bos_token_id");
    c->eos_id = get_token_id(root, "eos_token_id");
    c->rope_halfsplit = 1;
    return parse_sliding_window(r, root, c);
}

/* ---------------------------------------------------------------- weights */

static int shard_name_ok(const char *s) {
    size_t n = strlen(s);
    return n > 0 && n < 256 && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

/* The shards of an index: distinct file names in order of first mention, and the range
 * of tensors each one added to src. */
typedef struct hf_shards {
    const char **names; /* [n] borrowed from the index JSON */
    int64_t *first;     /* [n + 1] tensor index range of each shard in src */
    int n, max;
} hf_shards;

/* Checks every weight_map entry and collects the distinct shard names. */
static pq_status collect_shards(pq_ctx *ctx, const char *index_path, const cJSON *wm, hf_shards *sh) {
    for (const cJSON *e = wm->child; e; e = e->next) {
        const char *tname = e->string ? e->string : "";
        if (!cJSON_IsString(e))
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: weight_map: tensor '%.200s': shard is not a string", index_path,
                            tname);
        if (!shard_name_ok(e->valuestring))
            return pq__fail(ctx, PQ_ERR_FORMAT,
                            "%s: weight_map: tensor '%.200s': shard file name '%.200s' not allowed", index_path,
                            tname, e->valuestring);
        int k = 0;
        while (k < sh->n && strcmp(sh->names[k], e->valuestring))
            k++;
        if (k == sh->n) {
            if (sh->n == sh->max)
                return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: more than %d shard files", index_path, sh->max);
            sh->names[sh->n++] = e->valuestring;
        }
    }
    return PQ_OK;
}

static pq_status load_shards(pq_ctx *ctx, const char *dir, int use_mmap, pq__source *src, hf_shards *sh) {
    for (int k = 0; k < sh->n; k++) {
        char *p = pq__path_join_ctx(ctx, dir, sh->names[k]);
        if (!p) return PQ_ERR_NOMEM;
        sh->first[k] = src->n_tensors;
        pq_status st = pq__safetensors_load_file(ctx, p, use_mmap, src);
        free(p);
        if (st != PQ_OK) return st;
    }
    sh->first[sh->n] = src->n_tensors;
    return PQ_OK;
}

/* Every listed tensor must be in the shard the index names. */
static pq_status check_shard_members(pq_ctx *ctx, const char *index_path, const cJSON *wm, const pq__source *src,
                                     const hf_shards *sh) {
    pq__name_index idx = {0};
    pq_status st = pq__name_index_build(ctx, src, src->n_tensors, &idx);
    for (const cJSON *e = wm->child; e && st == PQ_OK; e = e->next) {
        int k = 0;
        while (strcmp(sh->names[k], e->valuestring))
            k++;
        int64_t j = pq__name_index_find(&idx, src, e->string ? e->string : "");
        if (j < sh->first[k] || j >= sh->first[k + 1])
            st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor '%.200s': not found in shard '%s'", index_path,
                          e->string ? e->string : "", sh->names[k]);
    }
    pq__name_index_free(&idx);
    return st;
}

/* Parses a JSON file read by pq__read_text; the message gives the byte where parsing stopped. */
static pq_status parse_json_text(pq_ctx *ctx, const char *path, const char *text, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithOpts(text, &end, 1);
    if (*out) return PQ_OK;
    return pq__fail(ctx, PQ_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", path,
                    end && end >= text ? (size_t)(end - text) : 0);
}

static pq_status load_index(pq_ctx *ctx, const char *dir, const char *index_path, int use_mmap, pq__source *src) {
    char *text = NULL;
    pq_status st = pq__read_text(ctx, index_path, HF_JSON_LIMIT, &text, NULL);
    if (st != PQ_OK) return st;
    cJSON *root = NULL;
    hf_shards sh = {.max = PQ_SOURCE_MAX_FILES - src->n_files};
    if ((st = parse_json_text(ctx, index_path, text, &root)) != PQ_OK) goto done;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || is_absent(wm)) {
        st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: field 'weight_map': missing", index_path);
        goto done;
    }
    if (!cJSON_IsObject(wm) || !wm->child) {
        st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: field 'weight_map': not a non-empty object", index_path);
        goto done;
    }
    sh.names = pq__calloc(ctx, (size_t)sh.max + 1, sizeof *sh.names, "the shard names");
    sh.first = sh.names ? pq__calloc(ctx, (size_t)sh.max + 2, sizeof *sh.first, "the shard ranges") : NULL;
    if (!sh.first) {
        st = pq__fail_prefix(ctx, PQ_ERR_NOMEM, "%s", index_path);
        goto done;
    }
    if ((st = collect_shards(ctx, index_path, wm, &sh)) != PQ_OK) goto done;
    if ((st = load_shards(ctx, dir, use_mmap, src, &sh)) != PQ_OK) goto done;
    st = check_shard_members(ctx, index_path, wm, src, &sh);
done:
    free(sh.names);
    free(sh.first);
    cJSON_Delete(root);
    free(text);
    return st;
}

static pq_status load_weights(pq_ctx *ctx, const char *dir, int use_mmap, pq__source *src) {
    char *index_path = pq__path_join_ctx(ctx, dir, "model.safetensors.index.json");
    char *single = pq__path_join_ctx(ctx, dir, "model.safetensors");
    char *pickle = pq__path_join_ctx(ctx, dir, "pytorch_model.bin");
    pq_status st;
    if (!index_path || !single || !pickle)
        st = PQ_ERR_NOMEM;
    else if (pq__file_exists(index_path))
        st = load_index(ctx, dir, index_path, use_mmap, src);
    else if (pq__file_exists(single))
        st = pq__safetensors_load_file(ctx, single, use_mmap, src);
    else if (pq__file_exists(pickle))
        st = pq__fail(ctx, PQ_ERR_UNSUPPORTED,
                      "%s: only pytorch_model.bin (pickle) found; convert the weights to safetensors", dir);
    else
        st = pq__fail(ctx, PQ_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", dir);
    free(index_path);
    free(single);
    free(pickle);
    return st;
}

/* ---------------------------------------------------------------- shape check */

static void fmt_shape(char *buf, size_t n, int nd, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

typedef struct shape_checker {
    pq_ctx *ctx;
    const pq__source *src;
    const char *where;
    pq__name_index idx;
} shape_checker;

/* Checks that name is present (unless optional) with shape [d0] (d1 < 0) or [d0, d1]. */
static pq_status expect(shape_checker *c, const char *name, int64_t d0, int64_t d1, int optional) {
    int64_t j = pq__name_index_find(&c->idx, c->src, name);
    if (j < 0) {
        if (optional) return PQ_OK;
        return pq__fail(c->ctx, PQ_ERR_FORMAT, "%s: tensor '%s': missing", c->where, name);
    }
    const pq__tensor *t = &c->src->tensors[j];
    int nd = d1 < 0 ? 1 : 2;
    int64_t want[2] = {d0, d1};
    if (t->n_dims != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        char got[96], exp[64];
        fmt_shape(got, sizeof got, t->n_dims, t->shape);
        fmt_shape(exp, sizeof exp, nd, want);
        return pq__fail(c->ctx, PQ_ERR_FORMAT, "%s: tensor '%s': shape %s, expected %s", c->where, name, got, exp);
    }
    switch (t->dtype) {
    case PQ_DTYPE_F32:
    case PQ_DTYPE_F16:
    case PQ_DTYPE_BF16:
    case PQ_DTYPE_F64:
    case PQ_DTYPE_Q8_0:
    case PQ_DTYPE_Q4_0:
    case PQ_DTYPE_Q4_1:
    case PQ_DTYPE_Q5_0:
    case PQ_DTYPE_Q5_1:
    case PQ_DTYPE_Q2_K:
    case PQ_DTYPE_Q3_K:
    case PQ_DTYPE_Q4_K:
    case PQ_DTYPE_Q5_K:
    case PQ_DTYPE_Q6_K: return PQ_OK;
    default:
        return pq__fail(c->ctx, PQ_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not a floating-point type",
                        c->where, name, pq_dtype_name(t->dtype));
    }
}

pq_status pq__source_check_llama(pq_ctx *ctx, const pq__source *src) {
    const pq__config *g = &src->cfg;
    const char *where = src->path ? src->path : src->format[0] ? src->format : "model";
    const struct {
        const char *name;
        int64_t v;
    } dims[] = {{"dim", g->dim},
                {"hidden_dim", g->hidden_dim},
                {"n_layers", g->n_layers},
                {"n_heads", g->n_heads},
                {"n_kv_heads", g->n_kv_heads},
                {"head_dim", g->head_dim},
                {"vocab_size", g->vocab_size}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v <= 0 || dims[i].v > HF_MAX_DIM)
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: config: %s = %" PRId64 " is out of range", where, dims[i].name,
                            dims[i].v);
    if (g->n_heads % g->n_kv_heads)
        return pq__fail(ctx, PQ_ERR_FORMAT, "%s: config: n_kv_heads %" PRId64 " does not divide n_heads %" PRId64,
                        where, g->n_kv_heads, g->n_heads);

    shape_checker c = {ctx, src, where, {0}};
    pq_status st = pq__name_index_build(ctx, src, src->n_tensors, &c.idx);
    if (st != PQ_OK) return st;
    const int64_t dim = g->dim, hid = g->hidden_dim, q_dim = g->n_heads * g->head_dim;
    const int64_t kv_dim = g->n_kv_heads * g->head_dim;
    char name[128];
#define EXPECT(d0, d1, opt)                                                                                          \
    do {                                                                                                             \
        if ((st = expect(&c, name, d0, d1, opt)) != PQ_OK) goto done;                                                \
    } while (0)
    /* a linear stored packed (packed_names.h) has no "<base>.weight"; its decoder checks the shapes */
#define EXPECT_LIN(d0, d1)                                                                                           \
    do {                                                                                                             \
        name[strlen(name) - 7] = 0;                                                                                  \
        int packed_ = pq__source_has_packed(src, name);                                                              \
        strcat(name, ".weight");                                                                                     \
        if (!packed_) EXPECT(d0, d1, 0);                                                                             \
    } while (0)
    snprintf(name, sizeof name, "model.embed_tokens.weight");
    EXPECT(g->vocab_size, dim, 0);
    for (int64_t l = 0; l < g->n_layers; l++) {
        static const char *const norms[] = {"input_layernorm", "post_attention_layernorm"};
        for (int i = 0; i < 2; i++) {
            snprintf(name, sizeof name, "model.layers.%" PRId64 ".%s.weight", l, norms[i]);
            EXPECT(dim, -1, 0);
        }
        static const char *const qkv[] = {"q", "k", "v"};
        for (int i = 0; i < 3; i++) {
            int64_t rows = i == 0 ? q_dim : kv_dim;
            snprintf(name, sizeof name, "model.layers.%" PRId64 ".self_attn.%s_proj.weight", l, qkv[i]);
            EXPECT_LIN(rows, dim);
            snprintf(name, sizeof name, "model.layers.%" PRId64 ".self_attn.%s_proj.bias", l, qkv[i]);
            if (g->qkv_bias) EXPECT(rows, -1, 0);
        }
        snprintf(name, sizeof name, "model.layers.%" PRId64 ".self_attn.o_proj.weight", l);
        EXPECT_LIN(dim, q_dim);
        snprintf(name, sizeof name, "model.layers.%" PRId64 ".mlp.gate_proj.weight", l);
        EXPECT_LIN(hid, dim);
        snprintf(name, sizeof name, "model.layers.%" PRId64 ".mlp.up_proj.weight", l);
        EXPECT_LIN(hid, dim);
        snprintf(name, sizeof name, "model.layers.%" PRId64 ".mlp.down_proj.weight", l);
        EXPECT_LIN(dim, hid);
    }
    snprintf(name, sizeof name, "model.norm.weight");
    EXPECT(dim, -1, 0);
    snprintf(name, sizeof name, "lm_head.weight");
    if (!g->tied && pq__name_index_find(&c.idx, src, name) < 0) {
        st = pq__fail(ctx, PQ_ERR_FORMAT, "%s: tensor 'lm_head.weight': missing (embeddings are not tied)", where);
        goto done;
    }
    EXPECT(g->vocab_size, dim, 1);
#undef EXPECT_LIN
#undef EXPECT
done:
    pq__name_index_free(&c.idx);
    return st;
}

/* transformers' Llama with attention_bias also adds a bias to o_proj, which the forward
 * pass does not have; zero biases (as in checkpoints converted from q/k/v-bias models)
 * change nothing and are accepted. */
static pq_status check_o_bias(pq_ctx *ctx, const char *dir, const pq__source *src) {
    char name[128];
    for (int64_t l = 0; l < src->cfg.n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%" PRId64 ".self_attn.o_proj.bias", l);
        const pq__tensor *t = pq__source_find(src, name);
        if (!t) continue;
        int64_t n = pq__tensor_numel(t);
        float *tmp = pq__malloc(ctx, (size_t)(n > 0 ? n : 1) * sizeof(float), name);
        if (!tmp) return PQ_ERR_NOMEM;
        int nonzero = !pq__to_f32(t->dtype, t->data, tmp, n);
        for (int64_t i = 0; i < n && !nonzero; i++)
            nonzero = tmp[i] != 0.0f;
        free(tmp);
        if (nonzero)
            return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: tensor '%s': o_proj biases are not supported", dir, name);
    }
    return PQ_OK;
}

/* ---------------------------------------------------------------- loader */

pq_status pq__hf_load(pq_ctx *ctx, const char *dir, int use_mmap, pq__source *src) {
    if (!pq__is_dir(dir)) return pq__fail(ctx, PQ_ERR_IO, "%s: not a folder", dir);
    char *cfg_path = pq__path_join_ctx(ctx, dir, "config.json");
    if (!cfg_path) return PQ_ERR_NOMEM;
    char *text = NULL;
    pq_status st = pq__read_text(ctx, cfg_path, HF_JSON_LIMIT, &text, NULL);
    if (st != PQ_OK) {
        free(cfg_path);
        return st;
    }
    cJSON *root = NULL;
    if ((st = parse_json_text(ctx, cfg_path, text, &root)) == PQ_OK) {
        cfg_reader r = {ctx, cfg_path};
        st = parse_config(&r, root, &src->cfg);
    }
    cJSON_Delete(root);
    free(text);
    free(cfg_path);
    if (st != PQ_OK) return st;

    snprintf(src->format, sizeof src->format, "hf");
    if (!src->path && !(src->path = pq__strdup(ctx, dir, "the model path")))
        return pq__fail_prefix(ctx, PQ_ERR_NOMEM, "%s", dir);

    if ((st = load_weights(ctx, dir, use_mmap, src)) != PQ_OK) return st;
    if ((st = pq__source_check_llama(ctx, src)) != PQ_OK) return st;
    if ((st = check_o_bias(ctx, dir, src)) != PQ_OK) return st;

    char *tm = pq__path_join_ctx(ctx, dir, "tokenizer.model");
    char *tj = pq__path_join_ctx(ctx, dir, "tokenizer.json");
    if (!tm || !tj) {
        st = PQ_ERR_NOMEM;
    } else if (pq__file_exists(tj) || pq__file_exists(tm)) {
        /* tokenizer.json first: it carries the added tokens and the pre-tokenizer */
        st = pq_tokenizer_load(ctx, dir, &src->tok);
    } else {
        pq__log(ctx, PQ_LOG_INFO, "%s: no tokenizer.model or tokenizer.json; loaded without a tokenizer", dir);
    }
    free(tm);
    free(tj);
    return st;
}

/* ---------------------------------------------------------------- config.json writing */

/* Shortest decimal that reads back as the same float, so 1e-5f is written "1e-05" rather
 * than "9.99999975e-06"; always with a '.' or exponent so Python reads a float. */
static void fmt_float(char *buf, size_t n, float v) {
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eE")) {
        size_t k = strlen(buf);
        if (k + 2 < n) memcpy(buf + k, ".0", 3);
    }
}

static int add_raw_int(cJSON *o, const char *key, int64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%" PRId64, v);
    return cJSON_AddRawToObject(o, key, b) != NULL;
}

static int add_raw_float(cJSON *o, const char *key, float v) {
    char b[48];
    fmt_float(b, sizeof b, v);
    return cJSON_AddRawToObject(o, key, b) != NULL;
}

pq_status pq__hf_write_config(pq_ctx *ctx, const pq__config *cfg, const char *path, const char *torch_dtype) {
    const float fl[] = {cfg->norm_eps, cfg->rope_theta, cfg->rope_factor, cfg->rope_low_freq_factor,
                        cfg->rope_high_freq_factor};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
        if (!isfinite(fl[i])) return pq__fail(ctx, PQ_ERR_INVALID, "%s: config holds a non-finite number", path);
    if (cfg->arch != PQ_ARCH_LLAMA && cfg->arch != PQ_ARCH_MISTRAL && cfg->arch != PQ_ARCH_QWEN2)
        return pq__fail(ctx, PQ_ERR_INVALID, "%s: unknown architecture %d", path, (int)cfg->arch);
    if (cfg->arch == PQ_ARCH_MISTRAL && cfg->qkv_bias)
        return pq__fail(ctx, PQ_ERR_UNSUPPORTED, "%s: MistralForCausalLM has no q/k/v biases", path);

    cJSON *o = cJSON_CreateObject();
    cJSON *archs = cJSON_CreateStringArray((const char *const[]){pq__hf_arch_class(cfg->arch)}, 1);
    int ok = o && archs && cJSON_AddItemToObject(o, "architectures", archs);
    if (!ok) cJSON_Delete(archs);
    ok = ok && cJSON_AddStringToObject(o, "model_type", hf_model_type(cfg->arch));
    ok = ok && cJSON_AddStringToObject(o, "hidden_act", "silu");
    ok = ok && add_raw_int(o, "hidden_size", cfg->dim);
    ok = ok && add_raw_int(o, "intermediate_size", cfg->hidden_dim);
    ok = ok && add_raw_int(o, "num_hidden_layers", cfg->n_layers);
    ok = ok && add_raw_int(o, "num_attention_heads", cfg->n_heads);
    ok = ok && add_raw_int(o, "num_key_value_heads", cfg->n_kv_heads);
    ok = ok && add_raw_int(o, "head_dim", cfg->head_dim);
    ok = ok && add_raw_int(o, "vocab_size", cfg->vocab_size);
    ok = ok && add_raw_int(o, "max_position_embeddings", cfg->max_seq_len);
    ok = ok && add_raw_float(o, "rms_norm_eps", cfg->norm_eps);
    ok = ok && add_raw_float(o, "rope_theta", cfg->rope_theta);
    ok = ok && cJSON_AddBoolToObject(o, "tie_word_embeddings", cfg->tied);
    /* Qwen2's biases are implicit; for Llama this flag also means an o_proj bias to transformers */
    if (cfg->arch == PQ_ARCH_LLAMA) ok = ok && cJSON_AddBoolToObject(o, "attention_bias", cfg->qkv_bias);
    if (cfg->arch == PQ_ARCH_QWEN2) ok = ok && cJSON_AddBoolToObject(o, "use_sliding_window", 0);
    if (cfg->arch == PQ_ARCH_MISTRAL) ok = ok && cJSON_AddNullToObject(o, "sliding_window");
    if (cfg->bos_id >= 0)
        ok = ok && add_raw_int(o, "bos_token_id", cfg->bos_id);
    else
        ok = ok && cJSON_AddNullToObject(o, "bos_token_id");
    if (cfg->eos_id >= 0)
        ok = ok && add_raw_int(o, "eos_token_id", cfg->eos_id);
    else
        ok = ok && cJSON_AddNullToObject(o, "eos_token_id");
    if (cfg->rope_scaling == 1 || cfg->rope_scaling == 2) {
        cJSON *rs = ok ? cJSON_AddObjectToObject(o, "rope_scaling") : NULL;
        ok = rs != NULL;
        ok = ok && cJSON_AddStringToObject(rs, "rope_type", cfg->rope_scaling == 1 ? "llama3" : "linear");
        ok = ok && add_raw_float(rs, "factor", cfg->rope_factor);
        if (cfg->rope_scaling == 1) {
            ok = ok && add_raw_float(rs, "low_freq_factor", cfg->rope_low_freq_factor);
            ok = ok && add_raw_float(rs, "high_freq_factor", cfg->rope_high_freq_factor);
            ok = ok && add_raw_int(rs, "original_max_position_embeddings", cfg->rope_orig_max_pos);
        }
    } else {
        ok = ok && cJSON_AddNullToObject(o, "rope_scaling");
    }
    if (torch_dtype) ok = ok && cJSON_AddStringToObject(o, "torch_dtype", torch_dtype);
    char *json = ok ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!json) return pq__fail(ctx, PQ_ERR_NOMEM, "%s: out of memory building config.json", path);

    pq__atomic a;
    pq_status st = pq__atomic_open(ctx, path, &a);
    if (st == PQ_OK) {
        st = pq__atomic_write(ctx, &a, json, strlen(json));
        if (st == PQ_OK) st = pq__atomic_write(ctx, &a, "\n", 1);
        if (st == PQ_OK)
            st = pq__atomic_commit(ctx, &a);
        else
            pq__atomic_abort(&a);
    }
    cJSON_free(json);
    return st;
}
