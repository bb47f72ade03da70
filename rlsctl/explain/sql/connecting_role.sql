-- Who runs the baselines, and whether RLS applies to it.
SELECT r.rolname AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls
FROM pg_catalog.pg_roles AS r
WHERE r.rolname = current_user;
