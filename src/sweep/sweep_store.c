/* The SQLite results store. WAL mode, and every run (its row and its scores) is written in
 * one transaction, so a killed sweep leaves each config either absent, 'running' (redone on
 * resume) or complete, never half of it. */
#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "prunequant-sweep.h"

struct pq_sweep_db {
    sqlite3 *db;
    char *path;
};

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS runs(config_hash TEXT PRIMARY KEY, recipe TEXT, status TEXT, "
    "sparsity REAL, bits REAL, tcr REAL, acr REAL, bpw REAL, bytes INTEGER, sr REAL, srcr REAL, seconds REAL, "
    "error TEXT, updated TEXT DEFAULT CURRENT_TIMESTAMP);"
    "CREATE TABLE IF NOT EXISTS scores(config_hash TEXT, task TEXT, metric TEXT, score REAL, stderr REAL, "
    "base_score REAL, retention REAL, PRIMARY KEY(config_hash, task));"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);";

/* Columns added since the first release: a database made before them gains them (NULL). Units
 * are little-endian float64 arrays (per item or per ppl window; weights = scored tokens). */
static const char *const upgrades[] = {
    "ALTER TABLE scores ADD COLUMN higher INTEGER", "ALTER TABLE scores ADD COLUMN unit_kind INTEGER",
    "ALTER TABLE scores ADD COLUMN units BLOB",     "ALTER TABLE scores ADD COLUMN unit_weights BLOB",
    "ALTER TABLE runs ADD COLUMN layers TEXT",
};

static int has_column(sqlite3 *db, const char *table, const char *col) {
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", table);
    sqlite3_stmt *s = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK)
        while (!found && sqlite3_step(s) == SQLITE_ROW)
            found = sqlite3_column_text(s, 1) && !strcmp((const char *)sqlite3_column_text(s, 1), col);
    sqlite3_finalize(s);
    return found;
}

static int upgrade(sqlite3 *db, char **err) {
    for (size_t i = 0; i < sizeof upgrades / sizeof upgrades[0]; i++) {
        const char *col = strstr(upgrades[i], "COLUMN ") + 7, *table = strstr(upgrades[i], "TABLE ") + 6;
        char name[32], tname[16];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(col, " "), col);
        snprintf(tname, sizeof tname, "%.*s", (int)strcspn(table, " "), table);
        if (!has_column(db, tname, name) && sqlite3_exec(db, upgrades[i], NULL, NULL, err) != SQLITE_OK) return 0;
    }
    return 1;
}

static pq_status db_fail(pq_ctx *ctx, pq_sweep_db *db, const char *what) {
    return pq__fail(ctx, PQ_ERR_IO, "%s: %s: %s", db->path, what, sqlite3_errmsg(db->db));
}

pq_status pq_sweep_db_open(pq_ctx *ctx, const char *path, pq_sweep_db **out) {
    *out = NULL;
    pq_sweep_db *db = pq__calloc(ctx, 1, sizeof *db, "database");
    if (!db) return ctx->status;
    db->path = pq__strdup(ctx, path, "the database path");
    if (!db->path) {
        free(db);
        return ctx->status;
    }
    if (sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        pq_status st = pq__fail(ctx, PQ_ERR_IO, "%s: cannot open database: %s", path,
                                db->db ? sqlite3_errmsg(db->db) : "out of memory allocating the SQLite handle");
        pq_sweep_db_close(db);
        return st;
    }
    /* another process (a report while the sweep runs) may hold a lock for a moment */
    sqlite3_busy_timeout(db->db, 10000);
    char *err = NULL;
    if (sqlite3_exec(db->db, "PRAGMA journal_mode=WAL;", NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_exec(db->db, schema, NULL, NULL, &err) != SQLITE_OK || !upgrade(db->db, &err)) {
        pq_status st = pq__fail(ctx, PQ_ERR_IO, "%s: not a usable sweep database: %s", path, err ? err : "?");
        sqlite3_free(err);
        pq_sweep_db_close(db);
        return st;
    }
    *out = db;
    return PQ_OK;
}

void pq_sweep_db_close(pq_sweep_db *db) {
    if (!db) return;
    sqlite3_close(db->db);
    free(db->path);
    free(db);
}

pq_status pq_sweep_db_meta_set(pq_ctx *ctx, pq_sweep_db *db, const char *key, const char *value) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db->db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", -1, &s, NULL) != SQLITE_OK)
        return db_fail(ctx, db, "meta");
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, value ? value : "", -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? PQ_OK : db_fail(ctx, db, "meta");
}

