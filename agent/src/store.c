/* store.c - allocd's SQLite database.
 *
 * Two connections to one file in WAL mode.  The writer, under `lock`,
 * takes the collector's tick as one transaction (store_begin ..
 * store_commit), retention, audit entries and rules; its hot statements
 * are prepared once.  The reader, under `rlock`, answers the HTTP
 * threads: WAL lets it read the last committed state while a tick is being
 * written, so an API request never waits for a commit.  The schema comes
 * from schema/ (compiled in, applied in order inside transactions, tracked
 * with PRAGMA user_version).  Statistics are stored packed (pack.h) in the
 * order of a layout (the metric names, table `layouts`).  A process's
 * history and the host's (host.h) are the same kind of rows in tables of
 * their own, written and read by the same code (owner_t says whose).  Retention
 * deletes in batches of a few thousand rows per call so that no call holds
 * the writer for long, and the file is kept under its size cap by dropping
 * the oldest data first and giving pages back with incremental vacuum. */
#include "store.h"

#include "chunk.h"
#include "host.h"
#include "log.h"
#include "pack.h"
#include "schema.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define BATCH 5000          /* rows deleted per table per retention call */
#define MAX_LAYOUT 512      /* metrics in a layout we are willing to decode */
#define LAYOUT_CACHE 8

/* Whose history a row is: a process's (by its id) or one of the host's
 * series (host.h, by its key).  The two kinds have the same tables, in
 * the same order, under other names (history_tables). */
typedef struct owner_s {
  int64_t process_id;
  const char *series;   /* non-NULL: a host series */
} owner_t;

#define OWNER_KIND(o) ((o)->series ? 1 : 0)

/* The writer's statements run on every tick.  The seven history
 * statements come once per kind of owner, a process's then the host's,
 * with the same parameters: ?1 owner, ?2 t, ?3 n or number, ?4 layout,
 * ?5 stats; a chunk's append also ?6 its first number, ?7 its newest
 * time.  The raw samples are chunks (chunk.h): a new one is inserted, or
 * the newest (HOT_CHUNK_NEWEST) is given one more sample; a process's
 * newest chunk that is as the chunk cache remembers it is given it by one
 * statement, HOT_CHUNK_EXTEND, with no SELECT before. */
enum hot {
  HOT_SAMPLE, HOT_CHUNK_NEWEST, HOT_CHUNK_APPEND, HOT_ROLLUP_1M, HOT_ROLLUP_1H, HOT_GET_1M, HOT_GET_1H,
  HOT_HOST_SAMPLE, HOT_HOST_CHUNK_NEWEST, HOT_HOST_CHUNK_APPEND, HOT_HOST_ROLLUP_1M, HOT_HOST_ROLLUP_1H,
  HOT_HOST_GET_1M, HOT_HOST_GET_1H,
  HOT_PROCESS, HOT_LATEST, HOT_EXITED, HOT_CLASSES, HOT_CHUNK_EXTEND, HOT_COUNT
};
#define HOT_PER_KIND (HOT_HOST_SAMPLE - HOT_SAMPLE)

static const char *const hot_sql[HOT_COUNT] = {
  "INSERT OR IGNORE INTO sample_chunks (process_id, t, number, last_t, last_number, n, layout, stats)"
  " VALUES (?1, ?2, ?3, ?2, ?3, 1, ?4, ?5)",
  "SELECT t, number, last_t, last_number, layout, stats FROM sample_chunks WHERE process_id = ?1"
  " ORDER BY t DESC, number DESC LIMIT 1",
  "UPDATE sample_chunks SET last_t = ?7, last_number = ?3, n = n + 1, stats = ?5"
  " WHERE process_id = ?1 AND t = ?2 AND number = ?6 AND layout = ?4",
  "INSERT OR REPLACE INTO rollup_1m (process_id, t, n, layout, stats) VALUES (?1, ?2, ?3, ?4, ?5)",
  "INSERT OR REPLACE INTO rollup_1h (process_id, t, n, layout, stats) VALUES (?1, ?2, ?3, ?4, ?5)",
  "SELECT n, layout, stats FROM rollup_1m WHERE process_id = ?1 AND t = ?2",
  "SELECT n, layout, stats FROM rollup_1h WHERE process_id = ?1 AND t = ?2",
  "INSERT OR IGNORE INTO host_sample_chunks (series, t, number, last_t, last_number, n, layout, stats)"
  " VALUES (?1, ?2, ?3, ?2, ?3, 1, ?4, ?5)",
  "SELECT t, number, last_t, last_number, layout, stats FROM host_sample_chunks WHERE series = ?1"
  " ORDER BY t DESC, number DESC LIMIT 1",
  "UPDATE host_sample_chunks SET last_t = ?7, last_number = ?3, n = n + 1, stats = ?5"
  " WHERE series = ?1 AND t = ?2 AND number = ?6 AND layout = ?4",
  "INSERT OR REPLACE INTO host_rollup_1m (series, t, n, layout, stats) VALUES (?1, ?2, ?3, ?4, ?5)",
  "INSERT OR REPLACE INTO host_rollup_1h (series, t, n, layout, stats) VALUES (?1, ?2, ?3, ?4, ?5)",
  "SELECT n, layout, stats FROM host_rollup_1m WHERE series = ?1 AND t = ?2",
  "SELECT n, layout, stats FROM host_rollup_1h WHERE series = ?1 AND t = ?2",
  "INSERT INTO processes (pid, start_time, pidns, uid, exe, comm, version, first_seen, last_seen)"
  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"
  " ON CONFLICT (pid, start_time, pidns) DO UPDATE SET alive = 1, exited_at = NULL, last_seen = ?8"
  " RETURNING id, first_seen",
  "UPDATE processes SET latest = ?, last_seen = ? WHERE id = ?",
  "UPDATE processes SET alive = 0, exited_at = ?1, last_seen = ?1, latest = coalesce(?2, latest) WHERE id = ?3",
  "INSERT OR IGNORE INTO class_samples (process_id, t, hourly, classes) VALUES (?, ?, ?, ?)",
  /* a process's newest chunk as the chunk cache remembers it: appended to
   * only if its row is still exactly that (extend_cached) */
  "UPDATE sample_chunks SET last_t = ?4, last_number = ?5, n = n + 1, stats = CAST(stats || ?6 AS BLOB)"
  " WHERE process_id = ?1 AND t = ?2 AND number = ?3 AND last_t = ?7 AND last_number = ?8 AND layout = ?9"
  " AND length(stats) = ?10",
};

/* The history tables of each kind of owner, finest first, and the
 * column that names the owner. */
enum { SOURCE_RAW, SOURCE_1M, SOURCE_1H, NSOURCES };
static const char *const history_tables[2][NSOURCES] = {
  {"sample_chunks", "rollup_1m", "rollup_1h"}, {"host_sample_chunks", "host_rollup_1m", "host_rollup_1h"}};
static const char *const owner_column[2] = {"process_id", "series"};
static const metric_set_t *const owner_set[2] = {&snap_set, &host_set};

/* Where each of a set's metrics sits in a stored layout (-1: absent). */
typedef struct layout_s {
  int64_t id;
  const metric_set_t *set;
  int n;
  short pos[SNAP_NMETRICS];
} layout_t;

/* What this allocd last wrote to a process's newest chunk: its key
 * columns, its BLOB's length and its last sample's values.  Decoding a
 * chunk to its end at every sample costs as much as all the samples in it
 * (a process publishing every 10 ms fills one with a hundred): with this,
 * only a chunk that is not as this allocd left it (a tick rolled back,
 * another process in the slot, an earlier run's) is decoded.  Processes
 * only: the host's few series add a sample a tick. */
#define CHUNK_CACHE_SLOTS 4096

typedef struct chunk_cache_s {
  int64_t process_id, t, last_t;   /* process_id 0: empty (ids start at 1) */
  uint64_t number, last_number;
  size_t len;
  double last[SNAP_NMETRICS];
} chunk_cache_t;

struct store_s {
  sqlite3 *db, *rdb;                 /* writer, reader */
  pthread_mutex_t lock, rlock;
  sqlite3_stmt *hot[HOT_COUNT];
  store_limits_t limits;
  int64_t layout_id[2];              /* the layouts this allocd writes (process, host) */
  char *layout_text;                 /* the process layout's JSON array of names */
  layout_t layouts[LAYOUT_CACHE];    /* read side, under rlock */
  int nlayouts;
  bool tx_failed;                    /* a write in the current transaction failed */
  char error[256];
  /* What has been logged, so that a lasting condition is logged once (or
   * once a minute), not every tick; writer side, under lock. */
  uint64_t ticks_failed, failure_logged_ms;
  bool over_cap_warned, cap_too_small_warned, retention_failing;
  /* The size cap's fair share (trim_to_cap): rows of one history table
   * per process, grouped by uid; writer side, under lock. */
  struct chunk_cache_s *chunk_cache;   /* CHUNK_CACHE_SLOTS; writer side, under lock */
  struct holder_s *holders;
  size_t nholders;
  int holders_table;
  int64_t holders_ms;
};

/* ---- helpers ------------------------------------------------------------- */

static void remember_error(store_t *st, sqlite3 *db, const char *what) {
  snprintf(st->error, sizeof st->error, "%s: %s", what, sqlite3_errmsg(db));
}

const char *store_error(store_t *st) { return st->error; }

static bool exec(store_t *st, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) == SQLITE_OK) return true;
  snprintf(st->error, sizeof st->error, "%s", msg ? msg : sqlite3_errmsg(st->db));
  sqlite3_free(msg);
  return false;
}

/* End a failed transaction.  SQLite rolls some back by itself (a COMMIT
 * that hit a full disk, SQLITE_FULL or SQLITE_IOERR in a statement): a
 * ROLLBACK then fails with "no transaction is active", which must not
 * replace the error that says what went wrong. */
static void rollback(store_t *st) {
  if (sqlite3_get_autocommit(st->db)) return;
  char *msg = NULL;
  if (sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, &msg) != SQLITE_OK)
    log_error("database: rollback failed: %s (after: %s)", msg ? msg : sqlite3_errmsg(st->db), st->error);
  sqlite3_free(msg);
}

static sqlite3_stmt *prepare_on(store_t *st, sqlite3 *db, const char *sql) {
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
    remember_error(st, db, "prepare");
    return NULL;
  }
  return s;
}

static sqlite3_stmt *prepare(store_t *st, const char *sql) { return prepare_on(st, st->db, sql); }
static sqlite3_stmt *prepare_read(store_t *st, const char *sql) { return prepare_on(st, st->rdb, sql); }

/* Run a write to completion; false (and the transaction marked failed) on
 * error.  One-off statements are finalized, hot ones reset for next time.
 * Once a write of the transaction failed the rest are not run: SQLite may
 * have rolled the transaction back already (a full disk), and they would
 * then commit one by one, out of the all-or-nothing tick. */
