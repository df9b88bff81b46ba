-- 007_classes_hourly.sql - size classes over time kept coarser.
-- A process's size classes were written every 10 s, kept for the raw
-- retention, and each minute's first kept as long as the 1-minute
-- rollups: ~400 bytes a row, 4 MiB per process for 7 days, as much as all
-- its other history.  allocd now writes them once a minute, and keeps
-- each hour's first (marked `hourly` as it is written) as long as the
-- 1-minute rollups: 120 + 168 rows, 0.11 MiB per process.  The rows
-- already stored keep their place only if they are the first marked row
-- of their hour; the others go with the raw retention.
ALTER TABLE class_samples RENAME COLUMN minute TO hourly;
UPDATE class_samples SET hourly = 0
  WHERE hourly = 1 AND EXISTS (SELECT 1 FROM class_samples c
    WHERE c.process_id = class_samples.process_id AND c.hourly = 1
      AND c.t >= class_samples.t - class_samples.t % 3600000 AND c.t < class_samples.t);
