-- Relations in the project's schema that no policy file declares and that a managed role can
-- reach (a sequence: read or set, which tells or changes every tenant's count): a privilege (on
-- the relation or on one of its columns, the owner's implicit ones included) held by a managed role, by PUBLIC, or by a role that is a member of a managed
-- role (the application's login role, a member of the app role). What drift reports as
-- "undeclared": a table made by hand, granted to the app, RLS off, is otherwise invisible to
-- rlsctl. `roles` are the managed roles but the owner role (which owns the tables and runs
-- the migrations: its reach says nothing). Declared tables of any phase are left out
-- (`tables`), and so are an extension's own relations. Partitions are not: a partition
-- granted directly is read without its parent's policies.
WITH managed AS (
    SELECT r.oid, r.rolname FROM pg_catalog.pg_roles AS r WHERE r.rolname = ANY (%(roles)s)
),
privileges AS (
    SELECT c.oid, acl.grantee, acl.privilege_type
    FROM pg_catalog.pg_class AS c,
         pg_catalog.aclexplode(COALESCE(c.relacl, pg_catalog.acldefault('r', c.relowner))) AS acl
    WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s)
    UNION
    SELECT a.attrelid, acl.grantee, acl.privilege_type || ' (columns)'
    FROM pg_catalog.pg_attribute AS a
    JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid,
         pg_catalog.aclexplode(a.attacl) AS acl
    WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s) AND a.attnum > 0 AND NOT a.attisdropped
),
reachable AS (
    SELECT p.oid, p.privilege_type,
           CASE WHEN p.grantee = 0 THEN 'PUBLIC'
                WHEN EXISTS (SELECT FROM managed AS m WHERE m.oid = p.grantee)
                THEN pg_catalog.pg_get_userbyid(p.grantee)::text
                ELSE pg_catalog.pg_get_userbyid(p.grantee)::text || ' (member of '
                     || (SELECT pg_catalog.string_agg(m.rolname::text, ', ' ORDER BY m.rolname)
                         FROM managed AS m WHERE pg_catalog.pg_has_role(p.grantee, m.oid, 'MEMBER')) || ')'
           END AS who
    FROM privileges AS p
    WHERE p.grantee = 0
       OR EXISTS (SELECT FROM managed AS m WHERE m.oid = p.grantee)
       OR (NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.oid = p.grantee)
           AND EXISTS (SELECT FROM managed AS m WHERE pg_catalog.pg_has_role(p.grantee, m.oid, 'MEMBER')))
)
SELECT c.relname::text AS name,
       CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence'
                      ELSE CASE WHEN c.relispartition THEN 'partition' ELSE 'table' END END AS what,
       c.relrowsecurity AS rls,
       ARRAY(SELECT DISTINCT r.who || ': ' || r.privilege_type FROM reachable AS r WHERE r.oid = c.oid
             ORDER BY 1) AS reached_by,
       ARRAY(SELECT child.relname::text FROM pg_catalog.pg_inherits AS i
             JOIN pg_catalog.pg_class AS child ON child.oid = i.inhrelid
             WHERE i.inhparent = c.oid AND child.relname = ANY (%(tables)s)
               AND child.relnamespace = c.relnamespace
             ORDER BY 1) AS parent_of
FROM pg_catalog.pg_class AS c
WHERE c.relnamespace = pg_catalog.to_regnamespace(%(schema)s)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND NOT (c.relname = ANY (%(tables)s))
  -- A sequence whose last_value a managed role may read (SELECT) or set (UPDATE), unless rlsctl
  -- manages its grants with its table's (`sequences`: a declared table's serial, rlsctl.declare.compile).
  AND (c.relkind <> 'S'
       OR (EXISTS (SELECT FROM reachable AS r WHERE r.oid = c.oid AND r.privilege_type IN ('SELECT', 'UPDATE'))
           AND NOT (c.relname = ANY (%(sequences)s))))
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
  -- Reached by a managed role, or the parent a declared table inherits from (whoever reads the
  -- parent reads the child's rows with the parent's policies, not the child's: ALTER TABLE ... INHERIT).
  AND (EXISTS (SELECT FROM reachable AS r WHERE r.oid = c.oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_inherits AS i
                  JOIN pg_catalog.pg_class AS child ON child.oid = i.inhrelid
                  WHERE i.inhparent = c.oid AND child.relname = ANY (%(tables)s)
                    AND child.relnamespace = c.relnamespace))
ORDER BY 1;
