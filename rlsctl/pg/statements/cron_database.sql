-- Where pg_cron keeps its jobs (cron.database_name; NULL: pg_cron is not loaded, it
-- needs shared_preload_libraries) and the database this session is in.
SELECT pg_catalog.current_setting('cron.database_name', true) AS cron_database,
       pg_catalog.current_database() AS database,
       current_user AS username;
