-- Where this session's value of the key-encryption key setting comes from (pg_settings.source:
-- 'configuration file', 'database', 'user', ... are shared; 'client' is this session's own).
SELECT s.source FROM pg_catalog.pg_settings AS s WHERE s.name = %(setting)s;
