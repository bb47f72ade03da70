-- User triggers on the tables of a schema. tgtype bits: 4 INSERT, 8 DELETE, 16 UPDATE.
SELECT c.relname AS table_name,
       t.tgname AS name,
       fn_ns.nspname AS function_schema,
       fn.proname AS function_name,
       t.tgenabled AS enabled,
       concat_ws(' OR ',
                 CASE WHEN t.tgtype::integer & 4 <> 0 THEN 'INSERT' END,
                 CASE WHEN t.tgtype::integer & 8 <> 0 THEN 'DELETE' END,
                 CASE WHEN t.tgtype::integer & 16 <> 0 THEN 'UPDATE' END) AS events
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_proc AS fn ON fn.oid = t.tgfoid
JOIN pg_catalog.pg_namespace AS fn_ns ON fn_ns.oid = fn.pronamespace
WHERE n.nspname = %(schema)s
  AND NOT t.tgisinternal
ORDER BY 1, 2;
