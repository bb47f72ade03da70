-- Size, rows, dead rows, scans and the last vacuum and analyze of the tables of a schema
-- (pg_stat_user_tables: counters since the last statistics reset, moving with every query).
SELECT c.relname AS table_name,
       pg_catalog.pg_total_relation_size(c.oid) AS total_bytes,
       pg_catalog.pg_relation_size(c.oid) AS table_bytes,
       pg_catalog.pg_indexes_size(c.oid) AS index_bytes,
       s.n_live_tup AS live_rows,
       s.n_dead_tup AS dead_rows,
       s.seq_scan,
       s.idx_scan,
       s.last_vacuum,
       s.last_autovacuum,
       s.last_analyze,
       s.last_autoanalyze
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_user_tables AS s ON s.relid = c.oid
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
ORDER BY c.relname;
