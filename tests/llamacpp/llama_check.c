/* llama_check: loads a GGUF in real llama.cpp (the prebuilt libllama that scripts/llamacpp.sh
 * sets up) and prints what the tests compare with prunequant. Built by scripts/llamacpp.sh
 * against the cached llama.cpp headers; not part of the project build.
 *
 *   llama_check MODEL.gguf [--ids "1 2 3" | --ids-file F] [--ctx N] [--threads N]
 *               [--tokenize TEXT | --tokenize-file F] [--ppl gptq|llamacpp] [--greedy N]
 *               [--text-out F] [--logits] [--verbose] [--timeout S] [--bench] [--no-mmap]
 *
 * Output on stdout, one fact a line:
 *   n_vocab V                        always, once the model loads
 *   tokens ID ID ...                 --tokenize: llama.cpp's tokenizer on the text (BOS as the
 *                                    vocabulary says, special tokens not parsed)
 *   logits POS x0 x1 ... x(V-1)      --logits: every position of one decode of the ids (%.9g)
 *   greedy ID ID ...                 --greedy N: greedy continuation of the ids (stops at BOS/EOS)
 *   ppl PPL NLL_MEAN COUNT           --ppl: prunequant's protocols on the ids (src/eval/ppl.c):
 *                                    windows of --ctx; llamacpp: BOS at each window start and the
 *                                    second half scored; NLL summed in double
 *   bench prompt TOKENS SECONDS TOK_S --bench: speed as bench/bench_decode measures ours: a prompt
 *   bench decode TOKENS SECONDS TOK_S of 512 tokens in one batch (logits of the last), best of 2;
 *                                    then 128 single-token decodes after a 128-token prompt
 *                                    (greedy), with llama.cpp's default context (F16 KV cache)
 * The context has an F32 KV cache and flash attention off, so an exact decoder agrees with it.
 * The work runs in a child process: llama.cpp aborts (or throws through C) on some bad files,
 * and a crash or a hang must read as a failure. Exit status: 0 ok, 1 llama.cpp refused the
 * model or failed, 2 usage, 3 llama.cpp crashed, 4 timed out.
 *
 * ggml's own quantization code, for tests/cli_gguf_types.sh (run in-process, exit 0 ok, 1 fail):
 *   llama_check --dequant-raw TYPE IN.bin OUT.f32     ggml_get_type_traits(TYPE)->to_float on
 *                                                     raw blocks (TYPE as ggml names it: q4_K)
 *   llama_check --dequant FILE.gguf OUT.f32           every tensor of a GGUF through to_float
 *                                                     (F32 copied), concatenated in file order;
 *                                                     stdout: "tensor NAME TYPE N" per tensor
 *   llama_check --quantize-row TYPE NCOLS IN.f32 IMATRIX.f32|- OUT.bin
 *                                                     ggml_quantize_chunk on rows of NCOLS with
 *                                                     the per-column importance (or none) */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ggml-backend.h"
#include "gguf.h"
#include "llama.h"

typedef struct {
    const char *model, *ids_arg, *ids_file, *text_out, *ppl, *tok_arg, *tok_file;
    int ctx, threads, greedy, logits, verbose, timeout, bench, no_mmap;
} opts;

static int verbose_log;

/* llama.cpp's log: errors and warnings always (they carry the reason a model does not load),
 * the rest with --verbose. */
