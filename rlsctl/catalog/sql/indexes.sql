-- Indexes of every table in a schema, with their key columns in order
-- (expression keys show as NULL).
SELECT t.relname AS table_name,
       i.relname AS name,
       x.indisunique AS is_unique,
       ARRAY(SELECT a.attname
             FROM pg_catalog.unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_catalog.pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= x.indnkeyatts
             ORDER BY k.ord) AS columns
FROM pg_catalog.pg_index AS x
JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_class AS t ON t.oid = x.indrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = t.relnamespace
WHERE n.nspname = %(schema)s
ORDER BY t.relname, i.relname;