pq_status pq_sweep_db_meta_get(pq_ctx *ctx, pq_sweep_db *db, const char *key, char **value) {
    *value = NULL;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db->db, "SELECT value FROM meta WHERE key = ?", -1, &s, NULL) != SQLITE_OK)
        return db_fail(ctx, db, "meta");
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    pq_status st = PQ_OK;
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        if (!(*value = pq__strdup(ctx, v ? v : "", "a meta value"))) st = ctx->status;
    } else if (rc != SQLITE_DONE) {
        st = db_fail(ctx, db, "meta");
    }
    sqlite3_finalize(s);
    return st;
}

pq_status pq_sweep_db_status(pq_ctx *ctx, pq_sweep_db *db, const char *hash, char status[12]) {
    status[0] = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db->db, "SELECT status FROM runs WHERE config_hash = ?", -1, &s, NULL) != SQLITE_OK)
        return db_fail(ctx, db, "status");
    sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(status, 12, "%s", sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "");
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PQ_OK : db_fail(ctx, db, "status");
}

pq_status pq_sweep_db_bytes(pq_ctx *ctx, pq_sweep_db *db, const char *hash, int64_t *bytes) {
    *bytes = -1;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db->db, "SELECT bytes FROM runs WHERE config_hash = ? AND status IN ('done', 'undefined')",
                           -1, &s, NULL) != SQLITE_OK)
        return db_fail(ctx, db, "bytes");
    sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) *bytes = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PQ_OK : db_fail(ctx, db, "bytes");
}

