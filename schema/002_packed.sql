-- 002_packed.sql - statistics stored packed instead of as JSON.
-- A sample's or rollup's numbers become one BLOB of tagged varints
-- (agent/src/pack.h) in the order of a layout: the list of metric names
-- the row was written with, so a later allocd that adds a statistic still
-- reads old rows.  A sample row shrinks from ~1.3 KB to ~150 bytes and a
-- rollup row from ~4 KB to ~400, and rows no longer spill onto overflow
-- pages.  Existing rows are converted by allocd_layout() and allocd_pack(),
-- SQL functions allocd defines on its connection: this migration runs only
-- inside allocd.

CREATE TABLE layouts (
  id          INTEGER PRIMARY KEY,
  metrics     TEXT NOT NULL UNIQUE        -- JSON array of metric names, in packed order
);
INSERT INTO layouts (metrics) VALUES (allocd_layout());

-- Raw snapshots: every metric's value (pack.h).
CREATE TABLE samples_packed (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,
  number      INTEGER NOT NULL,           -- the snapshot's number in its segment
  layout      INTEGER NOT NULL REFERENCES layouts (id),
  stats       BLOB NOT NULL,
  PRIMARY KEY (process_id, t, number)
) WITHOUT ROWID;
INSERT INTO samples_packed
  SELECT process_id, t, number, (SELECT id FROM layouts), allocd_pack(stats, 'sample') FROM samples;
DROP TABLE samples;
ALTER TABLE samples_packed RENAME TO samples;
CREATE INDEX samples_t ON samples (t);

-- Rollups: every metric's last value, then min, max and average relative
-- to it (rollup.h).
CREATE TABLE rollup_1m_packed (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,           -- start of the minute
  n           INTEGER NOT NULL,           -- snapshots aggregated
  layout      INTEGER NOT NULL REFERENCES layouts (id),
  stats       BLOB NOT NULL,
  PRIMARY KEY (process_id, t)
) WITHOUT ROWID;
INSERT INTO rollup_1m_packed
  SELECT process_id, t, n, (SELECT id FROM layouts), allocd_pack(stats, 'rollup') FROM rollup_1m;
DROP TABLE rollup_1m;
ALTER TABLE rollup_1m_packed RENAME TO rollup_1m;
CREATE INDEX rollup_1m_t ON rollup_1m (t);

CREATE TABLE rollup_1h_packed (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,           -- start of the hour
  n           INTEGER NOT NULL,
  layout      INTEGER NOT NULL REFERENCES layouts (id),
  stats       BLOB NOT NULL,
  PRIMARY KEY (process_id, t)
) WITHOUT ROWID;
INSERT INTO rollup_1h_packed
  SELECT process_id, t, n, (SELECT id FROM layouts), allocd_pack(stats, 'rollup') FROM rollup_1h;
DROP TABLE rollup_1h;
ALTER TABLE rollup_1h_packed RENAME TO rollup_1h;
CREATE INDEX rollup_1h_t ON rollup_1h (t);
