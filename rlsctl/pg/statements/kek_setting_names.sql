-- Custom settings named like a key-encryption key (the default rlsctl.master_key, and any
-- other *.master_key), in this session or in a database or role setting.
SELECT s.name FROM pg_catalog.pg_settings AS s WHERE s.name LIKE '%.master\_key'
UNION
SELECT pg_catalog.split_part(c.entry, '=', 1)
FROM pg_catalog.pg_db_role_setting AS d, pg_catalog.unnest(d.setconfig) AS c(entry)
WHERE pg_catalog.split_part(c.entry, '=', 1) LIKE '%.master\_key'
  AND d.setdatabase IN (0::pg_catalog.oid, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
ORDER BY 1;
