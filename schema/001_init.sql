-- 001_init.sql - allocd's history database, first version.
-- Applied by allocd in one transaction; PRAGMA user_version records it.
-- Times are milliseconds since the Unix epoch.  Statistics are stored as a
-- JSON object {name: value} (names: liballoc/include/alloc_shm.h), so a new
-- statistic needs no migration.

-- One row per process ever seen, identified by (pid, start_time, pidns):
-- a reused pid is a new process.
CREATE TABLE processes (
  id          INTEGER PRIMARY KEY,
  pid         INTEGER NOT NULL,
  start_time  INTEGER NOT NULL,           -- clock ticks after boot (/proc/<pid>/stat)
  pidns       INTEGER NOT NULL,           -- inode of the pid namespace
  uid         INTEGER NOT NULL,
  exe         TEXT NOT NULL,
  comm        TEXT NOT NULL,
  version     TEXT NOT NULL,              -- liballoc version of the process
  first_seen  INTEGER NOT NULL,
  last_seen   INTEGER NOT NULL,
  alive       INTEGER NOT NULL DEFAULT 1,
  exited_at   INTEGER,
  latest      TEXT,                       -- newest full snapshot (JSON)
  UNIQUE (pid, start_time, pidns)
);
CREATE INDEX processes_alive ON processes (alive, pid);

-- Raw snapshots, kept for the raw retention window.
CREATE TABLE samples (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,
  number      INTEGER NOT NULL,           -- the snapshot's number in its segment
  stats       TEXT NOT NULL,              -- {name: value}, derived ratios included
  PRIMARY KEY (process_id, t, number)
) WITHOUT ROWID;
CREATE INDEX samples_t ON samples (t);

-- Rollups: per process and period, {name: [min, max, avg, last]}.
CREATE TABLE rollup_1m (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,           -- start of the minute
  n           INTEGER NOT NULL,           -- snapshots aggregated
  stats       TEXT NOT NULL,
  PRIMARY KEY (process_id, t)
) WITHOUT ROWID;
CREATE INDEX rollup_1m_t ON rollup_1m (t);

CREATE TABLE rollup_1h (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,           -- start of the hour
  n           INTEGER NOT NULL,
  stats       TEXT NOT NULL,
  PRIMARY KEY (process_id, t)
) WITHOUT ROWID;
CREATE INDEX rollup_1h_t ON rollup_1h (t);

-- Every configuration change pushed to a process, with its outcome.
CREATE TABLE audit (
  id          INTEGER PRIMARY KEY,
  t           INTEGER NOT NULL,
  client      TEXT NOT NULL,              -- remote address of the HTTP client
  process_id  INTEGER,                    -- processes.id (kept after the process row goes)
  pid         INTEGER NOT NULL,
  exe         TEXT NOT NULL,
  knob        TEXT NOT NULL,
  old_value   TEXT,
  new_value   TEXT NOT NULL,
  result      TEXT NOT NULL,              -- "ok", or why it failed
  effective   TEXT,
  rule_id     INTEGER                     -- set when a rule made the change
);
CREATE INDEX audit_t ON audit (t);

-- Persistent configuration policies.
CREATE TABLE rules (
  id          INTEGER PRIMARY KEY,
  exe_glob    TEXT NOT NULL,              -- fnmatch(3) pattern on the executable path
  config      TEXT NOT NULL,              -- {knob: value}
  canary_pct  INTEGER NOT NULL DEFAULT 100 CHECK (canary_pct BETWEEN 1 AND 100),
  created     INTEGER NOT NULL,
  client      TEXT NOT NULL
);
