-- User triggers on the tables of a schema, with everything that decides when
-- they fire: timing, level, events, UPDATE OF columns, WHEN, arguments, state.
-- tgtype bits: 1 ROW, 2 BEFORE, 64 INSTEAD OF (else AFTER); 4 INSERT, 8 DELETE,
-- 16 UPDATE, 32 TRUNCATE. The WHEN condition is read from the definition's
-- parse tree (rlsctl.pg.sql.trigger_when): tgqual refers to OLD and NEW, which
-- pg_get_expr cannot print.
SELECT c.relname AS table_name,
       t.tgname AS name,
       fn_ns.nspname AS function_schema,
       fn.proname AS function_name,
       t.tgenabled AS enabled,
       concat_ws(' OR ',
                 CASE WHEN t.tgtype::integer & 4 <> 0 THEN 'INSERT' END,
                 CASE WHEN t.tgtype::integer & 8 <> 0 THEN 'DELETE' END,
                 CASE WHEN t.tgtype::integer & 16 <> 0 THEN 'UPDATE' END,
                 CASE WHEN t.tgtype::integer & 32 <> 0 THEN 'TRUNCATE' END) AS events,
       CASE WHEN t.tgtype::integer & 2 <> 0 THEN 'BEFORE'
            WHEN t.tgtype::integer & 64 <> 0 THEN 'INSTEAD OF'
            ELSE 'AFTER' END AS timing,
       CASE WHEN t.tgtype::integer & 1 <> 0 THEN 'ROW' ELSE 'STATEMENT' END AS level,
       ARRAY(SELECT a.attname
             FROM pg_catalog.unnest(t.tgattr::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = t.tgrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       t.tgqual IS NOT NULL AS has_when,
       pg_catalog.encode(t.tgargs, 'escape') AS args,
       pg_catalog.pg_get_triggerdef(t.oid) AS definition
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_proc AS fn ON fn.oid = t.tgfoid
JOIN pg_catalog.pg_namespace AS fn_ns ON fn_ns.oid = fn.pronamespace
WHERE n.nspname = %(schema)s
  AND NOT t.tgisinternal
ORDER BY 1, 2;
