-- A role's attributes that make every policy pass over it (for roles rlsctl does not manage:
-- the platform's, declared external).
SELECT r.rolsuper AS superuser, r.rolbypassrls AS bypassrls
FROM pg_catalog.pg_roles AS r
WHERE r.rolname = %(name)s;