static bool finish(store_t *st, sqlite3_stmt *s, bool hot, const char *what) {
  int rc = st->tx_failed ? SQLITE_ABORT : sqlite3_step(s);
  if (hot) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  } else {
    sqlite3_finalize(s);
  }
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) return true;
  if (!st->tx_failed) remember_error(st, st->db, what);
  st->tx_failed = true;
  return false;
}

static bool step_done(store_t *st, sqlite3_stmt *s, const char *what) { return finish(st, s, false, what); }

static int64_t query_int_on(store_t *st, sqlite3 *db, const char *sql) {
  sqlite3_stmt *s = prepare_on(st, db, sql);
  int64_t v = -1;
  if (s && sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  return v;
}

static int64_t query_int(store_t *st, const char *sql) { return query_int_on(st, st->db, sql); }

static json_t *column_json(sqlite3_stmt *s, int col) {
  const char *text = (const char *)sqlite3_column_text(s, col);
  if (!text) return json_null();
  json_t *v = json_loads(text, 0, NULL);
  return v ? v : json_null();
}

/* A text column as a JSON string.  An older allocd stored names as the
 * segment gave them, which may not be UTF-8 (jansson refuses those, and
 * the whole row vanished from the API): such text is cleaned on the way
 * out, as the collector now cleans it on the way in. */
static json_t *column_string(sqlite3_stmt *s, int col) {
  const char *t = (const char *)sqlite3_column_text(s, col);
  json_t *v = json_string(t ? t : "");
  if (v) return v;
  char clean[1024];
  text_clean(t, strlen(t), clean, sizeof clean);
  return json_string(clean);
}

static json_t *column_text_or_null(sqlite3_stmt *s, int col) {
  return sqlite3_column_type(s, col) == SQLITE_NULL ? json_null() : column_string(s, col);
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- layouts and packing ------------------------------------------------- */

/* A set's layout: its metric names in order, as a JSON array. */
static char *layout_text(const metric_set_t *set) {
  json_t *a = json_array();
  for (int i = 0; i < set->n; i++) json_array_append_new(a, json_string(set->info[i].name));
  char *text = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  return text;
}

static double json_num_or_nan(json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

/* allocd_layout(): SQL function for the migration to packed rows. */
static void sql_layout(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc, (void)argv;
  store_t *st = sqlite3_user_data(ctx);
  sqlite3_result_text(ctx, st->layout_text, -1, SQLITE_STATIC);
}

/* allocd_pack(json, 'sample' | 'rollup'): a schema-1 JSON row, packed in
 * our layout; metrics it lacks are stored as NaN (no point in history). */
static void sql_pack(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  const char *text = (const char *)sqlite3_value_text(argv[0]);
  const char *kind = (const char *)sqlite3_value_text(argv[1]);
  json_t *o = text ? json_loads(text, 0, NULL) : NULL;
  static __thread uint8_t buf[ROLLUP_PACK_MAX];
  size_t len;
  if (kind && strcmp(kind, "rollup") == 0) {
    rollup_t r;
    rollup_init(&r, 60000);
    r.n = 1;
    for (int i = 0; i < SNAP_NMETRICS; i++) {
      json_t *a = json_object_get(o, snap_metrics[i].name);   /* [min, max, avg, last] */
      r.min[i] = json_num_or_nan(json_array_get(a, 0));
      r.max[i] = json_num_or_nan(json_array_get(a, 1));
      r.sum[i] = json_num_or_nan(json_array_get(a, 2));
      r.last[i] = json_num_or_nan(json_array_get(a, 3));
    }
    len = rollup_pack(&r, buf);
  } else {
    double v[SNAP_NMETRICS];
    for (int i = 0; i < SNAP_NMETRICS; i++) v[i] = json_num_or_nan(json_object_get(o, snap_metrics[i].name));
    len = pack_values(v, SNAP_NMETRICS, NULL, buf);
  }
  json_decref(o);
  sqlite3_result_blob(ctx, buf, (int)len, SQLITE_TRANSIENT);
}

/* Register the layout of each kind of owner (once per distinct list of
 * metrics) and remember their ids. */
static bool use_layouts(store_t *st) {
  for (int k = 0; k < 2; k++) {
    char *text = k ? layout_text(owner_set[k]) : st->layout_text;
    sqlite3_stmt *s = text ? prepare(st, "INSERT INTO layouts (metrics) VALUES (?1)"
                                         " ON CONFLICT (metrics) DO UPDATE SET metrics = metrics RETURNING id")
                           : NULL;
    if (s) sqlite3_bind_text(s, 1, text, -1, SQLITE_TRANSIENT);
    if (s && sqlite3_step(s) == SQLITE_ROW) st->layout_id[k] = sqlite3_column_int64(s, 0);
    else remember_error(st, st->db, "layout");
    sqlite3_finalize(s);
    if (k) free(text);
    if (st->layout_id[k] <= 0) return false;
  }
  return true;
}

/* The positions of a set's metrics in stored layout `id` (reader side,
 * cached); NULL if the layout is unknown or unreadable. */
static const layout_t *layout_get(store_t *st, int64_t id, const metric_set_t *set) {
  for (int i = 0; i < st->nlayouts; i++)
    if (st->layouts[i].id == id && st->layouts[i].set == set) return &st->layouts[i];
  sqlite3_stmt *s = prepare_read(st, "SELECT metrics FROM layouts WHERE id = ?");
  json_t *names = NULL;
  if (s) {
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW) names = column_json(s, 0);
  }
  sqlite3_finalize(s);
  layout_t *l = NULL;
  size_t n = json_array_size(names);
  if (n > 0 && n <= MAX_LAYOUT) {
    l = &st->layouts[st->nlayouts < LAYOUT_CACHE ? st->nlayouts++ : LAYOUT_CACHE - 1];
    l->id = id;
    l->set = set;
    l->n = (int)n;
    for (int i = 0; i < set->n; i++) {
      l->pos[i] = -1;
      for (size_t k = 0; k < n; k++)
        if (json_is_string(json_array_get(names, k)) &&
            strcmp(json_string_value(json_array_get(names, k)), set->info[i].name) == 0)
          l->pos[i] = (short)k;
    }
  }
  json_decref(names);
  return l;
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
  bool migrated = false;
  for (int i = 0; i < schema_count; i++) {
    const struct schema_migration *m = &schema_migrations[i];
    if (m->version <= have) continue;
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", m->version);
    if (!exec(st, "BEGIN IMMEDIATE") || !exec(st, m->sql) || !exec(st, pragma) || !exec(st, "COMMIT")) {
      snprintf(err, errlen, "migration %s failed: %s", m->name, st->error);
      rollback(st);
      return false;
    }
    log_info("database: applied migration %s", m->name);
    migrated = true;
  }
  if (migrated && have > 0) exec(st, "PRAGMA incremental_vacuum");   /* converted tables leave free pages */
  return true;
}

/* Retention frees pages; incremental auto-vacuum gives them back to the
 * file system, or the size cap could never be met.  A new database gets it
 * from the pragma in store_open; one made without it (allocd before this
 * check set the pragma too late to count) is rebuilt once by VACUUM. */
static void ensure_incremental_vacuum(store_t *st) {
  if (query_int(st, "PRAGMA auto_vacuum") == 2) return;
  log_info("database: switching to incremental auto-vacuum (a one-time VACUUM)");
  if (!exec(st, "PRAGMA auto_vacuum = INCREMENTAL") || !exec(st, "VACUUM"))
    log_warn("database: VACUUM failed (%s): freed pages stay in the file", st->error);
}

/* The database holds every process's command and history and the audit
 * log: only allocd's user may read it, wherever --db puts it.  SQLite gives
 * its -wal and -shm files the mode of the database file, so the file is
 * created 0600 before SQLite opens it; one made 0644 by an older allocd,
 * and its -wal/-shm, are narrowed to 0600. */
static bool make_private(const char *path, char *err, size_t errlen) {
  static const char *const suffixes[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    char name[PATH_MAX];
    if (snprintf(name, sizeof name, "%s%s", path, suffixes[i]) >= (int)sizeof name) {
      snprintf(err, errlen, "the database path is too long");
      return false;
    }
    int fd = open(name, O_RDWR | O_CLOEXEC | (i == 0 ? O_CREAT : 0), 0600);
    if (fd < 0 && (i > 0 && errno == ENOENT)) continue;
    if (fd < 0) {
      if (errno == EROFS || errno == EACCES) return true;   /* SQLite says why, in its words */
      snprintf(err, errlen, "cannot open %s: %s", name, strerror(errno));
      return false;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077)) {
      if (fchmod(fd, st.st_mode & 0700) == 0)
        log_info("database: %s was readable by others: now mode 0%o", name, st.st_mode & 0700);
      else log_warn("database: %s is readable by others and cannot be changed: %s", name, strerror(errno));
    }
    close(fd);
  }
  return true;
}

static sqlite3 *open_connection(const char *path, char *err, size_t errlen) {
  sqlite3 *db = NULL;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close_v2(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 5000);
  return db;
}

static bool prepare_hot(store_t *st) {
  for (int i = 0; i < HOT_COUNT; i++)
    if (sqlite3_prepare_v3(st->db, hot_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->hot[i], NULL) != SQLITE_OK) {
      remember_error(st, st->db, "prepare");
      return false;
    }
  return true;
}

static store_t *open_failed(store_t *st, char *err, size_t errlen) {
  if (!err[0]) snprintf(err, errlen, "%s", st->error);
  store_close(st);
  return NULL;
}

store_t *store_open(const char *path, const store_limits_t *limits, char *err, size_t errlen) {
  store_t *st = calloc(1, sizeof *st);
  if (!st || !(st->layout_text = layout_text(&snap_set))) {
    snprintf(err, errlen, "out of memory");
    free(st);
    return NULL;
  }
  st->limits = *limits;
  st->chunk_cache = calloc(CHUNK_CACHE_SLOTS, sizeof *st->chunk_cache);   /* none: every chunk is decoded */
  pthread_mutex_init(&st->lock, NULL);
  pthread_mutex_init(&st->rlock, NULL);
  if (!make_private(path, err, errlen) || !(st->db = open_connection(path, err, errlen))) {
    store_close(st);
    return NULL;
  }
  exec(st, "PRAGMA auto_vacuum = INCREMENTAL");   /* first: counts only before the file has pages */
  sqlite3_stmt *s = prepare(st, "PRAGMA journal_mode = WAL");
  const char *mode = s && sqlite3_step(s) == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
  bool wal = mode && strcmp(mode, "wal") == 0;
  sqlite3_finalize(s);
  if (!wal) {
    struct statvfs fs;
    bool read_only = statvfs(path, &fs) == 0 && (fs.f_flag & ST_RDONLY);
    snprintf(err, errlen, "cannot use %s: %s", path,
             read_only ? "its file system is read-only" : sqlite3_errmsg(st->db));
    store_close(st);
    return NULL;
  }
  /* A checkpointed WAL is cut back to a sixteenth of the cap (1-64 MiB):
   * without a limit its file keeps its largest size for good. */
  int64_t wal_limit = limits->max_bytes / 16;
  wal_limit = wal_limit < (1 << 20) ? (1 << 20) : wal_limit > (64 << 20) ? (64 << 20) : wal_limit;
  char pragma[64];
  snprintf(pragma, sizeof pragma, "PRAGMA journal_size_limit = %lld", (long long)wal_limit);
  int fn = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY;
  if (!exec(st, pragma) || sqlite3_create_function(st->db, "allocd_layout", 0, fn, st, sql_layout, NULL, NULL) != SQLITE_OK ||
      sqlite3_create_function(st->db, "allocd_pack", 2, fn, st, sql_pack, NULL, NULL) != SQLITE_OK ||
      !exec(st, "PRAGMA synchronous = NORMAL") || !exec(st, "PRAGMA foreign_keys = ON") || !migrate(st, err, errlen))
    return open_failed(st, err, errlen);
  ensure_incremental_vacuum(st);
  if (!use_layouts(st) || !prepare_hot(st) || !(st->rdb = open_connection(path, err, errlen)) ||
      sqlite3_exec(st->rdb, "PRAGMA query_only = 1", NULL, NULL, NULL) != SQLITE_OK)
    return open_failed(st, err, errlen);
  return st;
}

void store_close(store_t *st) {
  if (!st) return;
  for (int i = 0; i < HOT_COUNT; i++) sqlite3_finalize(st->hot[i]);
  if (st->rdb) sqlite3_close_v2(st->rdb);
  if (st->db) sqlite3_close_v2(st->db);
  pthread_mutex_destroy(&st->lock);
  pthread_mutex_destroy(&st->rlock);
  free(st->layout_text);
  free(st->holders);
  free(st->chunk_cache);
  free(st);
}

/* ---- the collector's transaction ----------------------------------------- */

void store_begin(store_t *st) {
  pthread_mutex_lock(&st->lock);
  st->tx_failed = !exec(st, "BEGIN IMMEDIATE");
}

/* A failing database (disk full, read-only, I/O errors) fails every tick:
 * say so at once, then once a minute with the count, and when it works again. */
static void report_commit(store_t *st, bool ok) {
  uint64_t now = (uint64_t)wall_ms();
  if (ok && st->ticks_failed) {
    log_info("database: writing again after %llu ticks not written", (unsigned long long)st->ticks_failed);
    st->ticks_failed = 0;
  } else if (!ok && (st->ticks_failed++ == 0 || now - st->failure_logged_ms >= 60000)) {
    log_error("database: tick not written (%llu so far): %s", (unsigned long long)st->ticks_failed, st->error);
    st->failure_logged_ms = now;
  }
}

bool store_commit(store_t *st) {
  bool ok = !st->tx_failed && exec(st, "COMMIT");
  if (!ok) rollback(st);
  report_commit(st, ok);
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
  return ok;
}

int64_t store_process(store_t *st, const store_proc_t *p, int64_t now_ms, int64_t *first_seen_ms) {
  sqlite3_stmt *s = st->hot[HOT_PROCESS];
  sqlite3_bind_int(s, 1, p->pid);
  sqlite3_bind_int64(s, 2, (int64_t)p->start_time);
  sqlite3_bind_int64(s, 3, (int64_t)p->pidns);
  sqlite3_bind_int64(s, 4, p->uid);
  sqlite3_bind_text(s, 5, p->exe, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 6, p->comm, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 7, p->version, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 8, now_ms);
  int64_t id = -1;
  if (st->tx_failed) {   /* see finish() */
  } else if (sqlite3_step(s) == SQLITE_ROW) {
    id = sqlite3_column_int64(s, 0);
    *first_seen_ms = sqlite3_column_int64(s, 1);
  } else {
    remember_error(st, st->db, "process");
    st->tx_failed = true;
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return id;
}

static void bind_owner(sqlite3_stmt *s, int i, const owner_t *o) {
  if (o->series) sqlite3_bind_text(s, i, o->series, -1, SQLITE_STATIC);
  else sqlite3_bind_int64(s, i, o->process_id);
}

/* The hot statement `which` (a process's) for owner o's kind. */
static sqlite3_stmt *hot_for(store_t *st, enum hot which, const owner_t *o) {
  return st->hot[which + OWNER_KIND(o) * HOT_PER_KIND];
}

static bool insert_packed(store_t *st, enum hot which, const owner_t *o, int64_t t_ms, int64_t n,
                          const uint8_t *packed, size_t len) {
  sqlite3_stmt *s = hot_for(st, which, o);
  bind_owner(s, 1, o);
  sqlite3_bind_int64(s, 2, t_ms);
  sqlite3_bind_int64(s, 3, n);
  sqlite3_bind_int64(s, 4, st->layout_id[OWNER_KIND(o)]);
  sqlite3_bind_blob(s, 5, packed, (int)len, SQLITE_STATIC);
  return finish(st, s, true, which == HOT_SAMPLE ? "sample" : "rollup");
}

/* ---- raw samples in chunks -------------------------------------------------
 * A process's derived ratios are guessed in its chunks (chunk.h) from the
 * same sample's statistics, as liballoc derives them (alloc_shm_derive):
 * the double the snapshot gave for a statistic is the integer it was, so
 * the ratio computed again is the same double, bit for bit.  Where a
 * statistic is missing (a layout without it) or is not such an integer
 * (a hostile file), nothing is guessed: the ratio is written out. */

/* The metrics' indexes in snap_metrics: the statistics, then the derived
 * ratios (snapshot.h). */
enum {
#define X(name, ...) METRIC_##name,
  ALLOC_SHM_STATS(X) ALLOC_SHM_DERIVED(X)
#undef X
};

/* The statistic `metric` of row as the integer it was; pos: where each
 * metric of snap_set is in the row (NULL: in snap_set's order). */
static bool statistic(const double *row, const short *pos, int metric, uint64_t *out) {
  int at = pos ? pos[metric] : metric;
  if (at < 0 || !(row[at] >= 0 && row[at] < 18446744073709551616.0) || row[at] != trunc(row[at])) return false;
  *out = (uint64_t)row[at];
  return true;
}

static void put_ratio(double *guess, const short *pos, int metric, double v) {
  int at = pos ? pos[metric] : metric;
  if (at >= 0) guess[at] = v;
}

/* chunk_guess_fn for a process's samples; ctx: the positions of snap_set's
 * metrics in the row's layout (layout_t.pos), NULL for this allocd's own. */
static void guess_ratios(const void *ctx, const double *row, double *guess) {
  const short *pos = ctx;
  alloc_shm_stats_t s = {0};
  if (!statistic(row, pos, METRIC_allocated, &s.allocated) || !statistic(row, pos, METRIC_active, &s.active) ||
      !statistic(row, pos, METRIC_resident, &s.resident) || !statistic(row, pos, METRIC_dirty, &s.dirty) ||
      !statistic(row, pos, METRIC_kernel_rss, &s.kernel_rss))
    return;
  alloc_shm_derived_t d;
  alloc_shm_derive(&s, &d);
  put_ratio(guess, pos, METRIC_fragmentation, d.fragmentation);
  put_ratio(guess, pos, METRIC_resident_overhead, d.resident_overhead);
  put_ratio(guess, pos, METRIC_dirty_ratio, d.dirty_ratio);
  put_ratio(guess, pos, METRIC_kernel_overhead, d.kernel_overhead);
}

/* The guess for an owner's chunks: a process's ratios, nothing for the
 * host's series (whose few ratios are not worth it). */
static chunk_guess_fn *owner_guess(const owner_t *o) { return o->series ? NULL : guess_ratios; }

/* An owner's newest chunk of raw samples (chunk.h), decoded to its end
 * when this allocd may append to it: written in our layout, less than
 * CHUNK_SPAN_MS old at t_ms, and well formed. */
typedef struct newest_chunk_s {
  bool found, appendable;
  int64_t t, last_t;
  uint64_t number, last_number;
  size_t len;
  uint8_t blob[CHUNK_MAX_BYTES + CHUNK_ENTRY_MAX(SNAP_NMETRICS)];
  double last[SNAP_NMETRICS];   /* the values of its newest sample */
} newest_chunk_t;

/* Decode c's BLOB to its newest sample, which must be the one its
 * columns name (a chunk that disagrees with them is left closed). */
static bool decode_to_end(newest_chunk_t *c, const owner_t *o, const uint8_t *blob, size_t len, int n) {
  static __thread chunk_reader_t r;
  if (!chunk_first(&r, blob, len, n, c->t, c->number, owner_guess(o), NULL)) return false;
  while (chunk_next(&r)) {
  }
  if (!chunk_at_end(&r) || r.t != c->last_t || r.number != c->last_number) return false;
  memcpy(c->last, r.v, (size_t)n * sizeof *c->last);
  memcpy(c->blob, blob, len);
  c->len = len;
  return true;
}

static chunk_cache_t *cache_slot(store_t *st, const owner_t *o) {
  return o->series || !st->chunk_cache ? NULL : &st->chunk_cache[(uint64_t)o->process_id % CHUNK_CACHE_SLOTS];
}

static bool cache_matches(const chunk_cache_t *e, const owner_t *o, const newest_chunk_t *c, size_t len) {
  return e && e->process_id == o->process_id && e->t == c->t && e->number == c->number && e->last_t == c->last_t &&
         e->last_number == c->last_number && e->len == len;
}

/* After a chunk's row was written: first sample (t, number), last
 * (last_t, last_number, values v), BLOB of len bytes. */
static void remember_chunk(store_t *st, const owner_t *o, int64_t t, uint64_t number, int64_t last_t,
                           uint64_t last_number, size_t len, const double *v) {
  chunk_cache_t *e = cache_slot(st, o);
  if (!e) return;
  *e = (chunk_cache_t){o->process_id, t, last_t, number, last_number, len, {0}};
  memcpy(e->last, v, sizeof e->last);
}

static void newest_chunk(store_t *st, const owner_t *o, int64_t t_ms, newest_chunk_t *c) {
  sqlite3_stmt *s = hot_for(st, HOT_CHUNK_NEWEST, o);
  int kind = OWNER_KIND(o);
  bind_owner(s, 1, o);
  c->found = c->appendable = false;
  if (!st->tx_failed && sqlite3_step(s) == SQLITE_ROW) {
    c->found = true;
    c->t = sqlite3_column_int64(s, 0);
    c->number = (uint64_t)sqlite3_column_int64(s, 1);
    c->last_t = sqlite3_column_int64(s, 2);
    c->last_number = (uint64_t)sqlite3_column_int64(s, 3);
    const uint8_t *blob = sqlite3_column_blob(s, 5);
    size_t len = (size_t)sqlite3_column_bytes(s, 5);
    const chunk_cache_t *e = cache_slot(st, o);
    bool open = blob && sqlite3_column_int64(s, 4) == st->layout_id[kind] && t_ms - c->t < CHUNK_SPAN_MS &&
                len <= CHUNK_MAX_BYTES;
    if (open && cache_matches(e, o, c, len)) {
      memcpy(c->blob, blob, len);
      memcpy(c->last, e->last, sizeof c->last);
      c->len = len;
      c->appendable = true;
    } else {
      c->appendable = open && decode_to_end(c, o, blob, len, owner_set[kind]->n);
    }
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
}

/* Give chunk c one more sample, whose bytes (elen of them) are already
 * after its BLOB. */
static int append_sample(store_t *st, const owner_t *o, const newest_chunk_t *c, int64_t t_ms, uint64_t number,
                         size_t elen) {
  sqlite3_stmt *s = hot_for(st, HOT_CHUNK_APPEND, o);
  bind_owner(s, 1, o);
  sqlite3_bind_int64(s, 2, c->t);
  sqlite3_bind_int64(s, 3, (int64_t)number);
  sqlite3_bind_int64(s, 4, st->layout_id[OWNER_KIND(o)]);
  sqlite3_bind_blob(s, 5, c->blob, (int)(c->len + elen), SQLITE_STATIC);
  sqlite3_bind_int64(s, 6, (int64_t)c->number);
  sqlite3_bind_int64(s, 7, t_ms);
  if (!finish(st, s, true, "sample")) return -1;
  return sqlite3_changes(st->db) > 0;
}

/* A process's sample appended to its newest chunk as this allocd
 * remembers writing it (chunk_cache_t), without reading the row first:
 * the UPDATE changes it only if its key, last sample, layout and length
 * are still those remembered, the checks newest_chunk makes of a cached
 * chunk after its SELECT.  The row is then the process's newest (only the
 * collector writes a process's chunks, and each write updates the cache),
 * so nothing is stored twice.  A SELECT and a B-tree search a sample less
 * (~0.5 us of ~15).  1 stored; 0 not done (no such entry, the chunk full
 * or closed, the sample not newer than the remembered one, the row not as
 * remembered: the caller reads it); -1 an error. */
static int extend_cached(store_t *st, const owner_t *o, int64_t t_ms, uint64_t number, const double *v) {
  chunk_cache_t *e = cache_slot(st, o);
  if (!e || e->process_id != o->process_id || t_ms - e->t >= CHUNK_SPAN_MS ||
      !(t_ms > e->last_t || (t_ms == e->last_t && number > e->last_number)))
    return 0;
  uint8_t entry[CHUNK_ENTRY_MAX(SNAP_NMETRICS)];
  size_t elen = chunk_append(e->last_t, e->last_number, e->last, t_ms, number, v, SNAP_NMETRICS, guess_ratios, NULL,
                             entry);
  if (e->len + elen > CHUNK_MAX_BYTES) return 0;
  sqlite3_stmt *s = st->hot[HOT_CHUNK_EXTEND];
  sqlite3_bind_int64(s, 1, o->process_id);
  sqlite3_bind_int64(s, 2, e->t);
  sqlite3_bind_int64(s, 3, (int64_t)e->number);
  sqlite3_bind_int64(s, 4, t_ms);
  sqlite3_bind_int64(s, 5, (int64_t)number);
  sqlite3_bind_blob(s, 6, entry, (int)elen, SQLITE_STATIC);
  sqlite3_bind_int64(s, 7, e->last_t);
  sqlite3_bind_int64(s, 8, (int64_t)e->last_number);
  sqlite3_bind_int64(s, 9, st->layout_id[0]);
  sqlite3_bind_int64(s, 10, (int64_t)e->len);
  if (!finish(st, s, true, "sample")) return -1;
  if (sqlite3_changes(st->db) == 0) return 0;
  remember_chunk(st, o, e->t, e->number, t_ms, number, e->len + elen, v);
  return 1;
}

/* A sample no newer than the owner's newest stored one was stored before
 * (an earlier run read it from the ring): 0.  Else it goes after the
 * newest chunk's samples, or starts a chunk when that one is closed or
 * would grow past CHUNK_MAX_BYTES. */
static int write_sample(store_t *st, const owner_t *o, int64_t t_ms, uint64_t number, const double *v) {
  static __thread newest_chunk_t c;
  int n = owner_set[OWNER_KIND(o)]->n;
  int fast = o->series ? 0 : extend_cached(st, o, t_ms, number, v);
  if (fast) return fast;
  newest_chunk(st, o, t_ms, &c);
  if (st->tx_failed) return -1;
  if (c.found && !(t_ms > c.last_t || (t_ms == c.last_t && number > c.last_number))) return 0;
  if (c.appendable) {
    size_t elen = chunk_append(c.last_t, c.last_number, c.last, t_ms, number, v, n, owner_guess(o), NULL,
                               c.blob + c.len);
    if (c.len + elen <= CHUNK_MAX_BYTES) {
      int stored = append_sample(st, o, &c, t_ms, number, elen);
      if (stored > 0) remember_chunk(st, o, c.t, c.number, t_ms, number, c.len + elen, v);
      return stored;
    }
  }
  uint8_t packed[SNAP_NMETRICS * PACK_MAX];
  size_t len = pack_values(v, n, NULL, packed);
  if (!insert_packed(st, HOT_SAMPLE, o, t_ms, (int64_t)number, packed, len)) return -1;
  if (sqlite3_changes(st->db) == 0) return 0;
  remember_chunk(st, o, t_ms, number, t_ms, number, len, v);
  return 1;
}

int store_sample(store_t *st, int64_t process_id, int64_t t_ms, uint64_t number, const double v[SNAP_NMETRICS]) {
  return write_sample(st, &(owner_t){.process_id = process_id}, t_ms, number, v);
}

int store_host_sample(store_t *st, const char *series, int64_t t_ms, const double v[HOST_NMETRICS]) {
  return write_sample(st, &(owner_t){.series = series}, t_ms, 0, v);
}

/* A stored rollup row as a rollup_t of r's set: the metrics its layout
 * lacks are NaN.  False if the layout is unknown or the bytes do not decode. */
static bool unpack_rollup(const layout_t *l, const uint8_t *blob, size_t len, int64_t n, rollup_t *r) {
  static __thread double v[4][MAX_LAYOUT];   /* last, min, max, avg in the row's layout */
  size_t pos = 0;
  if (!l || !blob || n <= 0 || !unpack_values(blob, len, &pos, l->n, NULL, v[0])) return false;
  for (int k = 1; k < 4; k++)
    if (!unpack_values(blob, len, &pos, l->n, v[0], v[k])) return false;
  r->n = (int)n;
  for (int i = 0; i < r->set->n; i++) {
    int at = l->pos[i];
    r->last[i] = at < 0 ? NAN : v[0][at];
    r->min[i] = at < 0 ? NAN : v[1][at];
    r->max[i] = at < 0 ? NAN : v[2][at];
    r->sum[i] = at < 0 ? NAN : v[3][at] * (double)n;
  }
  return true;
}

/* The row already stored for r's period, if any (written before a
 * restart, or when the owner was last seen): false if there is none or
 * it cannot be read.  The layout cache belongs to the reader, so it is used
 * under rlock (the writer's lock is held: always lock, then rlock). */
static bool stored_rollup(store_t *st, const owner_t *o, const rollup_t *r, rollup_t *out) {
  sqlite3_stmt *s = hot_for(st, r->period_ms == 3600000 ? HOT_GET_1H : HOT_GET_1M, o);
  bind_owner(s, 1, o);
  sqlite3_bind_int64(s, 2, r->start_ms);
  bool found = false;
  if (sqlite3_step(s) == SQLITE_ROW) {
    pthread_mutex_lock(&st->rlock);
    const layout_t *l = layout_get(st, sqlite3_column_int64(s, 1), r->set);
    rollup_init_set(out, r->period_ms, r->set);
    found = unpack_rollup(l, sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2), sqlite3_column_int64(s, 0),
                          out);
    pthread_mutex_unlock(&st->rlock);
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return found;
}

static bool write_rollup(store_t *st, const owner_t *o, const rollup_t *r) {
  uint8_t packed[ROLLUP_PACK_MAX];
  rollup_t merged = *r, stored;
  if (stored_rollup(st, o, r, &stored)) rollup_merge(&merged, &stored);
  return insert_packed(st, r->period_ms == 3600000 ? HOT_ROLLUP_1H : HOT_ROLLUP_1M, o, r->start_ms, merged.n, packed,
                       rollup_pack(&merged, packed));
}

bool store_rollup(store_t *st, int64_t process_id, const rollup_t *r) {
  return write_rollup(st, &(owner_t){.process_id = process_id}, r);
}

bool store_host_rollup(store_t *st, const char *series, const rollup_t *r) {
  return write_rollup(st, &(owner_t){.series = series}, r);
}

bool store_classes(store_t *st, int64_t process_id, int64_t t_ms, bool hourly, const uint8_t *packed, size_t len) {
  sqlite3_stmt *s = st->hot[HOT_CLASSES];
  sqlite3_bind_int64(s, 1, process_id);
  sqlite3_bind_int64(s, 2, t_ms);
  sqlite3_bind_int(s, 3, hourly);
  sqlite3_bind_blob(s, 4, packed, (int)len, SQLITE_STATIC);
  return finish(st, s, true, "classes");
}

bool store_latest(store_t *st, int64_t process_id, int64_t now_ms, const char *snapshot_json) {
  sqlite3_stmt *s = st->hot[HOT_LATEST];
  sqlite3_bind_text(s, 1, snapshot_json, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, now_ms);
  sqlite3_bind_int64(s, 3, process_id);
  return finish(st, s, true, "latest");
}

bool store_exited(store_t *st, int64_t process_id, int64_t t_ms, const char *snapshot_json) {
  sqlite3_stmt *s = st->hot[HOT_EXITED];
  sqlite3_bind_int64(s, 1, t_ms);
  if (snapshot_json) sqlite3_bind_text(s, 2, snapshot_json, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, process_id);
  return finish(st, s, true, "exited");
}

/* ---- rollups an earlier run left in progress ------------------------------------
 * The collector writes a period's rollup when the period ends, when its
 * process exits and when allocd stops; an allocd killed (SIGKILL, a crash,
 * power lost) wrote none of its processes' periods in progress, although
 * their raw samples are stored, and the next run only merges what it reads
 * after them.  At start-up, each process the earlier run was collecting
 * has its newest minute rebuilt from its raw samples, and its newest hour
 * from that hour's minute rows (every other minute of it was written when
 * it ended, and raw samples may be kept for less than an hour), whenever
 * these hold more snapshots than the stored row: a clean stop leaves
 * nothing to do.  The host's series are completed the same way, each from
 * its own newest row. */

/* Call fn for each of an owner's raw samples in [from_ms, to_ms], in time
 * order, with its values in the order of its row's layout.  A chunk
 * begins at most CHUNK_SPAN_MS before the first sample it holds, so the
 * chunks that may hold the range's samples are those that begin in
 * (from_ms - CHUNK_SPAN_MS, to_ms].  The layout cache belongs to the
 * reader: on the writer's connection it is used under rlock (see
 * stored_rollup); the reader's callers hold rlock already. */
typedef void sample_fn(void *ctx, int64_t t, const layout_t *l, const double *row);

static void each_sample(store_t *st, sqlite3 *db, const owner_t *o, int64_t from_ms, int64_t to_ms, sample_fn *fn,
                        void *ctx) {
  static __thread chunk_reader_t r;
  int kind = OWNER_KIND(o);
  char sql[192];
  snprintf(sql, sizeof sql, "SELECT t, number, layout, stats FROM %s WHERE %s = ?1 AND t > ?2 AND t <= ?3"
           " ORDER BY t, number", history_tables[kind][SOURCE_RAW], owner_column[kind]);
  sqlite3_stmt *s = prepare_on(st, db, sql);
  if (!s) return;
  bind_owner(s, 1, o);
  sqlite3_bind_int64(s, 2, from_ms > INT64_MIN + CHUNK_SPAN_MS ? from_ms - CHUNK_SPAN_MS : INT64_MIN);
  sqlite3_bind_int64(s, 3, to_ms);
  while (sqlite3_step(s) == SQLITE_ROW) {
    if (db == st->db) pthread_mutex_lock(&st->rlock);
    const layout_t *l = layout_get(st, sqlite3_column_int64(s, 2), owner_set[kind]);
    bool more = l && chunk_first(&r, sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3), l->n,
                                 sqlite3_column_int64(s, 0), (uint64_t)sqlite3_column_int64(s, 1), owner_guess(o), l->pos);
    for (; more && r.t <= to_ms; more = chunk_next(&r))
      if (r.t >= from_ms) fn(ctx, r.t, l, r.v);
    if (db == st->db) pthread_mutex_unlock(&st->rlock);
  }
  sqlite3_finalize(s);
}

/* A raw sample's values in the order of its layout's set (NaN: not in it),
 * added to the rollup_t ctx. */
static void add_to_rollup(void *ctx, int64_t t, const layout_t *l, const double *row) {
  rollup_t *r = ctx, done;
  double v[SNAP_NMETRICS];
  for (int i = 0; i < l->set->n; i++) v[i] = l->pos[i] < 0 ? NAN : row[l->pos[i]];
  rollup_add(r, t, v, &done);
}

/* The minute rows of [start, start + r->period_ms) of an owner, merged
 * into r newest first (rollup_merge keeps the newer last value). */
static void fold_minutes(store_t *st, const owner_t *o, rollup_t *r) {
  int kind = OWNER_KIND(o);
  char sql[192];
  snprintf(sql, sizeof sql, "SELECT n, layout, stats FROM %s WHERE %s = ?1 AND t >= ?2 AND t < ?3 ORDER BY t DESC",
           history_tables[kind][SOURCE_1M], owner_column[kind]);
  sqlite3_stmt *s = prepare(st, sql);
  int64_t start = r->start_ms;
  bind_owner(s, 1, o);
  sqlite3_bind_int64(s, 2, start);
  sqlite3_bind_int64(s, 3, start + r->period_ms);
  while (s && sqlite3_step(s) == SQLITE_ROW) {
    pthread_mutex_lock(&st->rlock);   /* the layout cache: see stored_rollup */
    const layout_t *l = layout_get(st, sqlite3_column_int64(s, 1), r->set);
    rollup_t part;
    rollup_init_set(&part, r->period_ms, r->set);   /* whose metrics the stored row holds */
    if (unpack_rollup(l, sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2), sqlite3_column_int64(s, 0),
                      &part))
      rollup_merge(r, &part);
    pthread_mutex_unlock(&st->rlock);
  }
  sqlite3_finalize(s);
}

/* Replace the stored row of r's period with r if r holds more snapshots. */
static int replace_if_more(store_t *st, const owner_t *o, const rollup_t *r) {
  rollup_t stored;
  if (r->n == 0 || (stored_rollup(st, o, r, &stored) && stored.n >= r->n)) return 0;
  uint8_t packed[ROLLUP_PACK_MAX];
  return insert_packed(st, r->period_ms == 3600000 ? HOT_ROLLUP_1H : HOT_ROLLUP_1M, o, r->start_ms, r->n, packed,
                       rollup_pack(r, packed));
}

/* Complete an owner's minute and hour holding its newest raw row (at
 * `newest`); the rows rebuilt. */
static int complete_owner(store_t *st, const owner_t *o, int64_t newest) {
  int kind = OWNER_KIND(o);
  rollup_t minute, hour;
  rollup_init_set(&minute, 60000, owner_set[kind]);
  rollup_init_set(&hour, 3600000, owner_set[kind]);
  int64_t start = newest - newest % minute.period_ms;
  each_sample(st, st->db, o, start, start + minute.period_ms - 1, add_to_rollup, &minute);
  minute.start_ms = start;   /* the row it may replace is this minute's, whatever was found */
  int rebuilt = replace_if_more(st, o, &minute);
  hour.start_ms = newest - newest % hour.period_ms;
  fold_minutes(st, o, &hour);
  return rebuilt + replace_if_more(st, o, &hour);
}

/* Complete the newest minute and hour of every process still marked
 * alive, and of every host series; the rows rebuilt. */
static int complete_rollups(store_t *st) {
  sqlite3_stmt *s = prepare(st, "SELECT id, newest FROM (SELECT id, (SELECT max(last_t) FROM sample_chunks"
                                " WHERE process_id = processes.id) AS newest FROM processes WHERE alive = 1)"
                                " WHERE newest IS NOT NULL");
  int rebuilt = 0;
  while (s && sqlite3_step(s) == SQLITE_ROW)
    rebuilt += complete_owner(st, &(owner_t){.process_id = sqlite3_column_int64(s, 0)}, sqlite3_column_int64(s, 1));
  sqlite3_finalize(s);
  s = prepare(st, "SELECT series, max(last_t) FROM host_sample_chunks GROUP BY series");
  while (s && sqlite3_step(s) == SQLITE_ROW) {
    char series[HOST_KEY_MAX];
    snprintf(series, sizeof series, "%s", (const char *)sqlite3_column_text(s, 0));
    rebuilt += complete_owner(st, &(owner_t){.series = series}, sqlite3_column_int64(s, 1));
  }
  sqlite3_finalize(s);
  return rebuilt;
}

void store_mark_all_exited(store_t *st, int64_t t_ms) {
  pthread_mutex_lock(&st->lock);
  st->tx_failed = !exec(st, "BEGIN IMMEDIATE");
  int rebuilt = complete_rollups(st);
  sqlite3_stmt *s = prepare(st, "UPDATE processes SET alive = 0, exited_at = ? WHERE alive = 1");
  if (s) {
    sqlite3_bind_int64(s, 1, t_ms);
    step_done(st, s, "mark exited");
  }
  bool ok = !st->tx_failed && exec(st, "COMMIT");
  if (!ok) {
    log_error("database: the processes of the last run not closed: %s", st->error);
    rollback(st);
  } else if (rebuilt) {
    log_info("database: %d rollups the last run left in progress completed from the stored samples", rebuilt);
  }
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
}

/* ---- retention ------------------------------------------------------------- */

/* Every history table and which retention applies to its rows (0 raw,
 * 1 one-minute, 2 one-hour, 3 a process's one-minute, 4 a process's
 * one-hour: store_limits_t): a process's, the host's, and the size
 * classes (rows every minute go with the raw samples, each hour's first
 * with the host's 1-minute rollups). */
static const struct retained_s {
  const char *table, *key, *where;
  int keep;
} retained[] = {
  {"sample_chunks", "process_id, t, number", "", 0}, {"rollup_1m", "process_id, t", "", 3},
  {"rollup_1h", "process_id, t", "", 4},             {"host_sample_chunks", "series, t, number", "", 0},
  {"host_rollup_1m", "series, t", "", 1},       {"host_rollup_1h", "series, t", "", 2},
  {"class_samples", "process_id, t", "hourly = 0 AND ", 0},
  {"class_samples", "process_id, t", "hourly IN (0, 1) AND ", 1},
  {"profiles", "process_id, t", "", 1},
};
#define NRETAINED (sizeof retained / sizeof retained[0])

static int delete_older(store_t *st, const char *sql, int64_t before) {
  sqlite3_stmt *s = prepare(st, sql);
  if (!s) return 0;
  sqlite3_bind_int64(s, 1, before);
  sqlite3_bind_int(s, 2, BATCH);
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) remember_error(st, st->db, "retention");
  return sqlite3_changes(st->db);
}