static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (verbose_log || level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

static int usage(const char *msg) {
    fprintf(stderr,
            "llama_check: %s\nusage: llama_check MODEL.gguf [--ids \"1 2 3\" | --ids-file F] [--ctx N] "
            "[--threads N] [--tokenize TEXT | --tokenize-file F] [--ppl gptq|llamacpp] [--greedy N] "
            "[--text-out F] [--logits] [--verbose] [--timeout S] [--bench] [--no-mmap]\n",
            msg);
    return 2;
}

/* Whitespace-separated token ids from a string; returns the count or -1. */
static int parse_ids(const char *s, llama_token **out) {
    int n = 0, cap = 0;
    llama_token *v = NULL;
    while (*s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s) {
            while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
                s++;
            if (*s && (*s < '0' || *s > '9') && *s != '-') {
                free(v);
                return -1;
            }
            continue;
        }
        if (errno || x < 0 || x > 0x7fffffff) {
            free(v);
            return -1;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            llama_token *w = realloc(v, (size_t)cap * sizeof *v);
            if (!w) {
                free(v);
                return -1;
            }
            v = w;
        }
        v[n++] = (llama_token)x;
        s = end;
    }
    *out = v;
    return n;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

/* Decodes tokens[0..n) from position 0 in a cleared cache, with logits at every position. */
static int decode_all(struct llama_context *lc, const llama_token *tokens, int n) {
    llama_memory_clear(llama_get_memory(lc), true);
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = tokens[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n;
    int rc = llama_decode(lc, b);
    llama_batch_free(b);
    if (rc) fprintf(stderr, "llama_check: llama_decode failed (%d)\n", rc);
    return rc;
}

static double token_nll(const float *logits, int V, llama_token target) {
    float mx = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double s = 0;
    for (int i = 0; i < V; i++)
        s += exp((double)logits[i] - mx);
    return log(s) + mx - (double)logits[target];
}

static int run_ppl(struct llama_context *lc, const struct llama_vocab *voc, const opts *o, const llama_token *ids,
                   int n) {
    const int V = llama_vocab_n_tokens(voc), C = o->ctx;
    const int llamacpp = !strcmp(o->ppl, "llamacpp");
    if (n < C) {
        fprintf(stderr, "llama_check: %d ids, fewer than one window of %d\n", n, C);
        return 1;
    }
    llama_token *win = malloc((size_t)C * sizeof *win);
    if (!win) return 1;
    double sum = 0;
    long count = 0;
    for (int w = 0; w + C <= n; w += C) {
        memcpy(win, ids + w, (size_t)C * sizeof *win);
        if (llamacpp) win[0] = llama_vocab_bos(voc);
        if (decode_all(lc, win, C)) {
            free(win);
            return 1;
        }
        for (int j = llamacpp ? C / 2 : 0; j < C - 1; j++) {
            sum += token_nll(llama_get_logits_ith(lc, j), V, ids[w + j + 1]);
            count++;
        }
    }
    free(win);
    printf("ppl %.17g %.17g %ld\n", exp(sum / (double)count), sum / (double)count, count);
    return 0;
}

static int run_greedy(struct llama_context *lc, const struct llama_vocab *voc, const opts *o, const llama_token *ids,
                      int n) {
    const int V = llama_vocab_n_tokens(voc);
    const llama_token bos = llama_vocab_bos(voc), eos = llama_vocab_eos(voc);
    FILE *text = o->text_out ? fopen(o->text_out, "wb") : NULL;
    if (o->text_out && !text) {
        fprintf(stderr, "llama_check: cannot write %s\n", o->text_out);
        return 1;
    }
    llama_memory_clear(llama_get_memory(lc), true);
    llama_token *seq = malloc((size_t)(n + o->greedy + 1) * sizeof *seq);
    if (!seq) return 1;
    memcpy(seq, ids, (size_t)n * sizeof *seq);
    printf("greedy");
    int len = n, rc = 0, fed = 0;
    for (int k = 0; k < o->greedy && len <= o->ctx; k++) { /* the last token needs no decode */
        struct llama_batch b = llama_batch_get_one(seq + fed, len - fed);
        if (llama_decode(lc, b)) {
            fprintf(stderr, "llama_check: llama_decode failed\n");
            rc = 1;
            break;
        }
        fed = len;
        const float *lg = llama_get_logits_ith(lc, -1);
        llama_token best = 0;
        for (int i = 1; i < V; i++)
            if (lg[i] > lg[best]) best = i;
        if (best == bos || best == eos) break;
        seq[len++] = best;
        printf(" %d", best);
        if (text) {
            char piece[256];
            /* lstrip 1 on the first piece: the space the vocabulary prefixes, as llama_detokenize */
            int m = llama_token_to_piece(voc, best, piece, sizeof piece, k == 0, false);
            if (m > 0) fwrite(piece, 1, (size_t)m, text);
        }
    }
    printf("\n");
    free(seq);
    if (text) fclose(text);
    return rc;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Decodes n tokens (pseudo-random ids) as one batch from position pos; logits of the last. */
static int decode_batch(struct llama_context *lc, int vocab, int n, int pos, unsigned *seed) {
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        b.token[i] = (llama_token)((*seed >> 8) % (unsigned)vocab);
        b.pos[i] = pos + i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = i == n - 1;
    }
    b.n_tokens = n;
    const int rc = llama_decode(lc, b);
    llama_batch_free(b);
    return rc;
}

/* --bench: the protocol of bench/bench_decode.c on llama.cpp's side. */
static int run_bench(struct llama_model *model, const struct llama_vocab *voc, const opts *o) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 1024;
    cp.n_batch = cp.n_ubatch = 512;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = o->threads;
    struct llama_context *lc = llama_init_from_model(model, cp);
    if (!lc) return fprintf(stderr, "llama_check: %s: llama.cpp could not create a context\n", o->model), 1;
    const int V = llama_vocab_n_tokens(voc), P = 512, D0 = 128, G = 128;
    unsigned seed = 12345;
    int rc = decode_batch(lc, V, 16, 0, &seed); /* warm-up: buffers, threads */
    double best = 1e30;
    for (int rep = 0; rep < 2 && !rc; rep++) {
        llama_memory_clear(llama_get_memory(lc), true);
        const double t = now_s();
        rc = decode_batch(lc, V, P, 0, &seed);
        const double dt = now_s() - t;
        if (dt < best) best = dt;
    }
    if (!rc) printf("bench prompt %d %.6f %.3f\n", P, best, P / best);
    llama_memory_clear(llama_get_memory(lc), true);
    if (!rc) rc = decode_batch(lc, V, D0, 0, &seed);
    const double t = now_s();
    for (int k = 0; k < G && !rc; k++) {
        const float *lg = llama_get_logits_ith(lc, -1);
        llama_token best_id = 0;
        for (int i = 1; i < V; i++)
            if (lg[i] > lg[best_id]) best_id = i;
        struct llama_batch b = llama_batch_get_one(&best_id, 1);
        rc = llama_decode(lc, b);
    }
    const double dt = now_s() - t;
    if (!rc) printf("bench decode %d %.6f %.3f\n", G, dt, G / dt);
    if (rc) fprintf(stderr, "llama_check: llama_decode failed (%d)\n", rc);
    llama_free(lc);
    return rc ? 1 : 0;
}

static int work(const opts *o) {
    verbose_log = o->verbose;
    if (!o->verbose) setenv("GGML_NO_BACKTRACE", "1", 0); /* a crash is reported by the parent */
    llama_log_set(log_cb, NULL);
    ggml_backend_load_all(); /* the CPU backend is a libggml-cpu-*.so beside this program */
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    if (o->no_mmap) mp.load_mode = LLAMA_LOAD_MODE_NONE; /* read into memory, as llama.cpp's --no-mmap */
    struct llama_model *model = llama_model_load_from_file(o->model, mp);
    if (!model) {
        fprintf(stderr, "llama_check: %s: llama.cpp could not load the model\n", o->model);
        return 1;
    }
    const struct llama_vocab *voc = llama_model_get_vocab(model);
    printf("n_vocab %d\n", llama_vocab_n_tokens(voc));
    fflush(stdout);

    if (o->tok_arg || o->tok_file) {
        char *text = o->tok_arg ? strdup(o->tok_arg) : read_file(o->tok_file);
        if (!text) {
            fprintf(stderr, "llama_check: cannot read %s\n", o->tok_file ? o->tok_file : "the text");
            llama_model_free(model);
            return 1;
        }
        const int32_t len = (int32_t)strlen(text);
        int32_t cap = len + 16;
        llama_token *tk = malloc((size_t)cap * sizeof *tk);
        int32_t m = tk ? llama_tokenize(voc, text, len, tk, cap, true, false) : 0;
        if (m < 0) fprintf(stderr, "llama_check: llama_tokenize needs %d tokens\n", -m);
        printf("tokens");
        for (int32_t i = 0; i < m; i++)
            printf(" %d", tk[i]);
        printf("\n");
        fflush(stdout);
        free(tk);
        free(text);
        if (m < 0) {
            llama_model_free(model);
            return 1;
        }
    }
    llama_token *ids = NULL;
    int n = 0;
    if (o->ids_arg || o->ids_file) {
        char *s = o->ids_arg ? strdup(o->ids_arg) : read_file(o->ids_file);
        n = s ? parse_ids(s, &ids) : -1;
        free(s);
        if (n < 0) {
            fprintf(stderr, "llama_check: bad token ids\n");
            llama_model_free(model);
            return 2;
        }
        for (int i = 0; i < n; i++)
            if (ids[i] >= llama_vocab_n_tokens(voc)) {
                fprintf(stderr, "llama_check: id %d out of the vocabulary\n", ids[i]);
                free(ids);
                llama_model_free(model);
                return 2;
            }
    }
    int rc = 0;
    if (o->bench) rc = run_bench(model, voc, o);
    if (!rc && (o->logits || o->ppl || o->greedy > 0)) {
        struct llama_context_params cp = llama_context_default_params();
        int need = o->ppl ? o->ctx : n + o->greedy;
        if (!o->ppl && need > llama_model_n_ctx_train(model)) need = llama_model_n_ctx_train(model); /* as we do */
        cp.n_ctx = (uint32_t)(o->ctx > need ? o->ctx : need);
        cp.n_batch = cp.n_ubatch = cp.n_ctx;
        cp.n_seq_max = 1;
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.n_threads = cp.n_threads_batch = o->threads;
        struct llama_context *lc = llama_init_from_model(model, cp);
        if (!lc) {
            fprintf(stderr, "llama_check: %s: llama.cpp could not create a context\n", o->model);
            rc = 1;
        } else {
            opts oo = *o;
            oo.ctx = o->ppl ? o->ctx : need; /* llama_n_ctx may be rounded up */
            if (!rc && o->logits) {
                if (n == 0 || decode_all(lc, ids, n)) {
                    fprintf(stderr, "llama_check: --logits needs ids\n");
                    rc = 1;
                } else {
                    const int V = llama_vocab_n_tokens(voc);
                    for (int i = 0; i < n; i++) {
                        const float *lg = llama_get_logits_ith(lc, i);
                        printf("logits %d", i);
                        for (int v = 0; v < V; v++)
                            printf(" %.9g", lg[v]);
                        printf("\n");
                    }
                }
            }
            if (!rc && o->ppl) rc = run_ppl(lc, voc, &oo, ids, n);
            if (!rc && o->greedy > 0) {
                if (n == 0) {
                    ids = realloc(ids, sizeof *ids);
                    ids[0] = llama_vocab_bos(voc);
                    n = 1;
                }
                rc = run_greedy(lc, voc, &oo, ids, n);
            }
            llama_free(lc);
        }
    }
    free(ids);
    llama_model_free(model);
    llama_backend_free();
    fflush(stdout);
    return rc;
}

/* ---------------------------------------------------------------- ggml quantization modes */

static int ggml_type_arg(const char *s, enum ggml_type *t) {
    for (int i = 0; i < GGML_TYPE_COUNT; i++) {
        const char *n = ggml_type_name((enum ggml_type)i);
        if (n && !strcasecmp(n, s)) {
            *t = (enum ggml_type)i;
            return 1;
        }
    }
    return 0;
}

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(sz > 0 ? (size_t)sz : 1);
    *n = p && sz > 0 ? fread(p, 1, (size_t)sz, f) : 0;
    fclose(f);
    return p;
}

