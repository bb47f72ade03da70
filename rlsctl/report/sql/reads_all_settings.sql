-- Whether this session sees every setting (SUPERUSER, or the privileges of pg_read_all_settings).
SELECT r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'pg_read_all_settings', 'USAGE') AS reads_all
FROM pg_catalog.pg_roles AS r
WHERE r.rolname = current_user;
