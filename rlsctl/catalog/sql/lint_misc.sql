-- Extensions with their schema, schema owners, default privileges, triggers, the
-- database's owner and column comments declaring secrets (rlsctl:secret):
-- one result shape (kind, a, b, c, d, list) so they travel in one query.
SELECT 'extension' AS kind, e.extname AS a, n.nspname AS b, NULL::text AS c, NULL::text AS d, NULL::text[] AS list
FROM pg_catalog.pg_extension AS e JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
UNION ALL
SELECT 'schema', n.nspname, pg_catalog.pg_get_userbyid(n.nspowner), NULL, NULL, NULL
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
UNION ALL
SELECT 'default_acl', pg_catalog.pg_get_userbyid(d.defaclrole), d.defaclobjtype::text, dn.nspname, NULL,
       ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END
             FROM pg_catalog.aclexplode(d.defaclacl) AS a WHERE a.grantee <> d.defaclrole)
FROM pg_catalog.pg_default_acl AS d LEFT JOIN pg_catalog.pg_namespace AS dn ON dn.oid = d.defaclnamespace
UNION ALL
SELECT 'trigger', n.nspname, c.relname, t.tgname, fn.nspname || '.' || f.proname, NULL
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_proc AS f ON f.oid = t.tgfoid
JOIN pg_catalog.pg_namespace AS fn ON fn.oid = f.pronamespace
WHERE NOT t.tgisinternal AND n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'database', d.datname, pg_catalog.pg_get_userbyid(d.datdba), NULL, NULL, NULL
FROM pg_catalog.pg_database AS d
WHERE d.datname = pg_catalog.current_database()
UNION ALL
SELECT 'secret', n.nspname, c.relname, a.attname, ds.description, NULL
FROM pg_catalog.pg_description AS ds
JOIN pg_catalog.pg_class AS c ON c.oid = ds.objoid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = ds.objsubid
WHERE ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid > 0
  AND pg_catalog.strpos(ds.description, 'rlsctl:secret') > 0
  AND n.nspname NOT IN ('pg_catalog', 'information_schema');
