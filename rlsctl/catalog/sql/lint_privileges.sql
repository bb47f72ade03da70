-- Privileges on relations (relacl), columns (attacl), functions (proacl, or
-- the default that gives PUBLIC EXECUTE) and schemas (nspacl), owners excluded.
SELECT 'table' AS kind, n.nspname AS schema, c.relname AS object, NULL::text AS column_name,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END AS grantee,
       a.privilege_type AS privilege
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantee <> c.relowner
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'column', n.nspname, c.relname, att.attname,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
       a.privilege_type
FROM pg_catalog.pg_attribute AS att
JOIN pg_catalog.pg_class AS c ON c.oid = att.attrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
CROSS JOIN LATERAL pg_catalog.aclexplode(att.attacl) AS a
WHERE att.attnum > 0 AND NOT att.attisdropped AND a.grantee <> c.relowner
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'schema', n.nspname, n.nspname, NULL,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
       a.privilege_type
FROM pg_catalog.pg_namespace AS n
CROSS JOIN LATERAL pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) AS a
WHERE a.grantee <> n.nspowner
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%';
