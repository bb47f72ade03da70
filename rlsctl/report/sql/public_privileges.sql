-- What PUBLIC (every role, present and future) holds on the objects of some schemas: tables,
-- views, sequences and their columns, functions (EXECUTE by default unless revoked; those of
-- extensions left out: the extension's own business), and the schemas themselves.
WITH obj AS (
    SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                          ELSE 'table' END AS kind,
           n.nspname || '.' || c.relname AS name,
           COALESCE(c.relacl, pg_catalog.acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))
               AS acl
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY (%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    UNION ALL
    SELECT 'column', n.nspname || '.' || c.relname || '.' || att.attname, att.attacl
    FROM pg_catalog.pg_attribute AS att
    JOIN pg_catalog.pg_class AS c ON c.oid = att.attrelid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY (%(schemas)s) AND att.attnum > 0 AND NOT att.attisdropped AND att.attacl IS NOT NULL
    UNION ALL
    SELECT 'function', n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
           COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))
    FROM pg_catalog.pg_proc AS p
    JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
    WHERE n.nspname = ANY (%(schemas)s)
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS d
                      WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid
                        AND d.deptype = 'e')
    UNION ALL
    SELECT 'schema', n.nspname, COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))
    FROM pg_catalog.pg_namespace AS n
    WHERE n.nspname = ANY (%(schemas)s)
)
SELECT obj.kind, obj.name, a.privilege_type AS privilege
FROM obj, LATERAL pg_catalog.aclexplode(obj.acl) AS a
WHERE a.grantee = 0
ORDER BY 1, 2, 3;
