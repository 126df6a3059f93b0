/* info, tokenize, generate, ppl, convert. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "prunequant-pipeline.h"

/* Common flag scanning: returns the value of flag at argv[*i] (advancing *i), or NULL with
 * a usage error printed. */
static const char *flag_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

typedef struct {
    const char *model, *tokenizer;
    int64_t threads;
    int json, quiet, no_mmap;
} common_opts;

/* Handles --threads/--tokenizer/--json/--quiet/--no-mmap; returns 1 if argv[*i] was one of them, -1
 * on a bad value, 0 otherwise. */
static int common_flag(const char *cmd, int argc, char **argv, int *i, common_opts *o) {
    const char *a = argv[*i];
    if (!strcmp(a, "--threads")) {
        const char *v = flag_value(cmd, argc, argv, i);
        if (!v || cli_parse_i64(cmd, "--threads", v, 0, 1024, &o->threads)) return -1;
        return 1;
    }
    if (!strcmp(a, "--tokenizer")) {
        if (!(o->tokenizer = flag_value(cmd, argc, argv, i))) return -1;
        return 1;
    }
    if (!strcmp(a, "--json")) {
        o->json = 1;
        return 1;
    }
    if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
        o->quiet = 1;
        return 1;
    }
    if (!strcmp(a, "--no-mmap")) {
        o->no_mmap = 1;
        return 1;
    }
    return 0;
}

/* A positional argument: the one MODEL, else a usage error (an unknown option, a second
 * model); returns 0 or the exit code. */
static int model_arg(const char *cmd, const char *a, common_opts *o) {
    if (a[0] == '-' && a[1]) return cli_unknown_option(cmd, a);
    if (o->model) return cli_usage_error(cmd, "more than one model given");
    o->model = a;
    return 0;
}

static pq_model *load_model(const char *cmd, pq_ctx *ctx, const common_opts *o) {
    pq_load_params lp = pq_load_params_default();
    lp.tokenizer_path = o->tokenizer;
    lp.use_mmap = !o->no_mmap;
    pq_model *m = NULL;
    if (pq_model_load(ctx, o->model, &lp, &m) != PQ_OK) {
        cli_fail(cmd, ctx);
        return NULL;
    }
    return m;
}

static int need_tokenizer(const char *cmd, const pq_model *m, const char *path) {
    if (pq_model_tokenizer(m)) return 0;
    fprintf(stderr, "prunequant %s: %s: the model has no tokenizer; pass --tokenizer FILE\n", cmd, path);
    return 1;
}

/* The tokenizer of MODEL, or the one given by --tokenizer alone; NULL after printing an error.
 * *m or *own receives what the caller must free. */
static const pq_tokenizer *open_tokenizer(const char *cmd, pq_ctx *ctx, const common_opts *o, pq_model **m,
                                          pq_tokenizer **own) {
    if (o->model) {
        if (!(*m = load_model(cmd, ctx, o)) || need_tokenizer(cmd, *m, o->model)) return NULL;
        return pq_model_tokenizer(*m);
    }
    if (pq_tokenizer_load(ctx, o->tokenizer, own) != PQ_OK) {
        cli_fail(cmd, ctx);
        return NULL;
    }
    return *own;
}

