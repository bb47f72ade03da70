-- RLS policies on the tables of some schemas, expressions as the server stores them,
-- and the functions they call (pg_depend): a function cannot be dropped before them.
SELECT n.nspname AS schema,
       c.relname AS table_name,
       p.polname AS name,
       CASE p.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert'
                     WHEN 'w' THEN 'update' WHEN 'd' THEN 'delete' ELSE 'all' END AS command,
       p.polpermissive AS permissive,
       ARRAY(SELECT CASE WHEN r.oid = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(r.oid) END
             FROM pg_catalog.unnest(p.polroles) AS r(oid)
             ORDER BY 1) AS roles,
       pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using_expr,
       pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr,
       ARRAY(SELECT DISTINCT fn_ns.nspname || '.' || fn.proname || '(' || pg_catalog.oidvectortypes(fn.proargtypes) || ')'
             FROM pg_catalog.pg_depend AS d
             JOIN pg_catalog.pg_proc AS fn ON fn.oid = d.refobjid
             JOIN pg_catalog.pg_namespace AS fn_ns ON fn_ns.oid = fn.pronamespace
             WHERE d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid = p.oid
               AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
             ORDER BY 1) AS functions
FROM pg_catalog.pg_policy AS p
JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%(schemas)s)
ORDER BY n.nspname, c.relname, p.polname;
