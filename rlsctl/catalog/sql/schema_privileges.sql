-- Privileges on schemas (nspacl), one row per grantee and privilege. Grantee 0 is PUBLIC.
SELECT n.nspname AS schema,
       pg_catalog.pg_get_userbyid(n.nspowner) AS owner,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END AS grantee,
       acl.privilege_type AS privilege
FROM pg_catalog.pg_namespace AS n
CROSS JOIN LATERAL pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) AS acl
WHERE n.nspname = ANY (%(schemas)s)
  AND acl.grantee <> n.nspowner
ORDER BY 1, 3, 4;