/* Delete up to BATCH of table r's rows older than `before`. */
static int delete_older_rows(store_t *st, const struct retained_s *r, int64_t before) {
  char sql[256];
  snprintf(sql, sizeof sql, "DELETE FROM %s WHERE (%s) IN (SELECT %s FROM %s WHERE %st < ?1 ORDER BY t LIMIT ?2)",
           r->table, r->key, r->key, r->table, r->where);
  return delete_older(st, sql, before);
}

static int64_t db_bytes(store_t *st, sqlite3 *db) {
  return query_int_on(st, db, "PRAGMA page_count") * query_int_on(st, db, "PRAGMA page_size");
}

/* ---- the size cap, shared fairly ----------------------------------------------
 * Over the cap, rows go from whoever holds the most: the user (uid, as the
 * kernel gave it) with the most rows of the finest table that has any,
 * and among that user's processes the one with the most, its oldest rows
 * first.  So no user can erase another's history by writing more rows,
 * and no process another's of the same user: a process that writes at an
 * ordinary rate keeps its history while a flood is cut back.  Counting
 * the rows is a scan of the table, so the count is kept and updated as
 * rows are deleted, and taken afresh every FAIR_RECOUNT_MS. */

#define FAIR_RECOUNT_MS 60000
#define FAIR_PICKS 8           /* victims per retention call */

