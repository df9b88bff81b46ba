/* store.c - allocd's SQLite database.
 *
 * One connection in WAL mode, one lock: the collector writes each tick as
 * one transaction (store_begin .. store_commit holds the lock), the HTTP
 * threads run short queries in between.  The schema comes from schema/
 * (compiled in, applied in order inside transactions, tracked with PRAGMA
 * user_version).  Retention deletes in batches of a few thousand rows per
 * call so that no call holds the lock for long, and the file is kept under
 * its size cap by dropping the oldest data first and giving pages back
 * with incremental vacuum. */
#include "store.h"

#include "log.h"
#include "schema.h"
#include "snapshot.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 5000   /* rows deleted per table per retention call */

struct store_s {
  sqlite3 *db;
  pthread_mutex_t lock;
  store_limits_t limits;
  bool tx_failed;     /* a write in the current transaction failed */
  char error[256];
};

/* ---- helpers ------------------------------------------------------------- */

static void remember_error(store_t *st, const char *what) {
  snprintf(st->error, sizeof st->error, "%s: %s", what, sqlite3_errmsg(st->db));
}

const char *store_error(store_t *st) { return st->error; }

static bool exec(store_t *st, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) == SQLITE_OK) return true;
  snprintf(st->error, sizeof st->error, "%s", msg ? msg : sqlite3_errmsg(st->db));
  sqlite3_free(msg);
  return false;
}

static sqlite3_stmt *prepare(store_t *st, const char *sql) {
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
    remember_error(st, "prepare");
    return NULL;
  }
  return s;
}

/* Run a prepared write to completion; false (and the transaction marked
 * failed) on error. */
static bool step_done(store_t *st, sqlite3_stmt *s, const char *what) {
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) return true;
  remember_error(st, what);
  st->tx_failed = true;
  return false;
}

