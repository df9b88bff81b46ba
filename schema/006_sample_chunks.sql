-- 006_sample_chunks.sql - raw samples stored by the run, not one per row.
-- A raw row took ~150 bytes on disk for ~90 bytes of packed values: its
-- key and its index entry were the rest, and nearly all of a sample's
-- values are those of the sample before it.  A chunk (agent/src/chunk.h)
-- holds an owner's consecutive samples: the first one's values packed as
-- a raw row held them, then each further sample as the values that
-- changed since the one before, so ~35 bytes a sample; one key and index
-- entry per chunk.  `t` and `number` are the first sample's, `last_t`
-- and `last_number` the newest's; `n` counts them.  A chunk spans less
-- than a minute and stays under 1 KB (on its B-tree page).  Existing rows
-- become one-sample chunks: the same bytes.  Retention drops a chunk once
-- its first sample is older than the raw retention.

CREATE TABLE sample_chunks (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,           -- the first sample's time
  number      INTEGER NOT NULL,           -- the first sample's number in its segment
  last_t      INTEGER NOT NULL,
  last_number INTEGER NOT NULL,
  n           INTEGER NOT NULL,           -- samples in the chunk
  layout      INTEGER NOT NULL REFERENCES layouts (id),
  stats       BLOB NOT NULL,
  PRIMARY KEY (process_id, t, number)
) WITHOUT ROWID;
INSERT INTO sample_chunks SELECT process_id, t, number, t, number, 1, layout, stats FROM samples;
DROP TABLE samples;
CREATE INDEX sample_chunks_t ON sample_chunks (t);

-- The host's series (003_host.sql) the same way; `number` is always 0.
CREATE TABLE host_sample_chunks (
  series      TEXT NOT NULL,
  t           INTEGER NOT NULL,
  number      INTEGER NOT NULL,
  last_t      INTEGER NOT NULL,
  last_number INTEGER NOT NULL,
  n           INTEGER NOT NULL,
  layout      INTEGER NOT NULL REFERENCES layouts (id),
  stats       BLOB NOT NULL,
  PRIMARY KEY (series, t, number)
) WITHOUT ROWID;
INSERT INTO host_sample_chunks SELECT series, t, 0, t, 0, 1, layout, stats FROM host_samples;
DROP TABLE host_samples;
CREATE INDEX host_sample_chunks_t ON host_sample_chunks (t);
