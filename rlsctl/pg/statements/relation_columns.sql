-- Every table outside PostgreSQL's own schemas, with its columns and their types: what a
-- rollback's down scripts drop or retype is the difference before and after them
-- (rlsctl/migrate/losses.py). `counted`: this session can count every row once forced
-- row-level security is lifted (inside the probe's savepoint): it bypasses RLS, or it has
-- the privileges of the table's owner.
SELECT n.nspname::text AS schema,
       c.relname::text AS name,
       c.relforcerowsecurity AS forced,
       (r.rolsuper OR r.rolbypassrls OR NOT c.relrowsecurity
        OR pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')) AS counted,
       ARRAY(SELECT a.attname::text || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
             FROM pg_catalog.pg_attribute AS a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_roles AS r ON r.rolname = current_user
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
ORDER BY 1, 2;
