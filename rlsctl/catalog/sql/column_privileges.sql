-- Column-level privileges from attacl. Grantee 0 is PUBLIC. One row per column,
-- grantee and privilege, whoever granted it; grantable if any grantor gave it WITH GRANT OPTION.
SELECT c.relname AS table_name,
       a.attname AS column_name,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END AS grantee,
       acl.privilege_type AS privilege,
       pg_catalog.bool_or(acl.is_grantable) AS grantable
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
CROSS JOIN LATERAL pg_catalog.aclexplode(a.attacl) AS acl
WHERE n.nspname = %(schema)s
  AND a.attnum > 0 AND NOT a.attisdropped
GROUP BY 1, 2, 3, 4
ORDER BY 1, 3, 4, 2;
