-- The policies PostgreSQL applies to a role for some commands on a table: those for the command
-- or for ALL, granted to the role, to PUBLIC, or to a role it inherits (an assertion's message
-- names them). Read from pg_policy rather than the pg_policies view, whose role names cannot
-- tell membership apart.
SELECT p.polname AS name,
       CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END AS kind,
       CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                     WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS command,
       ARRAY(SELECT CASE WHEN pr.oid = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(pr.oid) END
             FROM pg_catalog.unnest(p.polroles) AS pr(oid) ORDER BY 1) AS roles,
       pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using_expr,
       pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr
FROM pg_catalog.pg_policy AS p
JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
  AND (p.polcmd = '*' OR p.polcmd = ANY (%(commands)s::"char"[]))
  AND EXISTS (SELECT FROM pg_catalog.unnest(p.polroles) AS pr(oid)
              WHERE pr.oid = 0 OR pg_catalog.pg_has_role(%(role)s, pr.oid, 'USAGE'))
ORDER BY p.polpermissive DESC, p.polcmd, p.polname;