static int64_t query_int(store_t *st, const char *sql) {
  sqlite3_stmt *s = prepare(st, sql);
  int64_t v = -1;
  if (s && sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

static json_t *column_json(sqlite3_stmt *s, int col) {
  const char *text = (const char *)sqlite3_column_text(s, col);
  if (!text) return json_null();
  json_t *v = json_loads(text, 0, NULL);
  return v ? v : json_null();
}

static json_t *column_text_or_null(sqlite3_stmt *s, int col) {
  const unsigned char *t = sqlite3_column_text(s, col);
  return t ? json_string((const char *)t) : json_null();
}

/* ---- opening and migrating ----------------------------------------------- */

static bool migrate(store_t *st, char *err, size_t errlen) {
  int64_t have = query_int(st, "PRAGMA user_version");
  int latest = schema_count ? schema_migrations[schema_count - 1].version : 0;
  if (have < 0) {
    snprintf(err, errlen, "cannot read the schema version: %s", sqlite3_errmsg(st->db));
    return false;
  }
  if (have > latest) {
    snprintf(err, errlen, "the database has schema version %lld, newer than this allocd knows (%d)",
             (long long)have, latest);
    return false;
  }
  if (have == 0 && !exec(st, "PRAGMA auto_vacuum = INCREMENTAL")) {   /* before any table exists */
    snprintf(err, errlen, "%s", st->error);
    return false;
  }
  for (int i = 0; i < schema_count; i++) {
    const struct schema_migration *m = &schema_migrations[i];
    if (m->version <= have) continue;
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", m->version);
    if (!exec(st, "BEGIN IMMEDIATE") || !exec(st, m->sql) || !exec(st, pragma) || !exec(st, "COMMIT")) {
      snprintf(err, errlen, "migration %s failed: %s", m->name, st->error);
      exec(st, "ROLLBACK");
      return false;
    }
    log_info("database: applied migration %s", m->name);
  }
  return true;
}

store_t *store_open(const char *path, const store_limits_t *limits, char *err, size_t errlen) {
  store_t *st = calloc(1, sizeof *st);
  if (!st) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  st->limits = *limits;
  pthread_mutex_init(&st->lock, NULL);
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
    store_close(st);
    return NULL;
  }
  sqlite3_busy_timeout(st->db, 5000);
  sqlite3_stmt *s = prepare(st, "PRAGMA journal_mode = WAL");
  const char *mode = s && sqlite3_step(s) == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
  bool wal = mode && strcmp(mode, "wal") == 0;
  sqlite3_finalize(s);
  if (!wal) {
    snprintf(err, errlen, "cannot use %s: %s", path, sqlite3_errmsg(st->db));
    store_close(st);
    return NULL;
  }
  if (!exec(st, "PRAGMA synchronous = NORMAL") || !exec(st, "PRAGMA foreign_keys = ON") ||
      !migrate(st, err, errlen)) {
    if (!err[0]) snprintf(err, errlen, "%s", st->error);
    store_close(st);
    return NULL;
  }
  return st;
}

void store_close(store_t *st) {
  if (!st) return;
  if (st->db) sqlite3_close_v2(st->db);
  pthread_mutex_destroy(&st->lock);
  free(st);
}

/* ---- the collector's transaction ----------------------------------------- */

void store_begin(store_t *st) {
  pthread_mutex_lock(&st->lock);
  st->tx_failed = !exec(st, "BEGIN IMMEDIATE");
}

bool store_commit(store_t *st) {
  bool ok = !st->tx_failed && exec(st, "COMMIT");
  if (!ok) {
    log_error("database: tick not written: %s", st->error);
    exec(st, "ROLLBACK");
  }
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
  return ok;
}

int64_t store_process(store_t *st, const store_proc_t *p, int64_t now_ms) {
  sqlite3_stmt *s = prepare(st,
      "INSERT INTO processes (pid, start_time, pidns, uid, exe, comm, version, first_seen, last_seen)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"
      " ON CONFLICT (pid, start_time, pidns) DO UPDATE SET alive = 1, exited_at = NULL, last_seen = ?8"
      " RETURNING id");
  if (!s) return -1;
  sqlite3_bind_int(s, 1, p->pid);
  sqlite3_bind_int64(s, 2, (int64_t)p->start_time);
  sqlite3_bind_int64(s, 3, (int64_t)p->pidns);
  sqlite3_bind_int64(s, 4, p->uid);
  sqlite3_bind_text(s, 5, p->exe, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 6, p->comm, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 7, p->version, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 8, now_ms);
  int64_t id = -1;
  if (sqlite3_step(s) == SQLITE_ROW) id = sqlite3_column_int64(s, 0);
  else {
    remember_error(st, "process");
    st->tx_failed = true;
  }
  sqlite3_finalize(s);
  return id;
}

bool store_sample(store_t *st, int64_t process_id, int64_t t_ms, uint64_t number, const char *stats_json) {
  sqlite3_stmt *s = prepare(st, "INSERT OR IGNORE INTO samples (process_id, t, number, stats) VALUES (?, ?, ?, ?)");
  if (!s) return st->tx_failed = true, false;
  sqlite3_bind_int64(s, 1, process_id);
  sqlite3_bind_int64(s, 2, t_ms);
  sqlite3_bind_int64(s, 3, (int64_t)number);
  sqlite3_bind_text(s, 4, stats_json, -1, SQLITE_STATIC);
  return step_done(st, s, "sample");
}

bool store_latest(store_t *st, int64_t process_id, int64_t now_ms, const char *snapshot_json) {
  sqlite3_stmt *s = prepare(st, "UPDATE processes SET latest = ?, last_seen = ? WHERE id = ?");
  if (!s) return st->tx_failed = true, false;
  sqlite3_bind_text(s, 1, snapshot_json, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, now_ms);
  sqlite3_bind_int64(s, 3, process_id);
  return step_done(st, s, "latest");
}

bool store_rollup(store_t *st, bool hourly, int64_t process_id, int64_t t_ms, int n, const char *stats_json) {
  sqlite3_stmt *s = prepare(st, hourly ? "INSERT OR REPLACE INTO rollup_1h (process_id, t, n, stats) VALUES (?, ?, ?, ?)"
                                       : "INSERT OR REPLACE INTO rollup_1m (process_id, t, n, stats) VALUES (?, ?, ?, ?)");
  if (!s) return st->tx_failed = true, false;
  sqlite3_bind_int64(s, 1, process_id);
  sqlite3_bind_int64(s, 2, t_ms);
  sqlite3_bind_int(s, 3, n);
  sqlite3_bind_text(s, 4, stats_json, -1, SQLITE_STATIC);
  return step_done(st, s, "rollup");
}

bool store_exited(store_t *st, int64_t process_id, int64_t t_ms) {
  sqlite3_stmt *s = prepare(st, "UPDATE processes SET alive = 0, exited_at = ? WHERE id = ?");
  if (!s) return st->tx_failed = true, false;
  sqlite3_bind_int64(s, 1, t_ms);
  sqlite3_bind_int64(s, 2, process_id);
  return step_done(st, s, "exited");
}

void store_mark_all_exited(store_t *st, int64_t t_ms) {
  pthread_mutex_lock(&st->lock);
  sqlite3_stmt *s = prepare(st, "UPDATE processes SET alive = 0, exited_at = ? WHERE alive = 1");
  if (s) {
    sqlite3_bind_int64(s, 1, t_ms);
    step_done(st, s, "mark exited");
  }
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
}

/* ---- retention ------------------------------------------------------------- */

static int delete_older(store_t *st, const char *sql, int64_t before) {
  sqlite3_stmt *s = prepare(st, sql);
  if (!s) return 0;
  sqlite3_bind_int64(s, 1, before);
  sqlite3_bind_int(s, 2, BATCH);
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) remember_error(st, "retention");
  return sqlite3_changes(st->db);
}

