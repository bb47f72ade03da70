-- An index a failed CREATE INDEX CONCURRENTLY left behind, INVALID (one row when it exists).
SELECT 1 AS invalid
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND NOT i.indisvalid;
