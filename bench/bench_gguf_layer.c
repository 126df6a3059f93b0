/* GPTQ onto ggml block grids against ggml's own quantizer, on bench_layer's synthetic layer
 * (bench/layer_data.h: correlated inputs, rank 64). For every ggml type:
 *   ours  pq_layer_compress with gguf_type = the type (GPTQ, no pruning; block parameters
 *         fitted with importance diag(H), then the sweep rounds onto them)
 *   ggml  ggml_quantize_chunk with imatrix = diag(H) (the mean x^2 llama-imatrix collects, up to
 *         the factor 2 that ggml's weighting ignores), run by llama_check --quantize-row
 *         (tests/llamacpp/llama_check.c, built by scripts/llamacpp.sh) on temporary files;
 *         its blocks are decoded with the library's exact ggml decode
 *   rtn   pq_layer_compress with quant = rtn onto the same types: our block fit, no feedback
 * Every error is tr(dW H dW^T), dW = W - Q, computed here the same way for all three (rel:
 * divided by tr(W H W^T)). One JSON object per type, then a markdown table.
 * Seconds: ours/rtn are the library's compression time (its threads); ggml is the wall time of
 * the llama_check run (one thread, file I/O and process start included).
 * Usage: bench_gguf_layer [rows cols tokens] [LLAMACPP_BIN_DIR]  (default 4096 4096 2048; the
 * folder holding llama_check, else $PQ_LLAMACPP_BIN; without one only ours and rtn run). */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernels/ggml_types.h"
#include "layer_data.h"
#include "prunequant-compress.h"
#include "bench_util.h"

static void warn_log(void *user, pq_log_level level, const char *msg) {
    (void)user;
    if (level >= PQ_LOG_WARN) fprintf(stderr, "bench_gguf_layer: %s\n", msg);
}

typedef struct {
    int64_t rows, cols;
    const float *W0, *H; /* [rows, cols], [cols, cols] */
    float *D, *M;        /* [rows, cols] scratch */
    double base;         /* tr(W0 H W0^T) */
} layer;

/* tr(D H D^T) with D = W0 - Q (Q NULL: D = W0), H symmetric; the sum in double. */
static double hess_err(layer *L, const float *Q) {
    const int64_t n = L->rows * L->cols;
    for (int64_t i = 0; i < n; i++)
        L->D[i] = Q ? L->W0[i] - Q[i] : L->W0[i];
    cblas_ssymm(CblasRowMajor, CblasRight, CblasLower, (int)L->rows, (int)L->cols, 1.0f, L->H, (int)L->cols, L->D,
                (int)L->cols, 0.0f, L->M, (int)L->cols);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)L->D[i] * (double)L->M[i];
    return s;
}

/* pq_layer_compress onto type t with quantizer q: *err, *bpw, *secs; Q in W. 0 on failure. */
static int run_ours(pq_ctx *ctx, layer *L, pq_dtype t, pq_quant_method q, float *W, double *err, double *bpw,
                    double *secs) {
    pq_layer_params p = pq_layer_params_default();
    p.quant = q;
    p.gguf_type = t;
    p.error_mode = PQ_ERROR_NONE; /* computed below, the same way as ggml's */
    memcpy(W, L->W0, sizeof(float) * (size_t)(L->rows * L->cols));
    pq_qcodes codes;
    memset(&codes, 0, sizeof codes);
    pq_layer_result r;
    if (pq_layer_compress(ctx, &p, W, L->rows, L->cols, L->H, NULL, &codes, &r) != PQ_OK) {
        fprintf(stderr, "bench_gguf_layer: %s %s: %s\n", pq_dtype_name(t), pq_quant_method_name(q),
                pq_ctx_error(ctx));
        return 0;
    }
    *bpw = 8.0 * (double)codes.gguf_bytes / (double)(L->rows * L->cols);
    *secs = r.seconds;
    *err = hess_err(L, W);
    pq_qcodes_free(&codes);
    return 1;
}

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(p, 1, n, f) == n;
    if (f) ok &= fclose(f) == 0;
    return ok;
}

/* Runs argv[0] with argv; its exit status, -1 when it did not run or was killed. */
static int spawn(char *const argv[]) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

typedef struct {
    char prog[4096], dir[256], w[300], imat[300], out[300];
} ggml_run;

