-- File mode: the key file can be read by the current role and holds a key long enough to be a
-- random secret (the value itself never leaves the server).
SELECT pg_catalog.length(pg_catalog.btrim(pg_catalog.pg_read_file(%(path)s), E' \t\r\n')) >= 32 AS strong;