typedef struct holder_s {
  int64_t process_id, uid, rows;
} holder_t;

/* The tables the cap trims, finest first: each process's rows, and beside
 * them the host's series, one holder (HOST_HOLDER) with a uid of its own:
 * the host's history is cut back like one user's, never first. */
static const struct capped_s {
  const char *table, *key, *host;
} capped[] = {
  {"profiles", "process_id, t", NULL},   /* the bulkiest rows: a profile is tens of KB */
  {"sample_chunks", "process_id, t, number", "host_sample_chunks"},
  {"class_samples", "process_id, t", NULL},
  {"rollup_1m", "process_id, t", "host_rollup_1m"},
  {"rollup_1h", "process_id, t", "host_rollup_1h"},
};
#define NCAPPED (int)(sizeof capped / sizeof capped[0])
#define HOST_HOLDER -1
#define HOST_HOLDER_UID -2

static int by_uid(const void *a, const void *b) {
  const holder_t *x = a, *y = b;
  return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Count the rows of table `i` per process (sorted by uid); false if none. */
static bool count_holders(store_t *st, int i, int64_t now_ms) {
  char sql[384], host[96] = "";
  if (capped[i].host)
    snprintf(host, sizeof host, " UNION ALL SELECT %d, %d, count(*) FROM %s", HOST_HOLDER, HOST_HOLDER_UID,
             capped[i].host);
  snprintf(sql, sizeof sql, "SELECT h.process_id, coalesce(p.uid, -1), count(*) FROM %s h"
           " LEFT JOIN processes p ON p.id = h.process_id GROUP BY h.process_id%s", capped[i].table, host);
  sqlite3_stmt *s = prepare(st, sql);
  st->nholders = 0;
  size_t cap = 0;
  while (s && sqlite3_step(s) == SQLITE_ROW) {
    if (st->nholders == cap) {
      cap = cap ? 2 * cap : 64;
      holder_t *h = realloc(st->holders, cap * sizeof *h);
      if (!h) break;
      st->holders = h;
    }
    st->holders[st->nholders++] = (holder_t){sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                                             sqlite3_column_int64(s, 2)};
  }
  sqlite3_finalize(s);
  if (st->nholders) qsort(st->holders, st->nholders, sizeof *st->holders, by_uid);   /* none yet: holders may be NULL */
  st->holders_table = i;
  st->holders_ms = now_ms;
  return st->nholders > 0;
}

/* Of the uid with the most rows, the process with the most; NULL if none
 * has rows left.  O(processes): one pass over the uid-sorted counts. */
static holder_t *pick_victim(store_t *st) {
  holder_t *best = NULL;
  int64_t best_uid_rows = 0;
  for (size_t i = 0; i < st->nholders;) {
    size_t j = i;
    int64_t rows = 0;
    holder_t *top = &st->holders[i];
    for (; j < st->nholders && st->holders[j].uid == st->holders[i].uid; j++) {
      rows += st->holders[j].rows;
      if (st->holders[j].rows > top->rows) top = &st->holders[j];
    }
    if (rows > best_uid_rows && top->rows > 0) best_uid_rows = rows, best = top;
    i = j;
  }
  return best;
}

/* Delete the oldest `n` rows of one process (or of the host's series)
 * from table i. */
static int trim_process(store_t *st, int i, int64_t process_id, int64_t n) {
  char sql[256];
  const struct capped_s *c = &capped[i];
  if (process_id == HOST_HOLDER)
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE (series, t) IN (SELECT series, t FROM %s ORDER BY t LIMIT ?2)",
             c->host, c->host);
  else
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE (%s) IN (SELECT %s FROM %s WHERE process_id = ?1 ORDER BY t LIMIT ?2)",
             c->table, c->key, c->key, c->table);
  sqlite3_stmt *s = prepare(st, sql);
  if (!s) return 0;
  sqlite3_bind_int64(s, 1, process_id);
  sqlite3_bind_int64(s, 2, n);
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) remember_error(st, st->db, "retention");
  return sqlite3_changes(st->db);
}

