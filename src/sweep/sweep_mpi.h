/* The ranks of a sweep: a small transport between processes (MPI_COMM_WORLD when built with
 * MPI, else one process) and the result messages rank 0 stores. sweep_run.c deals configs
 * over the ranks through it and never sees MPI itself. Not part of the public API. */
#ifndef PQ_SWEEP_MPI_H
#define PQ_SWEEP_MPI_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/common.h"
#include "prunequant-sweep.h"

/* ---- transport. The caller of the library (the CLI) initialises and finalises MPI; without
 * a running MPI (or without MPI built in) this is rank 0 of 1. */
void pq__sweep_transport_world(int *rank, int *size);
/* A collective: 1 when ok is 1 on every rank. One process (or MPI not running): ok. */
int pq__sweep_transport_all_ok(int ok);
/* A collective: rank 0's n bytes into buf on every rank. One process: nothing to do. */
void pq__sweep_transport_bcast(uint8_t *buf, int64_t n);
/* Sends the NUL-terminated msg to rank 0 (blocking). One process: nothing to send to. */
void pq__sweep_transport_send(const char *msg);
/* Rank 0: the next message from any other rank (*msg malloc'ed, NUL-terminated; *from its
 * rank). wait = 0: *msg = NULL when none is waiting. One process: none ever comes. */
pq_status pq__sweep_transport_recv(pq_ctx *ctx, int wait, char **msg, int *from);

/* ---- result messages (one per config dealt to a rank other than 0) */

/* A run of config c before anything is measured: its identity, NAN numbers, no status. */
void pq__sweep_run_init(pq_sweep_run *run, const pq_sweep_config *c);
/* The outcome of config i as a message: status "done", "undefined", "failed" or
 * "cancelled" (run may be NULL then); every number exact, so that rank 0 stores what the
 * other ranks computed. NULL on allocation failure. */
char *pq__sweep_msg_encode(int64_t i, const pq_sweep_run *run, const char *status);
/* The fields of a score that the messages and the report's JSON share: "metric", "score",
 * "base_score", "retention" (exact numbers). */
void pq__sweep_score_json(cJSON *e, const pq_sweep_score *sc);
/* Sends the outcome of config i to rank 0; even out of memory one message (a bare
 * "cancelled") goes, since rank 0 counts them. */
void pq__sweep_send_run(int64_t i, const pq_sweep_run *run, const char *status);
/* Rank 0: stores one message received from rank from (a "cancelled" one removes the
 * config's row) and counts it in *n_done or *n_failed. */
pq_status pq__sweep_msg_store(pq_ctx *ctx, const pq_sweep_grid *grid, pq_sweep_db *db, const char *msg, int from,
                              int64_t *n_done, int64_t *n_failed);
/* Rank 0: receives one message (wait: blocking; else *got = 0 when none is waiting) and
 * stores it. */
pq_status pq__sweep_recv_run(pq_ctx *ctx, const pq_sweep_grid *grid, pq_sweep_db *db, int wait, int *got,
                             int64_t *n_done, int64_t *n_failed);

#endif
