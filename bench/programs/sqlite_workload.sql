-- sqlite_workload.sql - the sqlite3 real-program workload of bench/run.
--
-- An in-memory database (the allocator, not the disk, is what differs
-- between runs): bench/run feeds this script to `sqlite3 :memory:` after a
-- first line setting the row count, `CREATE TEMP TABLE params(rows)`.
-- Rows come from a recursive CTE with hash-like expressions (no random()),
-- so every run computes the same output, which bench/run compares across
-- allocators.  Index builds, GROUP BY, sorting, window functions, string
-- building and deletes drive sqlite's many small and page-sized allocations.
.bail on
.mode list
PRAGMA cache_size = -65536;

CREATE TABLE items(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, price REAL, qty INTEGER);
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < (SELECT rows FROM params))
INSERT INTO items(id, grp, name, price, qty)
SELECT n,
       (n * 2654435761) % 211,
       printf('item-%07d-%s', (n * 40503) % 1000003, substr('abcdefghijklmnopqrstuvwxyz', 1 + n % 26, 1 + n % 11)),
       ((n * 7919) % 100000) / 100.0,
       (n * 31) % 50
FROM seq;

CREATE INDEX items_grp ON items(grp, price);
CREATE INDEX items_name ON items(name);
SELECT 'rows', count(*), sum(qty), printf('%.2f', sum(price)) FROM items;
SELECT 'groups', count(*), printf('%.4f', avg(c)) FROM (SELECT grp, count(*) AS c FROM items GROUP BY grp);
SELECT 'top', id, name FROM items ORDER BY price DESC, name LIMIT 3;
SELECT 'rank', count(*) FROM (
  SELECT id, rank() OVER (PARTITION BY grp ORDER BY price DESC, id) AS rnk FROM items) WHERE rnk <= 3;
SELECT 'concat', length(group_concat(name, ',')) FROM items WHERE qty < 10;
SELECT 'distinct', count(DISTINCT substr(name, 6, 4)) FROM items;

UPDATE items SET name = name || '-updated', qty = qty + 1 WHERE id % 3 = 0;
DELETE FROM items WHERE id % 5 = 0;
CREATE TABLE copy AS SELECT * FROM items ORDER BY name;
SELECT 'after', count(*), sum(qty), sum(length(name)) FROM copy;
DROP TABLE copy;
