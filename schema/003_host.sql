-- 003_host.sql - the host's own history, and size classes over time.
-- The host series are what allocd sums over the live processes each tick
-- (agent/src/host.h): `series` is 'host' (the whole host), 'exe:<path>'
-- (one executable: the HOST_EXES wasting most bytes at that tick) or
-- 'other' (the rest together).  Rows are packed like a process's
-- (002_packed.sql), in the order of their own layout (the host metrics'
-- names), with the same rollups and retention.

CREATE TABLE host_samples (
  series      TEXT NOT NULL,
  t           INTEGER NOT NULL,
  layout      INTEGER NOT NULL REFERENCES layouts (id),
  stats       BLOB NOT NULL,
  PRIMARY KEY (series, t)
) WITHOUT ROWID;
CREATE INDEX host_samples_t ON host_samples (t);

CREATE TABLE host_rollup_1m (
  series      TEXT NOT NULL,
  t           INTEGER NOT NULL,           -- start of the minute
  n           INTEGER NOT NULL,           -- ticks aggregated
  layout      INTEGER NOT NULL REFERENCES layouts (id),
  stats       BLOB NOT NULL,
  PRIMARY KEY (series, t)
) WITHOUT ROWID;
CREATE INDEX host_rollup_1m_t ON host_rollup_1m (t);

CREATE TABLE host_rollup_1h (
  series      TEXT NOT NULL,
  t           INTEGER NOT NULL,           -- start of the hour
  n           INTEGER NOT NULL,
  layout      INTEGER NOT NULL REFERENCES layouts (id),
  stats       BLOB NOT NULL,
  PRIMARY KEY (series, t)
) WITHOUT ROWID;
CREATE INDEX host_rollup_1h_t ON host_rollup_1h (t);

-- A process's size classes in use, every 10 s: their count, then per class
-- size, slab_bytes, blocks_per_slab, slabs, live (packed varints, host.h).
-- `minute` marks the first row of each minute: the others go with the raw
-- retention, the marked ones with the 1-minute rollups'.
CREATE TABLE class_samples (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,
  minute      INTEGER NOT NULL,           -- 1: kept as long as 1-minute rollups
  classes     BLOB NOT NULL,
  PRIMARY KEY (process_id, t)
) WITHOUT ROWID;
CREATE INDEX class_samples_t ON class_samples (minute, t);
