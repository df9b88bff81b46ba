-- 005_profiles.sql - heap profiles kept over time (allocd --profile-interval,
-- agent/src/profile.c): a live process with profiling on is asked for its
-- profile at most once per interval, and the profile area it wrote is kept
-- as it was read and validated (header, modules, stacks, frames: the
-- area's first `used` bytes, alloc_shm.h), zlib-compressed, so that
-- `?base=T` can diff against it.  Validated again when read back.  Kept as
-- long as the 1-minute rollups, and trimmed first over the size cap.
CREATE TABLE profiles (
  process_id  INTEGER NOT NULL REFERENCES processes (id),
  t           INTEGER NOT NULL,           -- when the process wrote it (ms)
  number      INTEGER NOT NULL,           -- its profile number
  area        BLOB NOT NULL,              -- zlib(area[0 .. used))
  PRIMARY KEY (process_id, t)
) WITHOUT ROWID;
CREATE INDEX profiles_t ON profiles (t);
