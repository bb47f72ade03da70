-- Where each installed extension lives, and whether rlsctl may call it there: its functions
-- run inside the keys role's code, so nobody but a DBA may be able to create objects in that
-- schema (a planted overload would otherwise be called instead). A DBA is a superuser or the
-- schema's owner, unless that owner is this session's own role (or one it is a member of):
-- the migration login is not a DBA. `writers` names the others who may create there.
SELECT e.extname AS name,
       n.nspname AS schema,
       pg_catalog.pg_get_userbyid(n.nspowner)::text AS schema_owner,
       CASE WHEN EXISTS (SELECT FROM pg_catalog.aclexplode(n.nspacl) AS acl
                         WHERE acl.grantee = 0 AND acl.privilege_type = 'CREATE')
            THEN ARRAY['PUBLIC']  -- everyone: naming each role would say less
            ELSE ARRAY(
                SELECT r.rolname::text
                FROM pg_catalog.pg_roles AS r
                WHERE NOT r.rolsuper AND r.oid <> n.nspowner
                  AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
                ORDER BY 1)
       END AS writers,
       (NOT owner.rolsuper
        AND NOT (SELECT s.rolsuper FROM pg_catalog.pg_roles AS s WHERE s.rolname = current_user)
        AND pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER')) AS owner_is_session,
       -- ALTER EXTENSION ... SET SCHEMA needs the extension and each member function and type:
       -- a trusted extension created by a non-superuser (pgcrypto on RDS) is the login's, but
       -- its functions are the bootstrap superuser's, so only a DBA can move it.
       ((pg_catalog.pg_has_role(current_user, e.extowner, 'MEMBER')
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                         LEFT JOIN pg_catalog.pg_proc AS p
                                ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = d.objid
                         LEFT JOIN pg_catalog.pg_type AS t
                                ON d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = d.objid
                         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                           AND d.refobjid = e.oid AND d.deptype = 'e'
                           AND NOT pg_catalog.pg_has_role(current_user, COALESCE(p.proowner, t.typowner, e.extowner),
                                                          'MEMBER')))
        OR (SELECT s.rolsuper FROM pg_catalog.pg_roles AS s WHERE s.rolname = current_user)) AS movable
FROM pg_catalog.pg_extension AS e
JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
JOIN pg_catalog.pg_roles AS owner ON owner.oid = n.nspowner
ORDER BY 1;
