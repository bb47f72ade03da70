-- Whether the key-encryption key is configured for this session, and long enough to be a
-- random secret (the value itself never leaves the server).
SELECT COALESCE(pg_catalog.current_setting(%(setting)s, true), '') <> '' AS present,
       pg_catalog.length(COALESCE(pg_catalog.current_setting(%(setting)s, true), '')) >= 32 AS strong;
