-- 008_chunks_by_time.sql - a process's raw chunks keyed by time first.
-- Every tick appends one sample to each live process's newest chunk
-- (agent/src/chunk.h), rewriting its row.  Keyed (process_id, t, number),
-- each process's newest chunk sat after its older ones: at 1000
-- processes, once each had a few closed chunks, a tick's 1000 updated
-- rows lay on ~1000 different B-tree pages, and the commit wrote them all
-- to the WAL (~4 MB a tick for ~40 KB of new samples) and each checkpoint
-- copied them again.  Keyed (t, process_id, number), the chunks still
-- being appended to (those begun in the last minute) are together at the
-- end of the table, a few to a page, and the closed ones before them are
-- not touched again.  An index on (process_id, t, number) serves a
-- process's history, its newest chunk and the size cap's counts, as the
-- key did; the index on t alone is no longer needed.  The rows are the
-- same, copied.
CREATE TABLE sample_chunks_by_time (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,           -- the first sample's time
  number      INTEGER NOT NULL,           -- the first sample's number in its segment
  last_t      INTEGER NOT NULL,
  last_number INTEGER NOT NULL,
  n           INTEGER NOT NULL,           -- samples in the chunk
  layout      INTEGER NOT NULL REFERENCES layouts (id),
  stats       BLOB NOT NULL,
  PRIMARY KEY (t, process_id, number)
) WITHOUT ROWID;
INSERT INTO sample_chunks_by_time (process_id, t, number, last_t, last_number, n, layout, stats)
  SELECT process_id, t, number, last_t, last_number, n, layout, stats FROM sample_chunks;
DROP TABLE sample_chunks;
ALTER TABLE sample_chunks_by_time RENAME TO sample_chunks;
CREATE INDEX sample_chunks_process ON sample_chunks (process_id, t, number);