/* One retention call's share of getting under the cap: up to FAIR_PICKS
 * victims, an eighth of each one's rows (at least 100), at most BATCH
 * rows in all.  Returns the rows deleted, -1 when no table has rows. */
static int trim_to_cap(store_t *st, int64_t now_ms) {
  bool counted = now_ms - st->holders_ms < FAIR_RECOUNT_MS && pick_victim(st);
  for (int i = counted ? st->holders_table : 0; !counted && i < NCAPPED; i++) counted = count_holders(st, i, now_ms);
  if (!counted) return -1;
  int deleted = 0;
  for (int k = 0; k < FAIR_PICKS && deleted < BATCH; k++) {
    holder_t *v = pick_victim(st);
    if (!v) break;
    int64_t n = v->rows / 8 < 100 ? 100 : v->rows / 8;
    if (n > BATCH - deleted) n = BATCH - deleted;
    int got = trim_process(st, st->holders_table, v->process_id, n);
    deleted += got;
    v->rows -= got;
    if (got < n) {
      /* It has no more rows, where the counts said it had: they are
       * stale (it wrote rows since, or it was never the largest).  Going
       * on would take the next holder's rows by counts that no longer say
       * who holds the most (a flood's rows go and the one row of a
       * quieter process is next): count again at the next call instead. */
      st->holders_ms = 0;
      break;
    }
  }
  return deleted;
}

