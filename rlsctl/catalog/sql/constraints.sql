-- Primary and foreign keys of every table in a schema, columns in key order.
SELECT c.relname AS table_name,
       con.conname AS name,
       con.contype AS kind,
       ARRAY(SELECT a.attname
             FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       ref.relname AS ref_table,
       ARRAY(SELECT a.attname
             FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS ref_columns,
       con.convalidated AS validated
FROM pg_catalog.pg_constraint AS con
JOIN pg_catalog.pg_class AS c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_class AS ref ON ref.oid = con.confrelid
WHERE n.nspname = %(schema)s
  AND con.contype IN ('p', 'f', 'u', 'c')
ORDER BY c.relname, con.conname;
