-- Policies on the pg_temp copies of managed tables (the normalisation probe).
SELECT c.relname AS table_name,
       p.polname AS name,
       pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using_expr,
       pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr
FROM pg_catalog.pg_policy AS p
JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()
ORDER BY 1, 2;
