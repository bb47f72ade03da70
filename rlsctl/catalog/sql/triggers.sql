-- User triggers on the tables of a schema.
SELECT c.relname AS table_name,
       t.tgname AS name,
       fn_ns.nspname AS function_schema,
       fn.proname AS function_name,
       t.tgenabled AS enabled
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_proc AS fn ON fn.oid = t.tgfoid
JOIN pg_catalog.pg_namespace AS fn_ns ON fn_ns.oid = fn.pronamespace
WHERE n.nspname = %(schema)s
  AND NOT t.tgisinternal
ORDER BY 1, 2;