/* NAN is stored as NULL (SQLite has no NaN) and read back as NAN. */
static void bind_real(sqlite3_stmt *s, int i, double v) {
    if (isfinite(v))
        sqlite3_bind_double(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static double col_real(sqlite3_stmt *s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

static pq_status exec(pq_ctx *ctx, pq_sweep_db *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db->db, sql, NULL, NULL, &err) == SQLITE_OK) return PQ_OK;
    pq_status st = pq__fail(ctx, PQ_ERR_IO, "%s: %s", db->path, err ? err : sqlite3_errmsg(db->db));
    sqlite3_free(err);
    return st;
}

/* Ends the transaction begun by BEGIN IMMEDIATE: COMMIT when ok, else ROLLBACK and the
 * failure of what. */
static pq_status end_transaction(pq_ctx *ctx, pq_sweep_db *db, int ok, const char *what) {
    if (!ok) {
        pq_status st = db_fail(ctx, db, what);
        sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    return exec(ctx, db, "COMMIT");
}

/* Runs sql with the one parameter hash; 1 when done. */
static int exec_hash(pq_sweep_db *db, const char *sql, const char *hash) {
    sqlite3_stmt *s = NULL;
    int ok = sqlite3_prepare_v2(db->db, sql, -1, &s, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(s, 1, hash, -1, SQLITE_TRANSIENT);
        ok = sqlite3_step(s) == SQLITE_DONE;
    }
    sqlite3_finalize(s);
    return ok;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v) {
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

pq_status pq_sweep_db_put(pq_ctx *ctx, pq_sweep_db *db, const pq_sweep_run *r) {
    if (exec(ctx, db, "BEGIN IMMEDIATE") != PQ_OK) return ctx->status;
    sqlite3_stmt *s = NULL;
    int ok = sqlite3_prepare_v2(db->db,
                                "INSERT OR REPLACE INTO runs(config_hash, recipe, status, sparsity, bits, tcr, acr, "
                                "bpw, bytes, sr, srcr, seconds, error, layers, updated) "
                                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,CURRENT_TIMESTAMP)",
                                -1, &s, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(s, 1, r->hash, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, r->recipe ? r->recipe : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 3, r->status, -1, SQLITE_TRANSIENT);
        bind_real(s, 4, r->sparsity);
        bind_real(s, 5, r->bits);
        bind_real(s, 6, r->tcr);
        bind_real(s, 7, r->acr);
        bind_real(s, 8, r->bpw);
        sqlite3_bind_int64(s, 9, r->bytes);
        bind_real(s, 10, r->sr);
        bind_real(s, 11, r->srcr);
        bind_real(s, 12, r->seconds);
        bind_text_or_null(s, 13, r->error);
        bind_text_or_null(s, 14, r->layers);
        ok = sqlite3_step(s) == SQLITE_DONE;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (ok) ok = exec_hash(db, "DELETE FROM scores WHERE config_hash = ?", r->hash);
    if (ok && r->n_scores) {
        ok = sqlite3_prepare_v2(db->db,
                                "INSERT INTO scores(config_hash, task, metric, score, stderr, base_score, retention, "
                                "higher, unit_kind, units, unit_weights) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                                -1, &s, NULL) == SQLITE_OK;
        for (int64_t i = 0; ok && i < r->n_scores; i++) {
            const pq_sweep_score *c = &r->scores[i];
            sqlite3_reset(s);
            sqlite3_bind_text(s, 1, r->hash, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 2, c->task, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 3, c->metric, -1, SQLITE_TRANSIENT);
            bind_real(s, 4, c->score);
            bind_real(s, 5, c->se);
            bind_real(s, 6, c->base_score);
            bind_real(s, 7, c->retention);
            sqlite3_bind_int(s, 8, c->higher_is_better);
            sqlite3_bind_int(s, 9, (int)c->units.kind);
            const int nb = (int)(c->units.n * (int64_t)sizeof(double));
            if (c->units.n > 0)
                sqlite3_bind_blob(s, 10, c->units.value, nb, SQLITE_STATIC);
            else
                sqlite3_bind_null(s, 10);
            if (c->units.n > 0 && c->units.weight)
                sqlite3_bind_blob(s, 11, c->units.weight, nb, SQLITE_STATIC);
            else
                sqlite3_bind_null(s, 11);
            ok = sqlite3_step(s) == SQLITE_DONE;
        }
        sqlite3_finalize(s);
    }
    return end_transaction(ctx, db, ok, "writing a run");
}

pq_status pq_sweep_db_delete(pq_ctx *ctx, pq_sweep_db *db, const char *hash) {
    if (exec(ctx, db, "BEGIN IMMEDIATE") != PQ_OK) return ctx->status;
    int ok = 1;
    const char *sql[2] = {"DELETE FROM scores WHERE config_hash = ?", "DELETE FROM runs WHERE config_hash = ?"};
    for (int k = 0; k < 2 && ok; k++)
        ok = exec_hash(db, sql[k], hash);
    return end_transaction(ctx, db, ok, "deleting a run");
}

void pq_sweep_scores_free(pq_sweep_score *scores, int64_t n) {
    for (int64_t i = 0; scores && i < n; i++)
        pq_units_clear(&scores[i].units);
    free(scores);
}

static void run_clear(pq_sweep_run *r) {
    if (!r) return;
    free(r->recipe);
    free(r->error);
    free(r->layers);
    pq_sweep_scores_free(r->scores, r->n_scores);
    memset(r, 0, sizeof *r);
}

void pq_sweep_results_free(pq_sweep_results *r) {
    if (!r) return;
    for (int64_t i = 0; i < r->n; i++)
        run_clear(&r->runs[i]);
    free(r->runs);
    run_clear(&r->base);
    free(r->model);
    free(r->calib);
    free(r->tasks);
    free(r->protocol);
    memset(r, 0, sizeof *r);
}

static char *dup_col(sqlite3_stmt *s, int i) {
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

/* Units of a score row (columns 7..9); a row without them keeps n = 0. */
static pq_status load_units(sqlite3_stmt *s, pq_sweep_score *c) {
    memset(&c->units, 0, sizeof c->units);
    c->units.kind = sqlite3_column_int(s, 7) == PQ_UNITS_PPL ? PQ_UNITS_PPL : PQ_UNITS_MEAN;
    const int nb = sqlite3_column_bytes(s, 8), nw = sqlite3_column_bytes(s, 9);
    const void *v = sqlite3_column_blob(s, 8), *w = sqlite3_column_blob(s, 9);
    if (!v || nb <= 0) return PQ_OK;
    if (nb % (int)sizeof(double) || (w && nw != nb)) return PQ_ERR_FORMAT;
    const int64_t n = nb / (int)sizeof(double);
    c->units.value = malloc((size_t)nb);
    c->units.weight = w ? malloc((size_t)nb) : NULL;
    if (!c->units.value || (w && !c->units.weight)) {
        pq_units_clear(&c->units);
        return PQ_ERR_NOMEM;
    }
    memcpy(c->units.value, v, (size_t)nb);
    if (w) memcpy(c->units.weight, w, (size_t)nb);
    c->units.n = n;
    return PQ_OK;
}

static pq_status load_scores(pq_ctx *ctx, pq_sweep_db *db, pq_sweep_run *r) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db->db,
                           "SELECT task, metric, score, stderr, base_score, retention, higher, unit_kind, units, "
                           "unit_weights FROM scores "
                           "WHERE config_hash = ? ORDER BY rowid",
                           -1, &s, NULL) != SQLITE_OK)
        return db_fail(ctx, db, "scores");
    sqlite3_bind_text(s, 1, r->hash, -1, SQLITE_TRANSIENT);
    int64_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (r->n_scores == cap) {
            cap = cap ? 2 * cap : 8;
            pq_sweep_score *n = realloc(r->scores, (size_t)cap * sizeof *n);
            if (!n) {
                sqlite3_finalize(s);
                return pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the scores of run %s",
                                (size_t)cap * sizeof *n, r->hash);
            }
            r->scores = n;
        }
        pq_sweep_score *c = &r->scores[r->n_scores++];
        memset(c, 0, sizeof *c);
        snprintf(c->task, sizeof c->task, "%s",
                 sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "");
        snprintf(c->metric, sizeof c->metric, "%s",
                 sqlite3_column_text(s, 1) ? (const char *)sqlite3_column_text(s, 1) : "");
        c->score = col_real(s, 2);
        c->se = col_real(s, 3);
        c->base_score = col_real(s, 4);
        c->retention = col_real(s, 5);
        c->higher_is_better =
            sqlite3_column_type(s, 6) == SQLITE_NULL ? strcmp(c->metric, "ppl") != 0 : sqlite3_column_int(s, 6);
        c->retention_ci[0] = c->retention_ci[1] = NAN;
        if (load_units(s, c) != PQ_OK) {
            sqlite3_finalize(s);
            return pq__fail(ctx, PQ_ERR_FORMAT, "%s: scores of %s, task %s: units and weights disagree", db->path,
                            r->hash, c->task);
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? PQ_OK : db_fail(ctx, db, "scores");
}

pq_status pq_sweep_db_load(pq_ctx *ctx, pq_sweep_db *db, pq_sweep_results *out) {
    memset(out, 0, sizeof *out);
    pq_status st = PQ_OK;
    const char *mk[4] = {"model", "calib", "tasks", "protocol"};
    char **mv[4] = {&out->model, &out->calib, &out->tasks, &out->protocol};
    for (int k = 0; k < 4 && st == PQ_OK; k++)
        st = pq_sweep_db_meta_get(ctx, db, mk[k], mv[k]);
    sqlite3_stmt *s = NULL;
    if (st == PQ_OK && sqlite3_prepare_v2(db->db,
                                          "SELECT config_hash, recipe, status, sparsity, bits, tcr, acr, bpw, bytes, "
                                          "sr, srcr, seconds, error, layers FROM runs ORDER BY rowid",
                                          -1, &s, NULL) != SQLITE_OK)
        st = db_fail(ctx, db, "runs");
    int64_t cap = 0;
    int rc = SQLITE_DONE;
    while (st == PQ_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        pq_sweep_run r;
        memset(&r, 0, sizeof r);
        snprintf(r.hash, sizeof r.hash, "%s",
                 sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "");
        r.recipe = dup_col(s, 1);
        snprintf(r.status, sizeof r.status, "%s",
                 sqlite3_column_text(s, 2) ? (const char *)sqlite3_column_text(s, 2) : "");
        r.sparsity = col_real(s, 3);
        r.bits = col_real(s, 4);
        r.tcr = col_real(s, 5);
        r.acr = col_real(s, 6);
        r.bpw = col_real(s, 7);
        r.bytes = sqlite3_column_int64(s, 8);
        r.sr = col_real(s, 9);
        r.srcr = col_real(s, 10);
        r.seconds = col_real(s, 11);
        r.error = dup_col(s, 12);
        r.layers = dup_col(s, 13);
        r.sr_ci[0] = r.sr_ci[1] = NAN;
        st = load_scores(ctx, db, &r);
        if (st != PQ_OK) {
            run_clear(&r);
            break;
        }
        if (!strcmp(r.hash, "base")) {
            run_clear(&out->base);
            out->base = r;
            out->has_base = 1;
            continue;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 16;
            pq_sweep_run *n = realloc(out->runs, (size_t)cap * sizeof *n);
            if (!n) {
                run_clear(&r);
                st = pq__fail(ctx, PQ_ERR_NOMEM, "out of memory allocating %zu bytes for the runs",
                              (size_t)cap * sizeof *n);
                break;
            }
            out->runs = n;
        }
        out->runs[out->n++] = r;
    }
    if (st == PQ_OK && rc != SQLITE_DONE) st = db_fail(ctx, db, "runs");
    sqlite3_finalize(s);
    if (st != PQ_OK) pq_sweep_results_free(out);
    return st;
}