static void print_json(cJSON *j) {
    char *s = cJSON_Print(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

/* ---------------------------------------------------------------- info */

int pq_cli_info_sparsity(int argc, char **argv); /* cmd_compress.c */

/* What the file stores and how the runtime runs it, in one line. */
static void info_stores(const pq_model_info *in, char *buf, size_t n) {
    int k = in->file_type[0] ? snprintf(buf, n, "llama.cpp %s file (general.file_type); ", in->file_type) : 0;
    if (k < 0 || (size_t)k >= n) return;
    const int w = in->n_ggml_blocks || in->n_packed
                      ? snprintf(buf + k, n - (size_t)k, "%lld tensors in ggml block types, %lld linears packed; ",
                                 (long long)in->n_ggml_blocks, (long long)in->n_packed)
                      : snprintf(buf + k, n - (size_t)k, "float tensors; ");
    if (w < 0 || (size_t)(k + w) >= n) return;
    k += w;
    if (in->n_native == in->n_linears)
        snprintf(buf + k, n - (size_t)k, "every linear runs as stored (%s kernels)", in->kernels);
    else if (in->n_native)
        snprintf(buf + k, n - (size_t)k,
                 "%lld of %lld linears run as stored (%s kernels), the others converted at load",
                 (long long)in->n_native, (long long)in->n_linears, in->kernels);
    else
        snprintf(buf + k, n - (size_t)k, "the linears are converted at load (%s kernels)", in->kernels);
}

/* The shape as "[a, b]". */
static void shape_str(const pq_tensor_info *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->n_dims && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static double tensor_bpw(const pq_tensor_info *t) {
    double numel = 1;
    for (int d = 0; d < t->n_dims; d++)
        numel *= (double)t->shape[d];
    return numel > 0 ? 8.0 * (double)t->nbytes / numel : 0;
}

static void info_tensors_json(cJSON *j, const pq_model *m, const pq_model_info *in) {
    cJSON *arr = cJSON_AddArrayToObject(j, "tensors");
    for (int64_t i = 0; i < in->n_tensors; i++) {
        pq_tensor_info t;
        if (pq_model_tensor(m, i, &t) != PQ_OK) continue;
        cJSON *o = cJSON_CreateObject(), *sh = cJSON_AddArrayToObject(o, "shape");
        cJSON_AddStringToObject(o, "name", t.name);
        cJSON_AddStringToObject(o, "dtype", pq_dtype_name(t.dtype));
        for (int d = 0; d < t.n_dims; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t.shape[d]));
        cJSON_AddNumberToObject(o, "bytes", (double)t.nbytes);
        cJSON_AddNumberToObject(o, "bits_per_weight", tensor_bpw(&t));
        cJSON_AddItemToArray(arr, o);
    }
}

static void info_tensors_text(const pq_model *m, const pq_model_info *in) {
    printf("\n%-48s %-6s %-16s %12s %7s\n", "tensor", "dtype", "shape", "bytes", "bits/w");
    for (int64_t i = 0; i < in->n_tensors; i++) {
        pq_tensor_info t;
        if (pq_model_tensor(m, i, &t) != PQ_OK) continue;
        char sh[64];
        shape_str(&t, sh, sizeof sh);
        printf("%-48s %-6s %-16s %12zu %7.3f\n", t.name, pq_dtype_name(t.dtype), sh, t.nbytes, tensor_bpw(&t));
    }
}

static void info_print_json(const char *model, const pq_model *m, const pq_model_info *in, const pq_tokenizer *tok,
                            int tensors) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", model);
    cJSON_AddStringToObject(j, "format", in->format);
    cJSON_AddStringToObject(j, "architecture", in->arch);
    cJSON_AddNumberToObject(j, "dim", (double)in->dim);
    cJSON_AddNumberToObject(j, "hidden_dim", (double)in->hidden_dim);
    cJSON_AddNumberToObject(j, "n_layers", (double)in->n_layers);
    cJSON_AddNumberToObject(j, "n_heads", (double)in->n_heads);
    cJSON_AddNumberToObject(j, "n_kv_heads", (double)in->n_kv_heads);
    cJSON_AddNumberToObject(j, "head_dim", (double)in->head_dim);
    cJSON_AddNumberToObject(j, "vocab_size", (double)in->vocab_size);
    cJSON_AddNumberToObject(j, "max_seq_len", (double)in->max_seq_len);
    cJSON_AddNumberToObject(j, "rope_theta", in->rope_theta);
    cJSON_AddStringToObject(j, "rope", in->rope_halfsplit ? "halfsplit" : "interleaved");
    cJSON_AddNumberToObject(j, "norm_eps", in->norm_eps);
    cJSON_AddBoolToObject(j, "tied_embeddings", in->tied_embeddings);
    cJSON_AddBoolToObject(j, "qkv_bias", in->qkv_bias);
    cJSON_AddNumberToObject(j, "n_params", (double)in->n_params);
    cJSON_AddNumberToObject(j, "file_bytes", (double)in->file_bytes);
    cJSON_AddNumberToObject(j, "weight_bytes", (double)in->weight_bytes);
    cJSON_AddStringToObject(j, "dtypes", in->dtypes);
    char stores[256];
    info_stores(in, stores, sizeof stores);
    cJSON_AddStringToObject(j, "stores", stores);
    if (in->file_type[0])
        cJSON_AddStringToObject(j, "file_type", in->file_type);
    else
        cJSON_AddNullToObject(j, "file_type");
    cJSON_AddNumberToObject(j, "n_ggml_blocks", (double)in->n_ggml_blocks);
    cJSON_AddNumberToObject(j, "n_packed", (double)in->n_packed);
    cJSON_AddNumberToObject(j, "n_linears", (double)in->n_linears);
    cJSON_AddNumberToObject(j, "n_native", (double)in->n_native);
    cJSON_AddStringToObject(j, "kernels", in->kernels);
    if (tensors) info_tensors_json(j, m, in);
    if (tok) {
        cJSON *t = cJSON_AddObjectToObject(j, "tokenizer");
        cJSON_AddNumberToObject(t, "n_vocab", (double)pq_tokenizer_n_vocab(tok));
        cJSON_AddNumberToObject(t, "bos", pq_tokenizer_bos(tok));
        cJSON_AddNumberToObject(t, "eos", pq_tokenizer_eos(tok));
    } else {
        cJSON_AddNullToObject(j, "tokenizer");
    }
    print_json(j);
}

static void info_print_text(const char *model, const pq_model *m, const pq_model_info *in, const pq_tokenizer *tok,
                            int tensors) {
    printf("model         %s\n", model);
    printf("format        %s\n", in->format);
    printf("architecture  %s\n", in->arch);
    printf("dim           %lld\n", (long long)in->dim);
    printf("hidden_dim    %lld\n", (long long)in->hidden_dim);
    printf("layers        %lld\n", (long long)in->n_layers);
    printf("heads         %lld (kv heads %lld, head dim %lld)\n", (long long)in->n_heads, (long long)in->n_kv_heads,
           (long long)in->head_dim);
    printf("vocab         %lld\n", (long long)in->vocab_size);
    printf("context       %lld\n", (long long)in->max_seq_len);
    printf("rope          theta %g, %s\n", in->rope_theta, in->rope_halfsplit ? "half-split (HF)" : "interleaved");
    printf("norm eps      %g\n", in->norm_eps);
    printf("embeddings    %s\n", in->tied_embeddings ? "tied" : "untied");
    printf("qkv bias      %s\n", in->qkv_bias ? "yes" : "no");
    printf("parameters    %lld (%.3f M)\n", (long long)in->n_params, (double)in->n_params / 1e6);
    printf("bytes         %zu on disk, %zu of weights\n", in->file_bytes, in->weight_bytes);
    printf("dtypes        %s\n", in->dtypes);
    char stores[256];
    info_stores(in, stores, sizeof stores);
    printf("stores        %s\n", stores);
    if (tok)
        printf("tokenizer     %lld tokens (bos %d, eos %d)\n", (long long)pq_tokenizer_n_vocab(tok),
               pq_tokenizer_bos(tok), pq_tokenizer_eos(tok));
    else
        printf("tokenizer     none (pass --tokenizer FILE)\n");
    if (tensors) info_tensors_text(m, in);
}

int cli_info(int argc, char **argv) {
    const char *cmd = "info";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--sparsity")) return pq_cli_info_sparsity(argc, argv);
    common_opts o = {0};
    int tensors = 0;
    for (int i = 1; i < argc; i++) {
        int r = common_flag(cmd, argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "--help")) {
            printf("usage: prunequant info MODEL [--json] [--tokenizer FILE] [--tensors] [--sparsity]\n"
                   "  --tensors lists every stored tensor: name, dtype, shape, bytes, bits per weight\n");
            return 0;
        }
        if (!strcmp(argv[i], "--tensors")) {
            tensors = 1;
            continue;
        }
        const int rc = model_arg(cmd, argv[i], &o);
        if (rc) return rc;
    }
    if (!o.model) return cli_usage_error(cmd, "no MODEL given");
    pq_ctx *ctx = cli_ctx_new((int)o.threads, o.quiet);
    pq_model *m = load_model(cmd, ctx, &o);
    if (!m) {
        pq_ctx_free(ctx);
        return 1;
    }
    pq_model_info in;
    pq_model_get_info(m, &in);
    const pq_tokenizer *tok = pq_model_tokenizer(m);
    if (o.json)
        info_print_json(o.model, m, &in, tok, tensors);
    else
        info_print_text(o.model, m, &in, tok, tensors);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return 0;
}

