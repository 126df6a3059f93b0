#ifndef PQ_IO_BZ2_H
#define PQ_IO_BZ2_H

#include "common/common.h"

/* Reads and decompresses a whole .bz2 file into a NUL-terminated heap buffer (at most
 * max_bytes compressed or decompressed). */
pq_status pq__read_bz2(pq_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *len);

#endif
