-- Server settings by name, as this session may see them: a role without SUPERUSER or
-- pg_read_all_settings does not see some (shared_preload_libraries, log_directory, ...).
SELECT s.name, s.setting, s.unit
FROM pg_catalog.pg_settings AS s
WHERE s.name = ANY (%(names)s)
ORDER BY pg_catalog.lower(s.name);
