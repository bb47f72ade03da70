-- What the planner knows of the project's tables: its row estimate (reltuples, -1 when the table
-- was never vacuumed or analyzed) and when statistics were last gathered.
SELECT c.relname AS name,
       c.reltuples::bigint AS rows,
       GREATEST(s.last_analyze, s.last_autoanalyze) AS analyzed
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_all_tables AS s ON s.relid = c.oid
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
ORDER BY c.relname;
