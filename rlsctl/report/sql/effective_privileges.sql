-- Effective privileges on the tables and views of a schema, for the roles that matter here:
-- the given roles (the project's), every role holding a privilege on one of those relations
-- or on a column of one, and every role that is a member (directly or not) of any of them.
-- A privilege is listed when the role has it (has_table_privilege, so through PUBLIC and
-- inherited memberships too); `via` says where it comes from: SUPERUSER, ownership, the
-- role's own grant, PUBLIC, or the first role (by name) it inherits the privilege from.
-- Column privileges are listed where the role lacks the privilege on the whole table.
WITH RECURSIVE rel AS (
    SELECT c.oid, c.relname, c.relowner, c.relacl
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
),
acl AS (
    SELECT r.oid AS rel, a.grantee, a.privilege_type
    FROM rel AS r,
         LATERAL pg_catalog.aclexplode(COALESCE(r.relacl, pg_catalog.acldefault('r', r.relowner))) AS a
),
col_acl AS (
    SELECT r.oid AS rel, att.attname, a.grantee, a.privilege_type
    FROM rel AS r
    JOIN pg_catalog.pg_attribute AS att
      ON att.attrelid = r.oid AND att.attnum > 0 AND NOT att.attisdropped AND att.attacl IS NOT NULL,
         LATERAL pg_catalog.aclexplode(att.attacl) AS a
),
seeds AS (
    SELECT ro.oid FROM pg_catalog.pg_roles AS ro WHERE ro.rolname = ANY (%(roles)s)
    UNION SELECT acl.grantee FROM acl WHERE acl.grantee <> 0
    UNION SELECT col_acl.grantee FROM col_acl WHERE col_acl.grantee <> 0
),
subjects AS (
    SELECT seeds.oid FROM seeds
    UNION
    SELECT m.member FROM pg_catalog.pg_auth_members AS m JOIN subjects AS s ON m.roleid = s.oid
),
privilege AS (
    SELECT p.name, p.position
    FROM (VALUES ('SELECT', 1), ('INSERT', 2), ('UPDATE', 3), ('DELETE', 4), ('TRUNCATE', 5),
                 ('REFERENCES', 6), ('TRIGGER', 7)) AS p (name, position)
),
pairs AS (
    SELECT ro.oid AS role_oid, ro.rolname, ro.rolsuper, r.oid AS rel, r.relname, r.relowner, p.name AS privilege,
           p.position
    FROM subjects AS s
    JOIN pg_catalog.pg_roles AS ro ON ro.oid = s.oid
    CROSS JOIN rel AS r
    CROSS JOIN privilege AS p
),
whole AS (
    SELECT pairs.*, pg_catalog.has_table_privilege(pairs.role_oid, pairs.rel, pairs.privilege) AS held
    FROM pairs
)
SELECT w.rolname AS role, w.relname AS table_name, w.privilege, NULL::text[] AS columns,
       CASE
           WHEN w.rolsuper THEN 'SUPERUSER'
           WHEN w.relowner = w.role_oid THEN 'owner'
           WHEN EXISTS (SELECT 1 FROM acl WHERE acl.rel = w.rel AND acl.grantee = w.role_oid
                                             AND acl.privilege_type = w.privilege) THEN 'granted'
           WHEN EXISTS (SELECT 1 FROM acl WHERE acl.rel = w.rel AND acl.grantee = 0
                                             AND acl.privilege_type = w.privilege) THEN 'PUBLIC'
           ELSE COALESCE(
               (SELECT 'member of ' || g.rolname
                FROM acl JOIN pg_catalog.pg_roles AS g ON g.oid = acl.grantee
                WHERE acl.rel = w.rel AND acl.privilege_type = w.privilege AND g.oid <> w.role_oid
                  AND pg_catalog.pg_has_role(w.role_oid, g.oid, 'USAGE')
                ORDER BY g.rolname LIMIT 1),
               'member of the owner ' || pg_catalog.pg_get_userbyid(w.relowner))
       END AS via,
       w.position
FROM whole AS w
WHERE w.held
UNION ALL
SELECT w.rolname, w.relname, w.privilege,
       ARRAY(SELECT att.attname::text FROM pg_catalog.pg_attribute AS att
             WHERE att.attrelid = w.rel AND att.attnum > 0 AND NOT att.attisdropped
               AND pg_catalog.has_column_privilege(w.role_oid, w.rel, att.attnum, w.privilege)
             ORDER BY att.attname),
       CASE
           WHEN EXISTS (SELECT 1 FROM col_acl WHERE col_acl.rel = w.rel AND col_acl.grantee = w.role_oid
                                                 AND col_acl.privilege_type = w.privilege) THEN 'granted'
           WHEN EXISTS (SELECT 1 FROM col_acl WHERE col_acl.rel = w.rel AND col_acl.grantee = 0
                                                 AND col_acl.privilege_type = w.privilege) THEN 'PUBLIC'
           ELSE COALESCE(
               (SELECT 'member of ' || g.rolname
                FROM col_acl JOIN pg_catalog.pg_roles AS g ON g.oid = col_acl.grantee
                WHERE col_acl.rel = w.rel AND col_acl.privilege_type = w.privilege AND g.oid <> w.role_oid
                  AND pg_catalog.pg_has_role(w.role_oid, g.oid, 'USAGE')
                ORDER BY g.rolname LIMIT 1),
               'inherited')
       END,
       w.position
FROM whole AS w
WHERE NOT w.held AND w.privilege IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
  AND pg_catalog.has_any_column_privilege(w.role_oid, w.rel, w.privilege)
ORDER BY 2, 1, 6;