bool store_retain(store_t *st, int64_t now_ms) {
  pthread_mutex_lock(&st->lock);
  int64_t keep[5] = {st->limits.raw_ms, st->limits.minute_ms, st->limits.hour_ms, st->limits.process_minute_ms,
                     st->limits.process_hour_ms};
  int deleted = 0;
  bool full = false;
  exec(st, "BEGIN IMMEDIATE");
  for (size_t i = 0; i < NRETAINED; i++) {
    int n = delete_older_rows(st, &retained[i], now_ms - keep[retained[i].keep]);
    full |= n >= BATCH;
    deleted += n;
  }
  /* Over the size cap: rows go from whoever holds the most (trim_to_cap),
   * a share per call, until the file fits. */
  bool over = st->limits.max_bytes > 0 && db_bytes(st, st->db) > st->limits.max_bytes;
  if (over && !st->over_cap_warned)
    log_warn("database: over its size cap (%lld MiB): dropping the history of the largest holders first",
             (long long)(st->limits.max_bytes >> 20));
  st->over_cap_warned |= over;   /* once: a database held at its cap crosses it every few ticks */
  if (over) {
    full = true;   /* until the file fits */
    int n = trim_to_cap(st, now_ms);
    if (n < 0 && !st->cap_too_small_warned)
      log_warn("database: the size cap (%lld MiB) is below what the process records alone take: no history is kept",
               (long long)(st->limits.max_bytes >> 20));
    st->cap_too_small_warned |= n < 0;
    deleted += n > 0 ? n : 0;
  }
  sqlite3_stmt *s = prepare(st, "DELETE FROM processes WHERE alive = 0 AND exited_at < ?"
                                " AND NOT EXISTS (SELECT 1 FROM sample_chunks WHERE process_id = processes.id)"
                                " AND NOT EXISTS (SELECT 1 FROM rollup_1m WHERE process_id = processes.id)"
                                " AND NOT EXISTS (SELECT 1 FROM rollup_1h WHERE process_id = processes.id)"
                                " AND NOT EXISTS (SELECT 1 FROM class_samples WHERE process_id = processes.id)"
                                " AND NOT EXISTS (SELECT 1 FROM profiles WHERE process_id = processes.id)");
  if (s) {
    sqlite3_bind_int64(s, 1, now_ms - st->limits.process_hour_ms);
    sqlite3_step(s);
    sqlite3_finalize(s);
  }
  deleted += delete_older(st, "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE t < ?1 LIMIT ?2)",
                          now_ms - st->limits.hour_ms);
  bool committed = exec(st, "COMMIT");
  if (!committed) {
    if (!st->retention_failing) log_error("database: retention failed: %s", st->error);
    rollback(st);
  }
  st->retention_failing = !committed;   /* logged once until it works again */
  if (deleted) exec(st, "PRAGMA incremental_vacuum(2000)");
  pthread_mutex_unlock(&st->lock);
  return full;
}

/* ---- queries ------------------------------------------------------------- */

static json_t *process_row(sqlite3_stmt *s, bool with_classes) {
  json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:f, s:f, s:b}", "id", sqlite3_column_int64(s, 0),
                        "pid", sqlite3_column_int64(s, 1), "start_time", sqlite3_column_int64(s, 2), "uid",
                        sqlite3_column_int64(s, 4), "exe", column_string(s, 5), "comm", column_string(s, 6),
                        "version", column_string(s, 7), "first_seen", sqlite3_column_int64(s, 8) / 1e3, "last_seen",
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
    json_object_set(o, "snapshot_number", json_object_get(latest, "number"));
    if (with_classes) json_object_set(o, "classes", json_object_get(latest, "classes"));
  }
  json_decref(latest);
  return o;
}

#define PROCESS_COLUMNS "id, pid, start_time, pidns, uid, exe, comm, version, first_seen, last_seen, alive, exited_at, latest"

json_t *store_exited_json(store_t *st, const int64_t *skip, size_t nskip) {
  pthread_mutex_lock(&st->rlock);
  json_t *a = json_array();
  sqlite3_stmt *s = prepare_read(st, "SELECT " PROCESS_COLUMNS " FROM processes WHERE alive = 0"
                                     " ORDER BY last_seen DESC LIMIT 5000");
  while (s && sqlite3_step(s) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(s, 0);
    bool live = false;   /* the database still says exited for a process found again a moment ago */
    for (size_t i = 0; i < nskip && !live; i++) live = skip[i] == id;
    if (!live) json_array_append_new(a, process_row(s, false));
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->rlock);
  return a;
}

