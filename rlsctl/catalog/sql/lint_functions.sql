-- Functions in user schemas with what matters to security, and who may execute them.
SELECT n.nspname AS schema,
       p.proname AS name,
       pg_catalog.oidvectortypes(p.proargtypes) AS args,
       p.prosecdef AS security_definer,
       p.proleakproof AS leakproof,
       p.provolatile AS volatility,
       (SELECT pg_catalog.substr(setting, pg_catalog.length('search_path=') + 1)
        FROM pg_catalog.unnest(p.proconfig) AS setting
        WHERE pg_catalog.starts_with(setting, 'search_path=')) AS search_path,
       l.lanname AS language,
       p.prosrc AS body,
       pg_catalog.pg_get_userbyid(p.proowner) AS owner,
       pg_catalog.pg_get_function_result(p.oid) AS returns,
       EXISTS (SELECT FROM pg_catalog.pg_depend AS d
               WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                 AND d.objid = p.oid AND d.deptype = 'e') AS from_extension,
       ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END
             FROM pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) AS a
             WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner) AS executors
FROM pg_catalog.pg_proc AS p
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND p.prokind IN ('f', 'p')
ORDER BY 1, 2, 3;
