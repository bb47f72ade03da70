-- Sessions connected to this database, per role (background workers have none).
SELECT COALESCE(a.usename::text, '(no role)') AS role, pg_catalog.count(*) AS connections
FROM pg_catalog.pg_stat_activity AS a
WHERE a.datname = pg_catalog.current_database()
GROUP BY 1
ORDER BY 1;
