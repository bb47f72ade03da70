-- The indexes of a schema's tables: their columns in order (expressions left out), size and
-- how often they were scanned since the last statistics reset.
SELECT t.relname AS table_name,
       i.relname AS index_name,
       ARRAY(SELECT a.attname::text
             FROM pg_catalog.unnest(x.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k (attnum, position)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = k.attnum
             ORDER BY k.position) AS columns,
       pg_catalog.pg_relation_size(i.oid) AS bytes,
       s.idx_scan
FROM pg_catalog.pg_index AS x
JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_class AS t ON t.oid = x.indrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = t.relnamespace
LEFT JOIN pg_catalog.pg_stat_user_indexes AS s ON s.indexrelid = i.oid
WHERE n.nspname = %(schema)s
ORDER BY t.relname, i.relname;
