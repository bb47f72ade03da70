-- EXECUTE on PostgreSQL's own functions given to the project's roles (or PUBLIC): those
-- rlsctl grants on purpose (pg_read_file to the keys role in file mode) and any others.
SELECT n.nspname AS schema,
       p.proname AS name,
       pg_catalog.oidvectortypes(p.proargtypes) AS arg_types,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END AS grantee,
       pg_catalog.pg_has_role(current_user, p.proowner, 'MEMBER') AS acts_as_owner
FROM pg_catalog.pg_proc AS p
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
CROSS JOIN LATERAL pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) AS acl
WHERE p.oid = ANY (%(functions)s::pg_catalog.regprocedure[])
  AND acl.privilege_type = 'EXECUTE'
  AND acl.grantee <> p.proowner
  AND pg_catalog.pg_get_userbyid(acl.grantee) = ANY (%(roles)s)
ORDER BY 1, 2, 3, 4;
