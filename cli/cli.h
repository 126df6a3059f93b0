/* Shared pieces of the command-line program (public API only). */
#ifndef PQ_CLI_H
#define PQ_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "prunequant.h"

/* A context with the CLI's log and progress callbacks installed (stderr). */
pq_ctx *cli_ctx_new(int threads, int quiet);
/* Prints "prunequant <cmd>: <msg>" on stderr and returns 1 (after a caught SIGINT/SIGTERM:
 * cli_exit_if_interrupted). */
int cli_fail(const char *cmd, pq_ctx *ctx);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads a whole file; returns NULL and prints an error on failure. */
char *cli_read_file(const char *cmd, const char *path, size_t *len);
/* Reads a text file given with flag (e.g. "--calib"): a folder, a missing or an empty file is
 * an error (printed; NULL); bytes that are not valid UTF-8 are counted in a warning. */
char *cli_read_text(const char *cmd, const char *flag, const char *path, size_t *len, int quiet);
/* Parses an integer/float flag value; prints a usage error and returns non-zero if bad. */
int cli_parse_i64(const char *cmd, const char *flag, const char *s, int64_t min, int64_t max, int64_t *out);
int cli_parse_f64(const char *cmd, const char *flag, const char *s, double min, double max, double *out);
/* Prints "prunequant CMD: unknown option --bitz (did you mean --bits?)" and returns 2. */
int cli_unknown_option(const char *cmd, const char *arg);
/* The word of the space-separated words nearest to word (at most 2 edits) into out; 0 if none. */
int cli_nearest_word(const char *word, const char *words, char *out, size_t n);
/* Ends the progress line, if one is drawn. */
void cli_progress_done(void);
/* Commands that write call this once: SIGINT/SIGTERM then set a flag that the progress
 * callback turns into a cancel (the library removes its temporary output), and cli_fail
 * prints "prunequant CMD: interrupted; nothing written" and exits 130. A second signal kills.
 * Progress: a bar on a terminal, else one line every $PQ_PROGRESS_INTERVAL seconds (10);
 * $PQ_PROGRESS_DELAY_MS slows every progress step (for tests that interrupt a run). */
void cli_catch_signals(void);
int cli_interrupted(void);
/* The progress callback of cli_ctx_new, for commands with their own: draws the bar (unless
 * quiet) and returns non-zero once a signal was caught by cli_catch_signals. */
int cli_progress(int quiet, const char *stage, int64_t done, int64_t total);
/* If a signal was caught: the message above, exit 130. */
void cli_exit_if_interrupted(const char *cmd);
/* Monotonic clock, seconds. */
double cli_now(void);
/* "prunequant CMD: wrote OUT in Ts: IN -> OUT bytes (x), linears B bpw, ACr A" on stderr. */
void cli_compress_summary(const char *cmd, const pq_model *in, const char *out, double seconds);

/* 1 if p is a folder. */
int cli_is_dir(const char *p);
/* The data folder when --data-dir is not given: $PQ_DATA, else shared/data beside the
 * project (found from the executable or the working directory); NULL if none. May write buf. */
const char *cli_default_data_dir(char *buf, size_t n);
/* The cache folder: $XDG_CACHE_HOME/prunequant or ~/.cache/prunequant (created); NULL if none. */
const char *cli_default_cache_dir(char *buf, size_t n);

int cli_info(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_detokenize(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_ppl(int argc, char **argv);
int cli_convert(int argc, char **argv);

#endif
