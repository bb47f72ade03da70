-- Why impersonating a role would prove nothing: it bypasses RLS, it owns
-- (has the privileges of the owner of) a table whose RLS is not forced, or the
-- login cannot become it (SET ROLE needs the session user's membership), so
-- every statement as it fails with "permission denied to set role".
SELECT r.rolname AS role,
       pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') AS can_switch,
       pg_catalog.format('GRANT %%I TO %%I', r.rolname, session_user) AS grant_to_login,
       r.rolsuper AS superuser,
       r.rolbypassrls AS bypassrls,
       ARRAY(SELECT c.relname
             FROM pg_catalog.pg_class AS c
             JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
             WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
               AND c.relname = ANY (%(tables)s)
               AND pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE')
             ORDER BY 1) AS owns,
       ARRAY(SELECT c.relname
             FROM pg_catalog.pg_class AS c
             JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
             WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
               AND c.relname = ANY (%(tables)s)
               AND pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE')
               AND NOT c.relforcerowsecurity
             ORDER BY 1) AS owns_unforced
FROM pg_catalog.pg_roles AS r
WHERE r.rolname = ANY (%(roles)s);