/* ---------------------------------------------------------------- tokenize */

int cli_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize";
    common_opts o = {0};
    const char *text = NULL, *file = NULL;
    char *file_text = NULL;
    size_t text_len = 0;
    int bos = 0, npos = 0;
    const char *pos[2] = {NULL, NULL};
    for (int i = 1; i < argc; i++) {
        int r = common_flag(cmd, argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "--help")) {
            printf("usage: prunequant tokenize (MODEL | --tokenizer FILE) [--bos] (TEXT | --file PATH)\n");
            return 0;
        }
        if (!strcmp(argv[i], "--file")) {
            if (!(file = flag_value(cmd, argc, argv, &i))) return 2;
            continue;
        }
        if (!strcmp(argv[i], "--bos")) {
            bos = 1;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) return cli_unknown_option(cmd, argv[i]);
        if (npos == 2) return cli_usage_error(cmd, "too many arguments");
        pos[npos++] = argv[i];
    }
    /* [MODEL] (TEXT | --file PATH): MODEL may be left out when --tokenizer is given; given
     * both, the model is loaded with that tokenizer (and checked against its vocabulary) */
    const int n_text = file ? 0 : 1;
    if (npos < n_text + (o.tokenizer ? 0 : 1) || npos > n_text + 1)
        return cli_usage_error(cmd, "give MODEL and/or --tokenizer FILE, and TEXT or --file PATH");
    if (npos > n_text) o.model = pos[0];
    if (file) {
        if (!(file_text = cli_read_text(cmd, "--file", file, &text_len, o.quiet))) return 1;
        text = file_text;
    } else {
        text = pos[npos - 1];
        text_len = strlen(text);
    }
    pq_ctx *ctx = cli_ctx_new((int)o.threads, o.quiet);
    pq_model *m = NULL;
    pq_tokenizer *own = NULL;
    const pq_tokenizer *tok = NULL;
    int rc = 1;
    if (!(tok = open_tokenizer(cmd, ctx, &o, &m, &own))) goto out;
    int32_t *ids = NULL;
    int64_t n = 0;
    if (pq_tokenize(ctx, tok, text, text_len, bos, &ids, &n) != PQ_OK) {
        cli_fail(cmd, ctx);
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        printf("%s%d", i ? " " : "", ids[i]);
    printf("\n");
    free(ids);
    rc = 0;
out:
    free(file_text);
    pq_tokenizer_free(own);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------- detokenize */

static int is_integer(const char *s) {
    if (*s == '-' || *s == '+') s++;
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* The ids of text (whitespace-separated, from file) or of argv[first_id..], each checked
 * against the vocabulary of nv before anything is printed: a bad id prints nothing. Returns
 * 0, or 1 after a message. */
static int read_ids(const char *cmd, char *text, const char *file, int argc, char **argv, int first_id, int64_t nv,
                    int32_t **ids_out, int64_t *n_out) {
    int32_t *ids = NULL;
    int64_t n_ids = 0, cap = 0;
    char *p = text, *save = NULL;
    for (int a = first_id;;) {
        const char *s;
        if (text) {
            s = strtok_r(save ? NULL : p, " \t\r\n", &save);
            if (!save) save = p; /* strtok_r state set on the first call */
        } else {
            s = a && a < argc ? argv[a++] : NULL;
        }
        if (!s) break;
        char *end;
        long v = strtol(s, &end, 10);
        if (*end || v < 0 || v >= nv) {
            fprintf(stderr, "prunequant %s: %s: bad token id '%s' (vocabulary of %lld)\n", cmd,
                    file ? file : "arguments", s, (long long)nv);
            free(ids);
            return 1;
        }
        if (n_ids == cap) {
            cap = cap ? 2 * cap : 256;
            int32_t *grown = realloc(ids, (size_t)cap * sizeof *ids);
            if (!grown) {
                fprintf(stderr, "prunequant %s: out of memory (%lld token ids)\n", cmd, (long long)cap);
                free(ids);
                return 1;
            }
            ids = grown;
        }
        ids[n_ids++] = (int32_t)v;
    }
    *ids_out = ids;
    *n_out = n_ids;
    return 0;
}

/* The pieces of ids[n] as raw bytes on stdout; BOS/EOS left out with skip_special. */
static void print_pieces(const pq_tokenizer *tok, const int32_t *ids, int64_t n, int skip_special) {
    const int32_t bos = pq_tokenizer_bos(tok), eos = pq_tokenizer_eos(tok);
    int32_t prev = bos; /* start of text: the first piece drops its dummy-prefix space */
    for (int64_t k = 0; k < n; k++) {
        const int32_t v = ids[k];
        if (skip_special && (v == bos || v == eos)) { /* markers, not text */
            prev = v;
            continue;
        }
        char buf[16];
        size_t len = 0;
        const char *piece = pq_token_to_piece(tok, prev, v, buf, &len);
        fwrite(piece, 1, len, stdout);
        prev = v;
    }
}

/* Token ids (arguments, or whitespace-separated in --file) back to text, raw bytes on stdout.
 * Special tokens print as their text (as Hugging Face decode does) unless --skip-special. */
int cli_detokenize(int argc, char **argv) {
    const char *cmd = "detokenize";
    common_opts o = {0};
    const char *file = NULL;
    int first_id = 0, skip_special = 0;
    for (int i = 1; i < argc && !first_id; i++) {
        int r = common_flag(cmd, argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "--help")) {
            printf(
                "usage: prunequant detokenize (MODEL | --tokenizer FILE) [--skip-special] (ID... | --file PATH)\n");
            return 0;
        }
        if (!strcmp(argv[i], "--skip-special")) {
            skip_special = 1;
        } else if (!strcmp(argv[i], "--file")) {
            if (!(file = flag_value(cmd, argc, argv, &i))) return 2;
        } else if (argv[i][0] == '-' && argv[i][1] && !(argv[i][1] >= '0' && argv[i][1] <= '9')) {
            return cli_unknown_option(cmd, argv[i]);
        } else if (!o.model && !is_integer(argv[i])) {
            o.model = argv[i]; /* MODEL, also beside --tokenizer */
        } else {
            first_id = i;
        }
    }
    if (!o.tokenizer && !o.model) return cli_usage_error(cmd, "give MODEL or --tokenizer FILE");
    if (!file && !first_id) return cli_usage_error(cmd, "give token ids or --file PATH");
    char *text = NULL;
    if (file && !(text = cli_read_file(cmd, file, NULL))) return 1;
    pq_ctx *ctx = cli_ctx_new((int)o.threads, o.quiet);
    pq_model *m = NULL;
    pq_tokenizer *own = NULL;
    const pq_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int rc = 1;
    if (!(tok = open_tokenizer(cmd, ctx, &o, &m, &own))) goto out;
    int64_t n_ids = 0;
    if (read_ids(cmd, text, file, argc, argv, first_id, pq_tokenizer_n_vocab(tok), &ids, &n_ids)) goto out;
    print_pieces(tok, ids, n_ids, skip_special);
    rc = 0;
out:
    free(ids);
    free(text);
    pq_tokenizer_free(own);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------- generate */

typedef struct {
    int printed;
    int64_t n; /* tokens generated, printed or not */
} gen_out;

/* Like llama2.c's safe_printf: skip lone control bytes. */
static int print_piece(void *user, int32_t id, const char *piece, size_t len) {
    (void)id;
    gen_out *g = user;
    g->n++;
    int *printed = &g->printed;
    if (len == 1 && !(piece[0] >= 32 && piece[0] < 127) &&
        !(piece[0] == '\n' || piece[0] == '\t' || piece[0] == '\r' || (unsigned char)piece[0] >= 128))
        return 0;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    *printed = 1;
    return 0;
}

int cli_generate(int argc, char **argv) {
    const char *cmd = "generate";
    common_opts o = {0};
    const char *prompt = "";
    int int8_prompt = 0, int8_decode = 0;
    pq_gen_params gp = pq_gen_params_default();
    for (int i = 1; i < argc; i++) {
        int r = common_flag(cmd, argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r) continue;
        const char *a = argv[i], *v;
        double d;
        int64_t k;
        if (!strcmp(a, "--help")) {
            printf("usage: prunequant generate MODEL [--tokenizer FILE] [--prompt TEXT] [-n N] [--temp T] "
                   "[--top-p P] [--seed S] [--int8-prompt] [--int8-decode] [--threads N] [--no-mmap]\n"
                   "  --int8-prompt  process the prompt with 8-bit activations, as llama.cpp does (faster on "
                   "AVX-512 VNNI;\n                 logits about 1e-3 relative off the float32 product)\n"
                   "  --int8-decode  the same for each generated token\n"
                   "  --no-mmap      read the weights into memory of large pages instead of mapping the file:\n"
                   "                 a slower start, faster decoding (fewer TLB misses)\n");
            return 0;
        } else if (!strcmp(a, "--int8-prompt")) {
            int8_prompt = 1;
        } else if (!strcmp(a, "--int8-decode")) {
            int8_decode = 1;
        } else if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) {
            if (!(prompt = flag_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!(v = flag_value(cmd, argc, argv, &i)) || cli_parse_i64(cmd, a, v, 0, 1 << 24, &k)) return 2;
            gp.n_predict = k;
        } else if (!strcmp(a, "--temp") || !strcmp(a, "-t")) {
            if (!(v = flag_value(cmd, argc, argv, &i)) || cli_parse_f64(cmd, a, v, 0, 100, &d)) return 2;
            gp.temperature = (float)d;
        } else if (!strcmp(a, "--top-p")) {
            if (!(v = flag_value(cmd, argc, argv, &i)) || cli_parse_f64(cmd, a, v, 0, 1, &d)) return 2;
            gp.top_p = (float)d;
        } else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
            if (!(v = flag_value(cmd, argc, argv, &i)) || cli_parse_i64(cmd, a, v, 0, INT64_MAX, &k)) return 2;
            gp.seed = (uint64_t)k;
        } else if ((r = model_arg(cmd, a, &o))) {
            return r;
        }
    }
    if (!o.model) return cli_usage_error(cmd, "no MODEL given");
    pq_ctx *ctx = cli_ctx_new((int)o.threads, o.quiet);
    pq_ctx_set_int8_prompts(ctx, int8_prompt);
    pq_ctx_set_int8_decode(ctx, int8_decode);
    pq_model *m = load_model(cmd, ctx, &o);
    int rc = 1;
    int32_t *ids = NULL;
    int64_t n = 0;
    if (!m || need_tokenizer(cmd, m, o.model)) goto out;
    if (pq_tokenize(ctx, pq_model_tokenizer(m), prompt, strlen(prompt), 1, &ids, &n) != PQ_OK) {
        cli_fail(cmd, ctx);
        goto out;
    }
    gen_out g = {0, 0};
    const double t0 = cli_now();
    if (pq_generate(ctx, m, ids, n, &gp, print_piece, &g) != PQ_OK) {
        cli_fail(cmd, ctx);
        goto out;
    }
    const double dt = cli_now() - t0;
    if (g.printed && isatty(1)) printf("\n");
    fflush(stdout);
    if (!o.quiet)
        fprintf(stderr, "prunequant generate: %lld tokens in %.2fs, %.1f tokens/s\n", (long long)g.n, dt,
                dt > 0 ? (double)g.n / dt : 0.0);
    rc = 0;
out:
    free(ids);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------- ppl */

static void ppl_print(int json, const char *model, const char *text_path, const pq_ppl_result *res,
                      const char *proto) {
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, "text", text_path);
        cJSON_AddNumberToObject(j, "ppl", res->ppl);
        cJSON_AddNumberToObject(j, "nll_mean", res->nll_mean);
        cJSON_AddNumberToObject(j, "nll_stderr", res->nll_stderr);
        cJSON_AddNumberToObject(j, "tokens_scored", (double)res->tokens_scored);
        cJSON_AddNumberToObject(j, "windows", (double)res->n_windows);
        cJSON_AddNumberToObject(j, "text_tokens", (double)res->n_text_tokens);
        cJSON_AddNumberToObject(j, "ctx", (double)res->ctx);
        cJSON_AddStringToObject(j, "protocol", pq_ppl_protocol_name(res->protocol));
        cJSON_AddStringToObject(j, "protocol_description", proto);
        print_json(j);
    } else {
        printf("ppl %.6f  (nll %.6f +/- %.6f, %lld tokens scored in %lld windows)  [protocol %s]\n", res->ppl,
               res->nll_mean, res->nll_stderr, (long long)res->tokens_scored, (long long)res->n_windows, proto);
    }
}

