-- Index key columns (leading first), the leading key when it is an expression, the access method,
-- whether it is partial and valid, and foreign keys, in user schemas.
SELECT 'index' AS kind, n.nspname AS schema, t.relname AS table_name, i.relname AS name,
       ARRAY(SELECT a.attname FROM pg_catalog.unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_catalog.pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= x.indnkeyatts ORDER BY k.ord) AS columns,
       NULL::text AS ref_table,
       CASE WHEN x.indkey[0] = 0 THEN pg_catalog.pg_get_indexdef(x.indexrelid, 1, true) END AS expression,
       am.amname AS method, pg_catalog.pg_get_expr(x.indpred, x.indrelid) AS predicate,
       x.indisvalid AND x.indisready AS valid
FROM pg_catalog.pg_index AS x
JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_am AS am ON am.oid = i.relam
JOIN pg_catalog.pg_class AS t ON t.oid = x.indrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = t.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
UNION ALL
SELECT 'fk', n.nspname, c.relname, k.conname,
       ARRAY(SELECT a.attname FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = u.attnum ORDER BY u.ord),
       rn.nspname || '.' || r.relname, NULL, NULL, NULL, NULL
FROM pg_catalog.pg_constraint AS k
JOIN pg_catalog.pg_class AS c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class AS r ON r.oid = k.confrelid
JOIN pg_catalog.pg_namespace AS rn ON rn.oid = r.relnamespace
WHERE k.contype = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema');
