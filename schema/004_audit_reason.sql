-- 004_audit_reason.sql - why a change was made, and what it gave back.
-- allocd's own changes (the reclamation policy, agent/src/reclaim.c) say
-- why in `reason` ("host memory pressure 23% (some, 10 s)", "cgroup
-- /db at 94% of its limit", "pressure ended"), and a change that returns
-- memory records how much in `returned_bytes` once the process has
-- published a snapshot after it.  NULL for operators' and rules' changes.
ALTER TABLE audit ADD COLUMN reason TEXT;
ALTER TABLE audit ADD COLUMN returned_bytes INTEGER;
