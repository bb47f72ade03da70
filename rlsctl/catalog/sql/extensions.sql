-- Extensions: installed in this database, or at least available on the server.
SELECT a.name,
       a.installed_version IS NOT NULL AS installed,
       a.default_version
FROM pg_catalog.pg_available_extensions AS a
WHERE a.name = ANY(%(names)s)
ORDER BY a.name;
