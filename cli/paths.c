/* Default folders shared by every command: the data folder (eval, sweep, tasks) and the
 * cache of base results, so that all commands find the same files. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

int cli_is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Default data folder: $PQ_DATA, else shared/data beside the project, found from the
 * executable (build/prunequant -> ../../shared/data) or the working directory. */
const char *cli_default_data_dir(char *buf, size_t n) {
    const char *env = getenv("PQ_DATA");
    if (env && *env && cli_is_dir(env)) return env;
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    static const char *const rel[] = {"../shared/data", "../../shared/data", "../../../shared/data", "shared/data"};
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(buf, n, "%s/%s", exe, rel[i]);
            if (cli_is_dir(buf)) return buf;
        }
    }
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
        if (cli_is_dir(rel[i])) {
            snprintf(buf, n, "%s", rel[i]);
            return buf;
        }
    return NULL;
}

/* Default cache: $XDG_CACHE_HOME/prunequant or ~/.cache/prunequant (created). */
const char *cli_default_cache_dir(char *buf, size_t n) {
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (x && *x)
        snprintf(buf, n, "%s", x);
    else if (home && *home)
        snprintf(buf, n, "%s/.cache", home);
    else
        return NULL;
    mkdir(buf, 0755);
    size_t l = strlen(buf);
    snprintf(buf + l, n - l, "/prunequant");
    mkdir(buf, 0755);
    return cli_is_dir(buf) ? buf : NULL;
}