static const char *const delete_sql[] = {
  "DELETE FROM samples WHERE (process_id, t, number) IN"
  " (SELECT process_id, t, number FROM samples WHERE t < ?1 ORDER BY t LIMIT ?2)",
  "DELETE FROM rollup_1m WHERE (process_id, t) IN"
  " (SELECT process_id, t FROM rollup_1m WHERE t < ?1 ORDER BY t LIMIT ?2)",
  "DELETE FROM rollup_1h WHERE (process_id, t) IN"
  " (SELECT process_id, t FROM rollup_1h WHERE t < ?1 ORDER BY t LIMIT ?2)",
};

static int64_t db_bytes(store_t *st) {
  return query_int(st, "PRAGMA page_count") * query_int(st, "PRAGMA page_size");
}

/* The oldest time still present in a table, for the size cap. */
static int64_t oldest(store_t *st, const char *table) {
  char sql[96];
  snprintf(sql, sizeof sql, "SELECT min(t) FROM %s", table);
  return query_int(st, sql);
}

bool store_retain(store_t *st, int64_t now_ms) {
  pthread_mutex_lock(&st->lock);
  int64_t keep[3] = {st->limits.raw_ms, st->limits.minute_ms, st->limits.hour_ms};
  int deleted = 0;
  bool full = false;
  exec(st, "BEGIN IMMEDIATE");
  for (int i = 0; i < 3; i++) {
    int n = delete_older(st, delete_sql[i], now_ms - keep[i]);
    full |= n >= BATCH;
    deleted += n;
  }
  /* Over the size cap: the oldest data of the finest table goes first,
   * a minute's worth more per call, until the file fits. */
  static const char *const tables[] = {"samples", "rollup_1m", "rollup_1h"};
  static bool over_warned;
  bool over = st->limits.max_bytes > 0 && db_bytes(st) > st->limits.max_bytes;
  if (over && !over_warned)
    log_warn("database: over its size cap (%lld MiB): dropping the oldest history", (long long)(st->limits.max_bytes >> 20));
  over_warned = over;
  if (over) {
    full = true;   /* until the file fits */
    for (int i = 0; i < 3; i++) {
      int64_t t = oldest(st, tables[i]);
      if (t <= 0) continue;
      deleted += delete_older(st, delete_sql[i], t + 60000);
      break;
    }
  }
  sqlite3_stmt *s = prepare(st, "DELETE FROM processes WHERE alive = 0 AND exited_at < ?"
                                " AND NOT EXISTS (SELECT 1 FROM samples WHERE process_id = processes.id)"
                                " AND NOT EXISTS (SELECT 1 FROM rollup_1m WHERE process_id = processes.id)"
                                " AND NOT EXISTS (SELECT 1 FROM rollup_1h WHERE process_id = processes.id)");
  if (s) {
    sqlite3_bind_int64(s, 1, now_ms - st->limits.hour_ms);
    sqlite3_step(s);
    sqlite3_finalize(s);
  }
  deleted += delete_older(st, "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE t < ?1 LIMIT ?2)",
                          now_ms - st->limits.hour_ms);
  if (!exec(st, "COMMIT")) {
    log_error("database: retention failed: %s", st->error);
    exec(st, "ROLLBACK");
  }
  if (deleted) exec(st, "PRAGMA incremental_vacuum(2000)");
  pthread_mutex_unlock(&st->lock);
  return full;
}

