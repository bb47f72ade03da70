-- Ordinary and partitioned tables of some schemas, with owner and RLS flags
-- (the project's, and the helper schema's: rlsctl's key store and bookkeeping).
SELECT n.nspname AS schema,
       c.relname AS name,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       c.relrowsecurity AS rls_enabled,
       c.relforcerowsecurity AS rls_forced,
       c.relkind AS kind
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s)
  AND c.relkind IN ('r', 'p')
ORDER BY n.nspname, c.relname;
