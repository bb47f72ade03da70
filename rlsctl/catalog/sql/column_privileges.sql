-- Column-level privileges from attacl. Grantee 0 is PUBLIC. One row per column,
-- grantee, privilege and grantor (NULL: the table owner), as in table_privileges.sql.
-- System columns carry no grant rlsctl declares, except ctid (retention's block walk).
SELECT n.nspname AS schema,
       c.relname AS table_name,
       a.attname AS column_name,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END AS grantee,
       acl.privilege_type AS privilege,
       acl.is_grantable AS grantable,
       CASE WHEN acl.grantor <> c.relowner THEN pg_catalog.pg_get_userbyid(acl.grantor) END AS grantor,
       pg_catalog.pg_has_role(current_user, acl.grantor, 'MEMBER') AS acts_as_grantor
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
CROSS JOIN LATERAL pg_catalog.aclexplode(a.attacl) AS acl
WHERE n.nspname = ANY (%(schemas)s)
  AND (a.attnum > 0 OR a.attname = 'ctid') AND NOT a.attisdropped
ORDER BY 1, 2, 4, 5, 3, 7 NULLS FIRST;
