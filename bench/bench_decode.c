/* Speed and memory of running a model as stored (kernels/qmat.h), measured the way
 * tests/llamacpp/llama_check.c --bench measures llama.cpp, for bench/bench_decode.sh (which runs
 * both sides on the same weights and prints the table).
 *
 *   bench_decode run MODEL [threads]
 *       prompt: 512 pseudo-random tokens in one batch (logits of the last), best of 2, with
 *       float32-accurate products and again with 8-bit activations (pq_ctx_set_int8_prompts);
 *       decode: a 128-token prompt, then 128 single-token steps, each feeding the greedy token,
 *       with float32-accurate products and again with 8-bit activations (pq_ctx_set_int8_decode);
 *       one JSON line: tokens/s of both, peak resident set (VmHWM) and the model's file bytes,
 *       the linears that run from their stored form.
 *   bench_decode ... --no-mmap (last): the models read into memory of large pages instead of
 *       mapped (pq_load_params.use_mmap 0, the CLI's --no-mmap); the JSON lines say "mmap".
 *   bench_decode pair MODEL_A MODEL_B [threads]
 *       both models in one process, decoding in turns: after a 128-token prompt each, 128 pairs of
 *       single-token steps, A then B on even pairs and B then A on odd ones, each model's steps
 *       timed; float32-accurate products, then 8-bit activations. One JSON line: both rates and
 *       their ratio B / A. On a shared host whose speed drifts over seconds, separate runs differ
 *       by more than the kernels do; in turns a drift slows both models alike (faster bursts
 *       still move the ratio: repeat it).
 *   bench_decode rss BUDGET_BYTES -- COMMAND [ARGS...]
 *       runs COMMAND (its output to stderr), prints one JSON line with its peak resident set
 *       (wait4's ru_maxrss) and its ratio to BUDGET_BYTES; exits with the command's status.
 * Run each model in its own process: the peak resident set is per process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"
#include "prunequant.h"
#include "bench_util.h"

static void fill_tokens(int32_t *t, int64_t n, int64_t vocab, unsigned *seed) {
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        t[i] = (int32_t)((*seed >> 8) % (unsigned)vocab);
    }
}

/* How the models are loaded: mapped (the default) or, with --no-mmap, read into memory of
 * large pages (pq_load_params.use_mmap 0). */
static pq_load_params load_params;

static int32_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