/* ggml_quantize_chunk on W0 with imatrix diag(H) by llama_check, decoded into Q. 0 on failure. */
static int run_ggml(const ggml_run *g, layer *L, const pq__ggml_info *ti, float *Q, double *err, double *bpw,
                    double *secs) {
    char ncols[32];
    snprintf(ncols, sizeof ncols, "%lld", (long long)L->cols);
    char *argv[] = {(char *)g->prog, "--quantize-row", (char *)ti->name, ncols,
                    (char *)g->w,    (char *)g->imat,  (char *)g->out,   NULL};
    const double t0 = now_s();
    const int rc = spawn(argv);
    *secs = now_s() - t0;
    const size_t row_bytes = (size_t)(L->cols / ti->block) * (size_t)ti->bytes, want = row_bytes * (size_t)L->rows;
    uint8_t *b = rc == 0 ? malloc(want + 1) : NULL;
    FILE *f = b ? fopen(g->out, "rb") : NULL;
    const size_t got = f ? fread(b, 1, want + 1, f) : 0;
    if (f) fclose(f);
    remove(g->out);
    if (got != want) {
        fprintf(stderr, "bench_gguf_layer: %s: llama_check exit %d, %zu of %zu bytes\n", ti->name, rc, got, want);
        free(b);
        return 0;
    }
    for (int64_t r = 0; r < L->rows; r++)
        pq__ggml_decode_row(ti, b + (size_t)r * row_bytes, Q + r * L->cols, L->cols);
    free(b);
    *bpw = 8.0 * (double)want / (double)(L->rows * L->cols);
    *err = hess_err(L, Q);
    return 1;
}