static int spit(FILE *f, const void *p, size_t n) {
    return fwrite(p, 1, n, f) == n;
}

static int to_f32(enum ggml_type t, const void *src, int64_t n, FILE *out) {
    float *y = malloc((size_t)n * sizeof *y + 1);
    if (!y) return 0;
    if (t == GGML_TYPE_F32)
        memcpy(y, src, (size_t)n * 4);
    else
        ggml_get_type_traits(t)->to_float(src, y, n);
    int ok = spit(out, y, (size_t)n * 4);
    free(y);
    return ok;
}

static int mode_dequant_raw(const char *type, const char *in, const char *outp) {
    enum ggml_type t;
    if (!ggml_type_arg(type, &t) || !ggml_get_type_traits(t)->to_float) return usage("--dequant-raw: unknown type");
    size_t n = 0;
    void *b = slurp(in, &n);
    FILE *f = fopen(outp, "wb");
    if (!b || !f || n % ggml_type_size(t)) return fprintf(stderr, "llama_check: %s: cannot read\n", in), 1;
    int ok = to_f32(t, b, (int64_t)(n / ggml_type_size(t)) * ggml_blck_size(t), f);
    ok &= fclose(f) == 0;
    free(b);
    return !ok;
}

static int mode_dequant_gguf(const char *path, const char *outp) {
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    size_t n = 0;
    uint8_t *buf = slurp(path, &n);
    FILE *f = fopen(outp, "wb");
    if (!g || !buf || !f) return fprintf(stderr, "llama_check: %s: ggml cannot read the file\n", path), 1;
    int ok = 1;
    for (int64_t i = 0; i < gguf_get_n_tensors(g) && ok; i++) {
        enum ggml_type t = gguf_get_tensor_type(g, i);
        size_t off = gguf_get_data_offset(g) + gguf_get_tensor_offset(g, i), sz = gguf_get_tensor_size(g, i);
        if (off > n || sz > n - off || (t != GGML_TYPE_F32 && !ggml_get_type_traits(t)->to_float)) {
            fprintf(stderr, "llama_check: %s: tensor %s out of range or not convertible\n", path,
                    gguf_get_tensor_name(g, i));
            ok = 0;
            break;
        }
        int64_t ne = (int64_t)(sz / ggml_type_size(t)) * ggml_blck_size(t);
        printf("tensor %s %s %lld\n", gguf_get_tensor_name(g, i), ggml_type_name(t), (long long)ne);
        ok = to_f32(t, buf + off, ne, f);
    }
    ok &= fclose(f) == 0;
    gguf_free(g);
    free(buf);
    return !ok;
}