static int run(const char *path, int threads) {
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, threads);
    pq_model *m = NULL;
    const double t0 = now_s();
    if (pq_model_load(ctx, path, &load_params, &m) != PQ_OK) {
        fprintf(stderr, "bench_decode: %s\n", pq_ctx_error(ctx));
        return 1;
    }
    const double load_s = now_s() - t0;
    const int64_t V = m->cfg.vocab_size, P = 512, D0 = 128, G = 128;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)P);
    float *logits = malloc(sizeof(float) * (size_t)V);
    unsigned seed = 12345;
    pq_status st = PQ_OK;
    pq__kv kv;
    if ((st = pq__kv_init(ctx, &kv, &m->cfg, 1, 1024))) goto done;
    fill_tokens(tok, 16, V, &seed); /* warm-up: pages, threads */
    st = pq__forward(ctx, m, &kv, tok, 1, 16, 0, 1, logits);
    double prompt_s[2] = {1e30, 1e30}; /* exact, then with 8-bit activations (pq_ctx_set_int8_prompts) */
    for (int pass = 0; pass < 2 && st == PQ_OK; pass++) {
        pq_ctx_set_int8_prompts(ctx, pass);
        for (int rep = 0; rep < 2 && st == PQ_OK; rep++) {
            fill_tokens(tok, P, V, &seed);
            const double t = now_s();
            st = pq__forward(ctx, m, &kv, tok, 1, P, 0, 1, logits);
            const double dt = now_s() - t;
            if (dt < prompt_s[pass]) prompt_s[pass] = dt;
        }
    }
    pq_ctx_set_int8_prompts(ctx, 0);
    double decode_s = 0, decode8_s = 0; /* exact, then with 8-bit activations (pq_ctx_set_int8_decode) */
    for (int pass = 0; pass < 2 && st == PQ_OK; pass++) {
        pq_ctx_set_int8_decode(ctx, pass);
        fill_tokens(tok, D0, V, &seed);
        st = pq__forward(ctx, m, &kv, tok, 1, D0, 0, 1, logits);
        const double t = now_s();
        for (int64_t k = 0; k < G && st == PQ_OK; k++) {
            int32_t next = argmax(logits, V);
            st = pq__forward(ctx, m, &kv, &next, 1, 1, D0 + k, 1, logits);
        }
        *(pass ? &decode8_s : &decode_s) = now_s() - t;
    }
    pq_ctx_set_int8_decode(ctx, 0);
    if (st == PQ_OK) {
        pq_model_info info;
        pq_model_get_info(m, &info);
        printf("{\"bench\": \"decode\", \"model\": \"%s\", \"threads\": %d, \"prompt_tokens\": %lld, "
               "\"prompt_tok_s\": %.3f, \"prompt_int8_tok_s\": %.3f, \"decode_tokens\": %lld, \"decode_tok_s\": "
               "%.3f, \"decode_int8_tok_s\": %.3f, \"load_s\": %.3f, "
               "\"peak_rss_mib\": %.1f, \"file_mib\": %.1f, \"native_linears\": %lld, \"linears\": %lld, "
               "\"path\": \"%s\", \"mmap\": %d}\n",
               path, pq_ctx_threads(ctx), (long long)P, (double)P / prompt_s[0], (double)P / prompt_s[1],
               (long long)G, (double)G / decode_s, (double)G / decode8_s, load_s, (double)vm_kb("VmHWM:") / 1024.0,
               (double)info.file_bytes / 1048576.0, (long long)m->n_native,
               (long long)(m->cfg.n_layers * PQ_BLOCK_LINEARS), pq__isa_name(pq__qmat_isa()), load_params.use_mmap);
    }
    pq__kv_free(&kv);
done:
    if (st) fprintf(stderr, "bench_decode: %s\n", pq_ctx_error(ctx));
    free(tok);
    free(logits);
    pq_model_free(m);
    pq_ctx_free(ctx);
    return st ? 1 : 0;
}

