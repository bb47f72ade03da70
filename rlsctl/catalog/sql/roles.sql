-- Roles by name (or by prefix), with the attributes that matter to RLS, their
-- memberships and comment.
SELECT r.rolname AS name,
       r.rolsuper AS superuser,
       r.rolbypassrls AS bypassrls,
       r.rolcanlogin AS login,
       r.rolcreaterole AS createrole,
       r.rolcreatedb AS createdb,
       ARRAY(SELECT g.rolname FROM pg_catalog.pg_auth_members AS m
             JOIN pg_catalog.pg_roles AS g ON g.oid = m.roleid
             WHERE m.member = r.oid ORDER BY 1) AS member_of,
       pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment
FROM pg_catalog.pg_roles AS r
WHERE (%(prefix)s <> '' AND pg_catalog.starts_with(r.rolname, %(prefix)s)) OR r.rolname = ANY (%(names)s)
ORDER BY r.rolname;