/* ---- queries ------------------------------------------------------------- */

static json_t *process_row(sqlite3_stmt *s, bool with_classes) {
  json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:f, s:f, s:b}", "id", sqlite3_column_int64(s, 0),
                        "pid", sqlite3_column_int64(s, 1), "start_time", sqlite3_column_int64(s, 2), "uid",
                        sqlite3_column_int64(s, 4), "exe", (const char *)sqlite3_column_text(s, 5), "comm",
                        (const char *)sqlite3_column_text(s, 6), "version", (const char *)sqlite3_column_text(s, 7),
                        "first_seen", sqlite3_column_int64(s, 8) / 1e3, "last_seen",
                        sqlite3_column_int64(s, 9) / 1e3, "alive", sqlite3_column_int(s, 10));
  json_object_set_new(o, "pidns", json_integer(sqlite3_column_int64(s, 3)));
  json_object_set_new(o, "exited_at", sqlite3_column_type(s, 11) == SQLITE_NULL
                                          ? json_null()
                                          : json_real(sqlite3_column_int64(s, 11) / 1e3));
  json_t *latest = column_json(s, 12);
  if (json_is_object(latest)) {
    json_t *stats = json_object_get(latest, "stats");
    json_object_set(o, "stats", stats ? stats : json_null());
    json_object_set(o, "fragmentation", json_object_get(stats, "fragmentation"));
    json_object_set(o, "config", json_object_get(latest, "config"));
    json_object_set(o, "snapshot_time", json_object_get(latest, "time"));
    if (with_classes) json_object_set(o, "classes", json_object_get(latest, "classes"));
  }
  json_decref(latest);
  return o;
}

#define PROCESS_COLUMNS "id, pid, start_time, pidns, uid, exe, comm, version, first_seen, last_seen, alive, exited_at, latest"

json_t *store_processes_json(store_t *st, bool with_exited) {
  pthread_mutex_lock(&st->lock);
  json_t *a = json_array();
  sqlite3_stmt *s = prepare(st, "SELECT " PROCESS_COLUMNS " FROM processes WHERE alive = 1 OR ?"
                                " ORDER BY alive DESC, last_seen DESC LIMIT 5000");
  if (s) {
    sqlite3_bind_int(s, 1, with_exited);
    while (sqlite3_step(s) == SQLITE_ROW) json_array_append_new(a, process_row(s, false));
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->lock);
  return a;
}

json_t *store_process_json(store_t *st, int pid) {
  pthread_mutex_lock(&st->lock);
  json_t *o = NULL;
  sqlite3_stmt *s = prepare(st, "SELECT " PROCESS_COLUMNS " FROM processes WHERE pid = ?"
                                " ORDER BY alive DESC, last_seen DESC LIMIT 1");
  if (s) {
    sqlite3_bind_int(s, 1, pid);
    if (sqlite3_step(s) == SQLITE_ROW) o = process_row(s, true);
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->lock);
  return o;
}

/* Average points into buckets of step_ms (points are [t, v, ...]). */
static json_t *bucket(json_t *points, int64_t step_ms) {
  if (step_ms <= 0) return points;
  json_t *out = json_array();
  double sum = 0;
  int n = 0;
  int64_t cur = INT64_MIN;
  size_t i;
  json_t *p;
  json_array_foreach(points, i, p) {
    int64_t t = (int64_t)(json_real_value(json_array_get(p, 0)) * 1000);
    int64_t b = t - t % step_ms;
    if (b != cur && n) {
      json_array_append_new(out, json_pack("[f, f]", cur / 1e3, sum / n));
      sum = 0, n = 0;
    }
    cur = b;
    sum += json_number_value(json_array_get(p, 1));
    n++;
  }
  if (n) json_array_append_new(out, json_pack("[f, f]", cur / 1e3, sum / n));
  json_decref(points);
  return out;
}

