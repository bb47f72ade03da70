-- Functions of a schema: signature, owner, security, volatility, settings, body,
-- who may execute them (and whether the owner still may), whether an extension owns them, and
-- whether the session may act as the owner (a trusted extension's functions belong to the
-- bootstrap superuser: a non-superuser operator cannot revoke their EXECUTE).
SELECT p.proname AS name,
       pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
       pg_catalog.oidvectortypes(p.proargtypes) AS arg_types,
       pg_catalog.pg_get_function_result(p.oid) AS returns,
       pg_catalog.pg_get_userbyid(p.proowner) AS owner,
       p.prosecdef AS security_definer,
       p.proleakproof AS leakproof,
       p.proisstrict AS strict,
       p.provolatile AS volatility,
       p.proconfig AS config,
       l.lanname AS language,
       p.prosrc AS body,
       ARRAY(SELECT CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END
             FROM pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) AS acl
             WHERE acl.privilege_type = 'EXECUTE' AND acl.grantee <> p.proowner
             ORDER BY 1) AS executors,
       EXISTS (SELECT FROM pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) AS acl
               WHERE acl.privilege_type = 'EXECUTE' AND acl.grantee = p.proowner) AS owner_executes,
       EXISTS (SELECT FROM pg_catalog.pg_depend AS d
               WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                 AND d.objid = p.oid AND d.deptype = 'e') AS from_extension,
       pg_catalog.pg_has_role(current_user, p.proowner, 'MEMBER') AS acts_as_owner
FROM pg_catalog.pg_proc AS p
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
WHERE n.nspname = %(schema)s
ORDER BY p.proname, 2;