static int mode_quantize_row(const char *type, const char *ncols_s, const char *in, const char *imat,
                             const char *outp) {
    enum ggml_type t;
    if (!ggml_type_arg(type, &t)) return usage("--quantize-row: unknown type");
    int64_t ncols = atoll(ncols_s);
    size_t nx = 0, nw = 0;
    float *x = slurp(in, &nx), *w = strcmp(imat, "-") ? slurp(imat, &nw) : NULL;
    if (!x || ncols <= 0 || ncols % ggml_blck_size(t) || nx % ((size_t)ncols * 4) || (w && nw != (size_t)ncols * 4))
        return fprintf(stderr, "llama_check: --quantize-row: bad input sizes\n"), 1;
    int64_t rows = (int64_t)(nx / 4) / ncols;
    size_t sz = ggml_row_size(t, ncols) * (size_t)rows;
    void *dst = malloc(sz + 1);
    /* the importance matrix is per column: ggml_quantize_chunk applies it to every row */
    size_t got = dst ? ggml_quantize_chunk(t, x, dst, 0, rows, ncols, w) : 0;
    FILE *f = fopen(outp, "wb");
    int ok = got == sz && f && spit(f, dst, sz);
    if (f) ok &= fclose(f) == 0;
    free(x), free(w), free(dst);
    return !ok;
}

