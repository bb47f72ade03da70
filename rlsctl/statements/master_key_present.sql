-- Whether the key-encryption key is configured for this session (the value never leaves the server).
SELECT COALESCE(pg_catalog.current_setting(%(setting)s, true), '') <> '' AS present;
