-- sqlite_workload.sql - the sqlite3 workload of the program tests.
--
-- run_program.sh feeds this to `sqlite3 work.db` (an on-disk database, so
-- the page cache and the journal are used too).  100k rows come from a
-- recursive CTE with a hash-like expression instead of random(), so every run
-- produces the same rows; every query has an ORDER BY so the output order is
-- fixed.  Indexes, joins, GROUP BY, window functions and string building
-- exercise sqlite's many small allocations (parse trees, sorter, b-tree pages).
.bail on
.mode list
.separator |
PRAGMA cache_size = -4000;

CREATE TABLE items(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, price REAL, qty INTEGER);
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 100000)
INSERT INTO items(id, grp, name, price, qty)
SELECT n,
       (n * 2654435761) % 97,
       printf('item-%06d-%s', (n * 40503) % 100000, substr('abcdefghijklmnopqrstuvwxyz', 1 + n % 26, 1 + n % 7)),
       ((n * 7919) % 100000) / 100.0,
       (n * 31) % 50
FROM seq;

CREATE INDEX items_grp ON items(grp);
CREATE INDEX items_name ON items(name);
CREATE TABLE groups AS
  SELECT grp, count(*) AS cnt, sum(qty) AS total_qty FROM items GROUP BY grp;
CREATE UNIQUE INDEX groups_grp ON groups(grp);

SELECT 'rows', count(*), sum(qty), printf('%.2f', sum(price)) FROM items;
SELECT 'group', grp, count(*), printf('%.2f', avg(price)), min(name), max(name)
  FROM items GROUP BY grp ORDER BY grp LIMIT 12;
SELECT 'top', i.id, i.name, i.price FROM items i JOIN groups g USING (grp)
  WHERE g.cnt > 1030 ORDER BY i.price DESC, i.id LIMIT 10;
SELECT 'rank', id, grp, rnk FROM (
  SELECT id, grp, rank() OVER (PARTITION BY grp ORDER BY price DESC, id) AS rnk FROM items)
  WHERE rnk <= 2 AND grp < 5 ORDER BY grp, rnk;
SELECT 'names', count(DISTINCT substr(name, 1, 9)), length(group_concat(name, ',')) FROM items WHERE qty = 7;
SELECT 'like', count(*) FROM items WHERE name LIKE 'item-0%-c%';

-- Update and delete a third of the rows, then rebuild: page splits and frees.
UPDATE items SET name = name || '-upd', qty = qty + 1 WHERE id % 3 = 0;
DELETE FROM items WHERE id % 5 = 0;
VACUUM;
SELECT 'after', count(*), sum(qty), sum(length(name)) FROM items;
PRAGMA integrity_check;
