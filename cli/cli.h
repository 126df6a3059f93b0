/* Shared pieces of the command-line program (public API only). */
#ifndef PQ_CLI_H
#define PQ_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "prunequant.h"

/* A context with the CLI's log and progress callbacks installed (stderr). */
pq_ctx *cli_ctx_new(int threads, int quiet);
/* Prints "prunequant <cmd>: <msg>" on stderr and returns 1. */
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
/* Ends the progress line, if one is drawn. */
void cli_progress_done(void);

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