json_t *store_history_json(store_t *st, int64_t process_id, const char *metric, int64_t from_ms,
                           int64_t to_ms, int64_t step_ms, const char *source) {
  if (snap_metric_index(metric) < 0) return NULL;
  if (!source) {   /* the finest table that still covers `from` */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t t = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    source = from_ms >= t - st->limits.raw_ms ? "raw" : from_ms >= t - st->limits.minute_ms ? "1m" : "1h";
  }
  bool raw = strcmp(source, "raw") == 0;
  const char *table = raw ? "samples" : strcmp(source, "1m") == 0 ? "rollup_1m" : "rollup_1h";
  char sql[256], path[80];
  snprintf(sql, sizeof sql, "SELECT t, json_extract(stats, ?) FROM %s WHERE process_id = ? AND t BETWEEN ? AND ? ORDER BY t",
           table);
  snprintf(path, sizeof path, "$.%s", metric);
  pthread_mutex_lock(&st->lock);
  json_t *points = json_array();
  sqlite3_stmt *s = prepare(st, sql);
  if (s) {
    sqlite3_bind_text(s, 1, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, process_id);
    sqlite3_bind_int64(s, 3, from_ms);
    sqlite3_bind_int64(s, 4, to_ms);
    while (sqlite3_step(s) == SQLITE_ROW) {
      double t = sqlite3_column_int64(s, 0) / 1e3;
      if (raw) {
        json_array_append_new(points, json_pack("[f, f]", t, sqlite3_column_double(s, 1)));
        continue;
      }
      json_t *agg = column_json(s, 1);   /* [min, max, avg, last] */
      if (json_array_size(agg) == 4)
        json_array_append_new(points, json_pack("[f, O, O, O, O]", t, json_array_get(agg, 2),
                                                json_array_get(agg, 0), json_array_get(agg, 1),
                                                json_array_get(agg, 3)));
      json_decref(agg);
    }
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->lock);
  json_t *out = json_pack("{s:s, s:s, s:f, s:f, s:I}", "metric", metric, "source", source, "from",
                          from_ms / 1e3, "to", to_ms / 1e3, "step", (json_int_t)(step_ms / 1000));
  json_object_set_new(out, "points", bucket(points, step_ms));
  if (!raw && step_ms <= 0)
    json_object_set_new(out, "columns", json_pack("[s, s, s, s, s]", "t", "avg", "min", "max", "last"));
  else json_object_set_new(out, "columns", json_pack("[s, s]", "t", "value"));
  return out;
}

