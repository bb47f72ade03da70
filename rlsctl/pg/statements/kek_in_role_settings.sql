-- Database and role settings, for this database or every database, that hold the
-- key-encryption key setting: pg_db_role_setting (and pg_roles.rolconfig) can be read by
-- every login, whoever may use the setting.
SELECT CASE WHEN s.setrole = 0 THEN 'ALTER DATABASE ' || pg_catalog.quote_ident(d.datname) || ' SET'
            WHEN s.setdatabase = 0 THEN 'ALTER ROLE ' || pg_catalog.quote_ident(r.rolname) || ' SET'
            ELSE 'ALTER ROLE ' || pg_catalog.quote_ident(r.rolname) || ' IN DATABASE '
                 || pg_catalog.quote_ident(d.datname) || ' SET' END AS place
FROM pg_catalog.pg_db_role_setting AS s
LEFT JOIN pg_catalog.pg_database AS d ON d.oid = s.setdatabase
LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = s.setrole
WHERE s.setdatabase IN (0::pg_catalog.oid, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
  AND EXISTS (SELECT FROM pg_catalog.unnest(s.setconfig) AS c(entry)
              WHERE pg_catalog.split_part(c.entry, '=', 1) = %(setting)s)
ORDER BY 1;