static volatile sig_atomic_t timed_out;
static void on_alarm(int sig) {
    (void)sig;
    timed_out = 1;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "--dequant-raw")) return mode_dequant_raw(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "--dequant")) return mode_dequant_gguf(argv[2], argv[3]);
    if (argc == 7 && !strcmp(argv[1], "--quantize-row"))
        return mode_quantize_row(argv[2], argv[3], argv[4], argv[5], argv[6]);
    opts o = {0};
    o.threads = 2;
    o.timeout = 600;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has = i + 1 < argc;
        if (!strcmp(a, "--ids") && has)
            o.ids_arg = argv[++i];
        else if (!strcmp(a, "--ids-file") && has)
            o.ids_file = argv[++i];
        else if (!strcmp(a, "--text-out") && has)
            o.text_out = argv[++i];
        else if (!strcmp(a, "--tokenize") && has)
            o.tok_arg = argv[++i];
        else if (!strcmp(a, "--tokenize-file") && has)
            o.tok_file = argv[++i];
        else if (!strcmp(a, "--ppl") && has)
            o.ppl = argv[++i];
        else if (!strcmp(a, "--ctx") && has)
            o.ctx = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && has)
            o.threads = atoi(argv[++i]);
        else if (!strcmp(a, "--greedy") && has)
            o.greedy = atoi(argv[++i]);
        else if (!strcmp(a, "--timeout") && has)
            o.timeout = atoi(argv[++i]);
        else if (!strcmp(a, "--logits"))
            o.logits = 1;
        else if (!strcmp(a, "--verbose"))
            o.verbose = 1;
        else if (!strcmp(a, "--bench"))
            o.bench = 1;
        else if (!strcmp(a, "--no-mmap"))
            o.no_mmap = 1;
        else if (a[0] == '-')
            return usage("unknown option or missing value");
        else if (o.model)
            return usage("more than one model");
        else
            o.model = a;
    }
    if (!o.model) return usage("no model given");
    if (o.ppl && strcmp(o.ppl, "gptq") && strcmp(o.ppl, "llamacpp")) return usage("--ppl gptq|llamacpp");
    if (o.ppl && o.ctx < 2) return usage("--ppl needs --ctx N (N >= 2)");
    if (o.ppl && !o.ids_arg && !o.ids_file) return usage("--ppl needs ids");
    if (o.threads < 1) o.threads = 1;

    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("llama_check: fork");
        return 1;
    }
    if (pid == 0) _exit(work(&o));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    alarm((unsigned)(o.timeout > 0 ? o.timeout : 600));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("llama_check: waitpid");
            return 1;
        }
        if (timed_out) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "llama_check: %s: llama.cpp did not finish within %d s\n", o.model, o.timeout);
            return 4;
        }
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "llama_check: %s: llama.cpp crashed (signal %d: %s)\n", o.model, WTERMSIG(status),
                strsignal(WTERMSIG(status)));
        return 3;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
