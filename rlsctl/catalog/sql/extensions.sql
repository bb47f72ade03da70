-- Extensions: installed in this database (and in which schema), or at least available on the server.
SELECT a.name,
       a.installed_version IS NOT NULL AS installed,
       a.default_version,
       n.nspname AS schema
FROM pg_catalog.pg_available_extensions AS a
LEFT JOIN pg_catalog.pg_extension AS e ON e.extname = a.name
LEFT JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
WHERE a.name = ANY(%(names)s)
ORDER BY a.name;