/* The llama_check program and its input files (W0, diag H); 0 (with a message) without one. */
static int ggml_setup(ggml_run *g, const char *bin_dir, layer *L) {
    if (!bin_dir || !*bin_dir) {
        fprintf(stderr, "bench_gguf_layer: no llama.cpp folder (argument or PQ_LLAMACPP_BIN, e.g. "
                        "PQ_LLAMACPP_BIN=$(scripts/llamacpp.sh)): ggml's quantizer is not measured\n");
        return 0;
    }
    snprintf(g->prog, sizeof g->prog, "%s/llama_check", bin_dir);
    if (access(g->prog, X_OK) != 0) {
        fprintf(stderr, "bench_gguf_layer: %s is not an executable: ggml's quantizer is not measured\n", g->prog);
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(g->dir, sizeof g->dir, "%s/bench_gguf_layer.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g->dir)) return fprintf(stderr, "bench_gguf_layer: cannot make a folder in %s\n", g->dir), 0;
    snprintf(g->w, sizeof g->w, "%s/w.f32", g->dir);
    snprintf(g->imat, sizeof g->imat, "%s/imatrix.f32", g->dir);
    snprintf(g->out, sizeof g->out, "%s/out.bin", g->dir);
    float *diag = malloc(sizeof(float) * (size_t)L->cols); /* [cols] */
    for (int64_t c = 0; diag && c < L->cols; c++)
        diag[c] = L->H[c * L->cols + c];
    const int ok = diag && write_file(g->w, L->W0, sizeof(float) * (size_t)(L->rows * L->cols)) &&
                   write_file(g->imat, diag, sizeof(float) * (size_t)L->cols);
    free(diag);
    if (!ok) fprintf(stderr, "bench_gguf_layer: cannot write the inputs in %s\n", g->dir);
    return ok;
}

static void ggml_cleanup(const ggml_run *g) {
    remove(g->w);
    remove(g->imat);
    remove(g->out);
    rmdir(g->dir);
}

typedef struct {
    const char *name;
    double bpw, err_ours, err_ggml, err_rtn, s_ours, s_ggml, s_rtn;
    int ggml;
} row_out;

static void print_table(const row_out *o, int n, double base) {
    printf("\n| type | bits/weight | ours (GPTQ) err | rel | ggml imatrix err | rel | ggml / ours | our RTN err | "
           "RTN / ours | s ours | s ggml |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        printf("| %s | %.4g | %.5g | %.3g | ", o[i].name, o[i].bpw, o[i].err_ours, o[i].err_ours / base);
        if (o[i].ggml)
            printf("%.5g | %.3g | %.2f | ", o[i].err_ggml, o[i].err_ggml / base, o[i].err_ggml / o[i].err_ours);
        else
            printf("- | - | - | ");
        printf("%.5g | %.2f | %.1f | ", o[i].err_rtn, o[i].err_rtn / o[i].err_ours, o[i].s_ours);
        if (o[i].ggml)
            printf("%.1f |\n", o[i].s_ggml);
        else
            printf("- |\n");
    }
}

int main(int argc, char **argv) {
    const int shape = argc > 3;
    const int64_t rows = shape ? atoll(argv[1]) : 4096, cols = shape ? atoll(argv[2]) : 4096;
    const int64_t tokens = shape ? atoll(argv[3]) : 2048, rank = 64;
    const char *bin_dir = argc > (shape ? 4 : 1) ? argv[shape ? 4 : 1] : getenv("PQ_LLAMACPP_BIN");
    if (rows <= 0 || cols <= 0 || tokens <= 0 || cols % PQ_GGML_QK_K)
        return fprintf(stderr, "usage: bench_gguf_layer [rows cols tokens] [LLAMACPP_BIN_DIR] (cols: k * 256)\n"), 2;
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_log(ctx, warn_log, NULL);
    const int threads = pq_ctx_threads(ctx);
    openblas_set_num_threads(threads);
    layer L = {.rows = rows, .cols = cols};
    float *H, *W0; /* [cols, cols], [rows, cols] */
    if (!layer_data(rows, cols, tokens, rank, &H, &W0))
        return fprintf(stderr, "bench_gguf_layer: out of memory\n"), 1;
    L.H = H;
    L.W0 = W0;
    L.D = malloc(sizeof(float) * (size_t)(rows * cols));
    L.M = malloc(sizeof(float) * (size_t)(rows * cols));
    float *W = malloc(sizeof(float) * (size_t)(rows * cols)); /* [rows, cols] */
    if (!L.D || !L.M || !W) return fprintf(stderr, "bench_gguf_layer: out of memory\n"), 1;
    L.base = hess_err(&L, NULL);
    ggml_run g;
    memset(&g, 0, sizeof g);
    const int have_ggml = ggml_setup(&g, bin_dir, &L);
    printf("{\"name\": \"layer\", \"rows\": %lld, \"cols\": %lld, \"tokens\": %lld, \"rank\": %lld, \"threads\": %d, "
           "\"tr_WHW\": %.6g, \"ggml\": %s}\n",
           (long long)rows, (long long)cols, (long long)tokens, (long long)rank, threads, L.base,
           have_ggml ? "true" : "false");
    const pq_dtype types[] = {PQ_DTYPE_Q6_K, PQ_DTYPE_Q5_K, PQ_DTYPE_Q4_K, PQ_DTYPE_Q3_K, PQ_DTYPE_Q2_K,
                              PQ_DTYPE_Q8_0, PQ_DTYPE_Q5_1, PQ_DTYPE_Q5_0, PQ_DTYPE_Q4_1, PQ_DTYPE_Q4_0};
    enum { NT = sizeof types / sizeof types[0] };
    row_out out[NT];
    int n = 0, failed = 0;
    for (int k = 0; k < NT; k++) {
        const pq__ggml_info *ti = pq__ggml_info_of(types[k]);
        row_out o = {.name = ti->name};
        double bpw_ggml = 0;
        if (!run_ours(ctx, &L, types[k], PQ_QUANT_GPTQ, W, &o.err_ours, &o.bpw, &o.s_ours) ||
            !run_ours(ctx, &L, types[k], PQ_QUANT_RTN, W, &o.err_rtn, &o.bpw, &o.s_rtn)) {
            failed = 1;
            continue;
        }
        o.ggml = have_ggml && run_ggml(&g, &L, ti, W, &o.err_ggml, &bpw_ggml, &o.s_ggml);
        if (have_ggml && (!o.ggml || bpw_ggml != o.bpw)) failed = 1;
        printf("{\"type\": \"%s\", \"bpw\": %.4f, \"err_ours\": %.6g, \"rel_ours\": %.4g, \"err_rtn\": %.6g, "
               "\"rel_rtn\": %.4g, \"seconds_ours\": %.2f, \"seconds_rtn\": %.2f",
               o.name, o.bpw, o.err_ours, o.err_ours / L.base, o.err_rtn, o.err_rtn / L.base, o.s_ours, o.s_rtn);
        if (o.ggml)
            printf(", \"bpw_ggml\": %.4f, \"err_ggml\": %.6g, \"rel_ggml\": %.4g, \"ratio\": %.3f, "
                   "\"seconds_ggml\": %.2f",
                   bpw_ggml, o.err_ggml, o.err_ggml / L.base, o.err_ggml / o.err_ours, o.s_ggml);
        printf("}\n");
        fflush(stdout);
        out[n++] = o;
    }
    if (have_ggml) ggml_cleanup(&g);
    print_table(out, n, L.base);
    free(W), free(L.D), free(L.M), free(H), free(W0);
    pq_ctx_free(ctx);
    return failed;
}
