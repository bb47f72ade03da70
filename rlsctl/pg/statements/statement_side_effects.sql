-- Tables whose statements can change something even when they affect no row: a
-- statement-level trigger (it fires for 0 rows too) or a rule (DO ALSO / INSTEAD).
SELECT c.relname AS table_name
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = ANY (%(tables)s)
  AND (EXISTS (SELECT FROM pg_catalog.pg_trigger AS t
               WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgtype::integer & 1 = 0)
       OR EXISTS (SELECT FROM pg_catalog.pg_rewrite AS r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'));
