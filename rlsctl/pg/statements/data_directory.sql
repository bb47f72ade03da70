-- The server's data directory (superusers and pg_read_all_settings only): a key file inside it
-- travels with every base backup.
SELECT pg_catalog.current_setting('data_directory') AS path;
