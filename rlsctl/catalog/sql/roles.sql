-- Roles whose names start with a prefix, with the attributes that matter to RLS.
SELECT r.rolname AS name,
       r.rolsuper AS superuser,
       r.rolbypassrls AS bypassrls,
       r.rolcanlogin AS login,
       r.rolcreaterole AS createrole,
       ARRAY(SELECT g.rolname FROM pg_catalog.pg_auth_members AS m
             JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
             WHERE m.member = r.oid ORDER BY 1) AS member_of
FROM pg_catalog.pg_roles AS r
WHERE pg_catalog.starts_with(r.rolname, %(prefix)s)
ORDER BY r.rolname;
