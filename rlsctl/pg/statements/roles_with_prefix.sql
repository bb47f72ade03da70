-- Roles whose names start with a prefix (cleaning up after a demo on a shared server).
SELECT rolname AS name FROM pg_catalog.pg_roles
WHERE pg_catalog.starts_with(rolname, %(prefix)s)
ORDER BY rolname;
