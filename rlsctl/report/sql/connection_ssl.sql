-- Whether this session's own connection is encrypted (TLS), and with which protocol version.
SELECT s.ssl, s.version
FROM pg_catalog.pg_stat_ssl AS s
WHERE s.pid = pg_catalog.pg_backend_pid();