bool store_audit(store_t *st, const char *client, int64_t process_id, int pid, const char *exe,
                 const char *knob, const char *old_value, const char *new_value, const char *result,
                 const char *effective, int64_t rule_id) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  pthread_mutex_lock(&st->lock);
  sqlite3_stmt *s = prepare(st, "INSERT INTO audit (t, client, process_id, pid, exe, knob, old_value, new_value,"
                                " result, effective, rule_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  bool ok = false;
  if (s) {
    sqlite3_bind_int64(s, 1, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    sqlite3_bind_text(s, 2, client, -1, SQLITE_TRANSIENT);
    if (process_id > 0) sqlite3_bind_int64(s, 3, process_id);
    sqlite3_bind_int(s, 4, pid);
    sqlite3_bind_text(s, 5, exe, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, knob, -1, SQLITE_TRANSIENT);
    if (old_value) sqlite3_bind_text(s, 7, old_value, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 8, new_value, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 9, result, -1, SQLITE_TRANSIENT);
    if (effective) sqlite3_bind_text(s, 10, effective, -1, SQLITE_TRANSIENT);
    if (rule_id > 0) sqlite3_bind_int64(s, 11, rule_id);
    ok = step_done(st, s, "audit");
  }
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
  if (!ok) log_error("database: audit entry not written: %s", st->error);
  return ok;
}

json_t *store_audit_json(store_t *st, int64_t since_ms, int limit) {
  pthread_mutex_lock(&st->lock);
  json_t *a = json_array();
  sqlite3_stmt *s = prepare(st, "SELECT id, t, client, process_id, pid, exe, knob, old_value, new_value, result,"
                                " effective, rule_id FROM audit WHERE t >= ? ORDER BY t DESC, id DESC LIMIT ?");
  if (s) {
    sqlite3_bind_int64(s, 1, since_ms);
    sqlite3_bind_int(s, 2, limit);
    while (sqlite3_step(s) == SQLITE_ROW) {
      json_t *o = json_pack("{s:I, s:f, s:s, s:I, s:s, s:s, s:s, s:s}", "id", sqlite3_column_int64(s, 0), "time",
                            sqlite3_column_int64(s, 1) / 1e3, "client", (const char *)sqlite3_column_text(s, 2),
                            "pid", sqlite3_column_int64(s, 4), "exe", (const char *)sqlite3_column_text(s, 5),
                            "knob", (const char *)sqlite3_column_text(s, 6), "new_value",
                            (const char *)sqlite3_column_text(s, 8), "result",
                            (const char *)sqlite3_column_text(s, 9));
      json_object_set_new(o, "old_value", column_text_or_null(s, 7));
      json_object_set_new(o, "effective", column_text_or_null(s, 10));
      json_object_set_new(o, "rule_id", sqlite3_column_type(s, 11) == SQLITE_NULL ? json_null()
                                                                                   : json_integer(sqlite3_column_int64(s, 11)));
      json_array_append_new(a, o);
    }
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->lock);
  return a;
}

int64_t store_rule_add(store_t *st, const char *exe_glob, const char *config_json, int canary_pct,
                       const char *client) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  pthread_mutex_lock(&st->lock);
  int64_t id = -1;
  sqlite3_stmt *s = prepare(st, "INSERT INTO rules (exe_glob, config, canary_pct, created, client) VALUES (?, ?, ?, ?, ?)");
  if (s) {
    sqlite3_bind_text(s, 1, exe_glob, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, config_json, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, canary_pct);
    sqlite3_bind_int64(s, 4, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    sqlite3_bind_text(s, 5, client, -1, SQLITE_TRANSIENT);
    if (step_done(st, s, "rule")) id = sqlite3_last_insert_rowid(st->db);
  }
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
  return id;
}

json_t *store_rules_json(store_t *st) {
  pthread_mutex_lock(&st->lock);
  json_t *a = json_array();
  sqlite3_stmt *s = prepare(st, "SELECT id, exe_glob, config, canary_pct, created, client FROM rules ORDER BY id");
  while (s && sqlite3_step(s) == SQLITE_ROW) {
    json_t *o = json_pack("{s:I, s:s, s:o, s:I, s:f, s:s}", "id", sqlite3_column_int64(s, 0), "exe_glob",
                          (const char *)sqlite3_column_text(s, 1), "config", column_json(s, 2), "canary_pct",
                          sqlite3_column_int64(s, 3), "created", sqlite3_column_int64(s, 4) / 1e3, "client",
                          (const char *)sqlite3_column_text(s, 5));
    json_array_append_new(a, o);
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->lock);
  return a;
}

bool store_rule_delete(store_t *st, int64_t id) {
  pthread_mutex_lock(&st->lock);
  sqlite3_stmt *s = prepare(st, "DELETE FROM rules WHERE id = ?");
  bool found = false;
  if (s) {
    sqlite3_bind_int64(s, 1, id);
    found = step_done(st, s, "rule delete") && sqlite3_changes(st->db) > 0;
  }
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
  return found;
}

json_t *store_health_json(store_t *st) {
  pthread_mutex_lock(&st->lock);
  json_t *o = json_pack("{s:I, s:I, s:I}", "schema_version", (json_int_t)query_int(st, "PRAGMA user_version"),
                        "db_bytes", (json_int_t)db_bytes(st), "processes_alive",
                        (json_int_t)query_int(st, "SELECT count(*) FROM processes WHERE alive = 1"));
  pthread_mutex_unlock(&st->lock);
  return o;
}
