/* store.h - allocd's history in SQLite: processes, raw samples, rollups,
 * the host's series (host.h), size classes over time, the audit log and
 * rules.  Two connections to one WAL database: the
 * writer (the collector's transaction per tick, retention, audit, rules)
 * and the reader (the HTTP threads' queries), so a query never waits for
 * a tick to commit. */
#ifndef ALLOCD_STORE_H
#define ALLOCD_STORE_H

#include "host.h"
#include "rollup.h"
#include "snapshot.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct store_s store_t;

/* How long history is kept.  A process's rollups are kept for less than
 * the host's and its executables' series (host.h): at 1000 processes a
 * week of every process's minutes alone would outgrow the default size
 * cap, where an executable's series costs the same for all its processes
 * (docs/performance.md, "allocd: collection cost"). */
typedef struct store_limits_s {
  int64_t raw_ms;       /* keep raw samples this long */
  int64_t minute_ms;    /* keep the host's 1-minute rollups (and hourly size classes) this long */
  int64_t hour_ms;      /* keep the host's 1-hour rollups (and the audit log) this long */
  int64_t process_minute_ms;   /* keep a process's 1-minute rollups this long */
  int64_t process_hour_ms;     /* keep a process's 1-hour rollups (and exited processes) this long */
  int64_t max_bytes;    /* the database file stays below this size */
} store_limits_t;

/* What identifies a process, and what we know of it. */
typedef struct store_proc_s {
  int pid;
  uint64_t start_time, pidns;
  unsigned uid;
  const char *exe, *comm, *version;
} store_proc_t;

/* Open (creating if needed) and migrate.  NULL with a message in err. */
store_t *store_open(const char *path, const store_limits_t *limits, char *err, size_t errlen);
void store_close(store_t *st);

/* ---- the collector's tick: all calls between begin and commit are one
 * transaction; the store stays locked in between. */
void store_begin(store_t *st);
bool store_commit(store_t *st);   /* false if the commit failed (rolled back) */
/* The process's id (-1 on error) and when it was first seen. */
int64_t store_process(store_t *st, const store_proc_t *p, int64_t now_ms, int64_t *first_seen_ms);
/* 1 stored, 0 stored before (skip it: it is in the rollups already), -1 error. */
int store_sample(store_t *st, int64_t process_id, int64_t t_ms, uint64_t number, const double v[SNAP_NMETRICS]);
/* Write a rollup, merged into the row already stored for its period (an
 * earlier run's, or the process's before it went away): r must hold only
 * snapshots that row does not. */
bool store_rollup(store_t *st, int64_t process_id, const rollup_t *r);
/* The host's series (host.h): a tick's sums, 1 stored, 0 stored before, -1
 * error; and the rollups they complete, merged like a process's. */
int store_host_sample(store_t *st, const char *series, int64_t t_ms, const double v[HOST_NMETRICS]);
bool store_host_rollup(store_t *st, const char *series, const rollup_t *r);
/* A process's size classes (host_pack_classes); `hourly` marks the
 * hour's first row, kept as long as the 1-minute rollups (the others go
 * with the raw samples). */
bool store_classes(store_t *st, int64_t process_id, int64_t t_ms, bool hourly, const uint8_t *packed, size_t len);
/* The newest full snapshot (JSON) of a process, kept for after it exits. */
bool store_latest(store_t *st, int64_t process_id, int64_t now_ms, const char *snapshot_json);
/* snapshot_json may be NULL (keep the one stored). */
bool store_exited(store_t *st, int64_t process_id, int64_t t_ms, const char *snapshot_json);
/* Mark every process still alive in the database as exited (start-up:
 * they belong to an earlier run unless the collector finds them again),
 * first completing their rollups in progress from the samples stored if
 * that run could not write them (it was killed). */
void store_mark_all_exited(store_t *st, int64_t t_ms);

/* Retention and the size cap, a bounded amount of work per call (deletes of
 * at most a few thousand rows per table).  Takes the lock itself.  Returns
 * true when a batch was full: more is due, call again soon. */
bool store_retain(store_t *st, int64_t now_ms);

/* ---- queries for the API (on the reader connection) ---- */
/* Processes that have exited (the collector knows the live ones), newest
 * first, leaving out those whose id is in skip[0..nskip). */
