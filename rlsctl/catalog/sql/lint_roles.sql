-- Every role: can it log in, does it bypass RLS, what is it a member of.
SELECT r.rolname AS name, r.rolcanlogin AS login, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
       r.oid = 10 AS bootstrap,
       ARRAY(SELECT g.rolname FROM pg_catalog.pg_auth_members AS m
             JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid WHERE m.member = r.oid) AS member_of
FROM pg_catalog.pg_roles AS r
WHERE NOT pg_catalog.starts_with(r.rolname, 'pg_')
ORDER BY 1;
