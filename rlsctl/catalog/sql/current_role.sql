-- The role rlsctl is connected as, and whether RLS binds it.
SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole
FROM pg_catalog.pg_roles AS r
WHERE r.rolname = current_user;
