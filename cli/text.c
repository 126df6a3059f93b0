/* Reading the text files a command consumes (calibration, --text, --file): one place that
 * says what is wrong with them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

char *cli_read_text(const char *cmd, const char *flag, const char *path, size_t *len, int quiet) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "prunequant %s: %s %s: cannot open: %s\n", cmd, flag, path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "prunequant %s: %s %s: is a directory, not a text file\n", cmd, flag, path);
        return NULL;
    }
    size_t n = 0;
    char *text = cli_read_file(cmd, path, &n);
    if (!text) return NULL;
    if (n == 0) {
        fprintf(stderr, "prunequant %s: %s %s: the file is empty\n", cmd, flag, path);
        free(text);
        return NULL;
    }
    size_t first = 0, bad = pq_text_invalid_utf8(text, n, &first);
    if (bad && !quiet)
        fprintf(stderr,
                "prunequant %s: warning: %s %s: %zu byte%s not valid UTF-8 (first at byte %zu); the tokenizer "
                "takes %s as byte tokens (or <unk> without byte fallback)\n",
                cmd, flag, path, bad, bad == 1 ? " is" : "s are", first, bad == 1 ? "it" : "them");
    if (len) *len = n;
    return text;
}