/* The flags of ppl: -1 to go on, else the exit code (0 after --help). */
static int ppl_parse(const char *cmd, int argc, char **argv, common_opts *o, const char **text_path,
                     pq_ppl_params *pp, int *ctx_given) {
    for (int i = 1; i < argc; i++) {
        int r = common_flag(cmd, argc, argv, &i, o);
        if (r < 0) return 2;
        if (r) continue;
        const char *a = argv[i], *v;
        int64_t k;
        if (!strcmp(a, "--help")) {
            printf("usage: prunequant ppl MODEL --text FILE [--ctx N] [--protocol gptq|llamacpp] [--max-tokens K] "
                   "[--batch B] [--json] [--tokenizer FILE] [--threads N] [--no-mmap]\n");
            return 0;
        } else if (!strcmp(a, "--text")) {
            if (!(*text_path = flag_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = flag_value(cmd, argc, argv, &i)) || cli_parse_i64(cmd, a, v, 2, 1 << 20, &pp->ctx)) return 2;
            *ctx_given = 1;
        } else if (!strcmp(a, "--max-tokens")) {
            if (!(v = flag_value(cmd, argc, argv, &i)) || cli_parse_i64(cmd, a, v, 0, INT64_MAX, &pp->max_tokens))
                return 2;
        } else if (!strcmp(a, "--batch")) {
            if (!(v = flag_value(cmd, argc, argv, &i)) || cli_parse_i64(cmd, a, v, 1, 1024, &k)) return 2;
            pp->batch = k;
        } else if (!strcmp(a, "--protocol")) {
            if (!(v = flag_value(cmd, argc, argv, &i))) return 2;
            if (!strcmp(v, "gptq"))
                pp->protocol = PQ_PPL_GPTQ;
            else if (!strcmp(v, "llamacpp"))
                pp->protocol = PQ_PPL_LLAMACPP;
            else
                return cli_usage_error(cmd, "--protocol: expected gptq or llamacpp, got '%s'", v);
        } else if (a[0] == '-' && a[1]) {
            return cli_unknown_option(cmd, a);
        } else if (o->model) {
            return cli_usage_error(cmd, "more than one model given");
        } else {
            o->model = a;
        }
    }
    return -1;
}