json_t *store_exited_json(store_t *st, const int64_t *skip, size_t nskip);
/* The newest process with this pid (alive first); NULL if none. */
json_t *store_process_json(store_t *st, int pid);
/* A history query: one metric in [from, to], from source "raw", "1m" or
 * "1h" (NULL: the finest table that still covers `from`), averaged into
 * buckets of step_ms if above 0. */
typedef struct history_query_s {
  const char *metric, *source;
  int64_t from_ms, to_ms, step_ms;
} history_query_t;

/* Time series of one of a process's metrics (snap_set); NULL if the metric
 * is not one. */
json_t *store_history_json(store_t *st, int64_t process_id, const history_query_t *q);
/* The same for a host series (NULL: the whole host) and a host metric. */
json_t *store_host_history_json(store_t *st, const char *series, const history_query_t *q);
/* The executables' series (and "other") with data in the range, the
 * `limit` with the highest mean of the metric first; at most
 * HOST_SERIES_SCAN distinct series are looked at. */
#define HOST_SERIES_SCAN 256
json_t *store_host_executables_json(store_t *st, const history_query_t *q, int limit);
/* A process's size classes over time, one row per step (the first in
 * each), at most CLASS_ROWS_MAX rows. */
#define CLASS_ROWS_MAX 5000
json_t *store_classes_json(store_t *st, int64_t process_id, int64_t from_ms, int64_t to_ms, int64_t step_ms);

/* The audit log.  A change is recorded before it is sent ("pending"), all
 * knobs of a request in one transaction, so a change that cannot be
 * recorded is not made; its outcome then replaces "pending". */
typedef struct store_audit_s {
  const char *client;   /* the HTTP client's address, or "rule:<id>" */
  int64_t process_id;
  int pid;
  const char *exe;
  int64_t rule_id;      /* 0 for an operator's change */
  const char *reason;   /* why allocd made the change itself, else NULL */
} store_audit_t;

typedef struct store_change_s {
  const char *knob, *old_value, *new_value;   /* old_value may be NULL */
  int64_t audit_id;                           /* set by store_audit_begin */
} store_change_t;

/* False (nothing written, the reason logged and left in why) if the rows
 * could not be written: the caller must not apply the changes. */
bool store_audit_begin(store_t *st, const store_audit_t *a, store_change_t *changes, int n, char *why, size_t size);
bool store_audit_end(store_t *st, int64_t audit_id, const char *result, const char *effective);
json_t *store_audit_json(store_t *st, int64_t since_ms, int limit);
/* What the changes `client` made to a process since since_ms returned
 * (bytes), on their audit rows. */
bool store_audit_returned(store_t *st, int64_t process_id, const char *client, int64_t since_ms, int64_t bytes);

int64_t store_rule_add(store_t *st, const char *exe_glob, const char *config_json, int canary_pct,
                       const char *client);
json_t *store_rules_json(store_t *st);
/* Replace every rule whose client is `client` by `rules` ([{exe_glob,
 * config, canary_pct}]), in one transaction; false if nothing changed. */
bool store_rules_replace(store_t *st, const char *client, json_t *rules);
/* Has this rule already been applied (audited "ok") to this process?  An
 * allocd restart finds every process anew: rules must not undo what an
 * operator changed by hand since. */
bool store_rule_applied(store_t *st, int64_t rule_id, int64_t process_id);
bool store_rule_delete(store_t *st, int64_t id);   /* false if no such rule */

/* Health: schema version, database size. */
/* Heap profiles (schema/005_profiles.sql): store one (its own
 * transaction); the newest at or before t_ms (malloc'ed, *len bytes, its
 * time in *found_ms) or NULL; the list of a process's stored profiles. */
bool store_profile(store_t *st, int64_t process_id, int64_t t_ms, uint64_t number, const void *blob, size_t len);
void *store_profile_at(store_t *st, int64_t process_id, int64_t t_ms, size_t *len, int64_t *found_ms);
json_t *store_profiles_json(store_t *st, int64_t process_id);

json_t *store_health_json(store_t *st);
/* Last error of a failed write, for logs. */
const char *store_error(store_t *st);

#endif
