-- The configuration files (postgresql.conf, ALTER SYSTEM's postgresql.auto.conf) that set the
-- key-encryption key setting: every login can SHOW it then. Readable by superusers and
-- pg_read_all_settings only; the caller falls back to pg_settings.source otherwise.
SELECT pg_catalog.concat(f.sourcefile, ':', f.sourceline) AS place
FROM pg_catalog.pg_file_settings AS f
WHERE f.name = %(setting)s
ORDER BY 1;
