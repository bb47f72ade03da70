-- pg_cron's extension in this database (its version), if created.
SELECT e.extversion AS version FROM pg_catalog.pg_extension AS e WHERE e.extname = 'pg_cron';
