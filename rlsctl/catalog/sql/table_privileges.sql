-- Table-level privileges from relacl (aclexplode sees grants of every role,
-- unlike information_schema). Grantee 0 is PUBLIC. One row per table, grantee,
-- privilege and grantor: a grant counts only with its grantor, because revoking
-- a grant option CASCADE removes what that grantee passed on. grantor is NULL
-- for the table owner (the grantor apply itself uses); acts_as_grantor says
-- whether the session may SET ROLE to the grantor (superuser or member) to
-- revoke such a grant.
SELECT n.nspname AS schema,
       c.relname AS table_name,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END AS grantee,
       acl.privilege_type AS privilege,
       acl.is_grantable AS grantable,
       CASE WHEN acl.grantor <> c.relowner THEN pg_catalog.pg_get_userbyid(acl.grantor) END AS grantor,
       pg_catalog.pg_has_role(current_user, acl.grantor, 'MEMBER') AS acts_as_grantor,
       c.relkind = 'S' AS is_sequence  -- granted and revoked ON SEQUENCE (USAGE is no table's)
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS acl
WHERE n.nspname = ANY (%(schemas)s)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND acl.grantee <> c.relowner
ORDER BY 1, 2, 3, 4, 6 NULLS FIRST;
