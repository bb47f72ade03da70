-- Constraints left NOT VALID in a schema (a phase must leave none).
SELECT c.relname AS table_name, con.conname AS name
FROM pg_catalog.pg_constraint AS con
JOIN pg_catalog.pg_class AS c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND NOT con.convalidated
ORDER BY 1, 2;