json_t *store_process_json(store_t *st, int pid) {
  pthread_mutex_lock(&st->rlock);
  json_t *o = NULL;
  sqlite3_stmt *s = prepare_read(st, "SELECT " PROCESS_COLUMNS " FROM processes WHERE pid = ?"
                                     " ORDER BY alive DESC, last_seen DESC LIMIT 1");
  if (s) {
    sqlite3_bind_int(s, 1, pid);
    if (sqlite3_step(s) == SQLITE_ROW) o = process_row(s, true);
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->rlock);
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

/* A rollup row's point for metric `m`: [t, avg, min, max, last].  NULL
 * if the row lacks the metric or its bytes do not decode. */
static json_t *rollup_point(const layout_t *l, int m, double t, const uint8_t *blob, size_t len) {
  static __thread double last[MAX_LAYOUT], other[MAX_LAYOUT];
  int at = l ? l->pos[m] : -1;
  size_t pos = 0;
  if (at < 0 || !blob || !unpack_values(blob, len, &pos, l->n, NULL, last)) return NULL;
  double agg[3];   /* min, max, avg: packed relative to last */
  for (int k = 0; k < 3; k++) {
    if (!unpack_values(blob, len, &pos, l->n, last, other)) return NULL;
    agg[k] = other[at];
  }
  if (!isfinite(last[at]) || !isfinite(agg[0]) || !isfinite(agg[1]) || !isfinite(agg[2])) return NULL;
  return json_pack("[f, f, f, f, f]", t, agg[2], agg[0], agg[1], last[at]);
}

/* The table `source` names (raw, 1m, 1h; NULL: the finest that still
 * covers `from` for this kind of owner). */
static int source_index(store_t *st, int kind, const char *source, int64_t from_ms) {
  if (!source) {
    int64_t t = wall_ms(), minute_ms = kind ? st->limits.minute_ms : st->limits.process_minute_ms;
    return from_ms >= t - st->limits.raw_ms ? SOURCE_RAW : from_ms >= t - minute_ms ? SOURCE_1M : SOURCE_1H;
  }
  return strcmp(source, "raw") == 0 ? SOURCE_RAW : strcmp(source, "1m") == 0 ? SOURCE_1M : SOURCE_1H;
}

static const char *const source_names[NSOURCES] = {"raw", "1m", "1h"};

/* A raw sample's point [t, value] of the metric (ctx), if it has one. */
typedef struct raw_points_s {
  json_t *points;
  int metric;
} raw_points_t;

static void add_raw_point(void *ctx, int64_t t, const layout_t *l, const double *row) {
  raw_points_t *rp = ctx;
  int at = l->pos[rp->metric];
  if (at >= 0 && isfinite(row[at])) json_array_append_new(rp->points, json_pack("[f, f]", t / 1e3, row[at]));
}

/* Owner o's points of metric m in [from, to] from table `src`, oldest
 * first (called under rlock). */
static json_t *owner_points(store_t *st, const owner_t *o, int m, int src, int64_t from_ms, int64_t to_ms) {
  int kind = OWNER_KIND(o);
  if (src == SOURCE_RAW) {
    raw_points_t rp = {json_array(), m};
    each_sample(st, st->rdb, o, from_ms, to_ms, add_raw_point, &rp);
    return rp.points;
  }
  char sql[192];
  snprintf(sql, sizeof sql, "SELECT t, layout, stats FROM %s WHERE %s = ? AND t BETWEEN ? AND ? ORDER BY t",
           history_tables[kind][src], owner_column[kind]);
  json_t *points = json_array();
  sqlite3_stmt *s = prepare_read(st, sql);
  if (s) {
    bind_owner(s, 1, o);
    sqlite3_bind_int64(s, 2, from_ms);
    sqlite3_bind_int64(s, 3, to_ms);
    while (sqlite3_step(s) == SQLITE_ROW) {
      const layout_t *l = layout_get(st, sqlite3_column_int64(s, 1), owner_set[kind]);
      const uint8_t *blob = sqlite3_column_blob(s, 2);
      json_t *p = rollup_point(l, m, sqlite3_column_int64(s, 0) / 1e3, blob, (size_t)sqlite3_column_bytes(s, 2));
      if (p) json_array_append_new(points, p);
    }
  }
  sqlite3_finalize(s);
  return points;
}

/* The answer's frame: what was asked, and the columns of its points. */
static json_t *history_frame(const history_query_t *q, int src) {
  json_t *out = json_pack("{s:s, s:s, s:f, s:f, s:I}", "metric", q->metric, "source", source_names[src], "from",
                          q->from_ms / 1e3, "to", q->to_ms / 1e3, "step", (json_int_t)(q->step_ms / 1000));
  if (src != SOURCE_RAW && q->step_ms <= 0)
    json_object_set_new(out, "columns", json_pack("[s, s, s, s, s]", "t", "avg", "min", "max", "last"));
  else json_object_set_new(out, "columns", json_pack("[s, s]", "t", "value"));
  return out;
}

static json_t *owner_history(store_t *st, const owner_t *o, const history_query_t *q) {
  int m = metric_set_index(owner_set[OWNER_KIND(o)], q->metric);
  if (m < 0) return NULL;
  int src = source_index(st, OWNER_KIND(o), q->source, q->from_ms);
  pthread_mutex_lock(&st->rlock);
  json_t *points = owner_points(st, o, m, src, q->from_ms, q->to_ms);
  pthread_mutex_unlock(&st->rlock);
  json_t *out = history_frame(q, src);
  json_object_set_new(out, "points", bucket(points, q->step_ms));
  return out;
}

json_t *store_history_json(store_t *st, int64_t process_id, const history_query_t *q) {
  return owner_history(st, &(owner_t){.process_id = process_id}, q);
}

json_t *store_host_history_json(store_t *st, const char *series, const history_query_t *q) {
  return owner_history(st, &(owner_t){.series = series ? series : HOST_SERIES_HOST}, q);
}

/* The mean of a series' values (index 1 of every point: value or avg). */
static double points_mean(json_t *points) {
  double sum = 0;
  size_t i;
  json_t *p;
  json_array_foreach(points, i, p) sum += json_number_value(json_array_get(p, 1));
  return i ? sum / (double)i : 0;
}

static int by_mean_desc(const void *a, const void *b) {
  double x = json_real_value(json_object_get(*(json_t *const *)a, "mean"));
  double y = json_real_value(json_object_get(*(json_t *const *)b, "mean"));
  return x < y ? 1 : x > y ? -1 : 0;
}

/* One executable's series (or the others'), as the answer lists it. */
static json_t *exe_series(store_t *st, const char *key, int m, int src, const history_query_t *q) {
  json_t *points = owner_points(st, &(owner_t){.series = key}, m, src, q->from_ms, q->to_ms);
  bool exe = strncmp(key, HOST_SERIES_EXE, strlen(HOST_SERIES_EXE)) == 0;
  json_t *o = json_pack("{s:s, s:f}", "series", key, "mean", points_mean(points));
  json_object_set_new(o, "exe", exe ? json_string(key + strlen(HOST_SERIES_EXE)) : json_null());
  json_object_set_new(o, "points", bucket(points, q->step_ms));
  return o;
}

json_t *store_host_executables_json(store_t *st, const history_query_t *q, int limit) {
  int m = metric_set_index(&host_set, q->metric);
  if (m < 0) return NULL;
  int src = source_index(st, 1, q->source, q->from_ms);
  char sql[192];
  snprintf(sql, sizeof sql, "SELECT DISTINCT series FROM %s WHERE t BETWEEN ? AND ? AND series <> '%s' LIMIT %d",
           history_tables[1][src], HOST_SERIES_HOST, HOST_SERIES_SCAN);
  pthread_mutex_lock(&st->rlock);
  json_t *all = json_array();
  sqlite3_stmt *s = prepare_read(st, sql);
  if (s) {
    sqlite3_bind_int64(s, 1, q->from_ms);
    sqlite3_bind_int64(s, 2, q->to_ms);
    while (sqlite3_step(s) == SQLITE_ROW)
      json_array_append_new(all, exe_series(st, (const char *)sqlite3_column_text(s, 0), m, src, q));
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->rlock);
  json_t *ranked = json_array(), *out = history_frame(q, src);
  size_t n = json_array_size(all);
  json_t **v = calloc(n ? n : 1, sizeof *v);
  for (size_t i = 0; v && i < n; i++) v[i] = json_array_get(all, i);
  if (v) qsort(v, n, sizeof *v, by_mean_desc);
  for (size_t i = 0; v && i < n && (int)i < limit; i++) json_array_append(ranked, v[i]);
  free(v);
  json_decref(all);
  json_object_set_new(out, "series", ranked);
  return out;
}

/* One class row as [t, [[size, slabs, live, utilisation, pinned_bytes,
 * free_bytes], ...]]; NULL if its bytes do not decode. */
static json_t *class_row(double t, const uint8_t *blob, size_t len) {
  double v[1 + HOST_NCLASS_FIELDS * ALLOC_SHM_MAX_CLASSES];
  size_t pos = 0;
  if (!blob || !unpack_values(blob, len, &pos, 1, NULL, v) || !(v[0] >= 0 && v[0] <= ALLOC_SHM_MAX_CLASSES)) return NULL;
  int n = (int)v[0];
  if (!unpack_values(blob, len, &pos, n * HOST_NCLASS_FIELDS, NULL, v + 1)) return NULL;
  json_t *classes = json_array();
  for (int i = 0; i < n; i++) {
    enum { X_BASE = -1,
#define X(field) CLASS_##field,
           HOST_CLASS_FIELDS(X)
#undef X
    };
    const double *k = v + 1 + i * HOST_NCLASS_FIELDS;
    double capacity = k[CLASS_slabs] * k[CLASS_blocks_per_slab], live = k[CLASS_live];
    json_array_append_new(classes, json_pack("[f, f, f, f, f, f]", k[CLASS_size], k[CLASS_slabs], live,
                                             capacity > 0 ? live / capacity : 0.0,
                                             k[CLASS_slabs] * k[CLASS_slab_bytes],
                                             capacity > live ? (capacity - live) * k[CLASS_size] : 0.0));
  }
  return json_pack("[f, o]", t, classes);
}

json_t *store_classes_json(store_t *st, int64_t process_id, int64_t from_ms, int64_t to_ms, int64_t step_ms) {
  pthread_mutex_lock(&st->rlock);
  json_t *rows = json_array();
  sqlite3_stmt *s = prepare_read(st, "SELECT t, classes FROM class_samples WHERE process_id = ? AND t BETWEEN ? AND ?"
                                     " ORDER BY t");
  int64_t last_bucket = INT64_MIN;
  if (s) {
    sqlite3_bind_int64(s, 1, process_id);
    sqlite3_bind_int64(s, 2, from_ms);
    sqlite3_bind_int64(s, 3, to_ms);
    while (json_array_size(rows) < CLASS_ROWS_MAX && sqlite3_step(s) == SQLITE_ROW) {
      int64_t t = sqlite3_column_int64(s, 0), b = step_ms > 0 ? t / step_ms : t;
      if (b == last_bucket) continue;   /* one row per step: the first */
      json_t *r = class_row(t / 1e3, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1));
      if (r) json_array_append_new(rows, r), last_bucket = b;
    }
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->rlock);
  json_t *out = json_pack("{s:f, s:f, s:I}", "from", from_ms / 1e3, "to", to_ms / 1e3, "step",
                          (json_int_t)(step_ms / 1000));
  json_object_set_new(out, "columns", json_pack("[s, s, s, s, s, s]", "size", "slabs", "live", "utilisation",
                                                "pinned_bytes", "free_bytes"));
  json_object_set_new(out, "points", rows);
  return out;
}

/* One pending row, inside the caller's transaction. */
static bool audit_insert(store_t *st, const store_audit_t *a, store_change_t *ch, int64_t now) {
  sqlite3_stmt *s = prepare(st, "INSERT INTO audit (t, client, process_id, pid, exe, knob, old_value, new_value,"
                                " result, effective, rule_id, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', NULL, ?, ?)");
  if (!s) return false;
  sqlite3_bind_int64(s, 1, now);
  sqlite3_bind_text(s, 2, a->client, -1, SQLITE_TRANSIENT);
  if (a->process_id > 0) sqlite3_bind_int64(s, 3, a->process_id);
  sqlite3_bind_int(s, 4, a->pid);
  sqlite3_bind_text(s, 5, a->exe, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 6, ch->knob, -1, SQLITE_TRANSIENT);
  if (ch->old_value) sqlite3_bind_text(s, 7, ch->old_value, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 8, ch->new_value, -1, SQLITE_TRANSIENT);
  if (a->rule_id > 0) sqlite3_bind_int64(s, 9, a->rule_id);
  if (a->reason) sqlite3_bind_text(s, 10, a->reason, -1, SQLITE_TRANSIENT);
  if (!step_done(st, s, "audit")) return false;
  ch->audit_id = sqlite3_last_insert_rowid(st->db);
  return true;
}

