-- Default privileges, one row per (creator, object type, schema, grantee,
-- privilege), the creator's own privileges left out. Two sources:
-- - the creator roles of the project (%(roles)s), in full. Global defaults
--   (schema NULL) replace PostgreSQL's built-in ones, so a role without a global
--   entry for a type has the built-in default (acldefault: EXECUTE on functions
--   and USAGE on types for PUBLIC); per-schema entries add to the global default;
-- - any other role's explicit entries, global or in one of %(schemas)s, that give
--   something to a managed role (%(grantees)s) or PUBLIC: a migration tool's role
--   could otherwise open every table it creates before apply has secured it.
-- objtype: r tables, S sequences, f functions, T types, n schemas.
-- repairable: whether the session may change the creator's defaults (ALTER DEFAULT
-- PRIVILEGES FOR ROLE needs membership in it, or superuser).
WITH creators AS (
    SELECT r.oid, r.rolname FROM pg_catalog.pg_roles AS r WHERE r.rolname = ANY (%(roles)s)
), kinds (objtype, acl_kind) AS (
    -- acldefault() names sequences 's' where pg_default_acl says 'S'
    VALUES ('r'::"char", 'r'::"char"), ('S', 's'), ('f', 'f'), ('T', 'T'), ('n', 'n')
), global_defaults AS (
    SELECT c.oid AS creator, k.objtype, NULL::name AS schema,
           COALESCE(d.defaclacl, pg_catalog.acldefault(k.acl_kind, c.oid)) AS acl
    FROM creators AS c
    CROSS JOIN kinds AS k
    LEFT JOIN pg_catalog.pg_default_acl AS d
           ON d.defaclrole = c.oid AND d.defaclobjtype = k.objtype AND d.defaclnamespace = 0
), schema_defaults AS (
    SELECT d.defaclrole, d.defaclobjtype, n.nspname, d.defaclacl
    FROM pg_catalog.pg_default_acl AS d
    JOIN creators AS c ON c.oid = d.defaclrole
    JOIN pg_catalog.pg_namespace AS n ON n.oid = d.defaclnamespace
), other_defaults AS (
    SELECT d.defaclrole, d.defaclobjtype, n.nspname, d.defaclacl
    FROM pg_catalog.pg_default_acl AS d
    LEFT JOIN pg_catalog.pg_namespace AS n ON n.oid = d.defaclnamespace
    WHERE d.defaclrole NOT IN (SELECT oid FROM creators)
      AND (d.defaclnamespace = 0 OR n.nspname = ANY (%(schemas)s))
)
SELECT pg_catalog.pg_get_userbyid(a.creator) AS creator,
       a.objtype::text AS objtype,
       a.schema::text AS schema,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END AS grantee,
       acl.privilege_type AS privilege,
       pg_catalog.bool_or(acl.is_grantable) AS grantable,
       pg_catalog.pg_has_role(current_user, a.creator, 'MEMBER') AS repairable
FROM (SELECT * FROM global_defaults
      UNION ALL SELECT * FROM schema_defaults
      UNION ALL SELECT * FROM other_defaults) AS a
CROSS JOIN LATERAL pg_catalog.aclexplode(a.acl) AS acl
WHERE acl.grantee <> a.creator
  AND (a.creator IN (SELECT oid FROM creators)
       OR acl.grantee = 0
       OR pg_catalog.pg_get_userbyid(acl.grantee) = ANY (%(grantees)s))
GROUP BY 1, 2, 3, 4, 5, 7
ORDER BY 1, 2, 3, 4, 5;
