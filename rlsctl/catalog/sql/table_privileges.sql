-- Table-level privileges from relacl (aclexplode sees grants of every role,
-- unlike information_schema). Grantee 0 is PUBLIC. One row per table, grantee
-- and privilege, whoever granted it; grantable if any grantor gave it WITH GRANT OPTION.
SELECT c.relname AS table_name,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END AS grantee,
       acl.privilege_type AS privilege,
       pg_catalog.bool_or(acl.is_grantable) AS grantable
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS acl
WHERE n.nspname = %(schema)s
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND acl.grantee <> c.relowner
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;