int cli_ppl(int argc, char **argv) {
    const char *cmd = "ppl";
    common_opts o = {0};
    const char *text_path = NULL;
    pq_ppl_params pp = pq_ppl_params_default();
    int ctx_given = 0;
    const int pr = ppl_parse(cmd, argc, argv, &o, &text_path, &pp, &ctx_given);
    if (pr >= 0) return pr;
    if (!o.model) return cli_usage_error(cmd, "no MODEL given");
    if (!text_path) return cli_usage_error(cmd, "--text FILE is required");
    size_t len;
    char *text = cli_read_text(cmd, "--text", text_path, &len, o.quiet);
    if (!text) return 1;
    pq_ctx *ctx = cli_ctx_new((int)o.threads, o.quiet);
    pq_model *m = load_model(cmd, ctx, &o);
    int rc = 1;
    int32_t *ids = NULL;
    int64_t n = 0;
    if (!m || need_tokenizer(cmd, m, o.model)) goto out;
    pq_model_info in;
    pq_model_get_info(m, &in);
    if (!ctx_given && pp.ctx > in.max_seq_len) pp.ctx = in.max_seq_len;
    if (pq_tokenize(ctx, pq_model_tokenizer(m), text, len, 1, &ids, &n) != PQ_OK) {
        cli_fail(cmd, ctx);
        goto out;
    }
    pq_ppl_result res;
    if (pq_perplexity(ctx, m, ids, n, &pp, &res) != PQ_OK) {
        fprintf(stderr, "prunequant ppl: %s: %s\n", text_path, pq_ctx_error(ctx));
        goto out;
    }
    char proto[160];
    pq_ppl_protocol_describe(&pp, proto, sizeof proto);
    ppl_print(o.json, o.model, text_path, &res, proto);
    rc = 0;
out:
    free(ids);
    free(text);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------- convert */

int cli_convert(int argc, char **argv) {
    const char *cmd = "convert";
    common_opts o = {0};
    const char *to = NULL, *out = NULL, *gtype = NULL, *imatrix = NULL;
    pq_dtype dt = PQ_DTYPE_F32;
    for (int i = 1; i < argc; i++) {
        int r = common_flag(cmd, argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r) continue;
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help")) {
            printf("usage: prunequant convert MODEL --to hf|gguf --out PATH [--dtype f32|f16|bf16] "
                   "[--gguf-type TYPE|PRESET [--imatrix FILE]] [--tokenizer FILE]\n"
                   "  --gguf-type rounds every weight to nearest on a ggml type's grid (llama-quantize's\n"
                   "  mixture for presets); compress --format gguf rounds with GPTQ instead\n");
            return 0;
        } else if (!strcmp(a, "--gguf-type")) {
            if (!(gtype = flag_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--imatrix")) {
            if (!(imatrix = flag_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--to")) {
            if (!(to = flag_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
            if (!(out = flag_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--dtype")) {
            if (!(v = flag_value(cmd, argc, argv, &i))) return 2;
            if (pq_dtype_parse(v, &dt) || (dt != PQ_DTYPE_F32 && dt != PQ_DTYPE_F16 && dt != PQ_DTYPE_BF16))
                return cli_usage_error(cmd, "--dtype: expected f32, f16 or bf16, got '%s'", v);
        } else if ((r = model_arg(cmd, a, &o))) {
            return r;
        }
    }
    if (!o.model) return cli_usage_error(cmd, "no MODEL given");
    if (!to || (strcmp(to, "hf") && strcmp(to, "gguf")))
        return cli_usage_error(cmd, "--to hf or --to gguf is required");
    if (!out) return cli_usage_error(cmd, "--out PATH is required");
    if (gtype && strcmp(to, "gguf")) return cli_usage_error(cmd, "--gguf-type needs --to gguf");
    if (imatrix && !gtype) return cli_usage_error(cmd, "--imatrix needs --gguf-type");
    pq_ctx *ctx = cli_ctx_new((int)o.threads, o.quiet);
    cli_catch_signals();
    pq_model *m = load_model(cmd, ctx, &o);
    int rc = 1;
    if (!m) goto done;
    /* packed linears are written dense (no quantized GGUF types yet): say so, as the output is
     * not what the input was */
    pq_model_info mi;
    const char *pk = pq_model_get_info(m, &mi) == PQ_OK ? strstr(mi.dtypes, " linears packed") : NULL;
    if (gtype ? pq_model_save_gguf(ctx, m, out, gtype, imatrix) != PQ_OK
              : pq_model_save(ctx, m, strcmp(to, "hf") ? PQ_FORMAT_GGUF : PQ_FORMAT_HF, out, dt) != PQ_OK) {
        cli_fail(cmd, ctx);
        goto done;
    }
    if (pk && !gtype) {
        const char *num = pk;
        while (num > mi.dtypes && num[-1] >= '0' && num[-1] <= '9')
            num--;
        fprintf(stderr,
                "prunequant convert: %s: the %.*s packed linears were written dequantized as %s, a dense model of "
                "their values (%s)\n",
                out, (int)(pk - num), num, pq_dtype_name(dt),
                strcmp(to, "hf") ? "convert --gguf-type or compress --format gguf write quantized GGUF"
                                 : "convert writes dense folders; compress writes packed ones");
    }
    if (!o.quiet)
        fprintf(stderr, "prunequant convert: wrote %s (%s, %s)\n", out, to, gtype ? gtype : pq_dtype_name(dt));
    rc = 0;
done:
    pq_model_free(m);
    pq_ctx_free(ctx);
    return rc;
}
