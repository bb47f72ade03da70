-- The server's client authentication rules (pg_hba.conf as loaded). Superusers only by
-- default: anyone else gets "permission denied", which the report says it could not read.
SELECT h.line_number, h.type, h.database, h.user_name, h.address, h.netmask, h.auth_method, h.error
FROM pg_catalog.pg_hba_file_rules AS h
ORDER BY h.line_number;