bool store_audit_returned(store_t *st, int64_t process_id, const char *client, int64_t since_ms, int64_t bytes) {
  pthread_mutex_lock(&st->lock);
  sqlite3_stmt *s = prepare(st, "UPDATE audit SET returned_bytes = ? WHERE process_id = ? AND client = ? AND t >= ?");
  bool ok = false;
  if (s) {
    sqlite3_bind_int64(s, 1, bytes);
    sqlite3_bind_int64(s, 2, process_id);
    sqlite3_bind_text(s, 3, client, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, since_ms);
    ok = step_done(st, s, "audit");
  }
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
  return ok;
}

bool store_audit_begin(store_t *st, const store_audit_t *a, store_change_t *changes, int n, char *why, size_t size) {
  int64_t now = wall_ms();
  pthread_mutex_lock(&st->lock);
  bool ok = exec(st, "BEGIN IMMEDIATE");
  for (int i = 0; ok && i < n; i++) ok = audit_insert(st, a, &changes[i], now);
  ok = ok && exec(st, "COMMIT");
  if (!ok) rollback(st);
  st->tx_failed = false;
  snprintf(why, size, "%s", ok ? "" : st->error);
  pthread_mutex_unlock(&st->lock);
  if (!ok) log_error("database: audit entries not written, the change is not applied: %s", why);
  return ok;
}

bool store_audit_end(store_t *st, int64_t audit_id, const char *result, const char *effective) {
  pthread_mutex_lock(&st->lock);
  sqlite3_stmt *s = prepare(st, "UPDATE audit SET result = ?, effective = ? WHERE id = ?");
  bool ok = false;
  if (s) {
    sqlite3_bind_text(s, 1, result, -1, SQLITE_TRANSIENT);
    if (effective) sqlite3_bind_text(s, 2, effective, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, audit_id);
    ok = step_done(st, s, "audit");
  }
  st->tx_failed = false;
  char error[sizeof st->error];
  snprintf(error, sizeof error, "%s", st->error);
  pthread_mutex_unlock(&st->lock);
  if (!ok) log_error("database: the outcome of audit entry %lld (%s) not written: %s", (long long)audit_id, result, error);
  return ok;
}

/* ---- heap profiles ---------------------------------------------------------- */

bool store_profile(store_t *st, int64_t process_id, int64_t t_ms, uint64_t number, const void *blob, size_t len) {
  pthread_mutex_lock(&st->lock);
  sqlite3_stmt *s = prepare(st, "INSERT OR REPLACE INTO profiles (process_id, t, number, area) VALUES (?, ?, ?, ?)");
  bool ok = false;
  if (s) {
    sqlite3_bind_int64(s, 1, process_id);
    sqlite3_bind_int64(s, 2, t_ms);
    sqlite3_bind_int64(s, 3, (int64_t)number);
    sqlite3_bind_blob(s, 4, blob, (int)len, SQLITE_STATIC);
    ok = step_done(st, s, "profile");
  }
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
  return ok;
}

void *store_profile_at(store_t *st, int64_t process_id, int64_t t_ms, size_t *len, int64_t *found_ms) {
  pthread_mutex_lock(&st->rlock);
  void *blob = NULL;
  sqlite3_stmt *s = prepare_read(st, "SELECT t, area FROM profiles WHERE process_id = ? AND t <= ? ORDER BY t DESC LIMIT 1");
  if (s) {
    sqlite3_bind_int64(s, 1, process_id);
    sqlite3_bind_int64(s, 2, t_ms);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 1) > 0) {
      *len = (size_t)sqlite3_column_bytes(s, 1);
      *found_ms = sqlite3_column_int64(s, 0);
      if ((blob = malloc(*len))) memcpy(blob, sqlite3_column_blob(s, 1), *len);
    }
    sqlite3_finalize(s);
  }
  pthread_mutex_unlock(&st->rlock);
  return blob;
}

json_t *store_profiles_json(store_t *st, int64_t process_id) {
  pthread_mutex_lock(&st->rlock);
  json_t *a = json_array();
  sqlite3_stmt *s = prepare_read(st, "SELECT t, number, length(area) FROM profiles WHERE process_id = ? ORDER BY t DESC LIMIT 2000");
  if (s) {
    sqlite3_bind_int64(s, 1, process_id);
    while (sqlite3_step(s) == SQLITE_ROW)
      json_array_append_new(a, json_pack("{s:f, s:I, s:I}", "t", sqlite3_column_int64(s, 0) / 1000.0, "number",
                                         (json_int_t)sqlite3_column_int64(s, 1), "bytes",
                                         (json_int_t)sqlite3_column_int64(s, 2)));
    sqlite3_finalize(s);
  }
  pthread_mutex_unlock(&st->rlock);
  return a;
}

json_t *store_audit_json(store_t *st, int64_t since_ms, int limit) {
  pthread_mutex_lock(&st->rlock);
  json_t *a = json_array();
  sqlite3_stmt *s = prepare_read(st, "SELECT id, t, client, process_id, pid, exe, knob, old_value, new_value, result,"
                                " effective, rule_id, reason, returned_bytes FROM audit WHERE t >= ? ORDER BY t DESC, id DESC"
                                " LIMIT ?");
  if (s) {
    sqlite3_bind_int64(s, 1, since_ms);
    sqlite3_bind_int(s, 2, limit);
    while (sqlite3_step(s) == SQLITE_ROW) {
      json_t *o = json_pack("{s:I, s:f, s:o, s:I, s:o, s:o, s:o, s:o}", "id", sqlite3_column_int64(s, 0), "time",
                            sqlite3_column_int64(s, 1) / 1e3, "client", column_string(s, 2), "pid",
                            sqlite3_column_int64(s, 4), "exe", column_string(s, 5), "knob", column_string(s, 6),
                            "new_value", column_string(s, 8), "result", column_string(s, 9));
      json_object_set_new(o, "old_value", column_text_or_null(s, 7));
      json_object_set_new(o, "effective", column_text_or_null(s, 10));
      json_object_set_new(o, "rule_id", sqlite3_column_type(s, 11) == SQLITE_NULL ? json_null()
                                                                                   : json_integer(sqlite3_column_int64(s, 11)));
      json_object_set_new(o, "reason", column_text_or_null(s, 12));
      json_object_set_new(o, "returned_bytes", sqlite3_column_type(s, 13) == SQLITE_NULL
                                                   ? json_null()
                                                   : json_integer(sqlite3_column_int64(s, 13)));
      json_array_append_new(a, o);
    }
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->rlock);
  return a;
}


json_t *store_rules_json(store_t *st) {
  pthread_mutex_lock(&st->rlock);
  json_t *a = json_array();
  sqlite3_stmt *s = prepare_read(st, "SELECT id, exe_glob, config, canary_pct, created, client FROM rules ORDER BY id");
  while (s && sqlite3_step(s) == SQLITE_ROW) {
    json_t *o = json_pack("{s:I, s:s, s:o, s:I, s:f, s:s}", "id", sqlite3_column_int64(s, 0), "exe_glob",
                          (const char *)sqlite3_column_text(s, 1), "config", column_json(s, 2), "canary_pct",
                          sqlite3_column_int64(s, 3), "created", sqlite3_column_int64(s, 4) / 1e3, "client",
                          (const char *)sqlite3_column_text(s, 5));
    json_array_append_new(a, o);
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->rlock);
  return a;
}

bool store_rule_applied(store_t *st, int64_t rule_id, int64_t process_id) {
  pthread_mutex_lock(&st->rlock);
  sqlite3_stmt *s = prepare_read(st, "SELECT 1 FROM audit WHERE rule_id = ? AND process_id = ? AND result = 'ok' LIMIT 1");
  bool applied = false;
  if (s) {
    sqlite3_bind_int64(s, 1, rule_id);
    sqlite3_bind_int64(s, 2, process_id);
    applied = sqlite3_step(s) == SQLITE_ROW;
  }
  sqlite3_finalize(s);
  pthread_mutex_unlock(&st->rlock);
  return applied;
}

/* One rule row inside the caller's transaction. */
static bool rule_insert(store_t *st, const char *exe_glob, const char *config_json, int canary_pct, const char *client,
                        int64_t now) {
  sqlite3_stmt *s = prepare(st, "INSERT INTO rules (exe_glob, config, canary_pct, created, client) VALUES (?, ?, ?, ?, ?)");
  if (!s) return false;
  sqlite3_bind_text(s, 1, exe_glob, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 2, config_json, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(s, 3, canary_pct);
  sqlite3_bind_int64(s, 4, now);
  sqlite3_bind_text(s, 5, client, -1, SQLITE_TRANSIENT);
  return step_done(st, s, "rule");
}

int64_t store_rule_add(store_t *st, const char *exe_glob, const char *config_json, int canary_pct,
                       const char *client) {
  int64_t now = wall_ms();
  pthread_mutex_lock(&st->lock);
  int64_t id = rule_insert(st, exe_glob, config_json, canary_pct, client, now) ? sqlite3_last_insert_rowid(st->db) : -1;
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
  return id;
}

bool store_rules_replace(store_t *st, const char *client, json_t *rules) {
  int64_t now = wall_ms();
  pthread_mutex_lock(&st->lock);
  bool ok = exec(st, "BEGIN IMMEDIATE");
  sqlite3_stmt *s = ok ? prepare(st, "DELETE FROM rules WHERE client = ?") : NULL;
  if (s) sqlite3_bind_text(s, 1, client, -1, SQLITE_TRANSIENT);
  ok = s && step_done(st, s, "rule delete");
  size_t i;
  json_t *rule;
  json_array_foreach(rules, i, rule) {
    char *config = ok ? json_dumps(json_object_get(rule, "config"), JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    ok = config && rule_insert(st, json_string_value(json_object_get(rule, "exe_glob")), config,
                               (int)json_integer_value(json_object_get(rule, "canary_pct")), client, now);
    free(config);
  }
  ok = ok && exec(st, "COMMIT");
  if (!ok) rollback(st);
  st->tx_failed = false;
  pthread_mutex_unlock(&st->lock);
  return ok;
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
  pthread_mutex_lock(&st->rlock);
  json_t *o = json_pack("{s:I, s:I, s:I}", "schema_version", (json_int_t)query_int_on(st, st->rdb, "PRAGMA user_version"),
                        "db_bytes", (json_int_t)db_bytes(st, st->rdb), "processes_alive",
                        (json_int_t)query_int_on(st, st->rdb, "SELECT count(*) FROM processes WHERE alive = 1"));
  pthread_mutex_unlock(&st->rlock);
  return o;
}