static int pair(const char *path_a, const char *path_b, int threads) {
    const char *path[2] = {path_a, path_b};
    pq_ctx *ctx = pq_ctx_new();
    pq_ctx_set_threads(ctx, threads);
    pq_model *m[2] = {NULL, NULL};
    pq__kv kv[2];
    int have_kv[2] = {0, 0};
    float *logits[2] = {NULL, NULL};
    int32_t *tok = NULL;
    pq_status st = PQ_OK;
    for (int i = 0; i < 2 && st == PQ_OK; i++)
        if ((st = pq_model_load(ctx, path[i], &load_params, &m[i])) == PQ_OK &&
            (st = pq__kv_init(ctx, &kv[i], &m[i]->cfg, 1, 512)) == PQ_OK)
            have_kv[i] = 1;
    if (st == PQ_OK && m[0]->cfg.vocab_size != m[1]->cfg.vocab_size)
        st = pq__fail(ctx, PQ_ERR_INVALID, "%s and %s have different vocabularies", path_a, path_b);
    const int64_t D0 = 128, G = 128;
    double rate[2][2] = {{0, 0}, {0, 0}}; /* [int8][model] tokens/s */
    if (st == PQ_OK) {
        const int64_t V = m[0]->cfg.vocab_size;
        tok = malloc(sizeof(int32_t) * (size_t)D0);
        for (int i = 0; i < 2; i++)
            logits[i] = malloc(sizeof(float) * (size_t)V);
        unsigned seed = 777;
        for (int int8 = 0; int8 < 2 && st == PQ_OK; int8++) {
            pq_ctx_set_int8_decode(ctx, int8);
            fill_tokens(tok, D0, V, &seed);
            for (int i = 0; i < 2 && st == PQ_OK; i++)
                st = pq__forward(ctx, m[i], &kv[i], tok, 1, D0, 0, 1, logits[i]);
            double t[2] = {0, 0};
            for (int64_t k = 0; k < G && st == PQ_OK; k++)
                for (int j = 0; j < 2 && st == PQ_OK; j++) {
                    const int i = (int)(k & 1) ^ j;
                    int32_t next = argmax(logits[i], V);
                    const double t0 = now_s();
                    st = pq__forward(ctx, m[i], &kv[i], &next, 1, 1, D0 + k, 1, logits[i]);
                    t[i] += now_s() - t0;
                }
            for (int i = 0; i < 2; i++)
                rate[int8][i] = (double)G / t[i];
        }
        pq_ctx_set_int8_decode(ctx, 0);
    }
    if (st == PQ_OK)
        printf("{\"bench\": \"decode_pair\", \"a\": \"%s\", \"b\": \"%s\", \"threads\": %d, \"decode_tokens\": %lld, "
               "\"a_decode_tok_s\": %.3f, \"b_decode_tok_s\": %.3f, \"ratio\": %.3f, \"a_decode_int8_tok_s\": %.3f, "
               "\"b_decode_int8_tok_s\": %.3f, \"ratio_int8\": %.3f, \"mmap\": %d}\n",
               path_a, path_b, pq_ctx_threads(ctx), (long long)G, rate[0][0], rate[0][1], rate[0][1] / rate[0][0],
               rate[1][0], rate[1][1], rate[1][1] / rate[1][0], load_params.use_mmap);
    else
        fprintf(stderr, "bench_decode: %s\n", pq_ctx_error(ctx));
    for (int i = 0; i < 2; i++) {
        if (have_kv[i]) pq__kv_free(&kv[i]);
        free(logits[i]);
        pq_model_free(m[i]);
    }
    free(tok);
    pq_ctx_free(ctx);
    return st ? 1 : 0;
}

static int rss(double budget, char **argv) {
    const pid_t pid = fork();
    if (pid < 0) return perror("bench_decode: fork"), 1;
    if (pid == 0) {
        dup2(2, 1); /* the command's output to stderr: stdout carries the JSON line */
        execvp(argv[0], argv);
        perror("bench_decode: exec");
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return perror("bench_decode: wait4"), 1;
    const double peak = (double)ru.ru_maxrss * 1024.0;
    printf("{\"bench\": \"rss\", \"command\": \"%s\", \"peak_rss_mib\": %.1f, \"budget_mib\": %.1f, \"ratio\": %.3f, "
           "\"status\": %d}\n",
           argv[0], peak / 1048576.0, budget / 1048576.0, budget > 0 ? peak / budget : 0.0,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv) {
    load_params = pq_load_params_default();
    if (argc >= 3 && strcmp(argv[1], "rss") && !strcmp(argv[argc - 1], "--no-mmap")) load_params.use_mmap = 0, argc--;
    if (argc >= 3 && !strcmp(argv[1], "run")) return run(argv[2], argc > 3 ? atoi(argv[3]) : 0);
    if (argc >= 4 && !strcmp(argv[1], "pair")) return pair(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 0);
    if (argc >= 5 && !strcmp(argv[1], "rss") && !strcmp(argv[3], "--")) return rss(atof(argv[2]), argv + 4);
    fprintf(stderr, "usage: bench_decode run MODEL [threads] [--no-mmap] | bench_decode pair MODEL_A MODEL_B "
                    "[threads] [--no-mmap] | bench_decode rss BUDGET_BYTES -- COMMAND [ARGS...]\n");
    return 2;
}
